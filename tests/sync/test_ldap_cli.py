"""`flask directory source ...` and `flask directory sync`: the contract other tools rely on."""

import json

import pytest

from portal.core.db import db
from sync.sources.ldap import operations
from tests.servers.slapd import (  # noqa: F401 - fixtures
    ORG_BASE,
    SAMPLE_OUS,
    SAMPLE_USERS,
    SERVICE_DN,
    SERVICE_PASSWORD,
    ou_dn,
    sample_ldif_fixture,
    shared_slapd_fixture,
)

PASSWORD_VARIABLE = "KURSA_TEST_BIND_PASSWORD"


@pytest.fixture
def flask(app):
    runner = app.test_cli_runner()

    def invoke(*args, password=SERVICE_PASSWORD):
        env = {PASSWORD_VARIABLE: password} if password is not None else {}
        return runner.invoke(args=list(args), env=env, catch_exceptions=False)

    return invoke


@pytest.fixture
def add_source(flask, customer, shared_slapd):
    def add(name="hq", *extra, password=SERVICE_PASSWORD, base=ORG_BASE):
        return flask(
            "directory",
            "source",
            "add-ldap",
            name,
            "--customer",
            customer.slug,
            "--profile",
            "openldap",
            "--uri",
            shared_slapd.uri,
            "--bind-dn",
            SERVICE_DN,
            "--password-env",
            PASSWORD_VARIABLE,
            "--user-base",
            base,
            "--org-from",
            "ou",
            "--org-base",
            ORG_BASE,
            *extra,
            password=password,
        )

    return add


def test_add_list_test_sync_and_export(flask, add_source, shared_slapd):
    added = add_source(
        "hq", "--schedule", "30 1 * * *", "--inactive-filter", "(employeeType=disabled)"
    )
    assert added.exit_code == 0, added.output

    listed = flask("directory", "source", "list", "--json")
    [source] = json.loads(listed.stdout)
    assert source["name"] == "hq" and source["customer"] == "acme"
    assert (source["profile"], source["uri"], source["schedule"]) == (
        "openldap",
        shared_slapd.uri,
        "30 1 * * *",
    )
    assert source["inactive_filter"] == "(employeeType=disabled)"
    assert SERVICE_PASSWORD not in listed.stdout

    tested = flask("directory", "source", "test", "hq")
    assert tested.exit_code == 0, tested.output
    assert f"{len(SAMPLE_OUS)} units and {SAMPLE_USERS} persons (0 inactive)" in tested.stdout

    synced = flask("directory", "sync", "hq", "--json")
    assert synced.exit_code == 0, synced.output
    body = json.loads(synced.stdout)
    assert set(body) == {"run_id", "status", "counts", "issues"}
    assert body["status"] == "applied"
    assert body["counts"]["units"]["created"] == len(SAMPLE_OUS)
    assert body["counts"]["persons"]["created"] == SAMPLE_USERS

    again = json.loads(flask("directory", "sync", "hq", "--full", "--json").stdout)
    assert again["status"] == "applied"
    assert again["counts"]["persons"] == dict.fromkeys(
        ("created", "updated", "moved", "inactivated", "reactivated"), 0
    )

    exported = json.loads(flask("directory", "export", "--customer", "acme", "--json").stdout)
    assert len(exported["persons"]) == SAMPLE_USERS
    assert {p["unit"] for p in exported["persons"]} >= {"Løn", "Smørum"}


def test_dry_run_exits_0_and_changes_nothing(flask, add_source):
    add_source("hq")

    result = flask("directory", "sync", "hq", "--dry-run", "--json")

    assert result.exit_code == 0
    assert json.loads(result.stdout)["status"] == "dry_run"
    exported = json.loads(flask("directory", "export", "--customer", "acme", "--json").stdout)
    assert exported["persons"] == []


def test_failed_sync_exits_1_with_the_reason(flask, add_source):
    add_source("hq", password="wrong-password")

    result = flask("directory", "sync", "hq", "--json")

    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert body["status"] == "failed"
    assert "invalid credentials" in body["issues"][0]["message"]
    assert "wrong-password" not in result.output


def test_failed_connection_test_exits_1(flask, add_source):
    add_source("hq", password="wrong-password")

    result = flask("directory", "source", "test", "hq")

    assert result.exit_code == 1
    assert "invalid credentials" in result.output


def test_mass_inactivation_is_held_with_exit_3(flask, add_source, guard_limits):
    add_source("hq")
    assert flask("directory", "sync", "hq", "--json").exit_code == 0
    guard_limits(50, 0.10)
    source = operations.source_by_name("hq")
    source.settings = {**source.settings, "user_bases": [ou_dn("Ledelse")]}
    db.session.commit()

    # the source now sees one OU: every person outside it would be inactivated
    result = flask("directory", "sync", "hq", "--full", "--json")

    assert result.exit_code == 3
    body = json.loads(result.stdout)
    assert body["status"] == "held"
    assert body["counts"]["persons"]["inactivated"] == SAMPLE_USERS - 160
    [issue] = body["issues"]
    assert (issue["file"], issue["row"], issue["column"]) == (None, None, None)
    assert issue["message"].startswith(
        f"This run is held for approval: The run would inactivate {SAMPLE_USERS - 160} of"
    )


def test_add_without_the_password_variable_fails(add_source):
    result = add_source("hq", password=None)

    assert result.exit_code == 1
    assert "KURSA_TEST_BIND_PASSWORD is empty or not set" in result.output


def test_source_names_are_unique(add_source):
    assert add_source("hq").exit_code == 0

    result = add_source("hq")

    assert result.exit_code == 1
    assert "exists already" in result.output


def failed_before_a_run(result, name: str) -> str:
    """The --json object of a sync refused before any run started; its one issue's message."""
    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert (body["run_id"], body["status"]) == (None, "failed")
    assert set(body) == {"run_id", "status", "counts", "issues"}
    assert not any(n for entity in body["counts"].values() for n in entity.values())
    [issue] = body["issues"]
    assert (issue["file"], issue["row"], issue["column"], issue["value"]) == (
        None, None, "name", name
    )  # fmt: skip
    return issue["message"]


def test_unknown_source_is_named(flask):
    result = flask("directory", "sync", "nowhere", "--json")

    message = failed_before_a_run(result, "nowhere")
    assert message.startswith("There is no source named 'nowhere'")
    plain = flask("directory", "sync", "nowhere")
    assert plain.exit_code == 1 and "Error: There is no source named 'nowhere'" in plain.output


def test_a_disabled_source_with_json_prints_a_failed_object(flask, add_source):
    add_source("hq")
    assert flask("directory", "source", "disable", "hq").exit_code == 0

    result = flask("directory", "sync", "hq", "--json")

    message = failed_before_a_run(result, "hq")
    assert message == "Source hq is disabled; enable it before running it."


def test_source_list_says_which_sources_are_disabled(flask, add_source):
    add_source("hq")
    add_source("branch")
    flask("directory", "source", "disable", "hq")

    lines = flask("directory", "source", "list").output.splitlines()

    assert [line.split()[0] for line in lines] == ["branch", "hq"]
    assert "DISABLED" not in lines[0]
    assert lines[1].endswith("  DISABLED (no runs until enabled)")


def test_source_names_are_plain(add_source):
    result = add_source("hq ad/æ")

    assert result.exit_code == 1
    assert "A source name is 1 to 60 letters" in result.output


def test_add_ldap_takes_member_of_groups_and_list_shows_them(flask, add_source):
    groups = [f"cn=Kursus,{ORG_BASE}", f"cn=Ledere,{ORG_BASE}"]

    added = add_source("hq", "--member-of", groups[0], "--member-of", groups[1])
    listed = flask("directory", "source", "list", "--json")
    refused = add_source("hq2", "--member-of", "Kursus")

    assert added.exit_code == 0, added.output
    assert json.loads(listed.stdout)[0]["member_of"] == groups
    assert refused.exit_code == 1
    assert "The group 'Kursus' is not a DN" in refused.output


def test_a_unit_attribute_no_entry_carries_is_named_by_test_and_dry_run(flask, add_source):
    """The trial: --org-from attribute, and the entries lack the attribute units come from."""
    assert add_source("hq", "--org-from", "attribute").exit_code == 0
    source = operations.source_by_name("hq")
    source.settings = {**source.settings, "attributes": {"unit_number": "roomNumber"}}
    db.session.commit()

    tested = flask("directory", "source", "test", "hq")
    preview = flask("directory", "sync", "hq", "--dry-run", "--json")

    assert tested.exit_code == 0
    assert "No entry came back with the attribute 'roomNumber'" in tested.stdout
    assert f"{SAMPLE_USERS} of the persons have no roomNumber and would be skipped" in tested.stdout
    body = json.loads(preview.stdout)
    assert body["counts"]["persons"]["created"] == 0
    [named] = [i for i in body["issues"] if i["file"] is None]
    assert (named["column"], named["row"]) == ("roomNumber", None)
    assert named["message"].startswith("No entry came back with the attribute 'roomNumber'")
    per_person = [i for i in body["issues"] if i["file"] is not None]
    assert len(per_person) == SAMPLE_USERS
    assert {i["column"] for i in per_person} == {"roomNumber"}
