"""`flask scheduler run|jobs` and `flask drop import` (exit codes as `flask directory import`)."""

import json
import os
import signal
from zoneinfo import ZoneInfo

import click
from flask import current_app

from portal.core.cli import refusals
from portal.core.db import db
from portal.core.errors import UserError
from portal.directory.lookups import require_customer
from sync.run_output import report_run

CLI_ACTOR = "cli"


@click.group("scheduler", help="The process that runs every source on its schedule.")
def scheduler_cli():
    pass


@scheduler_cli.command("run")
def run_command():
    """Run scheduled syncs until stopped (SIGTERM or Ctrl-C finish the running ones first)."""
    from sync.schedule import serve

    serve(current_app._get_current_object())


@scheduler_cli.command("jobs")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def jobs_command(as_json):
    """List the jobs the sources call for, with their next run in the customer's time zone
    (ISO 8601 with its UTC offset; null when the schedule never fires again)."""
    from portal.core import db as core_db
    from sync.schedule import planned_jobs

    now = core_db.utcnow()
    jobs = [
        {
            "id": spec.id,
            "schedule": spec.cron,
            "timezone": spec.zone,
            "next_run": _local_iso(spec.next_fire(now), spec.zone),
        }
        for spec in planned_jobs()
    ]
    if as_json:
        click.echo(json.dumps(jobs))
        return
    for job in jobs:
        click.echo(f"{job['id']}  {job['schedule']}  next {job['next_run'] or 'never'}")


def _local_iso(moment, zone: str) -> str | None:
    return moment and moment.astimezone(ZoneInfo(zone)).isoformat()


@click.group("drop", help="The file drop: each customer's inbox of organisation + persons files.")
def drop_cli():
    pass


@drop_cli.command("import")
@click.argument("slug")
@click.option("--dry-run", is_flag=True, help="Show what would change; change and move nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def drop_import_command(slug, dry_run, as_json):
    """Import the newest complete pair of files in customer SLUG's inbox now, then archive.

    Exit status: 0 applied, dry run or nothing to import, 1 failed (or another import of the
    inbox is going on), 3 held for approval. With nothing to import, --json prints
    {"run_id": null, "status": "nothing_to_import", "message": ...}.
    """
    from sync.drop import import_drop

    with refusals():
        customer = require_customer(slug)
        result = import_drop(customer, actor=CLI_ACTOR, dry_run=dry_run)
    if result.run is None:
        if as_json:
            summary = {
                "run_id": None,
                "status": "nothing_to_import",
                "message": result.message,
                "waiting": result.waiting,
            }
            click.echo(json.dumps(summary, ensure_ascii=False))
        else:
            click.echo(result.message)
            for line in result.waiting:
                click.echo(f"  {line}")
        return
    for line in result.waiting:  # stdout holds the run's summary (one JSON object with --json)
        click.echo(f"Left in the inbox: {line}", err=True)
    report_run(result.run, as_json)


@drop_cli.command("set-password")
@click.argument("slug")
@click.option(
    "--password-env",
    "password_env",
    required=True,
    metavar="VARIABLE",
    help="The environment variable holding the password (never a command-line value).",
)
def set_password_command(slug, password_env):
    """Set the FTPS password of customer SLUG (its user name is SLUG); makes its inbox."""
    from sync.drop_server import set_drop_password

    with refusals():
        customer = require_customer(slug)
    password = os.environ.get(password_env, "")
    if not password:
        raise click.ClickException(
            f"The environment variable {password_env} is empty or not set; put the password in it."
        )
    with refusals():
        set_drop_password(customer, password, actor=CLI_ACTOR)
    db.session.commit()
    click.echo(f"File drop password of {slug} set; it logs in as {slug}.")


@drop_cli.command("serve")
def serve_command():
    """Run the FTPS server of the file drop until stopped (SIGTERM or Ctrl-C)."""
    from sync.drop_server import make_server

    try:
        server = make_server(current_app._get_current_object())
    except (UserError, OSError, ValueError) as exc:
        raise click.ClickException(f"The file drop server cannot start: {exc}") from None
    signal.signal(signal.SIGTERM, _exit_on_signal)
    host, port = server.socket.getsockname()[:2]
    click.echo(f"File drop listening on {host}:{port} (FTPS).")
    server.serve_forever(handle_exit=True)


def _exit_on_signal(signum, frame):
    raise KeyboardInterrupt  # serve_forever closes every connection on it
