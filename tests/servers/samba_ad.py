"""A throw-away Samba Active Directory domain controller for tests (LDAP only), as root.

`SambaADServer().start()` provisions a domain into a temporary folder (samba-tool, about 12 s,
so once per test session), then runs `samba -i -M single` in its own session and waits until
an Administrator bind works. Samba's LDAP port is fixed at 389, so the DC listens on another
loopback address (127.0.0.2) to clash with nothing. `stop()` ends it and removes the folder;
atexit and a watchdog shell (woken when this process is gone) make sure nothing is left.

Samba does not enforce AD's 1,000-entry page limit: paging is proven against slapd instead.
"""

import atexit
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import ldap
import pytest

from tests.servers.process import end_process
from tests.servers.watchdog import Watchdog

SAMBA = "/usr/sbin/samba"
SAMBA_TOOL = "/usr/bin/samba-tool"
ADDRESS = "127.0.0.2"
REALM = "EXAMPLE.TEST"
DOMAIN = "EXAMPLE"
BASE = "DC=example,DC=test"
ADMIN = f"Administrator@{REALM}"
ADMIN_PASSWORD = "Passw0rd!2024"
# Options provision does not keep: plain LDAP binds, only the LDAP service, no TLS keys.
EXTRA_OPTIONS = """\tldap server require strong auth = no
\tserver services = ldap
\ttls enabled = no
\tlog file = {folder}/log.%m
\tpid directory = {folder}/run
\tncalrpc dir = {folder}/ncalrpc
\twinbindd socket directory = {folder}/winbindd
"""
WATCHDOG = """
cat >/dev/null
kill -9 "$0" 2>/dev/null
sleep 0.2
rm -rf "$1"
"""


class SambaUnavailable(RuntimeError):
    """Samba is not installed, not run as root, or the DC did not come up."""


class SambaADServer:
    def __init__(self):
        self.folder: Path | None = None
        self.process: subprocess.Popen | None = None
        self._watchdog: Watchdog | None = None

    uri = f"ldap://{ADDRESS}/"

    def start(self) -> "SambaADServer":
        if not Path(SAMBA).exists() or os.geteuid() != 0:
            raise SambaUnavailable(
                "A Samba AD DC needs root and: apt-get install --no-install-recommends samba "
                "samba-ad-dc samba-ad-provision samba-dsdb-modules winbind"
            )
        self.folder = Path(tempfile.mkdtemp(prefix="kursa-samba-"))
        atexit.register(self.stop)
        try:
            self._provision()
            self._start_process()
        except BaseException:
            self.stop()
            raise
        return self

    def admin(self):
        conn = ldap.initialize(self.uri)
        conn.set_option(ldap.OPT_REFERRALS, 0)
        conn.simple_bind_s(ADMIN, ADMIN_PASSWORD)
        return conn

    def stop(self) -> None:
        if self.process is not None:
            end_process(self.process, grace=10)
            self.process = None
        if self._watchdog is not None:
            self._watchdog.release()
            self._watchdog = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
        with contextlib.suppress(ValueError):
            atexit.unregister(self.stop)

    def _provision(self) -> None:
        self._run(
            SAMBA_TOOL,
            "domain",
            "provision",
            f"--targetdir={self.folder}",
            f"--realm={REALM}",
            f"--domain={DOMAIN}",
            "--server-role=dc",
            "--dns-backend=NONE",
            "--use-rfc2307",
            f"--adminpass={ADMIN_PASSWORD}",
            "--host-name=dc1",
            f"--host-ip={ADDRESS}",
            "--option=bind interfaces only = yes",
            f"--option=interfaces = {ADDRESS}/8",
        )
        conf = self.folder / "etc" / "smb.conf"
        lines = [
            line
            for line in conf.read_text().splitlines(keepends=True)
            if not line.strip().startswith(("server services", "log file", "dns forwarder"))
        ]
        at = next(i for i, line in enumerate(lines) if line.strip() == "[global]") + 1
        lines.insert(at, EXTRA_OPTIONS.format(folder=self.folder))
        conf.write_text("".join(lines))
        for sub in ("run", "cache"):
            (self.folder / sub).mkdir(exist_ok=True)

    def _start_process(self) -> None:
        conf = str(self.folder / "etc" / "smb.conf")
        self.process = subprocess.Popen(
            [SAMBA, "-i", "-M", "single", "-s", conf, "--debuglevel=0"],
            stdin=subprocess.DEVNULL,
            stdout=open(self.folder / "samba.out", "ab"),  # noqa: SIM115 - the child owns it
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._watchdog = Watchdog(WATCHDOG, str(self.process.pid), str(self.folder))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            with contextlib.suppress(ldap.LDAPError):
                self.admin().unbind_s()
                return
            time.sleep(0.1)
        tail = (self.folder / "samba.out").read_text(errors="replace")[-2000:]
        raise SambaUnavailable(f"samba did not come up on {ADDRESS}:389:\n{tail}")

    def _run(self, *command: str) -> None:
        result = subprocess.run(command, capture_output=True, text=True, timeout=180)
        if result.returncode != 0:
            raise SambaUnavailable(
                f"{command[0]} failed: {(result.stdout + result.stderr)[-2000:]}"
            )


@pytest.fixture(scope="session", name="samba_ad")
def samba_ad_fixture():
    """One provisioned, running DC for the session; tests work in OUs of their own."""
    if os.geteuid() != 0:
        pytest.skip("a Samba AD DC runs only as root")
    server = SambaADServer().start()
    yield server
    server.stop()
