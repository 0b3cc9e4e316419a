"""`flask scheduler run|jobs` and `flask drop import` (exit codes as `flask directory import`)."""

import json

import click
from flask import current_app

from portal.core.db import db
from portal.core.errors import UserError
from portal.directory.queries import customer_by_slug

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
    """List the jobs the sources call for, with their next run in the customer's time zone."""
    from portal.core.db import utcnow
    from sync.schedule import planned_jobs

    now = utcnow()
    jobs = [
        {
            "id": spec.id,
            "schedule": spec.cron,
            "timezone": spec.zone,
            "next_run": spec.next_fire(now).isoformat(),
        }
        for spec in planned_jobs()
    ]
    if as_json:
        click.echo(json.dumps(jobs))
        return
    for job in jobs:
        click.echo(f"{job['id']}  {job['schedule']}  next {job['next_run']}")


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
    from sync.cli import _report
    from sync.drop import import_drop

    customer = customer_by_slug(slug)
    if customer is None:
        raise click.ClickException(
            f"No customer with the slug {slug!r}; create it with 'flask customer create'."
        )
    try:
        result = import_drop(customer, actor=CLI_ACTOR, dry_run=dry_run)
    except UserError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from None
    if result.run is None:
        if as_json:
            summary = {"run_id": None, "status": "nothing_to_import", "message": result.message}
            click.echo(json.dumps(summary, ensure_ascii=False))
        else:
            click.echo(result.message)
        return
    _report(result.run, as_json)
