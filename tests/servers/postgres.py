"""A throw-away PostgreSQL cluster for the test suite, independent of any running service.

`PostgresServer().start()` runs initdb in a temporary folder and starts the server on a free
loopback port with durability switched off (a test cluster need not survive a power cut), then
returns the SQLAlchemy URL of a fresh database. `stop()` stops it at once and removes the
folder. Nothing is left running even when the tests fail or are killed: stop() is registered
with atexit, and a watchdog process does the same once the test process is gone for any
reason (a signal, a timeout, SIGKILL), because the pipe it waits on closes then.

When KURSA_TEST_POSTGRES_URL is set, that server is used instead and nothing is started.
As root, the server runs as the `postgres` OS user: PostgreSQL refuses to run as root.
"""

import atexit
import contextlib
import glob
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from sqlalchemy.engine import make_url

from tests.servers.process import free_port
from tests.servers.watchdog import Watchdog

logger = logging.getLogger(__name__)

ENV_URL = "KURSA_TEST_POSTGRES_URL"
DEFAULT_DATABASE = "kursa_test"
OS_USER = "postgres"
START_ATTEMPTS = 3
INITDB_OPTIONS = "-U postgres -A trust -E UTF8 --locale=C --no-sync --no-instructions".split()
SERVER_OPTIONS = (
    "-F",  # fsync off
    "-c synchronous_commit=off",
    "-c full_page_writes=off",
)

# sh -c WATCHDOG pg_ctl DATA FOLDER, stdin a pipe. After end of file it repeats until the
# folder is gone, since an initdb or pg_ctl start cut short may still be writing into it.
WATCHDOG = """
cat >/dev/null
for attempt in $(seq 60); do
    [ -e "$1/postmaster.pid" ] && "$0" stop -D "$1" -m immediate -w -t 30
    rm -rf "$2"
    [ -e "$2" ] || exit 0
    sleep 0.5
done
"""


class PostgresUnavailable(RuntimeError):
    """The server binaries are missing or the cluster would not start."""


class PostgresServer:
    def __init__(self, url: str | None = None):
        self._external_url = url or os.environ.get(ENV_URL) or None
        self.url: str | None = None
        self.port: int | None = None
        self.folder: Path | None = None
        self._bindir: Path | None = None
        self._user: str | None = None
        self._watchdog: Watchdog | None = None

    @property
    def is_external(self) -> bool:
        return self._external_url is not None

    def start(self) -> str:
        """Start the cluster (once) and return the URL of its `kursa_test` database."""
        if self.url:
            return self.url
        if self.is_external:
            self.url = self._external_url
            return self.url

        self._bindir = find_bindir()
        self._user = OS_USER if os.geteuid() == 0 else None
        self.folder = Path(tempfile.mkdtemp(prefix="kursa-pg-"))
        atexit.register(self.stop)
        try:
            self._prepare_folder()
            self._start_watchdog()  # before initdb: a kill during initdb leaves nothing either
            self._initdb()
            self._start_on_free_port()
            self.url = self.create_database(DEFAULT_DATABASE)
        except BaseException:
            self.stop()
            raise
        logger.info("test PostgreSQL started on port %s in %s", self.port, self.folder)
        return self.url

    def create_database(self, name: str) -> str:
        """Create database `name` unless it exists; return its SQLAlchemy URL."""
        base = self._base_url()
        with psycopg.connect(_conninfo(base, "postgres"), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return make_url(base).set(database=name).render_as_string(hide_password=False)

    def stop(self) -> None:
        """Stop the server immediately and remove its folder. Safe to call more than once."""
        if self.is_external or self.folder is None:
            return
        data = self.folder / "data"
        if (data / "postmaster.pid").exists():
            self._stop_server(data)
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = None
        self._stop_watchdog()
        with contextlib.suppress(ValueError):
            atexit.unregister(self.stop)
        self.url = None
        logger.info("test PostgreSQL on port %s stopped", self.port)

    def _base_url(self) -> str:
        if self.is_external:
            return self._external_url
        if self.port is None:
            raise PostgresUnavailable("The test PostgreSQL server is not running.")
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _prepare_folder(self) -> None:
        for sub in ("data", "sock"):
            (self.folder / sub).mkdir()
        if self._user:
            user = pwd.getpwnam(self._user)
            for path in (self.folder, self.folder / "data", self.folder / "sock"):
                os.chown(path, user.pw_uid, user.pw_gid)

    def _initdb(self) -> None:
        self._run("initdb", "-D", str(self.folder / "data"), *INITDB_OPTIONS)

    def _start_on_free_port(self) -> None:
        # The port is free when we look, but another process may take it before the server
        # binds it: try another one then.
        data, log = str(self.folder / "data"), str(self.folder / "server.log")
        for attempt in range(1, START_ATTEMPTS + 1):
            self.port = free_port()
            options = " ".join(
                (f"-h 127.0.0.1 -p {self.port} -k {self.folder / 'sock'}",) + SERVER_OPTIONS
            )
            try:
                self._run("pg_ctl", "start", "-D", data, "-l", log, "-w", "-t", "60", "-o", options)
                return
            except PostgresUnavailable:
                if attempt == START_ATTEMPTS:
                    raise

    def _start_watchdog(self) -> None:
        pg_ctl, data = str(self._bindir / "pg_ctl"), str(self.folder / "data")
        self._watchdog = Watchdog(WATCHDOG, pg_ctl, data, str(self.folder), **self._as_user())

    def _stop_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.release()
            self._watchdog = None

    def _stop_server(self, data: Path) -> None:
        try:
            self._run("pg_ctl", "stop", "-D", str(data), "-m", "immediate", "-w", "-t", "30")
        except PostgresUnavailable:
            # pg_ctl could not do it: end the postmaster ourselves so nothing keeps running.
            with contextlib.suppress(OSError, ValueError, IndexError):
                pid = int((data / "postmaster.pid").read_text().split()[0])
                os.kill(pid, signal.SIGKILL)

    def _as_user(self) -> dict:
        """subprocess arguments that run a program as the server's OS user (when root)."""
        if not self._user:
            return {}
        return {"user": self._user, "group": self._user, "extra_groups": []}

    def _run(self, program: str, *args: str) -> None:
        command = [str(self._bindir / program), *args]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", TZ="UTC")
        result = subprocess.run(
            command,
            cwd=self.folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=120,
            **self._as_user(),
        )
        if result.returncode != 0:
            log = self.folder / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise PostgresUnavailable(
                f"{program} failed with exit status {result.returncode}:\n"
                f"{result.stdout.strip()}\n{tail}".strip()
            )


def find_bindir() -> Path:
    """The bin folder of the newest PostgreSQL under /usr/lib/postgresql, else the PATH's."""
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    if found:
        return max(found, key=_version_key)
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise PostgresUnavailable(
        "PostgreSQL's server programs (initdb, pg_ctl) are not installed; "
        "run: apt-get install postgresql, or set " + ENV_URL
    )


def _version_key(bindir: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", bindir.parent.name)) or (0,)


def _conninfo(url: str, database: str) -> str:
    """A libpq connection string for `url`, connected to `database`."""
    parsed = make_url(url)
    parts = {
        "host": parsed.host,
        "port": parsed.port,
        "user": parsed.username,
        "password": parsed.password,
        "dbname": database,
    }
    return make_conninfo(**{k: v for k, v in parts.items() if v is not None})


def wait_until_closed(port: int, timeout: float = 5.0) -> bool:
    """True once nothing accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return True
        time.sleep(0.05)
    return False
