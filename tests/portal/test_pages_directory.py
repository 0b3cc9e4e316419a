"""The directory pages: login and logout, the organisation tree, persons, a person."""

import re

import pytest
from sqlalchemy import event, select

from portal.core.db import db
from portal.directory.models import OrgUnit, Person
from tests.conftest import csrf_token

UNITS = [
    ["10", "Sales", "", "department"],
    ["11", "Sales North", "10", "location"],
    ["12", "Sales South", "10", "location"],
    ["20", "Finance", "", "department"],
]
PERSONS = [
    ["u1001", "Anna", "Berg", "anna@acme.test", "E-501", "11"],
    ["u1002", "Bo", "Dahl", "bo@acme.test", "E-502", "11"],
    ["u1003", "Carl", "Engel", "carl@acme.test", "E-503", "12"],
    ["u1004", "Dina", "Falk", "dina@acme.test", "E-504", "20"],
]


@pytest.fixture
def acme(customer, import_csv):
    run = import_csv(customer, UNITS, PERSONS)
    assert run.status == "applied", run.error
    return customer


def text_of(response) -> str:
    return response.get_data(as_text=True)


def unit_row(html: str, name: str) -> str:
    """The tree row (summary or leaf) that shows the unit called `name`."""
    match = re.search(
        rf'<span class="unit[^"]*">(?:(?!</summary>|</div>).)*?{name}</span>.*?</a>', html, re.S
    )
    assert match, f"no row for {name}"
    return match.group(0)


def names_listed(html: str) -> set[str]:
    return set(re.findall(r'<td class="lead"[^>]*><a [^>]*>([^<]+)</a>', html))


def test_pages_send_a_visitor_to_the_login_page(app, client):
    for url in ("/", "/persons", "/persons/1"):
        response = client.get(url)
        assert response.status_code == 302
        assert "/login" in response.location


def test_wrong_password_is_refused_in_plain_words(app, client, admin):
    token = csrf_token(client, "/login")
    response = client.post(
        "/login", data={"username": admin.username, "password": "wrong", "csrf_token": token}
    )
    assert response.status_code == 200
    assert "do not match" in text_of(response)
    assert client.get("/").status_code == 302


def test_logout_is_a_post_with_a_csrf_token(app, admin_client):
    assert admin_client.post("/logout").status_code == 400
    assert admin_client.get("/").status_code == 200

    token = csrf_token(admin_client, "/")
    response = admin_client.post("/logout", data={"csrf_token": token})
    assert response.status_code == 302
    assert admin_client.get("/").status_code == 302


def test_tree_shows_each_unit_with_direct_and_branch_counts(acme, admin_client, import_csv):
    persons = [*PERSONS[:3], [*PERSONS[3][:5], "10"]]  # Dina moves up into Sales itself
    import_csv(acme, UNITS, persons[:2] + persons[3:])  # Carl leaves: inactive, not counted

    html = text_of(admin_client.get("/"))

    assert "0 · 3" in unit_row(html, "Acme")
    assert "1 · 3" in unit_row(html, "Sales")
    assert "2 · 2" in unit_row(html, "Sales North")
    assert "0 · 0" in unit_row(html, "Sales South")
    assert "0 · 0" in unit_row(html, "Finance")
    assert "location" in unit_row(html, "Sales North")


def test_tree_marks_inactive_units_and_opens_two_levels(acme, admin_client, import_csv):
    import_csv(acme, UNITS[:3], PERSONS[:3])  # Finance is gone from the file, and emptied

    html = text_of(admin_client.get("/"))

    assert "inactive" in unit_row(html, "Finance")
    assert "unit-off" in unit_row(html, "Finance")
    assert html.count("<details open>") == 2  # the customer and Sales; below stays closed


def test_tree_can_be_narrowed_to_one_branch(acme, admin_client):
    sales = db.session.scalar(select(OrgUnit).where(OrgUnit.number == "10"))

    html = text_of(admin_client.get(f"/?unit={sales.id}"))

    assert "Sales North" in html and "Finance" not in html
    assert admin_client.get("/?unit=999999").status_code == 404


def test_tree_picks_the_customer_from_the_query(acme, make_customer, import_csv, admin_client):
    beta = make_customer("beta", name="Beta Group")
    import_csv(beta, [["B1", "Warehouse", "", "location"]], [["b7", "Eva", "Gram", "", "", "B1"]])

    acme_page = text_of(admin_client.get("/?customer=acme"))
    beta_page = text_of(admin_client.get("/?customer=beta"))

    assert "Sales North" in acme_page and "Warehouse" not in acme_page
    assert "Warehouse" in beta_page and "Sales North" not in beta_page
    assert '<option value="beta" selected>' in beta_page
    assert admin_client.get("/?customer=nobody").status_code == 404


def test_tree_loads_with_a_fixed_number_of_queries(acme, admin_client, import_csv):
    many = [[str(100 + i), f"Team {i}", "11", "division"] for i in range(120)]
    import_csv(acme, UNITS + many, PERSONS)
    admin_client.get("/")  # warm up: the account and session are loaded the same way later

    statements = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        html = text_of(admin_client.get("/"))
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)

    assert "Team 119" in html
    assert len(statements) <= 6, statements


def test_search_finds_by_name_username_and_number(acme, admin_client):
    def search(text):
        return names_listed(text_of(admin_client.get("/persons", query_string={"q": text})))

    assert search("berg") == {"Berg, Anna"}
    assert search("U1002") == {"Dahl, Bo"}
    assert search("e-503") == {"Engel, Carl"}
    assert search("anna berg") == {"Berg, Anna"}
    assert search("nobody") == set()


@pytest.mark.parametrize("typed", ["%", "_", "b_rg", "%berg", "/"])
def test_search_takes_like_wildcards_as_letters(acme, admin_client, typed):
    found = admin_client.get("/persons", query_string={"q": typed, "customer": "acme"})

    assert names_listed(text_of(found)) == set()


def test_search_finds_an_underscore_or_percent_typed_in_an_email(acme, admin_client):
    carl = db.session.scalar(select(Person).where(Person.username == "u1003"))
    carl.email = "carl_engel%1/x@acme.test"
    db.session.commit()

    def search(text):
        return names_listed(text_of(admin_client.get("/persons", query_string={"q": text})))

    assert search("_engel%1/") == {"Engel, Carl"}


def test_unit_filter_takes_the_whole_branch(acme, admin_client):
    html = text_of(admin_client.get("/persons?unit=10"))

    assert names_listed(html) == {"Berg, Anna", "Dahl, Bo", "Engel, Carl"}
    assert "In 10 Sales and every unit below it." in html
    assert names_listed(text_of(admin_client.get("/persons?unit=12"))) == {"Engel, Carl"}


def test_unknown_unit_number_is_named(acme, admin_client):
    html = text_of(admin_client.get("/persons?unit=77"))

    assert "has no unit numbered 77" in html
    assert names_listed(html) == set()


def test_status_filter_shows_active_inactive_or_all(acme, admin_client, import_csv):
    import_csv(acme, UNITS, PERSONS[:3])  # Dina is inactivated

    def listed(status):
        return names_listed(text_of(admin_client.get(f"/persons?status={status}")))

    assert "Falk, Dina" not in listed("active")
    assert listed("inactive") == {"Falk, Dina"}
    assert len(listed("all")) == 4


def test_persons_are_listed_fifty_to_a_page(customer, import_csv, admin_client):
    persons = [[f"id{i:03d}", f"First{i:03d}", f"Last{i:03d}", "", "", "10"] for i in range(60)]
    import_csv(customer, UNITS, persons)

    first = text_of(admin_client.get("/persons"))
    second = text_of(admin_client.get("/persons?page=2"))

    assert len(names_listed(first)) == 50 and len(names_listed(second)) == 10
    assert "60 persons found" in first
    assert "Page 1 of 2" in first and "page=2" in first
    assert names_listed(first).isdisjoint(names_listed(second))


def test_a_page_past_the_end_shows_the_last_page(customer, import_csv, admin_client):
    persons = [[f"id{i:03d}", f"First{i:03d}", f"Last{i:03d}", "", "", "10"] for i in range(60)]
    import_csv(customer, UNITS, persons)

    html = text_of(admin_client.get("/persons?page=999"))

    assert len(names_listed(html)) == 10 and "Page 2 of 2" in html
    assert 'rel="prev"' in html and "page=1" in html


def test_search_finds_nordic_names_typed_without_their_letters(customer, import_csv, admin_client):
    persons = [
        ["u1", "Kåre", "Østergaard", "", "", "10"],
        ["u2", "Åse", "Bæk", "", "", "10"],
        ["u3", "Lis", "Aaberg", "", "", "10"],
    ]
    import_csv(customer, UNITS, persons)

    def search(text):
        return names_listed(text_of(admin_client.get("/persons", query_string={"q": text})))

    assert search("kare") == {"Østergaard, Kåre"}
    assert search("aase") == {"Bæk, Åse"}
    assert search("åse") == {"Bæk, Åse"}
    assert search("ÅSE") == {"Bæk, Åse"}
    assert search("oestergaard") == search("ostergaard") == {"Østergaard, Kåre"}
    assert search("baek") == {"Bæk, Åse"}
    assert search("åberg") == {"Aaberg, Lis"}


def test_person_page_shows_fields_and_unit_ancestry(acme, admin_client):
    anna = db.session.scalar(select(Person).where(Person.first_name == "Anna"))

    html = text_of(admin_client.get(f"/persons/{anna.id}"))

    assert "Anna Berg" in html and "anna@acme.test" in html and "E-501" in html
    crumbs = re.search(r'<nav class="crumbs".*?</nav>', html, re.S).group(0)
    assert crumbs.index("Acme") < crumbs.index("10 Sales") < crumbs.index("11 Sales North")
    assert "Active since" in html


def test_unknown_person_is_404(app, admin_client):
    assert admin_client.get("/persons/424242").status_code == 404


def test_pages_load_the_style_sheet(app, admin_client):
    html = text_of(admin_client.get("/"))
    href = re.search(r'<link rel="stylesheet" href="([^"]+)"', html).group(1)
    response = admin_client.get(href)

    assert response.status_code == 200
    assert b"@media (max-width: 640px)" in response.data


def test_tree_orders_sibling_units_by_name_numbers_naturally(customer, import_csv, admin_client):
    units = [["1", "Team 10", "", ""], ["2", "Team 9", "", ""], ["3", "Archive", "", ""]]
    import_csv(customer, units, [["u1", "Eva", "Gram", "", "", "1"]])

    html = text_of(admin_client.get("/"))

    assert html.index("Archive") < html.index("Team 9") < html.index("Team 10")
