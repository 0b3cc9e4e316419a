"""A source's two schedules: full runs (default 02:00) and optional incremental runs between."""

import json

import ldap
from sqlalchemy import select

from portal.core.db import db
from sync import schedule
from sync.models import SyncSource
from tests.courses import helpers
from tests.servers.slapd import (  # noqa: F401 - fixtures
    ORG_BASE,
    SAMPLE_USERS,
    SERVICE_DN,
    SERVICE_PASSWORD,
    sample_ldif_fixture,
    slapd_fixture,
    user_dn,
)

PASSWORD_VARIABLE = "KURSA_TEST_BIND_PASSWORD"
acme, unit, person = helpers.acme, helpers.unit, helpers.person
account_of, login_as = helpers.account_of, helpers.login_as


def add_ldap(app, customer, server, *extra):
    return app.test_cli_runner().invoke(
        args=[
            "directory", "source", "add-ldap", "hq", "--customer", customer.slug,
            "--profile", "openldap", "--uri", server.uri, "--bind-dn", SERVICE_DN,
            "--password-env", PASSWORD_VARIABLE, "--user-base", ORG_BASE,
            "--org-base", ORG_BASE, *extra,
        ],
        env={PASSWORD_VARIABLE: SERVICE_PASSWORD},
    )  # fmt: skip


def test_add_ldap_takes_a_full_and_an_incremental_schedule(app, customer, slapd):
    added = add_ldap(app, customer, slapd, "--delta-schedule", "*/15 * * * *")

    assert added.exit_code == 0, added.output
    listed = app.test_cli_runner().invoke(args=["directory", "source", "list", "--json"])
    [source] = json.loads(listed.stdout)
    assert (source["schedule"], source["delta_schedule"]) == ("0 2 * * *", "*/15 * * * *")
    jobs = [(j.id, j.cron) for j in schedule.planned_jobs()]
    assert jobs == [("delta:hq", "*/15 * * * *"), ("source:hq", "0 2 * * *")]


def test_a_bad_incremental_schedule_is_refused_by_name(app, customer, slapd):
    added = add_ldap(app, customer, slapd, "--delta-schedule", "every 15 minutes")

    assert added.exit_code == 1
    assert "The schedule is a cron expression" in added.output
    assert db.session.scalar(select(SyncSource.id)) is None


def test_without_an_incremental_schedule_there_is_one_job(app, customer, slapd):
    assert add_ldap(app, customer, slapd).exit_code == 0

    assert [j.id for j in schedule.planned_jobs()] == ["source:hq"]


def test_the_delta_job_reads_only_changes_and_the_full_job_catches_deletions(app, customer, slapd):
    assert add_ldap(app, customer, slapd, "--delta-schedule", "*/15 * * * *").exit_code == 0
    first = schedule.run_now("source:hq", actor="scheduler")
    assert first.status == "applied" and first.counts["persons"]["created"] == SAMPLE_USERS
    admin = slapd.admin()
    admin.modify_s(user_dn("e00006", "Økonomi/Løn"), [(ldap.MOD_REPLACE, "mail", [b"ny@x.dk"])])
    admin.delete_s(user_dn("e00007", "Økonomi/Løn"))

    delta = schedule.run_now("delta:hq", actor="scheduler")
    full = schedule.run_now("source:hq", actor="scheduler")

    assert delta.status == "applied", delta.error
    assert delta.counts["persons"]["updated"] == 1
    assert delta.counts["persons"]["inactivated"] == 0  # missing: left for the full run
    assert full.counts["persons"]["inactivated"] == 1 and full.counts["persons"]["updated"] == 0


def test_the_incremental_schedule_is_on_the_edit_page(app, acme, slapd, login_as):
    from tests.sync.test_pages_source_edit import edit

    assert add_ldap(app, acme, slapd).exit_code == 0
    source = db.session.scalar(select(SyncSource))
    it_admin = login_as("finn", "it_admin", None)

    response = edit(it_admin, source, delta_schedule="0 8-17 * * 1-5", password="")

    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(SyncSource, source.id).delta_schedule == "0 8-17 * * 1-5"
    listed = it_admin.get("/sync/sources").get_data(as_text=True)
    assert "<code>0 8-17 * * 1-5</code> incremental" in listed


def test_the_cli_changes_enables_disables_and_deletes_a_source(app, customer, slapd):
    assert add_ldap(app, customer, slapd).exit_code == 0
    cli = app.test_cli_runner()

    changed = cli.invoke(
        args=["directory", "source", "schedule", "hq", "--delta-schedule", "0 * * * *"]
    )
    assert changed.exit_code == 0, changed.output
    assert "full runs 0 2 * * *, incremental 0 * * * *" in changed.output
    bad = cli.invoke(args=["directory", "source", "schedule", "hq", "--schedule", "at two"])
    assert bad.exit_code == 1 and "cron expression" in bad.output
    removed = cli.invoke(args=["directory", "source", "schedule", "hq", "--delta-schedule", ""])
    assert removed.exit_code == 0 and "incremental" not in removed.output

    assert cli.invoke(args=["directory", "source", "disable", "hq"]).exit_code == 0
    assert schedule.planned_jobs() == []
    refused = cli.invoke(args=["directory", "sync", "hq"])
    assert refused.exit_code == 1 and "disabled; enable it" in refused.output
    assert cli.invoke(args=["directory", "source", "enable", "hq"]).exit_code == 0
    assert [j.id for j in schedule.planned_jobs()] == ["source:hq"]

    deleted = cli.invoke(args=["directory", "source", "delete", "hq"])
    assert deleted.exit_code == 0 and "Source hq is deleted." in deleted.output
    assert db.session.scalar(select(SyncSource.id)) is None
