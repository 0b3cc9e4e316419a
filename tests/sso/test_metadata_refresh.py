"""Refreshing IdP metadata from a URL (a real HTTP server on loopback): key rollover without
downtime, failures that keep the old metadata, signed metadata, the scheduler's job."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from saml2.metadata import entity_descriptor, sign_entity_descriptor
from saml2.sigver import security_context
from saml2.xmldsig import DIGEST_SHA1, DIGEST_SHA256, SIG_RSA_SHA1, SIG_RSA_SHA256
from sqlalchemy import select

import config
from app import create_app
from portal.core.db import db
from portal.directory.operations import create_customer
from sso.metadata import JOB_ID
from sso.models import IdentityProvider
from sso.operations import add_saml_provider
from tests.conftest import settings_for
from tests.sso.conftest import PERSONS, UNITS, SamlIdp, post_acs, start_login

SIGNING_KEY = re.compile(r'<ns0:KeyDescriptor use="signing">.*?</ns0:KeyDescriptor>', re.S)


class MetadataServer:
    """Serves `body` with `status` at any path, from a thread, on 127.0.0.1."""

    def __init__(self):
        self.body, self.status = "", 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                data = outer.body.encode()
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/samlmetadata+xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/idp/metadata.xml"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def served():
    with MetadataServer() as server:
        yield server


@pytest.fixture
def next_idp(key_pairs):
    """The same IdP after its key rollover: the same entity id, a new key pair."""
    return SamlIdp(key_pairs["attacker"])


@pytest.fixture
def flask(app):
    runner = app.test_cli_runner()
    return lambda *args: runner.invoke(args=list(args))


def both_keys(old: SamlIdp, new: SamlIdp) -> str:
    """Metadata naming the old and the new signing certificate (the rollover window)."""
    new_key = SIGNING_KEY.search(new.metadata).group(0)
    return SIGNING_KEY.sub(lambda m: m.group(0) + new_key, old.metadata, count=1)


@pytest.fixture
def acme_from_url(make_customer, import_csv, served, flask, idp, next_idp):
    served.body = both_keys(idp, next_idp)
    customer = make_customer("acme", "Acme")
    import_csv(customer, UNITS, PERSONS)
    added = flask(
        "sso", "add-saml", "corp", "--customer", "acme", "--metadata-url", served.url,
        "--match", "username", "--match-attribute", "uid",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    return db.session.scalar(select(IdentityProvider))


def login_signed_by(client, signer: SamlIdp) -> int:
    started = start_login(client)
    return post_acs(client, signer.respond(client, started.request_id)).status_code


def listed(flask) -> dict:
    return json.loads(flask("sso", "list", "--json").output)[0]


def test_rollover_accepts_both_keys_then_drops_the_old(
    client, acme_from_url, served, flask, idp, next_idp
):
    assert login_signed_by(client, idp) == 302
    assert login_signed_by(client, next_idp) == 302

    served.body = next_idp.metadata  # the IdP finished its rollover
    refreshed = flask("sso", "refresh-metadata", "corp", "--customer", "acme")

    assert refreshed.exit_code == 0, refreshed.output
    assert "acme/corp: changed" in refreshed.output
    assert login_signed_by(client, idp) == 403  # the old key no longer signs for it
    assert login_signed_by(client, next_idp) == 302
    row = listed(flask)
    assert row["metadata_error"] == "" and row["metadata_refreshed_at"]


def test_a_name_is_refreshed_at_one_customer_only(acme_from_url, served, flask, make_customer):
    """Two customers may each have a provider named corp: NAME needs --customer."""
    make_customer("globex", "Globex")
    added = flask(
        "sso", "add-saml", "corp", "--customer", "globex", "--metadata-url", served.url,
        "--match", "email",
    )  # fmt: skip
    assert added.exit_code == 0, added.output

    unnamed = flask("sso", "refresh-metadata", "corp")
    one = flask("sso", "refresh-metadata", "corp", "--customer", "globex")
    customers = flask("sso", "refresh-metadata", "--customer", "acme")
    every = flask("sso", "refresh-metadata")

    assert unnamed.exit_code == 2 and "Give --customer SLUG with NAME." in unnamed.output
    assert (one.exit_code, one.output) == (0, "globex/corp: unchanged\n")
    assert (customers.exit_code, customers.output) == (0, "acme/corp: unchanged\n")
    assert every.output.splitlines() == ["acme/corp: unchanged", "globex/corp: unchanged"]
    unknown = flask("sso", "refresh-metadata", "nope", "--customer", "acme")
    assert (unknown.exit_code, unknown.output) == (
        1,
        "Error: acme has no identity provider named 'nope'.\n",
    )


def test_without_a_provider_from_a_url_the_refresh_says_so(flask, make_customer, idp, tmp_path):
    everyone = flask("sso", "refresh-metadata")
    make_customer("acme", "Acme")
    path = tmp_path / "idp.xml"
    path.write_text(idp.metadata)
    added = flask(
        "sso", "add-saml", "corp", "--customer", "acme", "--metadata-file", str(path),
        "--match", "email",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    customer = flask("sso", "refresh-metadata", "--customer", "acme")
    named = flask("sso", "refresh-metadata", "corp", "--customer", "acme")

    assert (everyone.exit_code, everyone.output) == (
        0,
        "No SAML provider has a metadata URL; nothing to refresh.\n",
    )
    assert (customer.exit_code, customer.output) == (
        0,
        "acme has no SAML provider with a metadata URL; nothing to refresh.\n",
    )
    assert (named.exit_code, named.output) == (
        1,
        "Error: acme/corp is not a SAML provider with a metadata URL.\n",
    )


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (500, "oops", "answered HTTP 500"),
        (200, "<EntityDescriptor", "not well-formed XML"),
        (200, "no-signing-key", "no signing certificate"),
        (200, "other-entity", "another entity id"),
    ],
)
def test_a_failed_refresh_keeps_the_old_metadata_and_says_why(
    client, acme_from_url, served, flask, idp, status, body, error
):
    before = acme_from_url.setting("metadata_xml")
    if body == "no-signing-key":
        body = SIGNING_KEY.sub("", before)
    elif body == "other-entity":
        body = before.replace("https://idp.corp.test/metadata", "https://evil.test/metadata")
    served.status, served.body = status, body

    refreshed = flask("sso", "refresh-metadata")

    assert refreshed.exit_code == 1
    assert "acme/corp: failed" in refreshed.output
    db.session.expire_all()
    assert db.session.scalar(select(IdentityProvider)).setting("metadata_xml") == before
    row = listed(flask)
    assert error in row["metadata_error"] and row["metadata_error_at"]
    assert login_signed_by(client, idp) == 302  # no downtime

    served.status, served.body = 200, before
    assert flask("sso", "refresh-metadata").exit_code == 0
    assert listed(flask)["metadata_error"] == ""


def signed_metadata(
    signer: SamlIdp, key_of: SamlIdp, sign_alg=SIG_RSA_SHA256, digest_alg=DIGEST_SHA256
) -> str:
    """`signer`'s metadata, signed with `key_of`'s key (as a federation signs its members')."""
    _, xml = sign_entity_descriptor(
        entity_descriptor(signer.config()),
        None,
        security_context(key_of.config()),
        sign_alg=sign_alg,
        digest_alg=digest_alg,
    )
    return xml.decode() if isinstance(xml, bytes) else xml


def test_a_provider_that_requires_signed_metadata_refuses_unsigned_or_forged(
    make_customer, served, flask, idp, next_idp, key_pairs
):
    federation = SamlIdp(key_pairs["sp"])  # its certificate signs the metadata
    served.body = signed_metadata(idp, federation)
    make_customer("acme", "Acme")
    added = flask(
        "sso", "add-saml", "corp", "--customer", "acme", "--metadata-url", served.url,
        "--match", "username", "--metadata-signing-cert", federation.cert_file,
    )  # fmt: skip
    assert added.exit_code == 0, added.output

    served.body = next_idp.metadata
    assert flask("sso", "refresh-metadata").exit_code == 1
    assert "not signed" in listed(flask)["metadata_error"]

    served.body = signed_metadata(next_idp, next_idp)  # signed, by the wrong key
    assert flask("sso", "refresh-metadata").exit_code == 1
    assert "does not verify" in listed(flask)["metadata_error"]

    served.body = signed_metadata(next_idp, federation)
    result = flask("sso", "refresh-metadata")
    assert result.exit_code == 0, result.output
    assert listed(flask)["metadata_error"] == ""


@pytest.mark.parametrize(
    ("sign_alg", "digest_alg"),
    [(SIG_RSA_SHA1, DIGEST_SHA1), (SIG_RSA_SHA256, DIGEST_SHA1), (SIG_RSA_SHA1, DIGEST_SHA256)],
)
def test_metadata_signed_with_sha1_is_refused_and_the_old_kept(
    make_customer, served, flask, idp, next_idp, key_pairs, sign_alg, digest_alg
):
    federation = SamlIdp(key_pairs["sp"])
    served.body = signed_metadata(idp, federation)
    make_customer("acme", "Acme")
    added = flask(
        "sso", "add-saml", "corp", "--customer", "acme", "--metadata-url", served.url,
        "--match", "username", "--metadata-signing-cert", federation.cert_file,
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    kept = db.session.scalar(select(IdentityProvider)).setting("metadata_xml")

    served.body = signed_metadata(next_idp, federation, sign_alg, digest_alg)  # a valid signature

    assert flask("sso", "refresh-metadata").exit_code == 1
    assert listed(flask)["metadata_error"].startswith("The metadata is signed with SHA-1")
    db.session.expire_all()
    assert db.session.scalar(select(IdentityProvider)).setting("metadata_xml") == kept


def test_the_scheduler_runs_the_refresh_every_configured_hours(
    app, acme_from_url, served, next_idp
):
    from sync.schedule import interval_jobs

    job = next(job for job in interval_jobs() if job.id == JOB_ID)
    assert job.seconds == 24 * 3600 and job.run_at_start

    served.body = next_idp.metadata
    job.work()

    db.session.expire_all()
    assert db.session.scalar(select(IdentityProvider)).setting("metadata_xml") == next_idp.metadata


def test_a_wrong_refresh_interval_fails_at_start():
    with pytest.raises(config.ConfigError, match="sso.metadata_refresh_hours must be positive"):
        create_app(settings_for("sqlite://", sso={"metadata_refresh_hours": 0}), environ={})


def test_a_started_scheduler_process_refreshes_the_metadata(
    engine_app, database_url, served, idp, next_idp, key_pairs, tmp_path
):
    """End to end: `flask scheduler run` as its own process (on each engine) takes the IdP's
    new metadata without waiting a whole interval after its start: a scheduler restarted more
    often than `metadata_refresh_hours` (a daily deploy) must still refresh."""
    url = database_url(engine_app.config["KURSA_ENGINE"], "metadata_scheduler")
    settings = settings_for(url, sso={"allow_private_addresses": True})
    app = create_app(settings, environ={})
    served.body = idp.metadata
    with app.app_context():
        customer = create_customer("acme", "Acme", actor="test")
        add_saml_provider(
            customer, "corp", idp.metadata, match="nameid", actor="test", metadata_url=served.url
        )
        db.session.commit()
    served.body = next_idp.metadata  # the IdP rolled its key since the provider was added

    key_file, cert_file = key_pairs["sp"]
    env = {
        **os.environ,
        "FLASK_APP": "app:create_app",
        "KURSA_DATABASE_URL": url,
        "KURSA_WEB_SECRET_KEY": "test-secret-key",
        "KURSA_SSO_ALLOW_PRIVATE_ADDRESSES": "true",
        "KURSA_SSO_KEY_FILE": key_file,
        "KURSA_SSO_CERT_FILE": cert_file,
    }
    env.pop("KURSA_CONFIG", None)
    log = tmp_path / "scheduler.log"
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("flask")), "scheduler", "run"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        assert wait_for_metadata(app, next_idp.metadata, timeout=20), log.read_text()

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        assert "scheduler stopped" in log.read_text()
        with app.app_context():
            provider = db.session.scalar(select(IdentityProvider))
            assert provider.setting("metadata_refreshed_at")
            assert provider.setting("metadata_error") == ""
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        with app.app_context():
            db.engine.dispose()


def wait_for_metadata(app, xml: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with app.app_context():
            if db.session.scalar(select(IdentityProvider)).setting("metadata_xml") == xml:
                return True
        time.sleep(0.3)
    return False
