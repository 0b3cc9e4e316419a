"""The daily file drop: which files are read, when, and what is archived and deleted."""

import json
import os
from datetime import date, timedelta
from pathlib import Path

import pytest

from sync import drop
from tests.conftest import ORG_HEADER, PERSON_HEADER, csv_bytes

UNITS = [["10", "Sales", "", ""], ["20", "Support", "", ""]]
PERSONS = [["u1001", "Ann", "Berg", "ann@example.dk", "1", "10"]]


@pytest.fixture
def inbox(app, customer, tmp_path, monkeypatch):
    settings = app.config["KURSA"]["drop"]
    monkeypatch.setitem(settings, "root", str(tmp_path / "drop"))
    monkeypatch.setitem(settings, "settle_seconds", 0.0)
    folder = drop.inbox_of(customer.slug)
    folder.mkdir(parents=True)
    return folder


def put(folder: Path, name: str, rows=None, header=None) -> Path:
    is_org = drop.role_of(name) == "org"
    rows = (UNITS if is_org else PERSONS) if rows is None else rows
    header = header or (ORG_HEADER if is_org else PERSON_HEADER)
    path = folder / name
    path.write_bytes(csv_bytes([header, *rows]))
    return path


@pytest.mark.parametrize(
    "name, role, stamp",
    [
        ("organisation_2026-12-03.csv", "org", "20261203000000"),
        ("Afdelinger 20261203T0215.xlsx", "org", "20261203021500"),
        ("persons_20261203.csv", "persons", "20261203000000"),
        ("medarbejdere-2026-12-03_020000.CSV", "persons", "20261203020000"),
        ("employee_20261203.csv", "persons", "20261203000000"),
        ("Employees-20261203.xlsx", "persons", "20261203000000"),
        ("personer_20261203.csv", "persons", "20261203000000"),
        ("enheder_20261203.csv", "org", "20261203000000"),
        ("org_persons_20261203.csv", None, "20261203000000"),  # both roles: ambiguous
        ("persons_20261203.csv.part", None, "20261203000000"),  # upload in progress
        (".persons_20261203.csv", None, "20261203000000"),  # hidden temporary name
        ("~persons_20261203.csv", None, "20261203000000"),
        ("persons_20261203.pdf", None, "20261203000000"),
        ("persons.csv", "persons", None),  # no stamp: never paired
        ("persons_20261340.csv", "persons", None),  # not a date
    ],
)
def test_naming_rule(name, role, stamp):
    assert (drop.role_of(name), drop.stamp_of(name)) == (role, stamp)


def test_the_role_words_read_the_same_in_refusals_and_docs():
    """The accepted words are prefixes (employee and employees, medarbejder and medarbejdere):
    the refusal, the drop page (tests/sync/test_drop_upload.py) and docs/drop.md say so."""
    assert drop.role_rule("persons") == "a word starting with person, medarbejder or employee"
    assert drop.role_rule("org") == "a word starting with org, afdeling or enhed"
    problem = drop.name_problem("Norge_20261203.csv")
    assert problem == (
        "the name says neither organisation (a word starting with org, afdeling or enhed) "
        "nor persons (a word starting with person, medarbejder or employee)"
    )
    docs = (Path(__file__).parents[2] / "docs" / "drop.md").read_text()
    for role, name in drop.ROLE_NAMES.items():
        row = next(line for line in docs.splitlines() if line.startswith(f"| {name} |"))
        *words, last = (f"`{w}`" for w in drop.ROLE_WORDS[role])
        assert f"| {', '.join(words)} or {last} (" in row, row


def test_newest_complete_pair_is_imported_and_older_pairs_archived(inbox, customer):
    put(inbox, "org_20261201.csv")
    put(inbox, "persons_20261201.csv")
    put(inbox, "organisation_20261203.csv")
    put(inbox, "persons_20261203.csv")
    lone = put(inbox, "persons_20261204.csv")  # newer, but its partner has not come

    result = drop.import_drop(customer, actor="test")

    assert result.run.status == "applied"
    assert {f.filename for f in result.run.files} == {
        "organisation_20261203.csv",
        "persons_20261203.csv",
    }
    assert sorted(p.name for p in inbox.iterdir()) == [lone.name]
    today = drop.archive_of(customer.slug) / date.today().isoformat()
    assert len(list(today.iterdir())) == result.archived == 4


def test_lone_file_and_temporary_names_are_never_read(inbox, customer):
    put(inbox, "org_20261203.csv")
    put(inbox, "persons_20261203.csv.part", PERSONS, PERSON_HEADER)

    result = drop.import_drop(customer, actor="test")

    assert result.run is None and "No complete pair" in result.message
    assert len(list(inbox.iterdir())) == 2


def test_file_still_growing_is_left_for_the_next_run(inbox, customer, monkeypatch):
    put(inbox, "org_20261203.csv")
    persons = put(inbox, "persons_20261203.csv")

    def upload_goes_on(seconds):
        with persons.open("ab") as fh:
            fh.write(b"u1002;Bo;Dal;bo@example.dk;2;10\r\n")

    monkeypatch.setattr(drop, "_pause", upload_goes_on)
    result = drop.import_drop(customer, actor="test")

    assert result.run is None and "still being written" in result.message
    assert len(list(inbox.iterdir())) == 2

    monkeypatch.setattr(drop, "_pause", lambda seconds: None)  # the upload has finished
    run = drop.import_drop(customer, actor="test").run
    assert run.counts["persons"]["created"] == 2


def test_archive_days_older_than_keep_days_are_deleted(inbox, customer):
    archive = drop.archive_of(customer.slug)
    today = date(2026, 12, 3)
    for age in (40, 31, 30, 1):
        day = archive / (today - timedelta(days=age)).isoformat()
        day.mkdir(parents=True)
        (day / "persons_x.csv").write_text("x")

    assert drop.purge_archive(customer.slug, keep_days=30, today=today) == 2
    assert sorted(p.name for p in archive.iterdir()) == ["2026-11-03", "2026-12-02"]


def test_archiving_twice_on_one_day_keeps_both_files(inbox, customer):
    first = put(inbox, "org_20261203.csv")
    drop.archive(customer.slug, (first,))
    second = put(inbox, "org_20261203.csv")
    drop.archive(customer.slug, (second,))

    day = drop.archive_of(customer.slug) / date.today().isoformat()
    assert sorted(p.name for p in day.iterdir()) == ["org_20261203.1.csv", "org_20261203.csv"]


def flask_drop(app, *args):
    return app.test_cli_runner().invoke(args=["drop", "import", *args])


def test_cli_contract(inbox, customer, app):
    nothing = flask_drop(app, customer.slug, "--json")
    assert nothing.exit_code == 0
    assert json.loads(nothing.stdout)["status"] == "nothing_to_import"

    put(inbox, "org_20261203.csv")
    put(inbox, "persons_20261203.csv")
    preview = flask_drop(app, customer.slug, "--dry-run", "--json")
    assert preview.exit_code == 0 and json.loads(preview.stdout)["status"] == "dry_run"
    assert len(list(inbox.iterdir())) == 2  # a preview moves nothing

    applied = flask_drop(app, customer.slug, "--json")
    summary = json.loads(applied.stdout)
    assert applied.exit_code == 0
    assert set(summary) == {"run_id", "status", "counts", "issues"}
    assert summary["status"] == "applied" and summary["counts"]["persons"]["created"] == 1
    assert list(inbox.iterdir()) == []

    put(inbox, "org_20261204.csv", [["10", "Sales", "99", ""]])  # parent 99 does not exist
    put(inbox, "persons_20261204.csv", [], PERSON_HEADER)  # and no data rows: fails
    failed = flask_drop(app, customer.slug, "--json")
    assert failed.exit_code == 1 and json.loads(failed.stdout)["status"] == "failed"
    assert list(inbox.iterdir()) == []  # a failed pair is archived too: it will not improve

    unknown = flask_drop(app, "nobody")
    assert unknown.exit_code == 1 and "No customer" in unknown.output


def test_cli_of_a_customer_without_an_inbox_folder_finds_nothing(
    app, customer, tmp_path, monkeypatch
):
    monkeypatch.setitem(app.config["KURSA"]["drop"], "root", str(tmp_path / "drop"))
    assert not drop.inbox_of(customer.slug).exists()

    nothing = flask_drop(app, customer.slug, "--json")

    assert nothing.exit_code == 0, nothing.output
    answer = json.loads(nothing.stdout)
    assert (answer["run_id"], answer["status"]) == (None, "nothing_to_import")
    assert drop.last_look_at(customer.slug) is not None  # the scheduler's catch-up sees the look


def test_drop_import_holds_the_customers_drop_lock(inbox, customer, app):
    from sync.locks import run_lock

    put(inbox, "org_20261203.csv")
    put(inbox, "persons_20261203.csv")
    with run_lock(f"drop:{customer.slug}"):
        busy = flask_drop(app, customer.slug, "--json")

    assert busy.exit_code == 1 and "being synced already" in busy.output
    assert len(list(inbox.iterdir())) == 2
    assert os.path.exists(inbox)
