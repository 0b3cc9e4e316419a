"""`flask directory source add-ldap|list|test` and `flask directory sync` (a contract).

`sync` prints the same JSON and uses the same exit codes as `flask directory import`:
0 applied or dry run, 1 failed, 3 held for approval.
"""

import json
import os

import click
from flask import current_app

from portal.core.cli import refusals
from portal.core.db import db
from portal.core.errors import UserError
from portal.directory.lookups import require_customer
from sync.run_output import report_run, run_refusals
from sync.sources.ldap import operations
from sync.sources.ldap.declared import DeclaredSourceError, apply_declared
from sync.sources.ldap.profiles import ORG_FROM, PROFILES

CLI_ACTOR = "cli"


@click.group("source", help="Directory sources (LDAP, Active Directory) synced by name.")
def source_cli():
    pass


@source_cli.command("add-ldap")
@click.argument("name")
@click.option("--customer", "slug", required=True, help="The customer's slug.")
@click.option("--profile", type=click.Choice(PROFILES), required=True)
@click.option("--uri", required=True, help="ldap://host, ldaps://host:636 or ldapi://...")
@click.option("--bind-dn", required=True, help="The DN of the account Kursa reads with.")
@click.option(
    "--password-env",
    "password_env",
    required=True,
    metavar="VARIABLE",
    help="The environment variable holding the bind password (never a command-line value).",
)
@click.option("--user-base", "user_bases", required=True, multiple=True, help="Repeatable.")
@click.option("--user-filter", help="LDAP filter of persons; the profile has a default.")
@click.option("--org-from", type=click.Choice(ORG_FROM), default="ou", show_default=True)
@click.option("--org-base", help="Base DN of the OU tree (for --org-from ou).")
@click.option(
    "--schedule",
    default=operations.DEFAULT_SCHEDULE,
    show_default=True,
    help="Cron of the full runs, in the customer's time zone.",
)
@click.option(
    "--delta-schedule",
    metavar="CRON",
    help="Cron of incremental runs in between, e.g. '*/15 * * * *' (default: none).",
)
@click.option("--inactive-filter", help="OpenLDAP: persons also matching this are inactive.")
@click.option(
    "--member-of",
    "member_of",
    multiple=True,
    metavar="DN",
    help="Sync only members of this group (repeatable; any of them). Default: everyone.",
)
def add_ldap_command(
    name, slug, profile, uri, bind_dn, password_env, user_bases, user_filter, org_from, org_base,
    schedule, delta_schedule, inactive_filter, member_of,
):  # fmt: skip
    """Add LDAP source NAME for a customer (test it with 'flask directory source test')."""
    customer = _call(require_customer, slug)
    password = os.environ.get(password_env, "")
    if not password:
        raise click.ClickException(
            f"The environment variable {password_env} is empty or not set; "
            "put the bind password in it."
        )
    settings = {"uri": uri, "bind_dn": bind_dn, "user_bases": list(user_bases)}
    settings["org_from"] = org_from
    if user_filter:
        settings["user_filter"] = user_filter
    if org_base:
        settings["org_base"] = org_base
    if inactive_filter:
        settings["inactive_filter"] = inactive_filter
    if member_of:
        settings["member_of"] = list(member_of)
    _call(
        operations.add_ldap_source,
        customer,
        name,
        profile=profile,
        settings=settings,
        password=password,
        schedule=schedule,
        delta_schedule=delta_schedule,
        actor=CLI_ACTOR,
    )
    db.session.commit()
    click.echo(f"Source {name} added for {slug}. Test it with: flask directory source test {name}")


@source_cli.command("apply-config")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def apply_config_command(as_json):
    """Create or update the sources declared in the config file ([ldap_sources.<name>]).

    All or nothing: a wrong table is named and nothing changes (exit 1; with --json one
    object {"status": "failed", "setting", "message"})."""
    declared = current_app.config["KURSA"].get("ldap_sources", {})
    try:
        applied = apply_declared(declared, os.environ)
        db.session.commit()
    except UserError as exc:
        db.session.rollback()
        if not as_json:
            raise click.ClickException(str(exc)) from None
        setting = exc.setting if isinstance(exc, DeclaredSourceError) else "ldap_sources"
        refused = {"status": "failed", "setting": setting, "message": str(exc)}
        click.echo(json.dumps(refused, ensure_ascii=False))
        raise SystemExit(1) from None
    if as_json:
        click.echo(json.dumps([{"name": a.name, "outcome": a.outcome} for a in applied]))
        return
    if not applied:
        click.echo("The config file declares no LDAP sources ([ldap_sources.<name>]).")
    for item in applied:
        click.echo(f"{item.name}: {item.outcome}")


@source_cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_command(as_json):
    """List the directory sources of every customer."""
    sources = [operations.describe(s) for s in operations.list_sources()]
    if as_json:
        click.echo(json.dumps(sources, ensure_ascii=False))
        return
    if not sources:
        click.echo("No sources; add one with 'flask directory source add-ldap'.")
    for s in sources:
        click.echo(
            f"{s['name']}  {s['customer']}  {s['profile']}  {s['uri']}  schedule {s['schedule']}"
            + (f"  incremental {s['delta_schedule']}" if s["delta_schedule"] else "")
            + ("" if s["enabled"] else "  DISABLED (no runs until enabled)")
        )


@source_cli.command("schedule")
@click.argument("name")
@click.option("--schedule", metavar="CRON", help="Cron of the full runs.")
@click.option("--delta-schedule", metavar="CRON", help="Cron of incremental runs; '' removes them.")
def schedule_command(name, schedule, delta_schedule):
    """Change the schedules of source NAME (customer's time zone)."""
    source = _call(operations.source_by_name, name)
    _call(
        operations.update_ldap_source,
        source,
        profile=source.profile,
        settings=source.settings,
        password=None,
        schedule=schedule or source.schedule,
        delta_schedule=source.delta_schedule if delta_schedule is None else delta_schedule,
        actor=CLI_ACTOR,
    )
    db.session.commit()
    delta = f", incremental {source.delta_schedule}" if source.delta_schedule else ""
    click.echo(f"Source {name}: full runs {source.schedule}{delta}.")


@source_cli.command("enable")
@click.argument("name")
def enable_command(name):
    """Enable source NAME: its schedules run again."""
    operations.set_enabled(_call(operations.source_by_name, name), True, actor=CLI_ACTOR)
    db.session.commit()
    click.echo(f"Source {name} is enabled.")


@source_cli.command("disable")
@click.argument("name")
def disable_command(name):
    """Disable source NAME: no scheduled or manual runs until it is enabled."""
    operations.set_enabled(_call(operations.source_by_name, name), False, actor=CLI_ACTOR)
    db.session.commit()
    click.echo(f"Source {name} is disabled.")


@source_cli.command("delete")
@click.argument("name")
def delete_command(name):
    """Delete source NAME; one with runs is disabled instead, so its history stays."""
    outcome = operations.delete_source(_call(operations.source_by_name, name), actor=CLI_ACTOR)
    db.session.commit()
    if outcome == "deleted":
        click.echo(f"Source {name} is deleted.")
    else:
        click.echo(
            f"Source {name} has runs (or one is going on), so it is disabled instead of deleted."
        )


@source_cli.command("test")
@click.argument("name")
def test_command(name):
    """Connect to source NAME and count what a full run would read; change nothing."""
    source = _call(operations.source_by_name, name)
    result = _call(operations.check_source, source)
    if not result.ok:
        raise click.ClickException(result.message)
    click.echo(result.message)


@click.command("sync")
@click.argument("name")
@click.option("--full", is_flag=True, help="Read everything; catches deletions.")
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def sync_command(name, full, dry_run, as_json):
    """Sync directory source NAME now (incremental unless --full or first run).

    Exit status: 0 applied or dry run, 1 failed (or another run of NAME is going on), 3 held
    for approval.
    """
    with run_refusals(as_json, column="name", value=name):
        source = operations.source_by_name(name)
        run = operations.sync_source(source, actor=CLI_ACTOR, full=full, dry_run=dry_run)
    report_run(run, as_json)


ldap_commands = [source_cli, sync_command]


def _call(operation, *args, **kwargs):
    with refusals():
        return operation(*args, **kwargs)
