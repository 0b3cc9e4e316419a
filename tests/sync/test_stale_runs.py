"""A held run or a preview whose records are out of date is not applied: once another run has
changed the customer's directory after it read its source, applying it would put older values
back. The engine refuses, `flask directory approve` exits 1, and the run's page says why.

The LDAP cases follow the trial's steps against a real slapd.
"""

import ldap
import pytest
from sqlalchemy import select

from portal.core.db import db
from portal.core.errors import Conflict
from portal.directory.models import Person
from sync.approval import apply_preview, approve_run
from sync.models import SyncRun
from tests.conftest import _csrf_token
from tests.servers.slapd import (  # noqa: F401 - fixtures
    sample_ldif_fixture,
    slapd_fixture,
    user_dn,
)
from tests.sync.ldap_helpers import openldap_source, sync
from tests.sync.test_import import PERSONS, UNITS

IDA = user_dn("e00001", "Økonomi/Løn")


def text_of(response) -> str:
    return response.get_data(as_text=True)


def last_name(username: str) -> str:
    db.session.expire_all()
    return db.session.scalar(select(Person.last_name).where(Person.username == username))


def rename(server, dn: str, surname: str) -> None:
    server.admin().modify_s(dn, [(ldap.MOD_REPLACE, "sn", [surname.encode()])])


@pytest.fixture
def stale_preview(customer, slapd):
    """The trial: preview run 9 read sn=Firstchange, then run 10 applied sn=Secondchange."""
    source = openldap_source(customer, slapd)
    assert sync(source).status == "applied"
    rename(slapd, IDA, "Firstchange")
    preview = sync(source, dry_run=True)
    rename(slapd, IDA, "Secondchange")
    later = sync(source)
    assert (preview.status, later.status) == ("dry_run", "applied")
    assert last_name("e00001") == "Secondchange"
    return preview, later


def test_a_preview_read_before_a_later_applied_run_is_not_applied(stale_preview):
    preview, later = stale_preview

    with pytest.raises(Conflict) as refused:
        apply_preview(preview.id, actor="test")

    assert str(refused.value) == (
        f"Run {later.id} changed the directory after run {preview.id} read its source, so what "
        f"run {preview.id} read is out of date: applying it could undo newer changes. Run a full "
        "preview of source hq-ldap again, from its page or with "
        "'flask directory sync hq-ldap --full --dry-run'."
    )
    assert last_name("e00001") == "Secondchange"
    assert db.session.scalar(select(SyncRun).where(SyncRun.preview_of_id == preview.id)) is None


def test_flask_directory_approve_refuses_the_out_of_date_preview(app, stale_preview):
    preview, later = stale_preview

    result = app.test_cli_runner().invoke(args=["directory", "approve", str(preview.id)])

    assert result.exit_code == 1
    assert f"Run {later.id} changed the directory after run {preview.id}" in result.output
    assert last_name("e00001") == "Secondchange"


def test_the_page_offers_no_apply_and_a_post_is_refused(stale_preview, admin_client):
    preview, later = stale_preview
    url = f"/sync/runs/{preview.id}"

    page = text_of(admin_client.get(url))
    response = admin_client.post(f"{url}/apply", data={"csrf_token": _csrf_token(page)})

    assert 'id="out-of-date"' in page and "can no longer be applied" in page
    assert f"Run {later.id} changed the directory after run {preview.id}" in page
    assert ">Apply</button>" not in page
    assert response.status_code == 302 and response.location == url
    shown = text_of(admin_client.get(url))
    assert 'class="flash error' in shown and "could undo newer changes" in shown
    assert last_name("e00001") == "Secondchange"


def test_a_later_run_that_changed_nothing_leaves_the_preview_applicable(customer, import_csv):
    import_csv(customer, UNITS, PERSONS)
    edited = [["u1", "Ida", "Berg", "", "00123", "20"], *PERSONS[1:]]
    preview = import_csv(customer, UNITS, edited, dry_run=True)
    unchanged = import_csv(customer, UNITS, PERSONS)
    assert unchanged.status == "applied"
    assert sum(unchanged.counts["persons"].values()) == 0

    run = apply_preview(preview.id, actor="test")

    assert run.status == "applied" and last_name("u1") == "Berg"


def test_a_file_preview_after_a_later_import_says_import_the_files_again(customer, import_csv):
    import_csv(customer, UNITS, PERSONS)
    preview = import_csv(customer, UNITS, [["u1", "Ida", "Berg", "", "00123", "20"]], dry_run=True)
    import_csv(customer, UNITS, [["u1", "Ida", "Holm", "", "00123", "20"], *PERSONS[1:]])

    with pytest.raises(Conflict, match=r"could undo newer changes\. Import the files again\.$"):
        apply_preview(preview.id, actor="test")
    assert last_name("u1") == "Holm"


# -- a held run: only a run that changed something makes it out of date -----------------------


@pytest.fixture
def held_full_run(customer, slapd, guard_limits):
    """A full run held because two persons were deleted, with an incremental schedule going on."""
    source = openldap_source(customer, slapd)
    assert sync(source).status == "applied"
    guard_limits(count=1, share=1.0)
    for uid in ("e00002", "e00003"):
        slapd.admin().delete_s(user_dn(uid, "Økonomi/Løn"))
    held = sync(source, full=True)
    assert held.status == "held" and held.counts["persons"]["inactivated"] == 2
    return source, held


def test_incremental_runs_that_change_nothing_leave_a_held_full_run_approvable(held_full_run):
    source, held = held_full_run
    quiet = [sync(source) for _ in range(2)]  # the 15-minute schedule, nothing changed meanwhile
    assert [run.status for run in quiet] == ["applied", "applied"]
    assert all(sum(run.counts["persons"].values()) == 0 for run in quiet)

    run = approve_run(held.id, actor="test")

    assert run.status == "applied" and run.counts["persons"]["inactivated"] == 2
    assert db.session.scalar(select(Person.is_active).where(Person.username == "e00002")) is False


def test_a_held_run_after_a_changing_run_names_a_full_sync_of_its_source(app, held_full_run, slapd):
    source, held = held_full_run
    rename(slapd, IDA, "Firstchange")
    later = sync(source)
    assert later.status == "applied" and later.counts["persons"]["updated"] == 1

    with pytest.raises(Conflict) as refused:
        approve_run(held.id, actor="test")
    result = app.test_cli_runner().invoke(args=["directory", "approve", str(held.id)])

    assert str(refused.value).endswith(
        "Run a full sync of source hq-ldap again, from its page or with "
        "'flask directory sync hq-ldap --full'."
    )
    assert f"Run {later.id} changed the directory after run {held.id}" in str(refused.value)
    assert "Import the files" not in str(refused.value)
    assert result.exit_code == 1 and "flask directory sync hq-ldap --full" in result.output
    db.session.expire_all()
    assert db.session.get(SyncRun, held.id).status == "held"


def test_the_page_of_a_held_run_that_cannot_be_approved_says_so(held_full_run, slapd, admin_client):
    source, held = held_full_run
    fresh = text_of(admin_client.get(f"/sync/runs/{held.id}"))
    rename(slapd, IDA, "Firstchange")
    sync(source)

    page = text_of(admin_client.get(f"/sync/runs/{held.id}"))

    assert "Approve and apply</button>" in fresh and 'id="out-of-date"' not in fresh
    assert "This run can no longer be approved." in page
    assert "flask directory sync hq-ldap --full&#39;" in page
    assert "Approve and apply</button>" not in page
    assert "Discard</button>" in page


def test_a_held_file_import_is_approvable_after_an_import_that_changed_nothing(
    customer, import_csv, guard_limits
):
    import_csv(customer, UNITS, PERSONS)
    guard_limits(count=1, share=1.0)
    held = import_csv(customer, UNITS, PERSONS[:1])
    assert held.status == "held"
    guard_limits(count=1000, share=1.0)
    assert import_csv(customer, UNITS, PERSONS).status == "applied"  # no change

    assert approve_run(held.id, actor="test").status == "applied"
    assert last_name("u2") == "Holm"
