"""`flask directory import|approve|revert` and `flask demo` (exit codes are a contract)."""

import tempfile
from pathlib import Path

import click

from portal.core.cli import ID
from portal.core.db import db
from portal.directory.lookups import require_customer
from portal.directory.operations import create_customer
from portal.directory.queries import customer_by_slug
from sync.approval import apply_preview, approve_run, discard_run
from sync.models import RunStatus, SyncRun
from sync.records import Issue
from sync.revert import revert_run
from sync.run_output import exit_failed, report_run, run_refusals
from sync.runs import FileInput, import_files
from sync.sources_cli import ldap_commands

CLI_ACTOR = "cli"
STAGES = ("read", "plan", "units", "persons")


@click.command("import")
@click.option("--customer", "slug", required=True, help="The customer's slug.")
@click.option(
    "--org",
    "org_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="The organisation file (CSV or XLSX).",
)
@click.option(
    "--persons",
    "persons_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="The persons file (CSV or XLSX).",
)
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object, no progress.")
def import_command(slug, org_path, persons_path, dry_run, as_json):
    """Import a customer's organisation and persons files.

    Exit status: 0 applied or dry run, 1 failed, 3 held for approval.
    """
    with run_refusals(as_json, column="customer", value=slug):
        customer = require_customer(slug)
    org, persons = _read(org_path, as_json), _read(persons_path, as_json)
    if as_json:
        run = import_files(customer, org, persons, actor=CLI_ACTOR, dry_run=dry_run)
    else:
        with click.progressbar(length=100, label="Importing", show_percent=True) as bar:
            run = import_files(
                customer,
                org,
                persons,
                actor=CLI_ACTOR,
                dry_run=dry_run,
                progress=_bar_progress(bar),
            )
    report_run(run, as_json)


@click.command("approve")
@click.argument("run_id", type=ID)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def approve_command(run_id, as_json):
    """Apply held run RUN_ID (or apply the files a dry run previewed)."""
    run = _call(_approve_or_apply, run_id, as_json)
    report_run(run, as_json)


@click.command("discard")
@click.argument("run_id", type=ID)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def discard_command(run_id, as_json):
    """Close held run RUN_ID without applying it (nothing changes; exit 0)."""
    run = _call(discard_run, run_id, as_json)
    report_run(run, as_json)


@click.command("revert")
@click.argument("run_id", type=ID)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def revert_command(run_id, as_json):
    """Undo what applied run RUN_ID changed (recorded as a new run)."""
    run = _call(revert_run, run_id, as_json)
    report_run(run, as_json)


directory_commands = [
    import_command,
    approve_command,
    discard_command,
    revert_command,
    *ldap_commands,
]


@click.command("demo")
@click.option("--customer", "slug", default="demo", show_default=True)
def demo_command(slug):
    """Create the demo customer and import its generated files (safe to run again)."""
    from sync.demo import write_demo_files

    customer = customer_by_slug(slug)
    if customer is not None:
        click.echo(f"Demo customer {slug} exists already; nothing imported.")
        return
    customer = create_customer(slug, "Demo A/S", actor=CLI_ACTOR, username_prefix="DEMO_")
    db.session.commit()
    with tempfile.TemporaryDirectory() as folder:
        org_path, persons_path = write_demo_files(Path(folder))
        run = import_files(
            customer, FileInput.from_path(org_path), FileInput.from_path(persons_path), actor="demo"
        )
    counts = run.counts["persons"]
    click.echo(
        f"Demo customer {slug}: run {run.id} {run.status}, "
        f"{counts['created']} persons created, {counts['updated']} updated."
    )


def _approve_or_apply(run_id: int, *, actor: str) -> SyncRun:
    run = db.session.get(SyncRun, run_id)
    if run is not None and run.status == RunStatus.DRY_RUN:
        return apply_preview(run_id, actor=actor)
    return approve_run(run_id, actor=actor)


def _call(operation, run_id: int, as_json: bool) -> SyncRun:
    """The run the operation leaves; a refusal (not held, no such run) is exit 1, with --json
    as a failed run's object whose one issue names the run, as for import and sync."""
    with run_refusals(as_json, column="run_id", value=str(run_id)):
        return operation(run_id, actor=CLI_ACTOR)


def _read(path: str, as_json: bool) -> FileInput:
    """The file, or exit 1: with --json as a failed run's object naming the file (no run is
    started, so run_id is null), else as one plain sentence."""
    try:
        return FileInput.from_path(path)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if not as_json:
            raise click.ClickException(f"{path}: {reason}") from None
    exit_failed(Issue(f"The file cannot be read: {reason}.", file=path))


def _bar_progress(bar):
    shown = {"value": 0}

    def progress(stage: str, done: float) -> None:
        index = STAGES.index(stage) if stage in STAGES else len(STAGES) - 1
        target = int((index + done) * 100 / len(STAGES))
        if target > shown["value"]:
            bar.update(target - shown["value"])
            shown["value"] = target

    return progress
