"""The file drop against the faults an attack run found (F2, F4-F8, F13): FTPS with a real
server and ftplib client, HTTPS with the Flask test client, the import on real folders."""

import ftplib
import logging
import os
import socket
import ssl
import time
from datetime import date

import pytest

from sync import drop
from tests.conftest import ORG_HEADER, PERSON_HEADER, csv_bytes
from tests.courses import helpers
from tests.sync import test_drop_server as served
from tests.sync import test_drop_upload as web

acme, unit, person = helpers.acme, helpers.unit, helpers.person
account_of, login_as = helpers.account_of, helpers.login_as
ftps, client, upload = served.ftps, served.client, served.upload

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


@pytest.fixture
def hr(login_as):
    return login_as("dina", "hr", None)


def start_upload(server, name: str, first: bytes):
    """An FTPS upload under way: the data connection is open and has had `first`."""
    ftp = client(server)
    ftp.voidcmd("TYPE I")
    data = ftp.transfercmd(f"STOR {name}")
    data.sendall(first)
    return ftp, data


def finish_upload(ftp, data, rest: bytes) -> str:
    """End the upload cleanly (TLS close) and return the server's reply to it."""
    data.sendall(rest)
    data.unwrap()
    data.close()
    return ftp.voidresp()


def wait_for(condition, seconds=5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


def parts(folder) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".part")]


# F4: every upload has its own part file; the first whole upload of a name wins and a second
# hears 450, never 226; nobody sees or touches another's part; an inbox file is never replaced.


def test_two_uploads_of_one_name_never_mix_and_the_loser_hears_450(ftps, customer):
    inbox = drop.inbox_of(customer.slug)
    a_ftp, a = start_upload(ftps, "persons_20261203.csv", b"A" * 1000)
    b_ftp, b = start_upload(ftps, "persons_20261203.csv", b"B" * 10)
    assert wait_for(lambda: len(parts(inbox)) == 2)  # one part each

    assert finish_upload(a_ftp, a, b"A" * 1000).startswith("226")
    with pytest.raises(ftplib.error_temp, match="450 persons_20261203.csv arrived in the inbox"):
        finish_upload(b_ftp, b, b"B" * 10)

    assert (inbox / "persons_20261203.csv").read_bytes() == b"A" * 2000
    assert wait_for(lambda: sorted(os.listdir(inbox)) == ["persons_20261203.csv"])
    for ftp in (a_ftp, b_ftp):
        ftp.quit()


def test_an_upload_in_progress_is_hidden_from_and_refused_to_other_sessions(ftps, customer):
    inbox = drop.inbox_of(customer.slug)
    a_ftp, a = start_upload(ftps, "persons_20261203.csv", b"A" * 1000)
    assert wait_for(lambda: len(parts(inbox)) == 1)
    [part] = parts(inbox)

    with client(ftps) as other:
        upload(other, "org_20261203.csv", ORG)  # (an empty listing over TLS trips ftplib)
        assert other.nlst() == ["org_20261203.csv"]
        lines = []
        other.retrlines("LIST", lines.append)
        assert len(lines) == 1 and lines[0].endswith(" org_20261203.csv")
        for command in (f"RNFR {part}", f"DELE {part}", f"SIZE {part}", f"MDTM {part}"):
            with pytest.raises(ftplib.error_perm, match="550 No such file"):
                other.sendcmd(command)
        with pytest.raises(ftplib.error_perm, match="550"):  # no file is ever read back
            other.retrbinary(f"RETR {part}", lambda block: None)
        for name in (part, ".persons_20261204.csv", "persons_20261204.csv.tmp"):
            with pytest.raises(ftplib.error_perm, match="553 Names that start with"):
                upload(other, name, b"x")
        other.sendcmd("RNFR org_20261203.csv")
        with pytest.raises(ftplib.error_perm, match="553 Names that start with"):
            other.sendcmd(f"RNTO {part}")

    assert finish_upload(a_ftp, a, b"A" * 1000).startswith("226")
    a_ftp.quit()
    assert (inbox / "persons_20261203.csv").read_bytes() == b"A" * 2000
    assert sorted(os.listdir(inbox)) == ["org_20261203.csv", "persons_20261203.csv"]


def test_a_file_in_the_inbox_is_never_replaced_over_ftps(ftps, customer):
    inbox = drop.inbox_of(customer.slug)
    with client(ftps) as ftp:
        upload(ftp, "persons_20261203.csv", PERSONS)
        upload(ftp, "org_20261203.csv", ORG)
        with pytest.raises(ftplib.error_perm, match="553 persons_20261203.csv is in the inbox"):
            upload(ftp, "persons_20261203.csv", b"second")
        ftp.sendcmd("RNFR org_20261203.csv")
        with pytest.raises(ftplib.error_perm, match="553 persons_20261203.csv is in the inbox"):
            ftp.sendcmd("RNTO persons_20261203.csv")
        ftp.delete("persons_20261203.csv")  # deleting first is the way to upload again
        upload(ftp, "persons_20261203.csv", b"second")

    assert (inbox / "persons_20261203.csv").read_bytes() == b"second"
    assert (inbox / "org_20261203.csv").read_bytes() == ORG


# F2: one address cannot take every connection, and a connection must log in soon.


def test_the_eleventh_connection_from_one_address_is_refused_and_others_still_log_in(
    ftps, make_customer
):
    from portal.core.db import db
    from sync.drop_server import set_drop_password

    assert (ftps.max_cons, ftps.max_cons_per_ip) == (100, 10)  # [drop] defaults
    globex = make_customer("globex")
    set_drop_password(globex, served.PASSWORD, actor="test")
    db.session.commit()
    held = [socket.create_connection(("127.0.0.1", ftps.port), timeout=5) for _ in range(10)]
    try:
        for sock in held:
            assert sock.recv(100).startswith(b"220")
        with socket.create_connection(("127.0.0.1", ftps.port), timeout=5) as eleventh:
            assert eleventh.recv(100).startswith(b"421 Too many connections from the same IP")

        context = ssl.create_default_context(cafile=ftps.cert_file)
        other = ftplib.FTP_TLS(context=context, timeout=10)
        other.connect("127.0.0.1", ftps.port, source_address=("127.0.0.2", 0))
        other.login("globex", served.PASSWORD)
        other.prot_p()
        upload(other, "persons_20261203.csv", PERSONS)
        other.quit()
    finally:
        for sock in held:
            sock.close()
    assert (drop.inbox_of("globex") / "persons_20261203.csv").read_bytes() == PERSONS


def test_a_connection_that_does_not_log_in_is_closed_and_a_session_is_not(ftps):
    ftps.handler.login_seconds = 0.5
    with client(ftps) as session:
        with socket.create_connection(("127.0.0.1", ftps.port), timeout=5) as idle:
            assert idle.recv(100).startswith(b"220")
            time.sleep(0.2)
            idle.sendall(b"NOOP\r\n")  # a command does not buy more time
            assert idle.recv(100).startswith(b"200")
            assert idle.recv(100).startswith(b"421 Log in within 0.5 seconds")
            assert idle.recv(100) == b""
        session.voidcmd("NOOP")  # logged in before: not cut


# F5: the name limit is counted in bytes of UTF-8, with room for the part wrapping.


@pytest.mark.parametrize(
    "name",
    [
        "æ" * 120 + "_organisation_20261203.csv",  # 146 letters, 266 bytes
        "組織" * 60 + "_org_20261203.csv",  # 137 signs, 377 bytes
    ],
)
def test_a_name_too_long_in_bytes_is_refused_in_words(acme, inbox, hr, name):
    response = web.upload(hr, (name, ORG))

    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "the name is too long" in page and "at most 240 bytes" in page
    assert os.listdir(inbox) == []


def test_a_name_of_the_longest_length_is_taken_and_one_byte_more_is_not(acme, inbox, hr):
    tail = "_org_20261203.csv"
    longest = "x" * (drop.MAX_NAME_BYTES - len(tail)) + tail
    assert len(os.fsencode(drop.part_name(longest))) == 255

    assert web.upload(hr, (longest, ORG)).status_code == 302
    assert "too long" in web.upload(hr, ("y" + longest, ORG)).get_data(as_text=True)
    assert os.listdir(inbox) == [longest]


def test_a_name_too_long_in_bytes_is_refused_over_ftps(ftps, customer):
    name = "æ" * 120 + "_organisation_20261203.csv"
    with client(ftps) as ftp:
        with pytest.raises(ftplib.error_perm, match="553 The name is too long"):
            upload(ftp, name, ORG)

    assert os.listdir(drop.inbox_of(customer.slug)) == []


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


# F13: role words are whole words; waiting files say why; refusals echo only a name's start.


@pytest.mark.parametrize(
    "name, role",
    [
        ("medarbejdere_Norge_20261203.csv", "persons"),
        ("persons_Georg_20261203.csv", "persons"),
        ("employees_storgade_20261203.csv", "persons"),
        ("OrgUnits_20261203.csv", "org"),
        ("Enheder-Norge-20261203.xlsx", "org"),
        ("Norge_20261203.csv", None),
    ],
)
def test_a_role_is_said_by_a_whole_word_not_letters_inside_one(name, role):
    assert drop.role_of(name) == role


def test_files_that_wait_unpaired_say_why_in_the_cli_and_on_the_page(app, acme, inbox, hr):
    (inbox / "organisation_20261203T0200.csv").write_bytes(ORG)
    (inbox / "persons_20261203.csv").write_bytes(PERSONS)
    (inbox / "org_20261204_9999.csv").write_bytes(ORG)
    runner = app.test_cli_runner()

    text = runner.invoke(args=["drop", "import", "acme"]).output
    summary = runner.invoke(args=["drop", "import", "acme", "--json"]).stdout
    page = hr.get(web.PAGE).get_data(as_text=True)

    assert "No complete pair" in text
    same_day = (
        "organisation_20261203T0200.csv: waits for a persons file with the stamp 2026-12-03 "
        "02:00; persons_20261203.csv has the same day but the stamp 2026-12-03: a pair needs "
        "the same stamp, time included."
    )
    assert same_day in text and same_day in summary
    assert "org_20261204_9999.csv: not read: 9999 is not a time of day" in text
    assert "waits for a persons file with the stamp 2026-12-03 02:00" in page
    assert "9999 is not a time of day" in page


def test_a_refusal_says_what_was_recognised_and_echoes_only_the_start_of_a_long_name(
    acme, inbox, hr
):
    both = web.flashed(hr, web.upload(hr, ("org_persons_20261203.csv", ORG)))
    neither = web.flashed(hr, web.upload(hr, ("Norge_20261203.csv", ORG)))
    huge = web.upload(hr, ("x" * 100_000 + "_org_20261203.csv", ORG))

    assert "the name says both organisation (org) and persons (persons)" in both
    assert "the name says neither organisation" in neither
    assert huge.status_code == 200
    assert "x" * 60 + "…" in huge.get_data(as_text=True)
    assert "x" * 61 not in huge.get_data(as_text=True)
    assert os.listdir(inbox) == []
