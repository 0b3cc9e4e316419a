"""The throw-away PostgreSQL cluster starts, serves, and leaves nothing behind."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.servers.postgres import ENV_URL, PostgresServer, find_bindir, wait_until_closed


@pytest.fixture
def own_cluster(monkeypatch):
    try:
        find_bindir()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    monkeypatch.delenv(ENV_URL, raising=False)
    server = PostgresServer()
    yield server
    server.stop()


def _select_one(url: str) -> int:
    parsed = make_url(url)
    with psycopg.connect(
        host=parsed.host, port=parsed.port, user=parsed.username, dbname=parsed.database
    ) as conn:
        return conn.execute("SELECT 1").fetchone()[0]


def test_cluster_starts_serves_and_stops_without_a_trace(own_cluster):
    url = own_cluster.start()

    assert url == f"postgresql+psycopg://postgres@127.0.0.1:{own_cluster.port}/kursa_test"
    assert _select_one(url) == 1
    folder, port = own_cluster.folder, own_cluster.port
    assert folder.is_dir()

    own_cluster.stop()

    assert wait_until_closed(port)
    assert not folder.exists()
    own_cluster.stop()  # a second stop is harmless


def test_create_database_returns_a_usable_url(own_cluster):
    own_cluster.start()

    url = own_cluster.create_database("kursa_other")

    assert make_url(url).database == "kursa_other"
    assert _select_one(url) == 1
    assert own_cluster.create_database("kursa_other") == url  # exists already: reused


def test_a_killed_test_process_leaves_no_server_behind(own_cluster):
    # own_cluster skips without the binaries and unsets the URL; the cluster is the child's.
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD],
        cwd=Path(__file__).parents[2],
        stdout=subprocess.PIPE,
        text=True,
    )
    started = json.loads(child.stdout.readline())
    assert Path(started["folder"]).is_dir()

    child.send_signal(signal.SIGKILL)  # no atexit, no finalizer: only the watchdog is left
    child.wait()

    assert wait_until_closed(started["port"], timeout=10)
    deadline = time.monotonic() + 10
    while Path(started["folder"]).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(started["folder"]).exists()


_CHILD = """
import json, time
from tests.servers.postgres import PostgresServer
server = PostgresServer()
server.start()
print(json.dumps({"folder": str(server.folder), "port": server.port}), flush=True)
time.sleep(120)
"""


def test_external_server_is_used_as_given(monkeypatch):
    monkeypatch.setenv(ENV_URL, "postgresql+psycopg://someone@db.example.test:5433/kursa")
    server = PostgresServer()

    assert server.start() == "postgresql+psycopg://someone@db.example.test:5433/kursa"
    assert server.folder is None
    server.stop()
