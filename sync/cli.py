"""`flask directory import|approve|revert` and `flask demo` (exit codes are a contract)."""

import json
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from flask import current_app

from portal.core.cli import ID, refusals
from portal.core.db import db
from portal.core.errors import UserError
from portal.directory.lookups import require_customer
from portal.directory.operations import create_customer
from portal.directory.queries import customer_by_slug
from sync.approval import apply_preview, approve_run, discard_run
from sync.models import RunStatus, SyncRun
from sync.plan.changes import counts_from_tally
from sync.records import Issue
from sync.report import hold_notice, run_summary
from sync.revert import revert_run
from sync.runs import FileInput, import_files
from sync.sources_cli import ldap_commands

CLI_ACTOR = "cli"
EXIT_CODES = {
    RunStatus.APPLIED: 0,
    RunStatus.DRY_RUN: 0,
    RunStatus.DISCARDED: 0,
    RunStatus.FAILED: 1,
    RunStatus.HELD: 3,
}
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
    _report(run, as_json)


@click.command("approve")
@click.argument("run_id", type=ID)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def approve_command(run_id, as_json):
    """Apply held run RUN_ID (or apply the files a dry run previewed)."""
    run = _call(_approve_or_apply, run_id, as_json)
    _report(run, as_json)


@click.command("discard")
@click.argument("run_id", type=ID)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def discard_command(run_id, as_json):
    """Close held run RUN_ID without applying it (nothing changes; exit 0)."""
    run = _call(discard_run, run_id, as_json)
    _report(run, as_json)


@click.command("revert")
@click.argument("run_id", type=ID)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def revert_command(run_id, as_json):
    """Undo what applied run RUN_ID changed (recorded as a new run)."""
    run = _call(revert_run, run_id, as_json)
    _report(run, as_json)


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
    _exit_failed(Issue(f"The file cannot be read: {reason}.", file=path))


@contextmanager
def run_refusals(as_json: bool, **where) -> Iterator[None]:
    """A refusal before any run started or changed (no such customer, source or run, a
    disabled or busy source, a run that is not held) is exit 1: with --json as a failed run's
    object whose one issue names the field (`where`: column and value), else as one plain
    sentence."""
    if not as_json:
        with refusals():
            yield
        return
    try:
        yield
    except UserError as exc:
        db.session.rollback()
        _exit_failed(Issue(str(exc), **where))


def _exit_failed(issue: Issue):
    """Print the JSON contract's object of a run that never started, and exit 1."""
    summary = {
        "run_id": None,
        "status": RunStatus.FAILED.value,
        "counts": counts_from_tally(defaultdict(int)),
        "issues": [issue.where()],
    }
    click.echo(json.dumps(summary, ensure_ascii=False))
    raise SystemExit(EXIT_CODES[RunStatus.FAILED])


def _bar_progress(bar):
    shown = {"value": 0}

    def progress(stage: str, done: float) -> None:
        index = STAGES.index(stage) if stage in STAGES else len(STAGES) - 1
        target = int((index + done) * 100 / len(STAGES))
        if target > shown["value"]:
            bar.update(target - shown["value"])
            shown["value"] = target

    return progress


def _report(run: SyncRun, as_json: bool) -> None:
    summary = run_summary(run)
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False))
    else:
        _print_summary(run, summary)
    current_app.logger.debug("run %s finished with %s", run.id, run.status)
    raise SystemExit(EXIT_CODES.get(RunStatus(run.status), 1))


def _print_summary(run: SyncRun, summary: dict) -> None:
    label = run.status.replace("_", " ")
    click.echo(f"Run {run.id}: {label} in {(run.duration_ms or 0) / 1000:.1f} s")
    if run.status != RunStatus.DISCARDED:  # what a discarded run planned never happens
        planned = run.status in (RunStatus.HELD, RunStatus.DRY_RUN)
        for entity in ("units", "persons"):
            figures = ", ".join(f"{n} {action}" for action, n in summary["counts"][entity].items())
            click.echo(f"  {entity}{', if applied' if planned else ''}: {figures}")
    if run.hold_reason and run.status == RunStatus.HELD:
        click.echo(f"Held: {run.hold_reason}")
        click.echo(f"Approve with: flask directory approve {run.id}")
        click.echo(f"Or discard it with: flask directory discard {run.id}")
    if run.status == RunStatus.DISCARDED:
        click.echo(f"Discarded by {run.discarded_by}: nothing changed.")
    notice = hold_notice(run)
    if notice and run.status == RunStatus.DRY_RUN:
        click.echo(notice)  # a held run's reason is printed above
    if run.error:
        click.echo(f"Failed: {run.error}", err=True)
    errors = [i for i in summary["issues"] if i["message"] != notice]
    for issue in errors[:20]:
        where = ", ".join(
            str(p)
            for p in (issue["file"], issue["row"] and f"row {issue['row']}", issue["column"])
            if p
        )
        click.echo(f"  - {where}: {issue['message']}" if where else f"  - {issue['message']}")
    if len(errors) > 20:
        click.echo(f"  ... and {len(errors) - 20} more issues: see the run report.")
