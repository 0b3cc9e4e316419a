"""LDAP sources declared in the config file: checked at start, applied all-or-nothing by
`flask directory source apply-config` (and the scheduler at start), then synced like any other."""

import json
import re

import pytest
from sqlalchemy import select

import config
from config import ConfigError, load_config
from portal.core.db import db
from sync import schedule
from sync.models import SyncSource
from sync.sources.ldap import profiles, vault
from sync.sources.ldap.declared import apply_declared
from tests.servers.slapd import (  # noqa: F401 - fixtures
    ORG_BASE,
    SAMPLE_USERS,
    SERVICE_DN,
    SERVICE_PASSWORD,
    sample_ldif_fixture,
    shared_slapd_fixture,
)

VARIABLE = "KURSA_TEST_DECLARED_PASSWORD"


def table(**changes) -> dict:
    declared = {
        "customer": "acme",
        "profile": "openldap",
        "password_env": VARIABLE,
        "uri": "ldap://127.0.0.1:3890",
        "bind_dn": SERVICE_DN,
        "user_bases": [ORG_BASE],
        "org_base": ORG_BASE,
    }
    return {**declared, **changes}


@pytest.fixture
def declare(app, monkeypatch):
    """Put [ldap_sources] tables into the running app's settings."""

    def put(**tables):
        monkeypatch.setitem(app.config["KURSA"], "ldap_sources", tables)

    return put


@pytest.fixture
def flask(app):
    runner = app.test_cli_runner()

    def invoke(*args, password=SERVICE_PASSWORD):
        env = {VARIABLE: password} if password is not None else {}
        return runner.invoke(args=list(args), env=env, catch_exceptions=False)

    return invoke


def stored(name: str) -> SyncSource | None:
    db.session.expire_all()
    return db.session.scalar(select(SyncSource).where(SyncSource.name == name))


def test_the_config_keys_of_a_declared_source_are_the_sync_settings():
    assert profiles.SETTING_KEYS == config.LDAP_SETTING_KEYS


@pytest.mark.parametrize(
    ("tables", "message"),
    [
        ({"hq": {**table(), "urii": "ldap://x"}}, "ldap_sources.hq.urii: unknown setting"),
        ({"hq": {"profile": "openldap", "password_env": VARIABLE}}, "hq: customer is required"),
        ({"hq": table(enabled="yes")}, "ldap_sources.hq.enabled must be bool"),
        ({"hq": "ldap://x"}, "must be a table of source names"),
    ],
)
def test_a_wrong_table_fails_at_start_naming_it(tables, message):
    with pytest.raises(ConfigError, match=message):
        load_config(environ={}, overrides={"ldap_sources": tables})


def test_declared_sources_are_created_then_left_unchanged(app, customer, declare, flask):
    declare(
        hq=table(schedule="30 1 * * *"), branch=table(profile="ad", delta_schedule="*/15 * * * *")
    )

    first = flask("directory", "source", "apply-config", "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.output) == [
        {"name": "branch", "outcome": "created"},
        {"name": "hq", "outcome": "created"},
    ]
    hq = stored("hq")
    assert (hq.profile, hq.schedule, hq.settings["uri"]) == (
        "openldap",
        "30 1 * * *",
        table()["uri"],
    )
    assert vault.decrypt(hq.password_encrypted) == SERVICE_PASSWORD
    assert stored("branch").delta_schedule == "*/15 * * * *"

    again = flask("directory", "source", "apply-config")
    assert again.output == "branch: unchanged\nhq: unchanged\n"


def test_a_changed_table_or_password_updates_the_source(app, customer, declare, flask):
    declare(hq=table())
    flask("directory", "source", "apply-config")
    hq = stored("hq")
    hq.state = {"last_change": "20261201000000Z"}
    db.session.commit()

    declare(hq=table(uri="ldap://127.0.0.1:3891", enabled=False))
    assert flask("directory", "source", "apply-config").output == "hq: updated\n"
    hq = stored("hq")
    assert (hq.settings["uri"], hq.is_enabled, hq.state) == ("ldap://127.0.0.1:3891", False, {})

    assert flask("directory", "source", "apply-config", password="rotated").output == (
        "hq: updated\n"
    )
    assert vault.decrypt(stored("hq").password_encrypted) == "rotated"


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (table(customer="nobody"), "ldap_sources.wrong.customer: no customer 'nobody'."),
        (
            table(uri="http://dc.example.test"),
            "ldap_sources.wrong.uri: The URI must start with ldap://, ldaps:// or ldapi://.",
        ),
        (table(page_size=0), "ldap_sources.wrong.page_size: The page size must be a number"),
        (table(schedule="every night"), "ldap_sources.wrong.schedule"),
    ],
)
def test_one_wrong_table_is_named_and_nothing_applies(
    app, customer, declare, flask, wrong, message
):
    declare(aa=table(), wrong=wrong)

    result = flask("directory", "source", "apply-config")

    assert result.exit_code == 1
    assert message in result.output
    assert stored("aa") is None  # applied in name order, yet rolled back with the wrong one


@pytest.mark.parametrize(
    ("wrong", "setting", "message"),
    [
        (table(customer="nobody"), "ldap_sources.wrong.customer", "no customer 'nobody'."),
        (table(uri="http://dc.example.test"), "ldap_sources.wrong.uri", "The URI must start"),
        (table(page_size=0), "ldap_sources.wrong.page_size", "The page size must be"),
    ],
)
def test_with_json_a_wrong_table_is_one_object_naming_it(
    app, customer, declare, flask, wrong, setting, message
):
    declare(aa=table(), wrong=wrong)

    result = flask("directory", "source", "apply-config", "--json")

    assert result.exit_code == 1
    refused = json.loads(result.stdout)
    assert refused == {"status": "failed", "setting": setting, "message": refused["message"]}
    assert refused["message"].startswith(f"{setting}: {message}")
    assert result.stderr == ""
    assert stored("aa") is None
    plain = flask("directory", "source", "apply-config")
    assert (plain.exit_code, plain.stdout) == (1, "")
    assert plain.stderr == f"Error: {refused['message']}\n"


def test_a_missing_password_or_a_name_of_another_customer_is_refused(
    app, customer, make_customer, declare, flask
):
    declare(hq=table())
    missing = flask("directory", "source", "apply-config", password=None)
    assert missing.exit_code == 1
    assert f"ldap_sources.hq.password_env: the environment variable {VARIABLE}" in missing.output

    flask("directory", "source", "apply-config")
    make_customer("globex")
    declare(hq=table(customer="globex"))
    taken = flask("directory", "source", "apply-config")
    assert taken.exit_code == 1
    assert "ldap_sources.hq.customer: the source 'hq' belongs to another customer" in taken.output
    assert stored("hq").customer_id == customer.id


def test_the_scheduler_applies_them_at_start_and_survives_a_wrong_one(
    app, customer, declare, monkeypatch, caplog
):
    monkeypatch.setenv(VARIABLE, SERVICE_PASSWORD)
    declare(hq=table())
    schedule.apply_declared_sources()
    assert stored("hq") is not None

    declare(hq=table(uri="http://nope.example.test"))
    schedule.apply_declared_sources()  # logged, not raised: the stored sources keep running

    assert stored("hq").settings["uri"] == table()["uri"]
    assert "the LDAP sources of the config file were not applied: ldap_sources.hq.uri" in (
        caplog.text
    )


def test_a_declared_source_syncs_from_a_real_directory(app, customer, declare, flask, shared_slapd):
    declare(hq=table(uri=shared_slapd.uri))
    assert flask("directory", "source", "apply-config").exit_code == 0

    synced = flask("directory", "sync", "hq", "--json")

    assert synced.exit_code == 0, synced.output
    report = json.loads(synced.output)
    assert report["status"] == "applied"
    assert report["counts"]["persons"]["created"] == SAMPLE_USERS


def test_apply_declared_reads_the_password_from_the_given_environment(app, customer):
    [applied] = apply_declared({"hq": table()}, {VARIABLE: "from-a-vault"})
    assert applied.outcome == "created"
    assert vault.decrypt(stored("hq").password_encrypted) == "from-a-vault"


def test_the_example_config_declares_a_source_that_loads():
    example = config.DEFAULTS_PATH.with_name("example.toml")
    loaded = load_config(environ={"KURSA_CONFIG": str(example)})
    assert loaded["ldap_sources"]["acme-ad"]["profile"] == "ad"


def test_a_declared_source_takes_member_of_groups(app, customer, declare, flask):
    groups = ["cn=Kursus,ou=Grupper,dc=example,dc=dk"]
    declare(hq=table(member_of=groups))

    applied = flask("directory", "source", "apply-config")

    assert applied.exit_code == 0, applied.output
    assert stored("hq").settings["member_of"] == groups


def test_a_declared_group_that_is_not_a_dn_is_named(app, customer, declare, flask):
    declare(hq=table(member_of=["Kursus"]))

    applied = flask("directory", "source", "apply-config")

    assert applied.exit_code == 1
    assert "ldap_sources.hq.member_of: The group 'Kursus' is not a DN" in applied.output


def test_the_pages_mark_a_declared_source_and_say_the_file_wins(
    app, customer, declare, flask, admin_client
):
    declare(hq=table(), branch=table())
    assert flask("directory", "source", "apply-config").exit_code == 0
    declare(hq=table())  # branch left the file: it is an ordinary source again

    listed = admin_client.get("/sync/sources?customer=acme").get_data(as_text=True)
    rows = dict(re.findall(r'<tr class="source">\s*<td[^>]*>(\w+)(.*?)</td>', listed, re.S))
    edit_hq = admin_client.get(f"/sync/sources/{stored('hq').id}/edit").get_data(as_text=True)
    edit_branch = admin_client.get(f"/sync/sources/{stored('branch').id}/edit")

    assert "config file</span>" in rows["hq"] and "config file" not in rows["branch"]
    assert "Declared in the config file</strong> (<code>[ldap_sources.hq]</code>)" in edit_hq
    assert "the file wins" in edit_hq and "apply-config" in edit_hq
    assert "Declared in the config file" not in edit_branch.get_data(as_text=True)
