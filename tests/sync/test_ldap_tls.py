"""ldaps:// and StartTLS against a real slapd with a throw-away CA: certificate checks are on
by default, the right CA file works, a wrong one fails the run with a plain message."""

from pathlib import Path

import pytest

from portal.core.db import db
from sync.models import SyncSource
from sync.sources.ldap import profiles
from sync.sources.ldap.operations import add_ldap_source, sync_source
from sync.sources.ldap.reader import read_directory
from tests.servers.process import free_port
from tests.servers.slapd import (  # noqa: F401 - fixtures
    ORG_BASE,
    SAMPLE_USERS,
    SERVICE_DN,
    SERVICE_PASSWORD,
    SlapdServer,
    other_ca_file,
    sample_ldif_fixture,
)


@pytest.fixture(scope="module")
def tls_slapd(sample_ldif):
    server = SlapdServer(sample_ldif, tls=True).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def wrong_ca(tmp_path_factory):
    return other_ca_file(tmp_path_factory.mktemp("other-ca"))


def settings(uri: str, **extra) -> dict:
    return {
        "uri": uri,
        "bind_dn": SERVICE_DN,
        "user_bases": [ORG_BASE],
        "org_from": "ou",
        "org_base": ORG_BASE,
        **extra,
    }


def read(uri: str, **extra):
    return read_directory(
        profiles.effective("openldap", settings(uri, **extra)), SERVICE_PASSWORD, source_name="t"
    ).data


def first_message(data) -> str:
    assert data.fatal
    return data.issues[0].message


def test_ldaps_with_the_right_ca_file_reads_the_directory(tls_slapd):
    data = read(tls_slapd.ldaps_uri, ca_file=tls_slapd.ca_file)

    assert not data.fatal, data.issues
    assert len(data.persons) == SAMPLE_USERS


def test_ldaps_checks_the_certificate_by_default(tls_slapd):
    message = first_message(read(tls_slapd.ldaps_uri))

    assert f"No secure connection to {tls_slapd.ldaps_uri} could be set up" in message
    assert "certificate could not be verified" in message and "Nothing was changed." in message


def test_ldaps_connects_without_checks_only_when_they_are_turned_off(tls_slapd, wrong_ca):
    data = read(tls_slapd.ldaps_uri, ca_file=wrong_ca, verify_certificates=False)

    assert not data.fatal, data.issues


@pytest.mark.parametrize("kind", ["ldaps", "starttls"])
def test_a_wrong_ca_fails_the_run_with_a_plain_message(app, customer, tls_slapd, wrong_ca, kind):
    pasted = Path(wrong_ca).read_text()  # the page's pasted CA certificate
    if kind == "ldaps":
        values = settings(tls_slapd.ldaps_uri, ca_pem=pasted)
    else:
        values = settings(tls_slapd.uri, ca_pem=pasted, starttls=True)
    source = add_ldap_source(
        customer, "hq", profile="openldap", settings=values, password=SERVICE_PASSWORD, actor="t"
    )
    db.session.commit()

    run = sync_source(db.session.get(SyncSource, source.id), actor="test")

    assert run.status == "failed"
    assert "No secure connection to" in run.error and "Check the CA file" in run.error
    assert SERVICE_PASSWORD not in run.error


@pytest.mark.parametrize("given_as", ["ca_file", "ca_pem"])
def test_starttls_with_the_right_ca_syncs(app, customer, tls_slapd, monkeypatch, given_as):
    monkeypatch.setitem(app.config["KURSA"]["sync"], "ca_dir", str(tls_slapd.folder))
    ca = (
        {"ca_file": "ca.pem"}
        if given_as == "ca_file"
        else {"ca_pem": Path(tls_slapd.ca_file).read_text()}
    )
    values = settings(tls_slapd.uri, starttls=True, **ca)
    source = add_ldap_source(
        customer, "hq", profile="openldap", settings=values, password=SERVICE_PASSWORD, actor="t"
    )
    db.session.commit()

    run = sync_source(db.session.get(SyncSource, source.id), actor="test", dry_run=True)

    assert run.status == "dry_run", run.error
    assert run.counts["persons"]["created"] == SAMPLE_USERS


def test_ldaps_to_a_closed_port_says_unreachable_not_certificate(tls_slapd):
    closed = free_port()  # nothing listens there

    message = first_message(read(f"ldaps://127.0.0.1:{closed}/", ca_file=tls_slapd.ca_file))

    assert "could not be reached" in message and "certificate" not in message
