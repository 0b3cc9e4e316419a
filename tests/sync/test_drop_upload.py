"""The file drop over HTTPS: /sync/drop/<slug> writes uploads into the customer's inbox."""

import hashlib
import io

import pytest

from portal.core.errors import UserError
from sync import drop
from sync.drop_views import write_into
from tests.conftest import ORG_HEADER, PERSON_HEADER, _csrf_token, csv_bytes
from tests.courses import helpers

acme, unit, person = helpers.acme, helpers.unit, helpers.person
account_of, login_as = helpers.account_of, helpers.login_as
ORG = csv_bytes([ORG_HEADER, *helpers.UNITS])
PERSONS = csv_bytes([PERSON_HEADER, *helpers.PERSONS])
PAGE = "/sync/drop/acme"


@pytest.fixture
def inbox(app, acme, tmp_path, monkeypatch):
    settings = app.config["KURSA"]["drop"]
    monkeypatch.setitem(settings, "root", str(tmp_path / "drop"))
    monkeypatch.setitem(settings, "settle_seconds", 0.0)
    return drop.inbox_of(acme.slug)


@pytest.fixture
def hr(login_as):
    return login_as("dina", "hr", None)


def upload(client, first, second=None, page=PAGE):
    token = _csrf_token(client.get(page).get_data(as_text=True))
    data = {"csrf_token": token, "first": (io.BytesIO(first[1]), first[0])}
    if second:
        data["second"] = (io.BytesIO(second[1]), second[0])
    return client.post(page, data=data, content_type="multipart/form-data")


def flashed(client, response) -> str:
    assert response.status_code in (200, 302), response.status_code
    if response.status_code == 302:
        response = client.get(response.location)
    return response.get_data(as_text=True)


def test_an_upload_lands_whole_and_is_imported_as_a_pair(acme, inbox, hr):
    response = upload(
        hr, ("organisation_2026-12-03.csv", ORG), ("medarbejdere_20261203.csv", PERSONS)
    )

    assert response.status_code == 302
    assert sorted(p.name for p in inbox.iterdir()) == [
        "medarbejdere_20261203.csv",
        "organisation_2026-12-03.csv",
    ]
    assert (inbox / "organisation_2026-12-03.csv").read_bytes() == ORG
    assert (inbox / "medarbejdere_20261203.csv").read_bytes() == PERSONS
    page = hr.get(response.location).get_data(as_text=True)
    assert "organisation_2026-12-03.csv" in page and f"{len(ORG)} bytes" in page

    result = drop.import_drop(acme, actor="test")

    assert result.run.status == "applied", result.run.error
    files = {f.filename: f.sha256 for f in result.run.files}
    assert files == {
        "organisation_2026-12-03.csv": hashlib.sha256(ORG).hexdigest(),
        "medarbejdere_20261203.csv": hashlib.sha256(PERSONS).hexdigest(),
    }
    assert list(inbox.iterdir()) == []
    archived = hr.get(PAGE).get_data(as_text=True)
    assert "medarbejdere_20261203.csv" in archived and "The inbox is empty." in archived


def test_danish_letters_and_the_stamp_stay_readable(inbox, hr):
    upload(hr, ("Afdelinger på Ærø 2026-12-03.xlsx", b"x"))

    assert [p.name for p in inbox.iterdir()] == ["Afdelinger_på_Ærø_2026-12-03.xlsx"]


@pytest.mark.parametrize(
    "name, stored",
    [
        ("../../persons_20261203.csv", "persons_20261203.csv"),
        ("/etc/persons_20261203.csv", "persons_20261203.csv"),
        ("..\\..\\persons_20261203.csv", None),  # werkzeug reads \ as an escape
        ("C:\\Temp\\_persons_20261203.csv", None),  # arrives as C:Temp_persons_...
        (".persons_20261203.csv", "persons_20261203.csv"),
    ],
)
def test_a_path_in_the_name_stays_inside_the_inbox(inbox, hr, tmp_path, name, stored):
    upload(hr, (name, PERSONS))

    [written] = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written.parent == inbox and written.read_bytes() == PERSONS
    assert written.name == stored or (stored is None and written.name.endswith(".csv"))


@pytest.mark.parametrize("name", ["persons_20261203.pdf", "persons_20261203.csv.exe", "x"])
def test_a_wrong_extension_is_refused(inbox, hr, name):
    page = flashed(hr, upload(hr, (name, b"data")))

    assert "only .csv and .xlsx files can be dropped" in page
    assert not inbox.exists() or list(inbox.iterdir()) == []


def test_a_name_the_import_would_never_read_is_refused(inbox, hr):
    page = flashed(hr, upload(hr, ("export.csv", PERSONS)))

    assert "must say organisation or persons and carry a date" in page
    assert not inbox.exists() or list(inbox.iterdir()) == []


def test_the_page_names_the_role_words_as_the_refusals_do(inbox, hr):
    page = hr.get(PAGE).get_data(as_text=True)
    refused = flashed(hr, upload(hr, ("staff_20261203.csv", PERSONS)))

    for role in ("org", "persons"):
        assert drop.role_rule(role) in page
        assert drop.role_rule(role) in refused


def test_an_existing_file_is_not_overwritten(inbox, hr):
    inbox.mkdir(parents=True)
    (inbox / "persons_20261203.csv").write_bytes(b"first")

    page = flashed(hr, upload(hr, ("org_20261203.csv", ORG), ("persons_20261203.csv", b"second")))

    assert "persons_20261203.csv is in the inbox already; it was not replaced." in page
    assert sorted(p.name for p in inbox.iterdir()) == ["persons_20261203.csv"]  # nothing written
    assert (inbox / "persons_20261203.csv").read_bytes() == b"first"


def test_a_write_that_meets_a_new_file_refuses_and_leaves_no_part(inbox, hr):
    inbox.mkdir(parents=True)
    (inbox / "persons_20261203.csv").write_bytes(b"first")
    with pytest.raises(UserError, match="in the inbox already"):
        write_into(inbox, "persons_20261203.csv", io.BytesIO(b"second"))

    assert [p.name for p in inbox.iterdir()] == ["persons_20261203.csv"]
    assert (inbox / "persons_20261203.csv").read_bytes() == b"first"


def test_an_upload_without_a_csrf_token_is_refused(inbox, hr):
    data = {"first": (io.BytesIO(PERSONS), "persons_20261203.csv")}
    response = hr.post(PAGE, data=data, content_type="multipart/form-data")

    assert response.status_code == 400
    assert not inbox.exists()


def test_an_upload_over_the_size_limit_is_refused(app, inbox, hr, monkeypatch):
    monkeypatch.setitem(app.config, "MAX_CONTENT_LENGTH", 1000)

    response = upload(hr, ("persons_20261203.csv", b"x" * 2000))

    assert response.status_code == 413
    assert not inbox.exists() or list(inbox.iterdir()) == []


def test_it_admins_at_the_root_may_drop_too(inbox, login_as):
    it_admin = login_as("finn", "it_admin", None)

    assert upload(it_admin, ("persons_20261203.csv", PERSONS)).status_code == 302
    assert (inbox / "persons_20261203.csv").read_bytes() == PERSONS


def test_404_for_hr_of_a_branch_and_for_another_customers_slug(inbox, hr, login_as, make_customer):
    make_customer("globex")
    branch_hr = login_as("hanne", "hr", "10")
    token = _csrf_token(branch_hr.get("/courses/").get_data(as_text=True))
    data = {"csrf_token": token, "first": (io.BytesIO(PERSONS), "persons_20261203.csv")}

    assert branch_hr.get(PAGE).status_code == 404
    posted = branch_hr.post(PAGE, data=data, content_type="multipart/form-data")
    assert posted.status_code == 404
    assert hr.get("/sync/drop/globex").status_code == 404
    assert hr.get("/sync/drop/nobody").status_code == 404
    assert not inbox.exists()


def test_runs_page_links_to_the_drop(inbox, hr):
    assert f'href="{PAGE}"' in hr.get("/sync/runs").get_data(as_text=True)
