"""The command-line contract: arguments, JSON shape, exit codes (other tools rely on them)."""

import json

import pytest

from tests.conftest import PERSON_HEADER, csv_bytes
from tests.sync.test_import import PERSONS, UNITS

ORG_HEADER = ["Afdelingsnummer", "Navn", "Overordnet", "Type"]


@pytest.fixture
def files(tmp_path):
    def write(units, persons, persons_header=PERSON_HEADER):
        org = tmp_path / "org.csv"
        people = tmp_path / "persons.csv"
        org.write_bytes(csv_bytes([ORG_HEADER, *units]))
        people.write_bytes(csv_bytes([persons_header, *persons]))
        return ["--org", str(org), "--persons", str(people)]

    return write


@pytest.fixture
def flask(app):
    runner = app.test_cli_runner()

    def invoke(*args):
        return runner.invoke(args=list(args), catch_exceptions=False)

    return invoke


def test_customer_create_then_import_json(flask, files):
    result = flask(
        "customer",
        "create",
        "acme",
        "--name",
        "Acme A/S",
        "--username-prefix",
        "ACME_",
        "--match-by",
        "number",
    )
    assert result.exit_code == 0, result.output

    result = flask("directory", "import", "--customer", "acme", *files(UNITS, PERSONS), "--json")
    assert result.exit_code == 0
    body = json.loads(result.stdout)
    assert set(body) == {"run_id", "status", "counts", "issues"}
    assert body["status"] == "applied"
    assert body["counts"] == {
        "units": {"created": 3, "updated": 0, "moved": 0, "inactivated": 0},
        "persons": {"created": 3, "updated": 0, "moved": 0, "inactivated": 0, "reactivated": 0},
    }
    assert body["issues"] == []


def test_issues_in_json_name_file_row_column_value(flask, files, customer):
    rows = [*PERSONS, ["u9", "Ida", "Lund", "nope", "", "20"]]
    result = flask("directory", "import", "--customer", "acme", *files(UNITS, rows), "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["issues"] == [
        {
            "file": "persons.csv",
            "row": 5,
            "column": "Email",
            "value": "nope",
            "message": "This is not an email address.",
        }
    ]


def test_dry_run_exits_0_and_failed_run_exits_1(flask, files, customer):
    result = flask(
        "directory", "import", "--customer", "acme", *files(UNITS, PERSONS), "--dry-run", "--json"
    )
    assert (result.exit_code, json.loads(result.stdout)["status"]) == (0, "dry_run")

    broken = files(UNITS, PERSONS, persons_header=["Username", "First name"])
    result = flask("directory", "import", "--customer", "acme", *broken, "--json")
    body = json.loads(result.stdout)
    assert (result.exit_code, body["status"]) == (1, "failed")
    assert body["issues"][0]["file"] == "persons.csv"


def test_a_dry_run_that_would_be_held_says_so_in_its_json_issues(
    flask, files, customer, guard_limits
):
    flask("directory", "import", "--customer", "acme", *files(UNITS, PERSONS), "--json")
    guard_limits(count=0, share=1.0)
    leaving = files(UNITS, PERSONS[:1])

    result = flask("directory", "import", "--customer", "acme", *leaving, "--dry-run", "--json")
    body = json.loads(result.stdout)
    text = flask("directory", "import", "--customer", "acme", *leaving, "--dry-run").output

    assert (result.exit_code, body["status"]) == (0, "dry_run")
    assert set(body) == {"run_id", "status", "counts", "issues"}
    [issue] = body["issues"]
    assert (issue["file"], issue["row"], issue["column"], issue["value"]) == (None,) * 4
    assert issue["message"].startswith("Applying this preview would be held: The run would")
    assert issue["message"] in text and text.count("would be held") == 1


def test_a_missing_file_with_json_prints_a_failed_object_naming_it(flask, files, customer):
    given = files(UNITS, PERSONS)
    missing = given[3] + ".gone"

    result = flask("directory", "import", "--customer", "acme", "--org", given[1],
                   "--persons", missing, "--json")  # fmt: skip
    body = json.loads(result.stdout)

    assert result.exit_code == 1
    assert (body["run_id"], body["status"]) == (None, "failed")
    assert set(body) == {"run_id", "status", "counts", "issues"}
    assert body["counts"]["persons"]["created"] == 0
    assert body["issues"] == [
        {
            "file": missing,
            "row": None,
            "column": None,
            "value": None,
            "message": "The file cannot be read: No such file or directory.",
        }
    ]


def test_held_run_exits_3_and_approve_applies_it(flask, files, customer, guard_limits):
    flask("directory", "import", "--customer", "acme", *files(UNITS, PERSONS), "--json")
    guard_limits(count=0, share=1.0)
    result = flask(
        "directory", "import", "--customer", "acme", *files(UNITS, PERSONS[:1]), "--json"
    )
    body = json.loads(result.stdout)
    assert (result.exit_code, body["status"]) == (3, "held")
    [issue] = body["issues"]  # the hold's reason, as a dry run that would be held carries it
    assert (issue["file"], issue["row"], issue["column"], issue["value"]) == (None,) * 4
    assert issue["message"] == (
        "This run is held for approval: The run would inactivate 2 of 3 active persons, more "
        "than the limit of 0. Check the source; approve the run if this is right."
    )

    result = flask("directory", "approve", str(body["run_id"]))
    assert result.exit_code == 0, result.output
    assert "applied" in result.output

    export = json.loads(flask("directory", "export", "--customer", "acme", "--json").stdout)
    assert [p["active"] for p in export["persons"]] == [True, False, False]


def test_a_held_run_without_json_prints_its_reason_once(flask, files, customer, guard_limits):
    flask("directory", "import", "--customer", "acme", *files(UNITS, PERSONS), "--json")
    guard_limits(count=0, share=1.0)

    result = flask("directory", "import", "--customer", "acme", *files(UNITS, PERSONS[:1]))

    assert result.exit_code == 3
    assert "persons, if applied: 0 created, 0 updated, 0 moved, 2 inactivated" in result.output
    assert "Held: The run would inactivate 2 of 3" in result.output
    assert result.output.count("would inactivate 2 of 3") == 1


def test_an_unknown_customer_with_json_prints_a_failed_object_naming_it(flask, files, app):
    result = flask("directory", "import", "--customer", "nosuch", *files(UNITS, PERSONS), "--json")
    body = json.loads(result.stdout)

    assert result.exit_code == 1
    assert (body["run_id"], body["status"]) == (None, "failed")
    assert body["counts"]["persons"] == dict.fromkeys(body["counts"]["persons"], 0)
    [issue] = body["issues"]
    assert (issue["file"], issue["row"], issue["column"], issue["value"]) == (
        None, None, "customer", "nosuch"
    )  # fmt: skip
    assert "nosuch" in issue["message"]


def test_revert_command(flask, files, customer):
    first = flask("directory", "import", "--customer", "acme", *files(UNITS, PERSONS), "--json")
    run_id = json.loads(first.stdout)["run_id"]
    result = flask("directory", "revert", str(run_id))
    assert result.exit_code == 0, result.output
    export = json.loads(flask("directory", "export", "--customer", "acme", "--json").stdout)
    assert not any(p["active"] for p in export["persons"])

    again = flask("directory", "revert", str(run_id))
    assert again.exit_code == 1 and "reverted already" in again.output


def test_progress_and_summary_without_json(flask, files, customer):
    result = flask("directory", "import", "--customer", "acme", *files(UNITS, PERSONS))
    assert result.exit_code == 0
    assert "Run 1: applied" in result.output
    assert "persons: 3 created" in result.output


def test_the_summary_gives_the_report_address_when_a_base_url_is_set(
    app, flask, files, customer, monkeypatch
):
    plain = flask("directory", "import", "--customer", "acme", *files(UNITS, PERSONS))
    monkeypatch.setitem(app.config["KURSA"]["web"], "base_url", "https://kursa.example.test/")
    dry = flask("directory", "import", "--customer", "acme", *files(UNITS, PERSONS), "--dry-run")
    as_json = flask("directory", "import", "--customer", "acme", *files(UNITS, PERSONS), "--json")

    assert "Report:" not in plain.output
    lines = dry.output.splitlines()
    [summary] = [n for n, line in enumerate(lines) if line.startswith("Run 2: dry run in ")]
    assert lines[summary + 1] == "Report: https://kursa.example.test/sync/runs/2"
    assert app.url_map.bind("").match("/sync/runs/2") == ("sync.run", {"run_id": 2})
    assert json.loads(as_json.stdout)["run_id"] == 3 and "Report" not in as_json.stdout


def test_export_json_contract(flask, files, customer):
    flask("directory", "import", "--customer", "acme", *files(UNITS, PERSONS), "--json")
    export = json.loads(flask("directory", "export", "--customer", "acme", "--json").stdout)
    assert export["units"] == [
        {"number": "10", "name": "Sales", "parent": None, "kind": "division", "active": True},
        {
            "number": "20",
            "name": "Sales North",
            "parent": "10",
            "kind": "department",
            "active": True,
        },
        {"number": "30", "name": "Warehouse", "parent": None, "kind": "location", "active": True},
    ]
    assert export["persons"][0] == {
        "username": "u1",
        "first_name": "Ida",
        "last_name": "Lund",
        "email": "ida@example.test",
        "employee_number": "00123",
        "unit": "20",
        "active": True,
    }


def test_unknown_customer_is_a_clear_error(flask, files):
    result = flask("directory", "import", "--customer", "nobody", *files(UNITS, PERSONS))
    assert result.exit_code == 1
    assert "No customer with the slug 'nobody'" in result.output


def test_customer_create_refuses_a_bad_slug_and_a_duplicate(flask):
    assert flask("customer", "create", "Bad Slug", "--name", "X").exit_code == 1
    assert flask("customer", "create", "acme", "--name", "Acme").exit_code == 0
    again = flask("customer", "create", "acme", "--name", "Acme")
    assert again.exit_code == 1 and "exists already" in again.output


def test_demo_imports_through_the_real_path_once(flask):
    result = flask("demo")
    assert result.exit_code == 0, result.output
    assert "500 persons created" in result.output
    export = json.loads(flask("directory", "export", "--customer", "demo", "--json").stdout)
    assert len(export["persons"]) == 500 and all(p["active"] for p in export["persons"])
    assert all(p["username"].startswith("DEMO_") for p in export["persons"])

    again = flask("demo")
    assert again.exit_code == 0 and "exists already" in again.output
