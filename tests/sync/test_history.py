"""The sync history: the chart of the last applied runs on the runs page."""

import re
import xml.etree.ElementTree as ET

from tests.sync.test_pages_sync import PERSONS, UNITS

SVG = "{http://www.w3.org/2000/svg}"


def chart_groups(html: str) -> list[dict]:
    svg = re.search(r"<svg .*?</svg>", html, re.S).group(0)
    root = ET.fromstring(svg)
    return [
        {**group.attrib, "heights": [float(r.get("height")) for r in group.iter(f"{SVG}rect")]}
        for group in root.iter(f"{SVG}g")
        if group.get("class") == "run"
    ]


def test_chart_holds_one_group_per_applied_run_with_its_counts(customer, import_csv, admin_client):
    first = import_csv(customer, UNITS, PERSONS)
    moved = [*PERSONS[:1], ["u1002", "Bo", "Dahl", "bo@acme.test", "E-502", "20"], *PERSONS[2:3]]
    bad = ["0101901234", "Eva", "Gram", "", "", "10"]  # a CPR number as username: an error
    second = import_csv(customer, UNITS, [*moved, bad])
    import_csv(customer, UNITS, PERSONS, dry_run=True)  # a preview is not in the chart
    import_csv(customer, [], [])  # a failed run neither

    groups = chart_groups(admin_client.get("/sync/runs").get_data(as_text=True))

    assert [int(g["data-run"]) for g in groups] == [first.id, second.id]
    assert [g["data-created"] for g in groups] == ["4", "0"]
    assert [g["data-moved"] for g in groups] == ["0", "1"]
    assert [g["data-inactivated"] for g in groups] == ["0", "1"]
    assert [g["data-errors"] for g in groups] == ["0", "1"]
    assert groups[0]["heights"][0] == 120.0  # the largest value fills the height
    assert groups[1]["heights"][1:] == [30.0, 30.0, 30.0]


def test_chart_shows_the_last_thirty_runs_with_a_legend(customer, import_csv, admin_client):
    runs = [import_csv(customer, UNITS, PERSONS[: 1 + n % 2]) for n in range(32)]

    html = admin_client.get("/sync/runs").get_data(as_text=True)
    groups = chart_groups(html)

    assert len(groups) == 30
    assert int(groups[0]["data-run"]) == runs[2].id and int(groups[-1]["data-run"]) == runs[-1].id
    legend = re.search(r'<ul class="legend">.*?</ul>', html, re.S).group(0)
    for name in ("persons created", "persons moved", "persons inactivated", "errors"):
        assert name in legend


def test_chart_follows_the_chosen_customer(make_customer, import_csv, admin_client):
    acme = make_customer("acme")
    make_customer("globex")
    import_csv(acme, UNITS, PERSONS)

    html = admin_client.get("/sync/runs?customer=globex").get_data(as_text=True)

    assert "Globex" in html and "No applied runs yet." in html
    assert admin_client.get("/sync/runs?customer=nope").status_code == 404
