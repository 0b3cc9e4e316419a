"""The sync history: the chart of the last runs (applied, held, failed) on the runs page."""

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from portal.core.db import db
from portal.core.time import format_local
from sync.history import CHART_RUNS, SERIES, ChartRun, axis_label, label_width
from sync.models import SyncIssue
from sync.revert import revert_run
from sync.schedule import record_skipped_run
from tests.sync.test_pages_sync import PERSONS, UNITS

SVG = "{http://www.w3.org/2000/svg}"


def chart_groups(html: str) -> list[dict]:
    svg = re.search(r"<svg .*?</svg>", html, re.S).group(0)
    root = ET.fromstring(svg)
    return [
        {
            **group.attrib,
            "title": group.find(f"{SVG}title").text,
            "heights": [
                float(r.get("height")) for r in group.iter(f"{SVG}rect") if r.get("class") in SERIES
            ],
            "flags": [f.tag.removeprefix(SVG) for f in group.iter() if f.get("class") == "flag"],
        }
        for group in root.iter(f"{SVG}g")
        if "run" in group.get("class", "").split()
    ]


def column(groups: list[dict], key: str) -> list:
    return [g[key] for g in groups]


def test_chart_shows_applied_held_and_failed_runs_with_their_counts(
    customer, import_csv, guard_limits, admin_client
):
    customer.timezone = "Europe/Copenhagen"
    db.session.commit()
    first = import_csv(customer, UNITS, PERSONS)
    moved = [*PERSONS[:1], ["u1002", "Bo", "Dahl", "bo@acme.test", "E-502", "20"], *PERSONS[2:3]]
    bad = ["0101901234", "Eva", "Gram", "", "", "10"]  # a CPR number as username: an error
    second = import_csv(customer, UNITS, [*moved, bad])
    import_csv(customer, UNITS, PERSONS, dry_run=True)  # a preview is not in the chart
    guard_limits(count=1000, share=0.10)
    held = import_csv(customer, UNITS, PERSONS[:1])  # 2 of 3 active persons would leave
    failed = import_csv(customer, [], [])  # empty files: the run fails, nothing changes
    assert [first.status, second.status, held.status, failed.status] == [
        "applied",
        "applied",
        "held",
        "failed",
    ]
    fatal = db.session.scalars(select(SyncIssue.message).where(SyncIssue.run_id == failed.id))
    assert fatal.all() == ["The file has a header but no data rows."]

    groups = chart_groups(admin_client.get("/sync/runs").get_data(as_text=True))

    assert [int(g) for g in column(groups, "data-run")] == [first.id, second.id, held.id, failed.id]
    assert column(groups, "data-status") == ["applied", "applied", "held", "failed"]
    assert column(groups, "data-created") == ["4", "0", "0", "0"]
    assert column(groups, "data-moved") == ["0", "1", "0", "0"]
    assert column(groups, "data-inactivated") == ["0", "1", "2", "0"]
    assert column(groups, "data-errors") == ["0", "1", "0", "1"]
    assert groups[0]["heights"][0] == 120.0  # the largest value fills the height
    assert groups[1]["heights"][1:] == [30.0, 30.0, 30.0]
    assert groups[2]["heights"] == [0.0, 0.0, 60.0, 0.0]
    assert groups[3]["heights"] == [0.0, 0.0, 0.0, 30.0]
    assert column(groups, "flags") == [[], [], ["circle"], ["path"]]

    for group, run, words in [
        (groups[0], first, "applied"),
        (groups[2], held, "held, not applied"),
        (groups[3], failed, "failed, nothing changed"),
    ]:
        local = format_local(run.started_at, "Europe/Copenhagen")
        assert group["title"].startswith(f"Run #{run.id}, {local}, {words}:"), group["title"]
        assert local.endswith(("CET", "CEST"))
    assert groups[2]["title"].endswith("0 created, 0 moved, 2 inactivated, 0 errors")


def test_a_failed_run_without_issues_counts_one_error(customer, import_csv, admin_client):
    import_csv(customer, UNITS, PERSONS)
    skipped = record_skipped_run(
        customer, kind="ldap", name="hq", reason="another run held the lock", actor="scheduler"
    )

    groups = chart_groups(admin_client.get("/sync/runs").get_data(as_text=True))

    assert int(groups[-1]["data-run"]) == skipped.id
    assert groups[-1]["data-status"] == "failed" and groups[-1]["data-errors"] == "1"


def test_a_summary_line_names_reactivations_when_there_are_any(
    customer, import_csv, guard_limits, admin_client
):
    guard_limits(count=1000, share=1.0)
    import_csv(customer, UNITS, PERSONS)
    leaving = import_csv(customer, UNITS, PERSONS[:1])
    revert_run(leaving.id, actor="test")

    titles = column(chart_groups(admin_client.get("/sync/runs").get_data(as_text=True)), "title")

    assert titles[0].endswith(": 4 created, 0 moved, 0 inactivated, 0 errors")
    assert titles[1].endswith(": 0 created, 0 moved, 3 inactivated, 0 errors")
    assert titles[2].endswith(": 0 created, 0 moved, 0 inactivated, 3 reactivated, 0 errors")


def test_a_revert_shows_as_a_run_of_its_own(customer, import_csv, admin_client):
    first = import_csv(customer, UNITS, PERSONS)
    revert = revert_run(first.id, actor="test")

    groups = chart_groups(admin_client.get("/sync/runs").get_data(as_text=True))

    assert [int(g) for g in column(groups, "data-run")] == [first.id, revert.id]
    assert column(groups, "data-status") == ["applied", "applied"]


def test_chart_shows_the_last_thirty_runs_with_a_legend(customer, import_csv, admin_client):
    runs = []
    for n in range(32):
        runs.append(import_csv(customer, UNITS, PERSONS[: 1 + n % 2]))
        if n % 8 == 0:
            import_csv(customer, UNITS, PERSONS, dry_run=True)  # takes no place in the chart
    runs.append(import_csv(customer, [], []))

    html = admin_client.get("/sync/runs").get_data(as_text=True)
    groups = chart_groups(html)

    assert len(groups) == 30
    assert int(groups[0]["data-run"]) == runs[3].id and int(groups[-1]["data-run"]) == runs[-1].id
    assert groups[-1]["data-status"] == "failed"
    legend = re.search(r'<ul class="legend">.*?</ul>', html, re.S).group(0)
    for name in ("persons created", "persons moved", "persons inactivated", "errors"):
        assert name in legend
    assert "held, not applied" in legend and "failed, nothing changed" in legend


def test_chart_follows_the_chosen_customer(make_customer, import_csv, admin_client):
    acme = make_customer("acme")
    make_customer("globex")
    import_csv(acme, UNITS, PERSONS)

    html = admin_client.get("/sync/runs?customer=globex").get_data(as_text=True)

    assert "Globex" in html and "No runs of this customer yet." in html
    assert admin_client.get("/sync/runs?customer=nope").status_code == 404


def render_chart(app, points: list[ChartRun]) -> ET.Element:
    macro = app.jinja_env.get_template("sync/_chart.html").module.run_chart
    colours = dict.fromkeys(SERIES, "#000")
    html = str(macro(points, SERIES, colours, "Europe/Copenhagen", CHART_RUNS))
    return ET.fromstring(re.search(r"<svg .*?</svg>", html, re.S).group(0))


@pytest.mark.parametrize(("largest", "label"), [(1200, "1.2k"), (120_000, "120k")])
def test_the_y_axis_label_of_a_large_value_is_whole_inside_the_chart(app, largest, label):
    started = datetime(2026, 12, 4, 2, tzinfo=UTC)
    points = [ChartRun(1, started, "applied", largest, 3, 0, 0)]

    svg = render_chart(app, points)

    top = svg.find(f"{SVG}text[@class='axis-top']")
    assert top.text == label
    left_edge = float(svg.get("viewBox").split()[0])
    assert top.get("text-anchor") == "end"
    assert float(top.get("x")) - label_width(top.text) >= left_edge
    bars = [float(r.get("x")) for r in svg.iter(f"{SVG}rect") if r.get("class") in SERIES]
    assert min(bars) > float(top.get("x")), "the label runs into the bars"


@pytest.mark.parametrize(
    ("value", "label"),
    [(7, "7"), (999, "999"), (1000, "1k"), (1200, "1.2k"), (9949, "9.9k"), (9960, "10k"),
     (12_000, "12k"), (120_000, "120k"), (999_950, "1M"), (1_260_000, "1.3M")],
)  # fmt: skip
def test_axis_labels_stay_within_four_characters(value, label):
    assert axis_label(value) == label
