"""Settings: defaults, the KURSA_CONFIG file, KURSA_* variables, and loud failure at start."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from config import ConfigError, load_config


def test_defaults_hold_every_documented_key():
    settings = load_config(environ={})
    assert settings["sync"]["guard_max_inactivations"] == 50
    assert settings["sync"]["guard_max_inactivation_share"] == 0.10
    assert settings["directory"]["default_timezone"] == "Europe/Copenhagen"
    assert settings["database"]["url"] == ""


def test_file_then_environment_override_defaults(tmp_path):
    path = tmp_path / "kursa.toml"
    path.write_text('[sync]\nguard_max_inactivations = 7\n[log]\nlevel = "DEBUG"\n')
    environ = {
        "KURSA_CONFIG": str(path),
        "KURSA_SYNC_GUARD_MAX_INACTIVATIONS": "9",
        "KURSA_DATABASE_URL": "postgresql+psycopg://kursa@db.example.test/kursa",
    }
    settings = load_config(environ=environ)
    assert settings["sync"]["guard_max_inactivations"] == 9
    assert settings["log"]["level"] == "DEBUG"
    assert settings["database"]["url"].startswith("postgresql+psycopg://")


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[sync]\nguard_max_inactivation = 5\n", "unknown setting sync.guard_max_inactivation"),
        ("[nope]\nx = 1\n", "unknown section [nope]"),
        ('[sync]\nguard_max_inactivations = "five"\n', "must be int"),
        ("[sync]\nguard_max_inactivation_share = 1.5\n", "between 0 and 1"),
        ('[log]\nlevel = "LOUD"\n', "log.level"),
        ('[directory]\ndefault_timezone = "Mars/Olympus"\n', "not a known time zone"),
        ('[database]\nurl = "kursa.db"\n', "not a SQLAlchemy URL"),
        ('[customers.acme.columns.persons]\nshoe_size = ["Sko"]\n', "unknown column"),
        ("[sync\n", "not valid TOML"),
        ("[drop]\nmax_connections_per_address = 0\n", "max_connections_per_address must be"),
        ("[drop]\nmax_connections = 5\n", "must not exceed drop.max_connections"),
        ("[drop]\nlogin_seconds = 0\n", "drop.login_seconds must be positive"),
    ],
)
def test_bad_settings_fail_at_start_with_the_key_named(tmp_path, toml, message):
    path = tmp_path / "kursa.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(environ={"KURSA_CONFIG": str(path)})


def test_bad_environment_value_names_the_variable():
    with pytest.raises(ConfigError, match="KURSA_SYNC_BATCH_SIZE='many'"):
        load_config(environ={"KURSA_SYNC_BATCH_SIZE": "many"})


def test_missing_config_file_is_named():
    with pytest.raises(ConfigError, match="/nowhere/kursa.toml"):
        load_config(environ={"KURSA_CONFIG": "/nowhere/kursa.toml"})


def test_customer_column_mapping_is_kept():
    settings = load_config(
        environ={},
        overrides={"customers": {"acme": {"columns": {"persons": {"username": ["Login"]}}}}},
    )
    assert settings["customers"]["acme"]["columns"]["persons"]["username"] == ["Login"]


MAIL_ON = {"host": "smtp.example.test", "from_address": "Kursa <kursa@example.test>"}


@pytest.mark.parametrize(
    ("mail", "message"),
    [
        ({"host": "smtp.example.test"}, "mail.from_address is required"),
        ({**MAIL_ON, "from_address": "kursa"}, "mail.from_address 'kursa' is not an address"),
        ({**MAIL_ON, "from_address": "Kursa <kursa>"}, "mail.from_address"),
        ({**MAIL_ON, "from_address": "Kursa <a@b.test"}, "mail.from_address"),
        ({**MAIL_ON, "from_address": "two words@example.test"}, "mail.from_address"),
        ({**MAIL_ON, "port": 0}, "mail.port 0 is not a port number"),
        ({**MAIL_ON, "port": 65536}, "mail.port 65536"),
        ({**MAIL_ON, "timeout_seconds": 0}, "mail.timeout_seconds must be positive"),
        ({**MAIL_ON, "max_attempts": -1}, "mail.max_attempts must be positive"),
        ({**MAIL_ON, "send_every_seconds": 0}, "mail.send_every_seconds must be positive"),
        ({"port": 70000}, "mail.port 70000"),  # wrong even while mail is off
    ],
)
def test_bad_mail_settings_fail_at_start_with_the_key_named(mail, message):
    with pytest.raises(ConfigError, match=message):
        load_config(environ={}, overrides={"mail": mail})


@pytest.mark.parametrize(
    "mail",
    [
        {},  # mail off: no sender needed
        MAIL_ON,
        {**MAIL_ON, "from_address": "kursa@example.test", "port": 25},
        {**MAIL_ON, "from_address": '"Kursa, HR" <kursa+hr@mail.example.test>'},
    ],
)
def test_good_mail_settings_pass(mail):
    settings = load_config(environ={}, overrides={"mail": mail})
    assert settings["mail"]["send_every_seconds"] == 60


def test_mail_settings_from_the_environment_are_checked():
    environ = {"KURSA_MAIL_HOST": "smtp.example.test", "KURSA_MAIL_FROM_ADDRESS": "nobody"}
    with pytest.raises(ConfigError, match="mail.from_address 'nobody'"):
        load_config(environ=environ)


ROOT = Path(__file__).resolve().parent.parent


def flask_command(args: list[str], tmp_path, **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("KURSA_", "FLASK_"))}
    # A throw-away instance folder and database: the command must fail before touching them.
    environ["KURSA_DATABASE_URL"] = f"sqlite:///{tmp_path / 'kursa.db'}"
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", *args],
        cwd=ROOT,
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("args", [["customer", "--help"], ["customer", "list"], ["run"]])
def test_a_wrong_file_setting_stops_a_command_with_one_line(tmp_path, args):
    path = tmp_path / "bad.toml"
    path.write_text("[web]\nport_x = 3\n")

    done = flask_command(args, tmp_path, KURSA_CONFIG=str(path))

    assert done.returncode == 1
    assert done.stderr == f"Error: {path}: unknown setting web.port_x\n"


def test_an_unknown_key_of_a_declared_source_stops_apply_config_as_any_refusal(tmp_path):
    """Worded as click words a command's refusal ("Error: ..."), not in lower case."""
    path = tmp_path / "bad.toml"
    path.write_text('[ldap_sources.hq]\ncustomer = "acme"\nbogus = 1\n')

    done = flask_command(["directory", "source", "apply-config"], tmp_path, KURSA_CONFIG=str(path))

    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == f"Error: {path}: ldap_sources.hq.bogus: unknown setting\n"


def test_a_wrong_environment_setting_stops_a_command_with_one_line(tmp_path):
    done = flask_command(["customer", "list"], tmp_path, KURSA_SYNC_GUARD_MAX_INACTIVATIONS="abc")

    assert done.returncode == 1
    assert done.stderr == (
        "Error: KURSA_SYNC_GUARD_MAX_INACTIVATIONS='abc': expected a whole number\n"
    )


def test_outside_a_command_a_wrong_setting_raises(tmp_path):
    from app import create_app

    with pytest.raises(ConfigError, match="web.port_x"):
        create_app({"web": {"port_x": 3}}, environ={})
