"""The sync pages: run list, run report and its buttons, CSV download, upload, person history."""

import csv
import io
import re

import pytest
from sqlalchemy import event, select

from portal.core.db import db
from portal.directory.models import Person
from sync.models import SyncRun
from tests.conftest import csrf_token, csv_bytes

UNITS = [["10", "Sales", "", "department"], ["20", "Finance", "", "department"]]
PERSONS = [
    ["u1001", "Anna", "Berg", "anna@acme.test", "E-501", "10"],
    ["u1002", "Bo", "Dahl", "bo@acme.test", "E-502", "10"],
    ["u1003", "Carl", "Engel", "carl@acme.test", "E-503", "20"],
    ["u1004", "Dina", "Falk", "dina@acme.test", "E-504", "20"],
]


def text_of(response) -> str:
    return response.get_data(as_text=True)


def person(username: str) -> Person:
    db.session.expire_all()
    return db.session.scalar(select(Person).where(Person.username == username))


def post(client, url: str, **data):
    return client.post(url, data={"csrf_token": csrf_token(client, "/sync/runs"), **data})


@pytest.fixture
def first_run(customer, import_csv):
    run = import_csv(customer, UNITS, PERSONS)
    assert run.status == "applied", run.error
    return run


@pytest.fixture
def held_run(customer, first_run, import_csv, guard_limits):
    guard_limits(count=1000, share=0.10)
    run = import_csv(customer, UNITS, PERSONS[:1])  # 3 of 4 leave: above the 10 % guard
    assert run.status == "held"
    return run


def test_run_list_shows_newest_first_with_status_and_counts(first_run, held_run, admin_client):
    html = text_of(admin_client.get("/sync/runs"))

    assert html.index(f"#{held_run.id}<") < html.index(f"#{first_run.id}<")
    assert "persons: 4 created; units: 2 created" in html
    assert 'class="run-held"' in html and 'class="badge status-held"' in html
    assert re.search(r'data-label="By"[^>]*>test</td>', html)


def test_run_report_shows_files_counts_and_changes(first_run, admin_client):
    html = text_of(admin_client.get(f"/sync/runs/{first_run.id}"))

    assert "persons.csv" in html and first_run.files[0].sha256 in html
    assert re.search(r"<th>created</th><td>2</td><td>4</td>", html)
    assert "u1003" in html and "Engel" in html
    assert "Revert" in html and "Approve" not in html


def test_update_shows_only_the_changed_fields(customer, first_run, import_csv, admin_client):
    renamed = [["u1001", "Anna", "Holm", "anna@acme.test", "E-501", "10"], *PERSONS[1:]]
    run = import_csv(customer, UNITS, renamed)

    html = text_of(admin_client.get(f"/sync/runs/{run.id}"))
    diff = re.search(r'<ul class="diff">.*?</ul>', html, re.S).group(0)

    assert "<del>Berg</del> &rarr; <ins>Holm</ins>" in diff
    assert "Anna" not in diff and "anna@acme.test" not in diff


def test_report_lists_issues_by_file_row_and_column(customer, first_run, import_csv, admin_client):
    bad = [*PERSONS, ["0101901234", "Eva", "Gram", "", "", "10"]]  # a CPR number as username
    run = import_csv(customer, UNITS, bad)

    html = text_of(admin_client.get(f"/sync/runs/{run.id}"))
    issue = re.search(r'<tr class="sev-error">.*?</tr>', html, re.S).group(0)

    assert "persons.csv" in issue and ">6<" in issue and "0101901234" in issue
    assert "CPR" in issue


def test_approve_applies_a_held_run(customer, held_run, admin_client):
    page = text_of(admin_client.get(f"/sync/runs/{held_run.id}"))
    assert "Approve and apply" in page and "would inactivate 3 of 4" in page
    assert person("u1004").is_active

    response = post(admin_client, f"/sync/runs/{held_run.id}/approve")

    assert response.status_code == 302
    assert response.location.endswith(f"/sync/runs/{held_run.id}")
    assert db.session.get(SyncRun, held_run.id).status == "applied"
    assert not person("u1004").is_active
    assert f"Run #{held_run.id} is applied." in text_of(admin_client.get(response.location))


def test_a_failed_approval_leaves_the_run_held_and_says_so(held_run, admin_client, monkeypatch):
    import sync.approval

    def broken(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(sync.approval, "apply_changes", broken)

    response = post(admin_client, f"/sync/runs/{held_run.id}/approve")

    db.session.expire_all()
    assert db.session.get(SyncRun, held_run.id).status == "held"
    assert person("u1004").is_active
    page = text_of(admin_client.get(response.location))
    assert "The last approval failed." in page and "can be approved again" in page
    assert "Approve and apply" in page


def test_approve_without_a_csrf_token_changes_nothing(held_run, admin_client):
    response = admin_client.post(f"/sync/runs/{held_run.id}/approve")

    assert response.status_code == 400
    db.session.expire_all()
    assert db.session.get(SyncRun, held_run.id).status == "held"
    assert person("u1004").is_active


def test_approving_a_run_that_is_not_held_says_why(first_run, admin_client):
    response = post(admin_client, f"/sync/runs/{first_run.id}/approve")

    assert response.status_code == 302
    assert "only a held run can be approved" in text_of(admin_client.get(response.location))


def test_dry_run_is_a_preview_with_an_apply_button(customer, import_csv, admin_client):
    preview = import_csv(customer, UNITS, PERSONS, dry_run=True)
    page = text_of(admin_client.get(f"/sync/runs/{preview.id}"))
    assert "Preview: nothing has changed yet" in page and ">Apply</button>" in page
    assert "Planned changes" in page and "u1002" in page
    assert person("u1002") is None

    response = post(admin_client, f"/sync/runs/{preview.id}/apply")

    applied = db.session.scalar(select(SyncRun).where(SyncRun.preview_of_id == preview.id))
    assert response.location.endswith(f"/sync/runs/{applied.id}")
    assert applied.status == "applied" and person("u1002").is_active
    again = text_of(admin_client.get(f"/sync/runs/{preview.id}"))
    assert f'applied as <a href="/sync/runs/{applied.id}">run #{applied.id}</a>' in again
    assert ">Apply</button>" not in again


def test_a_preview_that_would_be_held_warns_above_the_apply_button(
    customer, first_run, import_csv, guard_limits, admin_client
):
    guard_limits(count=1000, share=0.10)
    preview = import_csv(customer, UNITS, PERSONS[:1], dry_run=True)

    page = text_of(admin_client.get(f"/sync/runs/{preview.id}"))

    warning = re.search(r'<div class="callout held" role="alert".*?</div>', page, re.S).group(0)
    assert "Applying this preview would be held" in warning
    assert "would inactivate 3 of 4" in warning
    assert page.index("would be held") < page.index(">Apply</button>")


def test_a_preview_within_the_limits_shows_no_hold_warning(customer, import_csv, admin_client):
    preview = import_csv(customer, UNITS, PERSONS, dry_run=True)

    assert "would be held" not in text_of(admin_client.get(f"/sync/runs/{preview.id}"))


def test_revert_asks_first_then_undoes_the_run(first_run, admin_client):
    confirm = admin_client.get(f"/sync/runs/{first_run.id}/revert")
    assert "Yes, revert run" in text_of(confirm)
    assert person("u1001").is_active

    response = post(admin_client, f"/sync/runs/{first_run.id}/revert")

    revert = db.session.scalar(select(SyncRun).where(SyncRun.revert_of_id == first_run.id))
    assert response.location.endswith(f"/sync/runs/{revert.id}")
    assert not person("u1001").is_active
    report = text_of(admin_client.get(f"/sync/runs/{first_run.id}"))
    assert f'Reverted by <a href="/sync/runs/{revert.id}">' in report
    assert "Revert…" not in report


def test_report_csv_holds_every_change_and_issue(
    customer, first_run, import_csv, admin_client, guard_limits
):
    guard_limits(count=1000, share=0.10)
    bad = ["0101901234", "Eva", "Gram", "", "", "10"]
    run = import_csv(customer, UNITS, [PERSONS[0], PERSONS[1], bad])  # held: 2 of 4 leave
    assert run.status == "held"
    response = admin_client.get(f"/sync/runs/{run.id}/report.csv")

    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert f"kursa-run-{run.id}.csv" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    assert rows[0][:4] == ["record", "entity", "key", "action"]
    assert {row[2] for row in rows[1:] if row[0] == "change"} == {"u1003", "u1004"}
    issues = [row for row in rows[1:] if row[0] == "issue"]
    assert [(row[7], row[8], row[10]) for row in issues] == [("persons.csv", "4", "0101901234")]


def test_changes_can_be_filtered_and_paged(customer, import_csv, admin_client):
    persons = [[f"id{i:03d}", f"First{i}", f"Last{i}", "", "", "10"] for i in range(130)]
    run = import_csv(customer, UNITS, persons)

    first = text_of(admin_client.get(f"/sync/runs/{run.id}"))
    units_only = text_of(admin_client.get(f"/sync/runs/{run.id}?entity=unit&action=created"))

    assert "Page 1 of 2" in first and first.count('<td data-label="Entity">') == 100
    assert units_only.count('<td data-label="Entity">') == 2
    assert "person created <span" in first


def test_upload_runs_a_dry_run_and_shows_the_preview(customer, admin_client):
    page = text_of(admin_client.get("/sync/upload"))
    assert 'name="dry_run" type="checkbox" value="y"' in page and "checked" in page
    token = csrf_token(admin_client, "/sync/upload")
    files = {
        "org": (
            io.BytesIO(csv_bytes([["Number", "Name", "Parent"], *[u[:3] for u in UNITS]])),
            "Afdelinger.csv",
        ),
        "persons": (
            io.BytesIO(
                csv_bytes(
                    [
                        [
                            "Username",
                            "First name",
                            "Last name",
                            "Email",
                            "Employee number",
                            "Division number",
                        ],
                        *PERSONS,
                    ]
                )
            ),
            "Medarbejdere.csv",
        ),
    }

    response = admin_client.post(
        "/sync/upload",
        data={"csrf_token": token, "customer": customer.slug, "dry_run": "y", **files},
        content_type="multipart/form-data",
    )

    run = db.session.scalar(select(SyncRun))
    assert response.location.endswith(f"/sync/runs/{run.id}")
    assert run.status == "dry_run" and run.started_by == "account:root-admin"
    assert {f.filename for f in run.files} == {"Afdelinger.csv", "Medarbejdere.csv"}
    assert person("u1001") is None
    report = text_of(admin_client.get(response.location))
    listed = text_of(admin_client.get("/sync/runs"))
    assert "by root-admin</dd>" in report  # an admin without a person: the username
    assert re.search(r'data-label="By"[^>]*>root-admin</td>', listed)
    assert "account:" not in report and "account:" not in listed


def test_upload_refuses_other_file_types(customer, admin_client):
    token = csrf_token(admin_client, "/sync/upload")
    response = admin_client.post(
        "/sync/upload",
        data={
            "csrf_token": token,
            "customer": customer.slug,
            "org": (io.BytesIO(b"x"), "org.txt"),
            "persons": (io.BytesIO(b"x"), "persons.csv"),
        },
        content_type="multipart/form-data",
    )

    assert response.status_code == 200
    assert "must be a .csv or .xlsx file" in text_of(response)
    assert db.session.scalar(select(SyncRun)) is None


def test_unknown_runs_are_404(app, admin_client):
    for url in ("/sync/runs/999", "/sync/runs/999/report.csv", "/sync/runs/999/revert"):
        assert admin_client.get(url).status_code == 404
    assert post(admin_client, "/sync/runs/999/approve").status_code == 404


def test_person_page_lists_the_syncs_that_changed_them(
    customer, first_run, import_csv, admin_client
):
    moved = [[*PERSONS[0][:5], "20"], *PERSONS[1:]]
    second = import_csv(customer, UNITS, moved)
    anna = person("u1001")

    html = text_of(admin_client.get(f"/persons/{anna.id}"))
    history = re.search(r'<section class="history">.*?</section>', html, re.S).group(0)

    assert history.index(f"#{second.id}<") < history.index(f"#{first_run.id}<")
    assert "moved" in history
    assert (
        '<del>10 <span class="unit-label">Sales</span></del> &rarr; '
        '<ins>20 <span class="unit-label">Finance</span></ins>'
    ) in history
    assert "unit id" not in history


def change_rows(html: str) -> dict[str, str]:
    """The run report's change rows by the key they show (username or unit number)."""
    rows = re.findall(r"<tr>\s*<td data-label=\"Entity\">.*?</tr>", html, re.S)
    return {re.search(r"<code>([^<]+)</code>", row).group(1): row for row in rows}


def test_report_names_and_links_the_persons_it_changed(
    customer, first_run, import_csv, admin_client
):
    anna, dina = person("u1001"), person("u1004")
    persons = [[*PERSONS[0][:5], "20"], PERSONS[1], [*PERSONS[2][:2], "Holm", *PERSONS[2][3:]]]
    run = import_csv(customer, UNITS, persons)  # Anna moves, Carl is renamed, Dina leaves

    html = text_of(admin_client.get(f"/sync/runs/{run.id}"))
    rows = change_rows(html)

    assert f'<a href="/persons/{anna.id}">Anna Berg</a> <code>u1001</code>' in rows["u1001"]
    assert f'<a href="/persons/{dina.id}">Dina Falk</a>' in rows["u1004"]
    assert "Carl Holm</a>" in rows["u1003"]
    moved = rows["u1001"]
    assert '<del>10 <span class="unit-label">Sales</span></del>' in moved
    assert '<ins>20 <span class="unit-label">Finance</span></ins>' in moved
    assert "unit id" not in html and "unit_id" not in html
    assert f">{anna.unit_id}<" not in moved


def test_report_shows_unit_names_beside_their_numbers(
    customer, first_run, import_csv, admin_client
):
    units = [UNITS[0], ["20", "Finance", "10", "department"], ["30", "Legal", "", "department"]]
    run = import_csv(customer, units, PERSONS)

    rows = change_rows(text_of(admin_client.get(f"/sync/runs/{run.id}")))

    assert "<code>20</code> Finance" in rows["20"]
    assert '<ins>10 <span class="unit-label">Sales</span></ins>' in rows["20"]
    assert "<code>30</code> Legal" in rows["30"]


def test_preview_names_persons_it_would_create(customer, import_csv, admin_client):
    preview = import_csv(customer, UNITS, PERSONS, dry_run=True)

    rows = change_rows(text_of(admin_client.get(f"/sync/runs/{preview.id}")))

    assert "Anna Berg <code>u1001</code>" in rows["u1001"]
    assert "<a " not in rows["u1001"]


def test_report_names_changes_with_a_fixed_number_of_queries(
    customer, first_run, import_csv, admin_client
):
    def statements_for(run) -> int:
        admin_client.get(f"/sync/runs/{run.id}")  # warm up the session the same way
        statements = []
        listener = lambda *args: statements.append(args[2])  # noqa: E731
        event.listen(db.engine, "before_cursor_execute", listener)
        try:
            admin_client.get(f"/sync/runs/{run.id}")
        finally:
            event.remove(db.engine, "before_cursor_execute", listener)
        return len(statements)

    one = import_csv(customer, UNITS, [[*PERSONS[0][:5], "20"], *PERSONS[1:]])
    many = import_csv(customer, UNITS, [[*p[:5], "10"] for p in PERSONS])  # 3 move back, 1 too

    assert statements_for(one) == statements_for(many)


def test_issues_say_skipped_rows_left_persons_as_they_were(
    customer, first_run, import_csv, admin_client
):
    bad = [*PERSONS, ["0101901234", "Eva", "Gram", "", "", "10"]]
    run = import_csv(customer, UNITS, bad)

    html = text_of(admin_client.get(f"/sync/runs/{run.id}"))
    intro = html.index("Rows listed as errors were skipped")

    assert "left exactly as it was; notices are for information." in html
    assert intro < html.index('<table class="list issues">')


def test_revert_report_does_not_claim_rows_were_read(first_run, admin_client):
    post(admin_client, f"/sync/runs/{first_run.id}/revert")
    revert = db.session.scalar(select(SyncRun).where(SyncRun.revert_of_id == first_run.id))

    html = text_of(admin_client.get(f"/sync/runs/{revert.id}"))

    assert "every row was read" not in html
    assert f"No issues: every change of run #{first_run.id} was undone." in html


def test_a_revert_offers_no_revert_of_itself(first_run, admin_client):
    post(admin_client, f"/sync/runs/{first_run.id}/revert")
    revert = db.session.scalar(select(SyncRun).where(SyncRun.revert_of_id == first_run.id))

    report = text_of(admin_client.get(f"/sync/runs/{revert.id}"))
    confirm = text_of(admin_client.get(f"/sync/runs/{revert.id}/revert"))

    assert "Revert…" not in report and f"/sync/runs/{revert.id}/revert" not in report
    assert f'this run undid <a href="/sync/runs/{first_run.id}">run #{first_run.id}</a>' in report
    assert "a revert cannot be reverted" in confirm and "Yes, revert run" not in confirm


def test_a_file_preview_says_what_applying_these_files_would_do(customer, import_csv, admin_client):
    preview = import_csv(customer, UNITS, PERSONS, dry_run=True)

    html = text_of(admin_client.get(f"/sync/runs/{preview.id}"))

    assert "Below is what applying these files would do." in html


def test_a_long_report_shows_a_hundred_changes_a_page_from_the_first_visit(
    customer, import_csv, admin_client
):
    persons = [[f"id{i:03d}", f"First{i}", f"Last{i}", "", "", "10"] for i in range(534)]
    run = import_csv(customer, UNITS, persons)  # 2 units and 534 persons: 536 changes

    first = text_of(admin_client.get(f"/sync/runs/{run.id}"))
    last = text_of(admin_client.get(f"/sync/runs/{run.id}?page=6"))
    beyond = text_of(admin_client.get(f"/sync/runs/{run.id}?page=99"))

    assert len(change_rows(first)) == 100 and "(536)" in first
    assert "Page 1 of 6" in first and f'href="/sync/runs/{run.id}?page=2#changes"' in first
    assert len(change_rows(last)) == 36 and "Page 6 of 6" in last
    assert change_rows(beyond).keys() == change_rows(last).keys()


def test_times_show_the_customers_zone(customer, first_run, admin_client):
    customer.timezone = "America/New_York"
    db.session.commit()
    anna = person("u1001")

    report = text_of(admin_client.get(f"/sync/runs/{first_run.id}"))
    person_page = text_of(admin_client.get(f"/persons/{anna.id}"))

    assert re.search(r"<dt>Started</dt><dd>[-\d]+ \d\d:\d\d E[SD]T by test", report)
    assert re.search(r"since</dt><dd>[-\d]+ \d\d:\d\d E[SD]T<", person_page)


def test_times_fall_back_to_the_configured_zone(first_run, admin_client):
    report = text_of(admin_client.get(f"/sync/runs/{first_run.id}"))

    assert re.search(r"<dt>Started</dt><dd>[-\d]+ \d\d:\d\d CES?T by test", report)
