"""The `flask activity` contract: arguments, JSON shapes, exit codes (other tools rely on it)."""

import json

import pytest

from portal.core.db import db
from portal.courses.models import Activity, ActivityTemplate


@pytest.fixture
def flask(app):
    runner = app.test_cli_runner()

    def invoke(*args):
        return runner.invoke(args=list(args), catch_exceptions=False)

    return invoke


def create(flask, *extra, capacity="2"):
    return flask(
        "activity",
        "create",
        "--customer",
        "acme",
        "--unit",
        "10",
        "--title",
        "Forklift licence",
        "--start",
        "2099-10-24T09:00",
        "--end",
        "2099-10-24T15:30",
        "--capacity",
        capacity,
        *extra,
    )


def test_create_signup_cancel_show_round_trip(flask, acme):
    result = create(flask, "--publish", "--json")
    assert result.exit_code == 0, result.output
    activity_id = json.loads(result.output)["id"]

    statuses = []
    for username in ("u111", "u121", "u101"):
        result = flask("activity", "signup", str(activity_id), username, "--json")
        assert result.exit_code == 0, result.output
        statuses.append(json.loads(result.output))
    assert statuses == [
        {"status": "registered"},
        {"status": "registered"},
        {"status": "waitlisted"},
    ]

    assert flask("activity", "cancel", str(activity_id), "u111").exit_code == 0

    shown = json.loads(flask("activity", "show", str(activity_id), "--json").output)
    assert shown["signups"] == [
        {"username": "u121", "status": "registered", "position": None},
        {"username": "u101", "status": "registered", "position": None},
        {"username": "u111", "status": "cancelled", "position": None},
    ]
    assert (shown["starts_at"], shown["starts_local"]) == (
        "2099-10-24T07:00:00+00:00",
        "2099-10-24T09:00:00+02:00",
    )


def test_show_lists_the_waiting_list_by_position(flask, acme):
    activity_id = json.loads(create(flask, "--publish", "--json", capacity="1").output)["id"]
    for username in ("u111", "u121", "u101"):
        flask("activity", "signup", str(activity_id), username)

    shown = json.loads(flask("activity", "show", str(activity_id), "--json").output)

    assert shown["signups"] == [
        {"username": "u111", "status": "registered", "position": None},
        {"username": "u121", "status": "waitlisted", "position": 1},
        {"username": "u101", "status": "waitlisted", "position": 2},
    ]


@pytest.mark.parametrize(
    "username, reason",
    [
        ("u201", "not offered"),  # Finance, the activity is Sales'
        ("nobody", "No person"),
    ],
)
def test_refused_signup_exits_1_with_the_reason(flask, acme, username, reason):
    activity_id = json.loads(create(flask, "--publish", "--json").output)["id"]

    result = flask("activity", "signup", str(activity_id), username, "--json")

    assert result.exit_code == 1
    assert reason in result.output


def test_a_draft_refuses_signups_and_a_second_signup_is_refused(flask, acme):
    draft = json.loads(create(flask, "--json").output)["id"]
    result = flask("activity", "signup", str(draft), "u111")
    assert (result.exit_code, "draft" in result.output) == (1, True)

    published = json.loads(create(flask, "--publish", "--json").output)["id"]
    assert flask("activity", "signup", str(published), "u111").exit_code == 0
    again = flask("activity", "signup", str(published), "u111")
    assert (again.exit_code, "signed up already" in again.output) == (1, True)


def test_create_from_a_template_keeps_the_link(flask, acme, unit):
    template = ActivityTemplate(
        customer_id=acme.id,
        owner_unit_id=unit("10").id,
        title="Forklift",
        description="Theory and practice",
        default_location="Hall B",
        capacity=8,
    )
    db.session.add(template)
    db.session.commit()

    result = create(flask, "--template", str(template.id), "--json")

    activity = db.session.get(Activity, json.loads(result.output)["id"])
    assert (activity.template_id, activity.location, activity.description) == (
        template.id,
        "Hall B",
        "Theory and practice",
    )
    assert activity.status == "draft"


@pytest.mark.parametrize(
    "change, reason",
    [
        (("--unit", "99"), "no unit numbered 99"),
        (("--customer", "nope"), "No customer"),
        (("--start", "tomorrow"), "is not a date and time"),
        (("--end", "2099-10-24T08:00"), "end after it starts"),
        (("--capacity", "0"), "at least 1"),
    ],
)
def test_create_refuses_with_the_reason(flask, acme, change, reason):
    args = {
        "--customer": "acme",
        "--unit": "10",
        "--title": "T",
        "--start": "2099-10-24T09:00",
        "--end": "2099-10-24T10:00",
        "--capacity": "5",
    }
    args[change[0]] = change[1]

    result = flask("activity", "create", *[part for pair in args.items() for part in pair])

    assert result.exit_code == 1
    assert reason in result.output
    assert db.session.query(Activity).count() == 0
