"""Runs that need someone: flagged on the runs page and the organisation page, and mailed (as
outbox messages) to the customer's HR contacts when a run ends failed or held."""

from datetime import timedelta

import pytest
from sqlalchemy import select

from portal.core import access
from portal.core.db import db
from portal.courses.models import OutboxMessage
from portal.courses.outbox import send_pending
from sync import history
from sync.approval import approve_run
from sync.models import RunStatus, SyncRun
from sync.sources.ldap.operations import set_enabled, update_ldap_source
from tests.courses import helpers, test_outbox
from tests.courses.helpers import PERSONS, UNITS
from tests.servers.slapd import (  # noqa: F401 - fixtures
    SERVICE_PASSWORD,
    sample_ldif_fixture,
    slapd_fixture,
)
from tests.sync.ldap_helpers import openldap_source, sync

acme, unit, person = helpers.acme, helpers.unit, helpers.person
account_of, login_as = helpers.account_of, helpers.login_as
# A real SMTP server on loopback and the [mail] settings pointing at it.
settings, smtp_server = test_outbox.settings, test_outbox.smtp_server


def text_of(response) -> str:
    return response.get_data(as_text=True)


def messages() -> list[OutboxMessage]:
    return list(db.session.scalars(select(OutboxMessage).order_by(OutboxMessage.person_id)))


@pytest.fixture
def hr_contacts(acme, person, unit):
    """Finn and Dina are HR at the root; Hanne is HR of Sales only; Bo is IT at the root."""
    for name, role, number in (
        ("finn", "hr", None),
        ("dina", "hr", None),
        ("hanne", "hr", "10"),
        ("bo", "it_admin", None),
    ):
        access.grant_role(person(name), role, unit(number), actor="test")
    db.session.commit()
    return [person("finn"), person("dina")]


@pytest.fixture
def held(acme, hr_contacts, import_csv, guard_limits):
    guard_limits(count=1000, share=0.10)
    run = import_csv(acme, UNITS, PERSONS[:2])
    assert run.status == "held"
    return run


def failed_run(acme, import_csv):
    run = import_csv(acme, [], [])
    assert run.status == "failed"
    return run


def test_held_run_queues_a_message_per_hr_contact_with_the_run_link(held, hr_contacts):
    queued = messages()

    assert sorted(m.person_id for m in queued) == sorted(p.id for p in hr_contacts)
    for message in queued:
        assert message.kind == "sync.run_held" and message.payload["run_id"] == held.id
        assert f"/sync/runs/{held.id}" in message.payload["text"]
        assert "held" in message.payload["subject"]


def test_failed_run_queues_messages_too(acme, hr_contacts, import_csv):
    run = failed_run(acme, import_csv)

    queued = messages()
    assert len(queued) == 2 and {m.kind for m in queued} == {"sync.run_failed"}
    assert all(f"/sync/runs/{run.id}" in m.payload["text"] for m in queued)


def test_applied_run_and_preview_queue_nothing(acme, hr_contacts, import_csv):
    assert import_csv(acme, UNITS, PERSONS).status == "applied"
    assert import_csv(acme, UNITS, PERSONS[:1], dry_run=True).status == "dry_run"

    assert messages() == []


def test_contacts_without_an_email_or_inactive_are_left_out(acme, hr_contacts, import_csv):
    hr_contacts[1].email = None
    db.session.commit()

    failed_run(acme, import_csv)

    assert [m.person_id for m in messages()] == [hr_contacts[0].id]


def test_runs_page_and_organisation_page_flag_held_and_new_failed_runs(
    acme, held, import_csv, admin_client
):
    failed = failed_run(acme, import_csv)

    for page in ("/sync/runs", "/"):
        html = text_of(admin_client.get(page))
        banner = html[html.index('<section class="attention"') :]
        banner = banner[: banner.index("</section>")]
        assert f"Run #{held.id}</a> of Acme (file import) is held" in banner, page
        assert f"Run #{failed.id}</a> of Acme (file import) failed" in banner, page


def test_flags_go_once_the_run_is_handled(acme, held, import_csv, admin_client):
    failed_run(acme, import_csv)

    approve_run(held.id, actor="test")  # applied now, and newer than the failed run
    db.session.commit()

    for page in ("/sync/runs", "/"):
        assert 'class="attention"' not in text_of(admin_client.get(page)), page


def test_flags_are_not_shown_to_hr_of_a_branch(held, login_as):
    client = login_as("hanne")

    assert 'class="attention"' not in text_of(client.get("/"))


def test_the_outbox_mails_a_held_run_to_the_hr_contacts(held, settings, smtp_server):
    report = send_pending(settings)

    assert report.sent == 2
    received = {recipients[0]: mail for recipients, mail in smtp_server.inbox.messages}
    assert set(received) == {"finn@acme.test", "dina@acme.test"}
    mail = received["finn@acme.test"]
    assert mail["Subject"] == f"Kursa: directory sync run #{held.id} of Acme is held for approval"
    assert f"/sync/runs/{held.id}" in mail.get_payload(decode=True).decode()


def attention_banner(client, page="/sync/runs") -> str:
    html = text_of(client.get(page))
    banner = html[html.index('<section class="attention"') :]
    return banner[: banner.index("</section>")]


def failed_ldap_run(customer, name: str, *, dry_run: bool = False) -> SyncRun:
    run = SyncRun(
        customer_id=customer.id,
        source_kind="ldap",
        source_name=name,
        started_by="scheduler",
        status=RunStatus.FAILED,
        is_dry_run=dry_run,
        error="Could not connect",
    )
    db.session.add(run)
    db.session.commit()
    return run


def test_repeated_failures_of_a_source_are_one_line_naming_it(acme, admin_client):
    runs = [failed_ldap_run(acme, "hq-ad") for _ in range(3)]
    other = failed_ldap_run(acme, "branch-ad")

    lines = history.needing_attention([acme.id])

    assert [(line.run.id, line.count) for line in lines] == [(other.id, 1), (runs[-1].id, 3)]
    for page in ("/sync/runs", "/"):
        banner = attention_banner(admin_client, page)
        assert banner.count("<li") == 2, page
        assert f"Run #{runs[-1].id}</a> of Acme (source hq-ad) failed, the last of 3" in banner
        assert f"Run #{other.id}</a> of Acme (source branch-ad) failed (" in banner


def test_a_failed_preview_does_not_need_attention(acme, admin_client):
    failed_ldap_run(acme, "hq-ad", dry_run=True)

    assert history.needing_attention([acme.id]) == []
    assert 'class="attention"' not in text_of(admin_client.get("/sync/runs"))


def test_a_failed_file_drop_is_named_as_such(acme, admin_client):
    run = failed_ldap_run(acme, "drop")
    run.source_kind = "files"
    db.session.commit()

    assert f"Run #{run.id}</a> of Acme (file drop) failed" in attention_banner(admin_client)


def test_a_failing_source_stays_flagged_after_another_sources_successful_run(
    acme, slapd, admin_client
):
    """The trial: source hq-ldap fails on a wrong password; branch-ldap then syncs well."""
    failing = openldap_source(acme, slapd, name="hq-ldap", password="wrong")
    working = openldap_source(acme, slapd, name="branch-ldap")
    failed = sync(failing)
    assert failed.status == "failed"

    assert sync(working).status == "applied"

    assert [(line.run.id, line.count) for line in history.needing_attention([acme.id])] == [
        (failed.id, 1)
    ]
    assert f"Run #{failed.id}</a> of Acme (source hq-ldap) failed" in attention_banner(admin_client)
    update_ldap_source(
        failing, profile="openldap", settings=failing.settings, password=SERVICE_PASSWORD,
        actor="test",
    )  # fmt: skip
    db.session.commit()
    assert sync(failing).status == "applied"
    assert history.needing_attention([acme.id]) == []


@pytest.mark.parametrize(
    ("failing", "applied", "still_flagged"),
    [
        (("files", ""), ("files", "drop"), True),
        (("files", "drop"), ("files", ""), True),
        (("files", "drop"), ("ldap", "hq-ldap"), True),
        (("ldap", "hq-ldap"), ("files", ""), True),
        (("ldap", "hq-ldap"), ("ldap", "branch-ldap"), True),
        (("files", ""), ("files", ""), False),
        (("files", "drop"), ("files", "drop"), False),
        (("ldap", "hq-ldap"), ("ldap", "hq-ldap"), False),
    ],
)
def test_failures_are_cleared_by_their_own_sources_applied_run_only(
    acme, failing, applied, still_flagged
):
    failed = failed_ldap_run(acme, failing[1])
    failed.source_kind = failing[0]
    db.session.add(
        SyncRun(
            customer_id=acme.id,
            source_kind=applied[0],
            source_name=applied[1],
            started_by="scheduler",
            status=RunStatus.APPLIED,
            started_at=failed.started_at + timedelta(minutes=5),
        )
    )
    db.session.commit()

    flagged = [line.run.id for line in history.needing_attention([acme.id])]

    assert flagged == ([failed.id] if still_flagged else [])


def test_a_failed_source_that_is_deleted_no_longer_needs_attention_until_enabled(
    app, acme, slapd, admin_client
):
    """The trial: a source with a wrong password fails, then `source delete` disables it
    (it has a run), and its failure stayed flagged for good. Enabling it brings it back."""
    openldap_source(acme, slapd, name="hq-ldap", password="wrong")
    cli = app.test_cli_runner()
    failed_sync = cli.invoke(args=["directory", "sync", "hq-ldap"])
    assert failed_sync.exit_code == 1, failed_sync.output
    failed = db.session.scalar(select(SyncRun).where(SyncRun.source_name == "hq-ldap"))
    assert failed.status == "failed"
    assert f"Run #{failed.id}</a> of Acme (source hq-ldap) failed" in attention_banner(admin_client)

    deleted = cli.invoke(args=["directory", "source", "delete", "hq-ldap"])

    assert deleted.exit_code == 0 and "disabled" in deleted.output, deleted.output
    assert history.needing_attention([acme.id]) == []
    for page in ("/sync/runs", "/"):
        assert 'class="attention"' not in text_of(admin_client.get(page)), page
    assert f"/sync/runs/{failed.id}" in text_of(admin_client.get("/sync/runs"))  # still listed

    assert cli.invoke(args=["directory", "source", "enable", "hq-ldap"]).exit_code == 0
    assert [line.run.id for line in history.needing_attention([acme.id])] == [failed.id]


def test_a_held_run_of_a_disabled_source_no_longer_needs_attention(acme, slapd, admin_client):
    source = openldap_source(acme, slapd, name="hq-ldap")
    held_run = failed_ldap_run(acme, "hq-ldap")
    held_run.status = RunStatus.HELD
    other = failed_ldap_run(acme, "branch-ldap")  # no source row: stays flagged
    db.session.commit()
    assert {line.run.id for line in history.needing_attention([acme.id])} == {
        held_run.id,
        other.id,
    }

    set_enabled(source, False, actor="test")
    db.session.commit()

    assert [line.run.id for line in history.needing_attention([acme.id])] == [other.id]
    assert f"Run #{held_run.id}</a>" not in attention_banner(admin_client)
