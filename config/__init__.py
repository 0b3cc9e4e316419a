"""Kursa's settings: defaults.toml, then the file named by KURSA_CONFIG, then KURSA_* variables.

Every key is declared once in defaults.toml. Anything else, or a value of the wrong type, is a
ConfigError at start, so a typo fails loudly at boot instead of at 02:00 in the scheduler.
"""

import copy
import os
import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULTS_PATH = Path(__file__).with_name("defaults.toml")
LOG_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR"}
PERSON_FIELDS = {
    "username",
    "first_name",
    "last_name",
    "email",
    "employee_number",
    "division_number",
    "division_name",
}
ORG_FIELDS = {"number", "name", "parent", "kind"}
# [ldap_sources.<name>]: LDAP sources declared in the file (`flask directory source
# apply-config`). Besides these, a table takes the settings keys of sync.sources.ldap.profiles
# (LDAP_SETTING_KEYS; a test holds the two lists in step; config imports no package of Kursa).
LDAP_SOURCE_REQUIRED = {"customer": str, "profile": str, "password_env": str}
LDAP_SOURCE_OPTIONAL = {"schedule": str, "delta_schedule": str, "enabled": bool}
LDAP_SETTING_KEYS = {
    "uri", "bind_dn", "user_bases", "org_from", "org_base", "unit_number_attribute",
    "page_size", "network_timeout", "timeout", "ca_file", "starttls", "verify_certificates",
    "attributes", "user_filter", "ou_filter", "inactive_filter", "ca_pem",
    "member_of",
}  # fmt: skip
# What each of them holds, checked at start: a table is TOML the admin typed, and a wrong type
# (uri = 5, verify_certificates = 0, user_bases = "ou=a,dc=x") would fail later or, worse,
# be read as something else. Key -> what the value must be, in words for the message.
TEXT, FLAG, WHOLE, NUMBER = "text", "true or false", "a whole number", "a number"
TEXTS, NAMES = "a list of texts", 'a table of attribute names (field = "name")'
LDAP_SETTING_TYPES = {
    "uri": TEXT, "bind_dn": TEXT, "user_bases": TEXTS, "org_from": TEXT, "org_base": TEXT,
    "unit_number_attribute": TEXT, "page_size": WHOLE, "network_timeout": NUMBER,
    "timeout": NUMBER, "ca_file": TEXT, "starttls": FLAG, "verify_certificates": FLAG,
    "attributes": NAMES, "user_filter": TEXT, "ou_filter": TEXT, "inactive_filter": TEXT,
    "ca_pem": TEXT, "member_of": TEXTS,
}  # fmt: skip
# An address with one @ and no spaces or brackets; "Name <address>" around it is allowed.
ADDRESS = re.compile(r"[^@\s<>\"]+@[^@\s<>\"]+")
NAMED_ADDRESS = re.compile(r"[^<>@]*<([^<>]*)>")


class ConfigError(Exception):
    """A setting is unknown, of the wrong type or out of range."""


def load_config(environ=None, overrides: dict | None = None) -> dict[str, Any]:
    """Return the validated settings as nested dicts."""
    environ = os.environ if environ is None else environ
    with DEFAULTS_PATH.open("rb") as fh:
        defaults = tomllib.load(fh)
    settings = copy.deepcopy(defaults)

    path = environ.get("KURSA_CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                _merge(settings, defaults, tomllib.load(fh), origin=path)
        except OSError as exc:
            raise ConfigError(f"KURSA_CONFIG names {path!r}, which cannot be read: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc

    _merge(settings, defaults, _from_environment(environ, defaults), origin="environment")
    if overrides:
        _merge(settings, defaults, overrides, origin="overrides")
    _validate(settings)
    return settings


def _from_environment(environ, defaults) -> dict:
    found: dict[str, dict] = {}
    for section, keys in defaults.items():
        for key, default in keys.items():
            name = f"KURSA_{section}_{key}".upper()
            if name in environ:
                found.setdefault(section, {})[key] = _parse_env(name, environ[name], default)
    return found


def _parse_env(name: str, raw: str, default):
    if isinstance(default, bool):
        if raw.lower() in {"1", "true", "yes", "on"}:
            return True
        if raw.lower() in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{name}={raw!r}: expected true or false")
    if isinstance(default, list):
        return [item.strip() for item in raw.split(",") if item.strip()]
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r}: expected a whole number") from None
    if isinstance(default, float):
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r}: expected a number") from None
    return raw


def _merge(settings: dict, defaults: dict, new: dict, origin: str) -> None:
    for section, values in new.items():
        if section == "customers":
            settings.setdefault("customers", {})
            _merge_customers(settings["customers"], values, origin)
            continue
        if section == "ldap_sources":
            settings.setdefault("ldap_sources", {})
            _merge_ldap_sources(settings["ldap_sources"], values, origin)
            continue
        if section not in defaults or not isinstance(values, dict):
            raise ConfigError(f"{origin}: unknown section [{section}]")
        for key, value in values.items():
            if key not in defaults[section]:
                raise ConfigError(f"{origin}: unknown setting {section}.{key}")
            default = defaults[section][key]
            if (
                isinstance(default, float)
                and isinstance(value, int)
                and not isinstance(value, bool)
            ):
                value = float(value)
            if type(value) is not type(default):
                expected = type(default).__name__
                raise ConfigError(f"{origin}: {section}.{key} must be {expected}, not {value!r}")
            settings[section][key] = value


def _merge_customers(target: dict, customers: dict, origin: str) -> None:
    if not isinstance(customers, dict):
        raise ConfigError(f"{origin}: [customers] must be a table of customer slugs")
    for slug, values in customers.items():
        unknown = set(values) - {"columns"}
        if unknown:
            raise ConfigError(f"{origin}: unknown setting customers.{slug}.{sorted(unknown)[0]}")
        columns = values.get("columns", {})
        for kind, fields in (("persons", PERSON_FIELDS), ("org", ORG_FIELDS)):
            for field, headers in columns.get(kind, {}).items():
                where = f"customers.{slug}.columns.{kind}.{field}"
                if field not in fields:
                    raise ConfigError(
                        f"{origin}: {where}: unknown column, use one of {', '.join(sorted(fields))}"
                    )
                if not isinstance(headers, list) or not all(isinstance(h, str) for h in headers):
                    raise ConfigError(f"{origin}: {where} must be a list of header names")
        extra = set(columns) - {"persons", "org"}
        if extra:
            raise ConfigError(
                f"{origin}: customers.{slug}.columns.{sorted(extra)[0]} is unknown; "
                "use persons or org"
            )
        target.setdefault(slug, {}).update(values)


def _merge_ldap_sources(target: dict, sources: dict, origin: str) -> None:
    """Check the shape of each declared source and the type of each value; the sync checks
    the values when it applies them (with the same rules as the page), naming
    ldap_sources.<name>.<key>."""
    if not isinstance(sources, dict) or not all(isinstance(v, dict) for v in sources.values()):
        raise ConfigError(f"{origin}: [ldap_sources] must be a table of source names")
    for name, values in sources.items():
        where = f"{origin}: ldap_sources.{name}"
        known = set(LDAP_SOURCE_REQUIRED) | set(LDAP_SOURCE_OPTIONAL) | LDAP_SETTING_KEYS
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]}: unknown setting")
        for key, kind in (LDAP_SOURCE_REQUIRED | LDAP_SOURCE_OPTIONAL).items():
            if key in LDAP_SOURCE_REQUIRED and key not in values:
                raise ConfigError(f"{where}: {key} is required")
            if key in values and not isinstance(values[key], kind):
                raise ConfigError(f"{where}.{key} must be {kind.__name__}, not {values[key]!r}")
        for key, value in values.items():
            wanted = ldap_setting_type_error(key, value)
            if wanted:
                raise ConfigError(f"{where}.{key} must be {wanted}, not {value!r:.80}")
        target[name] = values


def ldap_setting_type_error(key: str, value) -> str:
    """'' when `value` has the type LDAP setting `key` takes, else what it must be."""
    wanted = LDAP_SETTING_TYPES.get(key)
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    fits = {
        None: True,
        TEXT: isinstance(value, str),
        FLAG: isinstance(value, bool),
        WHOLE: is_number and isinstance(value, int),
        NUMBER: is_number,
        TEXTS: isinstance(value, list) and all(isinstance(v, str) for v in value),
        NAMES: isinstance(value, dict) and all(isinstance(v, str) for v in value.values()),
    }[wanted]
    return "" if fits else wanted


def _validate(settings: dict) -> None:
    if settings["log"]["level"].upper() not in LOG_LEVELS:
        raise ConfigError(f"log.level must be one of {', '.join(sorted(LOG_LEVELS))}")
    share = settings["sync"]["guard_max_inactivation_share"]
    if not 0.0 <= share <= 1.0:
        raise ConfigError(f"sync.guard_max_inactivation_share must be between 0 and 1, not {share}")
    for key in ("guard_max_inactivations", "batch_size"):
        if settings["sync"][key] < 0 or (key == "batch_size" and settings["sync"][key] == 0):
            raise ConfigError(f"sync.{key} must be positive")
    _validate_ldap_hosts(settings["sync"]["allowed_ldap_hosts"])
    if settings["web"]["max_upload_mb"] <= 0:
        raise ConfigError("web.max_upload_mb must be positive")
    _validate_sessions(settings["web"])
    _validate_base_url(settings["web"]["base_url"])
    try:
        ZoneInfo(settings["directory"]["default_timezone"])
    except (ZoneInfoNotFoundError, ValueError):
        zone = settings["directory"]["default_timezone"]
        raise ConfigError(f"directory.default_timezone {zone!r} is not a known time zone") from None
    _validate_schedule(settings)
    _validate_mail(settings["mail"])
    url = settings["database"]["url"]
    if url and "://" not in url:
        raise ConfigError(f"database.url {url!r} is not a SQLAlchemy URL (dialect://...)")


def _validate_sessions(web: dict) -> None:
    for key in ("session_lifetime_minutes", "session_idle_minutes"):
        if web[key] <= 0:
            raise ConfigError(f"web.{key} must be positive, not {web[key]}")
    if web["session_idle_minutes"] > web["session_lifetime_minutes"]:
        raise ConfigError("web.session_idle_minutes must not exceed web.session_lifetime_minutes")
    if not 0 <= web["trusted_proxies"] <= 10:
        raise ConfigError(
            f"web.trusted_proxies must be the number of proxies in front (0-10), "
            f"not {web['trusted_proxies']}"
        )
    attempts = web["login_attempts_per_minute"]
    if attempts <= 0:
        raise ConfigError(f"web.login_attempts_per_minute must be positive, not {attempts}")


def _validate_ldap_hosts(entries: list) -> None:
    from sync.sources.ldap.reach import check_allowed_hosts_setting

    bad = check_allowed_hosts_setting(entries)
    if bad:
        raise ConfigError(
            f"sync.allowed_ldap_hosts: {bad} is not a host name, a .suffix or an address/network"
        )


def _validate_schedule(settings: dict) -> None:
    for section, key in (
        ("schedule", "lock_seconds"),
        ("schedule", "refresh_seconds"),
        ("schedule", "poll_seconds"),
        ("schedule", "misfire_grace_seconds"),
        ("schedule", "workers"),
        ("drop", "keep_days"),
        ("drop", "max_connections"),
        ("drop", "max_connections_per_address"),
        ("drop", "login_seconds"),
    ):
        if settings[section][key] <= 0:
            raise ConfigError(f"{section}.{key} must be positive")
    if settings["drop"]["max_connections_per_address"] > settings["drop"]["max_connections"]:
        raise ConfigError("drop.max_connections_per_address must not exceed drop.max_connections")
    if settings["drop"]["settle_seconds"] < 0:
        raise ConfigError("drop.settle_seconds must not be negative")
    ports = settings["drop"]["passive_ports"]
    if ports and not re.fullmatch(r"\d{1,5}-\d{1,5}", ports):
        raise ConfigError(f"drop.passive_ports {ports!r} is not a range such as '60000-60099'")
    if not 0 < settings["drop"]["ftps_port"] < 65536:
        raise ConfigError("drop.ftps_port must be a port number (1-65535)")
    cron = settings["drop"]["schedule"]
    if not cron_is_valid(cron):
        raise ConfigError(f"drop.schedule {cron!r} is not a cron expression such as '0 2 * * *'")
    if not cron_ever_fires(cron):
        raise ConfigError(f"drop.schedule {cron!r} never runs (no date such as 31 February)")


def _validate_base_url(url: str) -> None:
    """An absolute http(s) address without query or fragment: mails append paths to it."""
    if not url:
        return
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(
            f"web.base_url {url!r} is not the portal's address such as "
            "'https://kursa.example.test' (http or https, a host, no query)"
        )


def _validate_mail(mail: dict) -> None:
    if not 0 < mail["port"] < 65536:
        raise ConfigError(f"mail.port {mail['port']} is not a port number (1-65535)")
    for key in ("timeout_seconds", "max_attempts", "send_every_seconds"):
        if mail[key] <= 0:
            raise ConfigError(f"mail.{key} must be positive, not {mail[key]}")
    if not mail["host"]:
        return
    if not mail["from_address"]:
        raise ConfigError("mail.from_address is required when mail.host is set")
    if not is_address(mail["from_address"]):
        raise ConfigError(
            f"mail.from_address {mail['from_address']!r} is not an address such as "
            "'kursa@example.com' or 'Kursa <kursa@example.com>'"
        )


def is_address(value: str) -> bool:
    """'kursa@example.com' or 'Kursa <kursa@example.com>'."""
    value = value.strip()
    named = NAMED_ADDRESS.fullmatch(value)
    return bool(ADDRESS.fullmatch(named.group(1) if named else value))


def cron_is_valid(cron: str) -> bool:
    """Five cron fields (minute hour day month weekday) the scheduler understands."""
    from sync.cron import is_valid

    return is_valid(cron)


def cron_ever_fires(cron: str) -> bool:
    """Whether a valid cron expression ever fires ("0 2 31 2 *" does not)."""
    from sync.cron import ever_fires

    return ever_fires(cron)
