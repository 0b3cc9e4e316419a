"""The file drop against the faults an attack run found (F2, F4-F8, F13): FTPS with a real
server and ftplib client, HTTPS with the Flask test client, the import on real folders."""

import logging
from datetime import date

import pytest

from sync import drop
from tests.conftest import ORG_HEADER, PERSON_HEADER, csv_bytes

ORG = csv_bytes([ORG_HEADER, ["10", "Sales", "", ""]])
PERSONS = csv_bytes([PERSON_HEADER, ["u1001", "Ann", "Berg", "ann@example.dk", "1", "10"]])


@pytest.fixture
def inbox(app, customer, tmp_path, monkeypatch):
    settings = app.config["KURSA"]["drop"]
    monkeypatch.setitem(settings, "root", str(tmp_path / "drop"))
    monkeypatch.setitem(settings, "settle_seconds", 0.0)
    folder = drop.inbox_of(customer.slug)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# F6: only ASCII digits make a stamp, and the date and time must be real.


@pytest.mark.parametrize(
    "name, problem",
    [
        ("organisation_\u0662\u0660\u0669\u0669\u0660\u0661\u0660\u0661.csv", "no date stamp"),
        ("organisation_\uff12\uff10\uff12\uff16\uff11\uff12\uff10\uff13.csv", "no date stamp"),
        ("org_20261203_9999.csv", "9999 is not a time of day"),
        ("org_20261203T2400.csv", "2400 is not a time of day"),
        ("org_20261203T235960.csv", "235960 is not a time of day"),
        ("org_20261340.csv", "2026-13-40 is not a date"),
    ],
)
def test_a_stamp_of_other_digits_or_an_impossible_time_is_no_stamp(name, problem):
    assert drop.stamp_of(name) is None
    assert problem in drop.stamp_problem(name)


def test_pair_with_arabic_indic_digits_does_not_push_the_real_newest_pair_aside(inbox, customer):
    arabic = "\u0662\u0660\u0669\u0669\u0660\u0661\u0660\u0661"  # 20990101 in Arabic-Indic
    for name, data in [
        ("organisation_20261203.csv", ORG),
        ("persons_20261203.csv", PERSONS),
        (f"organisation_{arabic}.csv", ORG),
        (f"persons_{arabic}.csv", PERSONS),
    ]:
        (inbox / name).write_bytes(data)

    result = drop.import_drop(customer, actor="test")

    assert result.run.status == "applied"
    assert {f.filename for f in result.run.files} == {
        "organisation_20261203.csv",
        "persons_20261203.csv",
    }
    assert sorted(p.name for p in inbox.iterdir()) == [
        f"organisation_{arabic}.csv",
        f"persons_{arabic}.csv",
    ]


# F7: a file gone between the import and the archive does not undo the report of the run.


def test_file_deleted_after_the_import_is_skipped_when_archiving(
    inbox, customer, monkeypatch, caplog
):
    (inbox / "organisation_20261203.csv").write_bytes(ORG)
    (inbox / "persons_20261203.csv").write_bytes(PERSONS)
    real_import = drop.import_files

    def import_then_customer_deletes(*args, **kwargs):
        run = real_import(*args, **kwargs)
        (inbox / "persons_20261203.csv").unlink()  # e.g. DELE over FTPS meanwhile
        return run

    monkeypatch.setattr(drop, "import_files", import_then_customer_deletes)
    with caplog.at_level(logging.WARNING, logger="sync.drop"):
        result = drop.import_drop(customer, actor="test")

    assert result.run.status == "applied" and result.archived == 1
    assert "Imported the pair" in result.message
    assert "persons_20261203.csv was gone when archived" in caplog.text
    day = drop.archive_of(customer.slug) / date.today().isoformat()
    assert [p.name for p in day.iterdir()] == ["organisation_20261203.csv"]


# F8: a folder in the archive that is no real day is left alone, not a crash of every run.


def test_archive_folder_that_is_not_a_real_day_is_ignored(inbox, customer, caplog):
    archive = drop.archive_of(customer.slug)
    (archive / "2026-13-45").mkdir(parents=True)
    (archive / "2026-01-01").mkdir()
    (archive / "2026-01-01" / "persons_x.csv").write_text("x")

    with caplog.at_level(logging.WARNING, logger="sync.drop"):
        deleted = drop.purge_archive(customer.slug, 30, today=date(2026, 12, 3))
        result = drop.import_drop(customer, actor="test")

    assert deleted == 1 and result.run is None
    assert sorted(p.name for p in archive.iterdir()) == ["2026-13-45"]
    assert "archive/2026-13-45 is not an archive day" in caplog.text
