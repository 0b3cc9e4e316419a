"""Discarding a held run: on its page (HR or IT at the customer's root, with CSRF) and with
`flask directory discard`. Nothing changes, it needs no one, and its report says who and when."""

import json

import pytest
from sqlalchemy import func, select

from portal.core.audit import AuditEntry
from portal.core.db import db
from portal.core.errors import Conflict
from portal.directory.models import Person
from sync import history
from sync.approval import approve_run, discard_run
from sync.models import RunStatus, SyncRun
from tests.conftest import _csrf_token
from tests.sync import test_attention

held, hr_contacts = test_attention.held, test_attention.hr_contacts
acme, unit, person = test_attention.acme, test_attention.unit, test_attention.person
account_of, login_as = test_attention.account_of, test_attention.login_as
text_of = test_attention.text_of


def persons() -> int:
    return db.session.scalar(select(func.count()).select_from(Person))


def discard_on_page(client, run):
    token = _csrf_token(text_of(client.get(f"/sync/runs/{run.id}")))
    return client.post(f"/sync/runs/{run.id}/discard", data={"csrf_token": token})


def test_hr_at_the_root_discards_a_held_run_and_nothing_changes(acme, held, login_as, account_of):
    before = persons()
    client = login_as("finn")
    assert "Discard</button>" in text_of(client.get(f"/sync/runs/{held.id}"))

    response = discard_on_page(client, held)

    assert response.status_code == 302
    db.session.expire_all()
    run = db.session.get(SyncRun, held.id)
    assert run.status == RunStatus.DISCARDED and run.is_final
    assert run.discarded_by == account_of("finn").actor
    assert run.discarded_at is not None and run.payload is None
    assert persons() == before
    [entry] = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "sync.discarded"))
    assert (entry.object_id, entry.actor) == (str(run.id), run.discarded_by)
    report = text_of(client.get(response.location))
    assert "Discarded by Finn Juul at" in report  # the account's person, not account:u202
    assert "account:" not in report
    assert "Approve and apply" not in report


def test_a_discarded_run_needs_no_attention_and_leaves_the_chart(acme, held):
    assert [line.run.id for line in history.needing_attention([acme.id])] == [held.id]
    charted = [point.id for point in history.chart_runs(acme.id)]
    assert held.id in charted

    discard_run(held.id, actor="test")

    assert history.needing_attention([acme.id]) == []
    assert [point.id for point in history.chart_runs(acme.id)] == charted[:-1]


def test_a_discarded_run_cannot_be_approved_or_discarded_again(held):
    discard_run(held.id, actor="test")

    with pytest.raises(Conflict, match="not held"):
        approve_run(held.id, actor="test")
    with pytest.raises(Conflict, match="only a held run can be discarded"):
        discard_run(held.id, actor="test")


def test_discard_needs_the_csrf_token(held, login_as):
    client = login_as("finn")

    response = client.post(f"/sync/runs/{held.id}/discard")

    assert response.status_code == 400
    assert db.session.get(SyncRun, held.id).status == RunStatus.HELD


def test_hr_of_a_branch_cannot_discard(held, login_as):
    client = login_as("hanne")

    response = client.post(f"/sync/runs/{held.id}/discard", data={"csrf_token": "x"})

    assert response.status_code in (400, 404)
    db.session.expire_all()
    assert db.session.get(SyncRun, held.id).status == RunStatus.HELD


def test_the_cli_discards_a_held_run(app, held):
    runner = app.test_cli_runner()

    result = runner.invoke(args=["directory", "discard", str(held.id), "--json"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "discarded"
    again = runner.invoke(args=["directory", "discard", str(held.id)])
    assert again.exit_code == 1 and "only a held run can be discarded" in again.output


def test_the_cli_prints_no_counts_for_a_discarded_run(app, held):
    result = app.test_cli_runner().invoke(args=["directory", "discard", str(held.id)])

    assert result.exit_code == 0, result.output
    assert f"Run {held.id}: discarded" in result.output
    assert "Discarded by cli: nothing changed." in result.output
    assert "inactivated" not in result.output and "created" not in result.output
