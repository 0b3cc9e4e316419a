"""Faults an attack run found in LDAP sources, each held by the outcome it should have."""

import ldap
import pytest
from sqlalchemy import select

import config
from app import create_app
from portal.core.db import db
from portal.core.errors import FieldRefused
from portal.directory.models import Person
from sync.models import RunStatus, SyncSource
from sync.sources.ldap import profiles, reach
from sync.sources.ldap.operations import (
    add_ldap_source,
    check_schedule,
    check_settings,
    sync_source,
)
from sync.sources.ldap.reader import read_directory
from tests.conftest import csrf_token, settings_for
from tests.servers.slapd import (  # noqa: F401 - fixtures
    ORG_BASE,
    SAMPLE_USERS,
    SERVICE_DN,
    SERVICE_PASSWORD,
    SUFFIX,
    SlapdServer,
    sample_entries,
    sample_ldif_fixture,
    shared_slapd_fixture,
    to_ldif,
)

CA_OUTSIDE = reach.CA_OUTSIDE


def settings(uri="ldap://127.0.0.1:389", **extra) -> dict:
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
def allowed(app, monkeypatch):
    def allow(*entries: str) -> None:
        monkeypatch.setitem(app.config["KURSA"]["sync"], "allowed_ldap_hosts", list(entries))

    return allow


# -- F1: every URI libldap would try is checked ---------------------------------------------


def test_libldap_reads_a_comma_as_a_second_uri():
    conn = ldap.initialize("ldap://127.0.0.1:1,ldap://127.0.0.2:2")

    assert conn.get_option(ldap.OPT_URI) == "ldap://127.0.0.1:1 ldap://127.0.0.2:2"


@pytest.mark.parametrize(
    "uri",
    [
        "ldap://127.0.0.1:389,ldap://127.0.0.2:1234",
        "ldap://127.0.0.1:389, ldap://127.0.0.2:1234",
        "ldap://127.0.0.1:389,,ldap://127.0.0.2",
        "ldap://127.0.0.1:389\nldap://127.0.0.2",
        "ldap://127.0.0.1:389,ldapi://%2Frun%2Fslapd%2Fldapi",
        "ldap://127.0.0.1%00.evil.test",  # libldap unescapes %XX: the host would end at NUL
        "ldap://127.0.0.2@127.0.0.1",  # urlsplit and libldap disagree on the host
    ],
)
def test_a_uri_list_with_a_host_not_allowed_is_refused(allowed, uri):
    allowed("127.0.0.1/32")

    error = refusal(uri=uri)

    assert error.field == "uri"
    with pytest.raises(reach.ReachError):
        reach.check_hosts(uri, resolve=True)  # also the check before every connection


@pytest.mark.parametrize(
    "uri",
    [
        "ldap://127.0.0.1:389,ldap://127.0.0.1:1389",
        "ldap://127.0.0.1:389 ldap://127.0.0.1:1389",
        "ldaps://dc1.example.test,ldaps://dc2.example.test:636",
    ],
)
def test_a_uri_list_of_allowed_hosts_passes(allowed, uri):
    allowed("127.0.0.1/32", ".example.test")

    check_settings("openldap", settings(uri=uri))


# -- F9: a CA file name no file can have gets the plain CA sentence --------------------------


@pytest.mark.parametrize("name", ["x\x00y", "a" * 5000, "a/" * 3000 + "ca.pem"])
def test_a_ca_file_name_no_file_can_have_is_refused_plainly(app, name):
    error = refusal(ca_file=name)

    assert (error.field, str(error)) == ("ca_file", CA_OUTSIDE)


@pytest.mark.parametrize("name", ["x\x00y", "a" * 5000])
def test_the_source_page_shows_the_ca_sentence_for_such_a_name(customer, admin_client, name):
    url = f"/sync/sources/new?customer={customer.slug}"
    form = {
        "csrf_token": csrf_token(admin_client, url),
        "name": "s1",
        "profile": "openldap",
        "mapping_profile": "openldap",
        "uri": "ldap://127.0.0.1:1",
        "bind_dn": "cn=x,dc=y",
        "password": "pw",
        "user_bases": "ou=a,dc=y",
        "org_from": "ou",
        "org_base": "ou=a,dc=y",
        "ca_file": name,
        "schedule": "0 2 * * *",
    }

    response = admin_client.post(url, data=form)

    assert response.status_code == 200
    assert "folder of CA certificates" in response.get_data(as_text=True)


# -- F10: the values of a declared source have the right types, checked at start -------------


def declared(**changes) -> dict:
    table = {"customer": "acme", "profile": "openldap", "password_env": "PW", **settings()}
    return {"hq": {**table, **changes}}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"uri": 5}, "ldap_sources.hq.uri must be text, not 5"),
        ({"attributes": "mail"}, "ldap_sources.hq.attributes must be a table of attribute names"),
        ({"attributes": {"email": 5}}, "ldap_sources.hq.attributes must be a table of attribute"),
        ({"user_bases": "ou=a,dc=y"}, "ldap_sources.hq.user_bases must be a list of texts"),
        ({"user_bases": ["ou=a,dc=y", 3]}, "ldap_sources.hq.user_bases must be a list of texts"),
        ({"verify_certificates": 0}, "ldap_sources.hq.verify_certificates must be true or false"),
        ({"starttls": "yes"}, "ldap_sources.hq.starttls must be true or false"),
        ({"page_size": 2.5}, "ldap_sources.hq.page_size must be a whole number, not 2.5"),
        ({"timeout": "60"}, "ldap_sources.hq.timeout must be a number"),
    ],
)
def test_a_declared_value_of_the_wrong_type_fails_at_start(change, message):
    with pytest.raises(config.ConfigError, match=message):
        config.load_config(environ={}, overrides={"ldap_sources": declared(**change)})


def test_the_portal_does_not_start_with_such_a_value():
    wrong = settings_for("sqlite://", ldap_sources=declared(verify_certificates=0))

    with pytest.raises(config.ConfigError, match="verify_certificates must be true or false"):
        create_app(wrong, environ={})


def test_declared_values_of_the_right_types_load():
    right = declared(page_size=200, timeout=2.5, verify_certificates=False, attributes={})

    loaded = config.load_config(environ={}, overrides={"ldap_sources": right})

    assert loaded["ldap_sources"]["hq"]["page_size"] == 200


def test_every_ldap_setting_has_a_type():
    assert set(config.LDAP_SETTING_TYPES) == config.LDAP_SETTING_KEYS == profiles.SETTING_KEYS


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"uri": 5}, "uri"),
        ({"attributes": "mail"}, "attributes"),
        ({"user_bases": "ou=a,dc=y"}, "user_bases"),
        ({"verify_certificates": 0}, "verify_certificates"),
        ({"page_size": 2.5}, "page_size"),
    ],
)
def test_check_settings_refuses_a_value_of_the_wrong_type(app, change, field):
    error = refusal(**change)

    assert error.field == field
    assert str(error).startswith(f"The setting {field} must be ")


# -- F13b: a schedule that can never fire is refused --------------------------------------


@pytest.mark.parametrize("cron", ["0 2 31 2 *", "0 2 30 2 *", "0 2 31 4,6,9,11 *"])
def test_a_schedule_no_date_matches_is_refused(cron):
    for field in ("schedule", "delta_schedule"):
        with pytest.raises(FieldRefused, match="never runs") as caught:
            check_schedule(field, cron)

        assert caught.value.field == field


@pytest.mark.parametrize("cron", ["0 2 29 2 *", "0 2 30 2 1", "0 2 31 * *", "*/15 * * * *"])
def test_a_schedule_that_comes_round_is_taken(cron):
    check_schedule("schedule", cron)


def test_a_drop_schedule_that_never_runs_fails_at_start():
    with pytest.raises(config.ConfigError, match="drop.schedule '0 2 31 2 \\*' never runs"):
        config.load_config(environ={}, overrides={"drop": {"schedule": "0 2 31 2 *"}})


# -- F11: mapped attribute names are case-insensitive; one that never comes back is named ------


def read_sample(server, **attributes):
    values = {"uri": server.uri, "bind_dn": SERVICE_DN, "user_bases": [ORG_BASE]}
    values |= {"org_from": "ou", "org_base": ORG_BASE, "attributes": attributes}
    settings = profiles.effective("openldap", values)
    return read_directory(settings, SERVICE_PASSWORD, source_name="case").data


def test_mapped_names_are_read_whatever_their_case(shared_slapd):
    data = read_sample(shared_slapd, username="UID", email="MAIL", first_name="GIVENNAME")

    assert len(data.persons) == SAMPLE_USERS
    assert all(p.username and p.email and p.first_name for p in data.persons)
    assert not [i for i in data.issues if i.severity == "error"]


def test_a_mapped_alias_is_read_as_its_attribute(shared_slapd):
    data = read_sample(shared_slapd, username="userid", email="0.9.2342.19200300.100.1.3")

    assert all(p.username and p.email for p in data.persons)


def test_a_mapped_attribute_no_entry_has_is_named_once(shared_slapd):
    data = read_sample(shared_slapd, employee_number="roomNumber")

    named = [i for i in data.issues if "'roomNumber'" in i.message]
    assert len(named) == 1
    assert named[0].column == "roomNumber" and named[0].severity == "notice"


def test_a_run_with_an_upper_case_username_attribute_keeps_everyone(app, customer, shared_slapd):
    values = {"uri": shared_slapd.uri, "bind_dn": SERVICE_DN, "user_bases": [ORG_BASE]}
    values |= {"org_from": "ou", "org_base": ORG_BASE, "attributes": {"username": "UID"}}
    source = add_ldap_source(
        customer, "case", profile="openldap", settings=values, password=SERVICE_PASSWORD, actor="t"
    )
    db.session.commit()

    run = sync_source(db.session.get(SyncSource, source.id), actor="test", full=True)

    assert run.status == RunStatus.APPLIED
    named = db.session.scalars(select(Person.username).where(Person.username.like("e0%")))
    assert len(list(named)) == SAMPLE_USERS


# -- F13a: two entries with one entryUUID are named, not dropped silently --------------------

TWICE = "11111111-2222-3333-4444-555555555555"


@pytest.fixture(scope="module")
def twin_slapd():
    entries = sample_entries()
    persons = [values for dn, values in entries if b"inetOrgPerson" in values["objectClass"]]
    for values in persons[:2]:
        values["entryUUID"] = [TWICE.encode()]
    server = SlapdServer(to_ldif(entries)).start()
    yield server
    server.stop()


def test_an_anchor_used_twice_names_both_entries(twin_slapd):
    data = read_sample(twin_slapd)

    twice = [i for i in data.issues if i.value == TWICE]
    assert len(twice) == 1 and twice[0].severity == "error"
    assert "e00001" in twice[0].message and "e00002" in twice[0].message
    assert "the later one was skipped" in twice[0].message
    assert twice[0].column == "entryUUID"  # the directory's attribute, as every LDAP issue
    assert len(data.persons) == SAMPLE_USERS - 1


def test_overlapping_user_bases_are_no_repeated_anchor(shared_slapd):
    values = {"uri": shared_slapd.uri, "bind_dn": SERVICE_DN, "user_bases": [ORG_BASE, SUFFIX]}
    values |= {"org_from": "ou", "org_base": ORG_BASE}
    settings = profiles.effective("openldap", values)

    data = read_directory(settings, SERVICE_PASSWORD, source_name="overlap").data

    assert len(data.persons) == SAMPLE_USERS
    assert not [i for i in data.issues if "the later one was skipped" in i.message]
