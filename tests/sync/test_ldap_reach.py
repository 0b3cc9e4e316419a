"""[sync] ca_dir and allowed_ldap_hosts: what an IT admin's directory source may reach."""

from pathlib import Path

import pytest

import config
from app import create_app
from portal.core.db import db
from portal.core.errors import FieldRefused
from sync.models import SyncSource
from sync.sources.ldap import operations, reach
from sync.sources.ldap.operations import add_ldap_source, check_settings
from tests.conftest import settings_for
from tests.servers.slapd import other_ca_file

OUTSIDE = "The CA file must be a file in this Kursa's folder of CA certificates"


def settings(uri="ldap://dc1.example.test/", **extra) -> dict:
    return {
        "uri": uri,
        "bind_dn": "cn=kursa,dc=example,dc=test",
        "user_bases": ["ou=people,dc=example,dc=test"],
        "org_from": "ou",
        "org_base": "ou=org,dc=example,dc=test",
        **extra,
    }


def refusal(**extra) -> FieldRefused:
    with pytest.raises(FieldRefused) as caught:
        check_settings("openldap", settings(**extra))
    return caught.value


@pytest.fixture
def ca_dir(app, tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "ca"
    folder.mkdir()
    other_ca_file(folder)  # folder/ca.pem, a real CA certificate
    monkeypatch.setitem(app.config["KURSA"]["sync"], "ca_dir", str(folder))
    return folder


@pytest.fixture
def allowed(app, monkeypatch):
    def allow(*entries: str) -> None:
        monkeypatch.setitem(app.config["KURSA"]["sync"], "allowed_ldap_hosts", list(entries))

    return allow


def test_a_ca_file_in_the_ca_folder_is_taken_by_name_or_path(ca_dir):
    check_settings("openldap", settings(ca_file="ca.pem"))
    check_settings("openldap", settings(ca_file=str(ca_dir / "ca.pem")))

    assert reach.resolve_ca_file("ca.pem") == str(ca_dir.resolve() / "ca.pem")


@pytest.mark.parametrize(
    "name",
    ["/etc/hostname", "/etc/no-such-file.pem", "../ca/../../etc/hostname", "../nothing.pem"],
)
def test_a_path_outside_the_ca_folder_gets_one_answer_whether_it_exists_or_not(ca_dir, name):
    error = refusal(ca_file=name)

    assert error.field == "ca_file"
    assert str(error).startswith(OUTSIDE)
    assert "hostname" not in str(error) and "exist" not in str(error)


def test_a_link_in_the_ca_folder_cannot_lead_out_of_it(ca_dir):
    (ca_dir / "escape.pem").symlink_to("/etc/hostname")

    assert str(refusal(ca_file="escape.pem")).startswith(OUTSIDE)


def test_a_missing_file_inside_the_ca_folder_is_named(ca_dir):
    assert str(refusal(ca_file="corp.pem")) == "There is no CA file 'corp.pem' in the CA folder."


def test_the_default_ca_folder_is_instance_ca(app):
    assert reach.ca_dir() == (Path(app.instance_path) / "ca").resolve()
    assert str(refusal(ca_file="/etc/hostname")).startswith(OUTSIDE)


def test_a_pasted_ca_certificate_is_checked_and_written_for_the_connection(app, ca_dir, customer):
    pem = (ca_dir / "ca.pem").read_text()
    assert refusal(ca_pem="not a certificate").field == "ca_pem"
    assert refusal(ca_pem=pem, ca_file="ca.pem").field == "ca_pem"  # one or the other
    source = add_ldap_source(
        customer, "hq", profile="openldap", settings=settings(ca_pem=pem), password="x", actor="t"
    )

    used = operations.connection_settings(source)

    assert Path(used["ca_file"]).read_text() == pem
    assert Path(used["ca_file"]).parent == Path(app.instance_path) / "ca-sources"


@pytest.mark.parametrize(
    ("uri", "entries"),
    [
        ("ldaps://dc1.example.test:636", ["dc1.example.test"]),
        ("ldaps://DC2.Corp.Example.test", [".example.test"]),
        ("ldap://example.test", [".example.test"]),
        ("ldap://10.20.3.4:389", ["10.20.0.0/16"]),
        ("ldap://localhost:389", ["127.0.0.0/8", "::1/128"]),  # a name resolved for networks
        ("ldap://dc1.example.test ldap://dc2.example.test", [".example.test"]),
    ],
)
def test_allowed_hosts_are_accepted(allowed, uri, entries):
    allowed(*entries)

    check_settings("openldap", settings(uri=uri))


@pytest.mark.parametrize(
    ("uri", "entries"),
    [
        ("ldap://dc1.evil.test", [".example.test"]),
        ("ldap://example.test.evil.test", [".example.test"]),
        ("ldap://badexample.test", [".example.test"]),
        ("ldap://10.21.0.1", ["10.20.0.0/16"]),
        ("ldap://localhost", ["10.20.0.0/16"]),
        ("ldap://169.254.169.254", ["dc1.example.test"]),
        ("ldap://dc1.example.test ldap://127.0.0.1", ["dc1.example.test"]),
        ("ldapi://%2Frun%2Fslapd%2Fldapi", ["dc1.example.test"]),
    ],
)
def test_other_hosts_are_refused_under_the_uri(allowed, uri, entries):
    allowed(*entries)

    error = refusal(uri=uri)

    assert error.field == "uri"


def test_any_host_when_the_list_is_empty(app):
    check_settings("openldap", settings(uri="ldap://192.0.2.1"))


def test_a_source_saved_earlier_is_refused_before_it_connects(allowed, customer):
    source = add_ldap_source(
        customer,
        "hq",
        profile="openldap",
        settings=settings(uri="ldap://192.0.2.1:1/"),
        password="x",
        actor="t",
    )
    db.session.commit()
    allowed(".example.test")

    with pytest.raises(reach.ReachError, match="not among the directory servers"):
        operations.sync_source(db.session.get(SyncSource, source.id), actor="test")
    with pytest.raises(reach.ReachError):
        operations.check_source(source)


@pytest.mark.parametrize("entry", ["bad host", "-x.test", "10.0.0.0/33", ""])
def test_a_wrong_allowed_host_fails_at_start(entry):
    with pytest.raises(config.ConfigError, match="sync.allowed_ldap_hosts"):
        create_app(settings_for("sqlite://", sync={"allowed_ldap_hosts": [entry]}), environ={})


def test_allowed_hosts_come_from_the_environment_comma_separated():
    environ = {"KURSA_SYNC_ALLOWED_LDAP_HOSTS": ".example.test, 10.20.0.0/16"}

    loaded = config.load_config(environ=environ)

    assert loaded["sync"]["allowed_ldap_hosts"] == [".example.test", "10.20.0.0/16"]
