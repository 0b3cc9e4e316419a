"""The FTPS file drop, tested with a real FTP client (ftplib) on a loopback port."""

import datetime
import ftplib
import ipaddress
import os
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from werkzeug.security import check_password_hash

from portal.core.db import db
from sync import drop
from sync.drop_server import make_server, set_drop_password
from sync.models import DropAccount
from tests.conftest import ORG_HEADER, PERSON_HEADER, csv_bytes

PASSWORD = "drop-password-for-tests"
PERSONS = csv_bytes([PERSON_HEADER, ["u1001", "Ann", "Berg", "ann@example.dk", "1", "10"]])


def self_signed(folder: Path) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_file), str(key_file)


@pytest.fixture
def ftps(app, customer, tmp_path, monkeypatch):
    """A running drop server on a free loopback port; stopped and closed after the test."""
    cert_file, key_file = self_signed(tmp_path)
    settings = app.config["KURSA"]["drop"]
    for key, value in {
        "root": str(tmp_path / "drop"),
        "cert_file": cert_file,
        "key_file": key_file,
        "settle_seconds": 0.0,
    }.items():
        monkeypatch.setitem(settings, key, value)
    set_drop_password(customer, PASSWORD, actor="test")
    db.session.commit()

    server = make_server(app, host="127.0.0.1", port=0)
    server.handler.auth_failed_timeout = 0.1  # 3 s in service: a brake on password guessing
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            server.serve_forever(timeout=0.05, blocking=False)
        server.close_all()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    server.port = server.socket.getsockname()[1]
    server.cert_file = cert_file
    yield server
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()


def client(server, user="acme", password=PASSWORD) -> ftplib.FTP_TLS:
    context = ssl.create_default_context(cafile=server.cert_file)
    ftp = ftplib.FTP_TLS(context=context, timeout=10)
    ftp.connect("127.0.0.1", server.port)
    ftp.login(user, password)
    ftp.prot_p()
    return ftp


def upload(ftp, name: str, data: bytes) -> None:
    import io

    ftp.storbinary(f"STOR {name}", io.BytesIO(data))


def test_password_is_stored_hashed(ftps, customer):
    stored = db.session.get(DropAccount, customer.id).password_hash
    assert PASSWORD not in stored and check_password_hash(stored, PASSWORD)


def test_upload_lands_in_the_inbox_and_is_imported(ftps, customer, app):
    with client(ftps) as ftp:
        upload(ftp, "org_20261203.csv", csv_bytes([ORG_HEADER, ["10", "Sales", "", ""]]))
        upload(ftp, "persons_20261203.csv", PERSONS)
        assert sorted(ftp.nlst()) == ["org_20261203.csv", "persons_20261203.csv"]

    inbox = drop.inbox_of(customer.slug)
    assert (inbox / "persons_20261203.csv").read_bytes() == PERSONS
    run = drop.import_drop(customer, actor="test").run
    assert run.status == "applied" and run.counts["persons"]["created"] == 1


def test_session_cannot_leave_its_inbox(ftps, customer, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    inbox = drop.inbox_of(customer.slug)
    (inbox / "link").symlink_to(outside)

    with client(ftps) as ftp:
        ftp.cwd("..")
        assert ftp.pwd() == "/"
        for folder in ("/etc", str(outside), "link", "/link"):
            with pytest.raises(ftplib.error_perm):
                ftp.cwd(folder)
        for name in ("../escape.csv", "/../../escape-2.csv"):
            upload(ftp, name, b"x")  # the path is read inside the inbox
        for name in (f"{outside}/escape.csv", "link/escape.csv"):
            with pytest.raises(ftplib.error_perm):
                upload(ftp, name, b"x")
        with pytest.raises(ftplib.error_perm):
            ftp.retrlines("LIST /etc")

    assert list(outside.iterdir()) == []
    assert not (drop.drop_root() / customer.slug / "escape.csv").exists()
    assert (inbox / "escape.csv").exists()


def test_wrong_password_and_unknown_customer_are_refused(ftps):
    for user, password in (("acme", "wrong password!"), ("nobody", PASSWORD)):
        with pytest.raises(ftplib.error_perm, match="530"):
            client(ftps, user, password)


def test_plain_ftp_without_tls_is_refused(ftps):
    ftp = ftplib.FTP(timeout=10)
    ftp.connect("127.0.0.1", ftps.port)
    with pytest.raises(ftplib.error_perm, match="550 SSL/TLS required"):
        ftp.login("acme", PASSWORD)
    ftp.close()


def test_without_prot_p_nothing_is_listed_or_uploaded(ftps, customer):
    context = ssl.create_default_context(cafile=ftps.cert_file)
    with ftplib.FTP_TLS(context=context, timeout=10) as ftp:
        ftp.connect("127.0.0.1", ftps.port)
        ftp.login("acme", PASSWORD)  # TLS on the control channel, none asked for the data
        with pytest.raises(ftplib.error_perm, match="550 SSL/TLS required on the data"):
            upload(ftp, "persons_20261203.csv", PERSONS)
        with pytest.raises(ftplib.error_perm, match="550 SSL/TLS required on the data"):
            ftp.nlst()
        ftp.voidcmd("PBSZ 0")
        with pytest.raises(ftplib.error_perm, match="534"):
            ftp.prot_c()
        with pytest.raises(ftplib.error_perm, match="550 SSL/TLS required on the data"):
            ftp.nlst()

    assert list(drop.inbox_of(customer.slug).iterdir()) == []


@pytest.mark.parametrize("command", ["STOR clear.csv", "NLST"])
def test_prot_c_after_pasv_gives_no_clear_data_channel(ftps, customer, command):
    """PASV under PROT P, then PROT C before connecting: the data channel must stay TLS."""
    inbox = drop.inbox_of(customer.slug)
    (inbox / "org_20261203.csv").write_bytes(b"secret")
    with client(ftps) as ftp:
        _host, port = ftplib.parse227(ftp.sendcmd("PASV"))
        with pytest.raises(ftplib.error_perm, match="534"):
            ftp.sendcmd("PROT C")
        with socket.create_connection(("127.0.0.1", port), timeout=1) as data:
            ftp.putcmd(command)
            if command.startswith("STOR"):
                data.sendall(PERSONS)  # plain bytes where the server waits for TLS
                data.shutdown(socket.SHUT_WR)
            received = receive_all(data)
        replies = replies_until_quiet(ftp)

    assert b"org_20261203" not in received, received
    assert not any(r.startswith("226") for r in replies), replies
    assert sorted(p.name for p in inbox.iterdir()) == ["org_20261203.csv"]


def receive_all(sock: socket.socket) -> bytes:
    """What the server sent on a data connection in clear, until it closed or went quiet."""
    chunks = []
    try:
        while chunk := sock.recv(4096):
            chunks.append(chunk)
    except OSError:  # a timeout, or a reset when the server gives up on the TLS handshake
        pass
    return b"".join(chunks)


def replies_until_quiet(ftp: ftplib.FTP_TLS) -> list[str]:
    ftp.sock.settimeout(1)
    replies = []
    try:
        while len(replies) < 3:
            replies.append(ftp.getline())
    except OSError:
        pass
    return replies


def test_broken_off_upload_is_discarded_and_never_imported(ftps, customer):
    inbox = drop.inbox_of(customer.slug)
    with client(ftps) as ftp:
        upload(ftp, "org_20261203.csv", csv_bytes([ORG_HEADER, ["10", "Sales", "", ""]]))
        data = ftp.transfercmd("STOR persons_20261203.csv")
        data.sendall(PERSONS[:20])
        time.sleep(0.3)
        assert drop.complete_pairs(inbox) == []  # while it flows, only a .part exists
        # The client vanishes: both connections drop without a TLS goodbye.
        data.shutdown(2)
        data.close()
        ftp.sock.shutdown(2)
        ftp.sock.close()

    deadline = time.monotonic() + 5
    while len(list(inbox.iterdir())) > 1 and time.monotonic() < deadline:  # the .part goes
        time.sleep(0.1)
    assert sorted(p.name for p in inbox.iterdir()) == ["org_20261203.csv"]
    assert drop.import_drop(customer, actor="test").run is None


def test_short_password_is_refused(app, customer):
    from portal.core.errors import UserError

    with pytest.raises(UserError, match="at least 12"):
        set_drop_password(customer, "short", actor="test")


def test_cli_sets_password_from_the_environment(app, customer, tmp_path, monkeypatch):
    monkeypatch.setitem(app.config["KURSA"]["drop"], "root", str(tmp_path / "drop"))
    runner = app.test_cli_runner()

    result = runner.invoke(
        args=["drop", "set-password", "acme", "--password-env", "DROP_PW"],
        env={"DROP_PW": PASSWORD},
    )

    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    assert drop.inbox_of("acme").is_dir()
    missing = runner.invoke(args=["drop", "set-password", "acme", "--password-env", "NOPE_X"])
    assert missing.exit_code == 1 and "NOPE_X" in missing.output
    assert os.environ.get("NOPE_X") is None


def test_flask_drop_serve_runs_until_sigterm(database_url, tmp_path):
    """`flask drop serve` as its own process: refuses to start without a certificate, then
    serves FTPS logins and exits cleanly on SIGTERM."""
    import signal
    import socket
    import subprocess
    import sys

    from app import create_app
    from portal.directory.operations import create_customer
    from tests.conftest import settings_for

    url = database_url("sqlite", "drop_serve")
    env = {
        **os.environ,
        "FLASK_APP": "app:create_app",
        "KURSA_DATABASE_URL": url,
        "KURSA_WEB_SECRET_KEY": "test-secret-key",
        "KURSA_DROP_ROOT": str(tmp_path / "drop"),
        "KURSA_DROP_FTPS_HOST": "127.0.0.1",
        "DROP_PW": PASSWORD,
    }
    env.pop("KURSA_CONFIG", None)
    flask = [str(Path(sys.executable).with_name("flask")), "drop"]
    app = create_app(settings_for(url), environ={})
    with app.app_context():
        create_customer("acme", "Acme", actor="test")
        db.session.commit()
        db.engine.dispose()
    setup = subprocess.run(
        [*flask, "set-password", "acme", "--password-env", "DROP_PW"], env=env, timeout=30
    )
    assert setup.returncode == 0

    refused = subprocess.run([*flask, "serve"], env=env, capture_output=True, text=True)
    assert refused.returncode == 1 and "cert_file" in refused.stderr

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cert_file, key_file = self_signed(tmp_path)
    env.update(
        KURSA_DROP_FTPS_PORT=str(port), KURSA_DROP_CERT_FILE=cert_file, KURSA_DROP_KEY_FILE=key_file
    )
    process = subprocess.Popen(
        [*flask, "serve"], env=env, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert "listening on 127.0.0.1" in process.stdout.readline()
        server = type("Server", (), {"port": port, "cert_file": cert_file})
        with client(server) as ftp:
            upload(ftp, "persons_20261203.csv", PERSONS)
        assert (tmp_path / "drop" / "acme" / "inbox" / "persons_20261203.csv").exists()

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
