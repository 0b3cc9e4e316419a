"""How a sync run is told on the command line, the same for every command that runs one
(`directory import|sync|approve|discard|revert`, `drop import`): one JSON object with --json or
a short summary, and the exit status of the contract (0 applied or dry run, 1 failed, 3 held)."""

import json
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import click
from flask import current_app

from portal.core.cli import refusals
from portal.core.db import db
from portal.core.errors import UserError
from sync.models import RunStatus, SyncRun
from sync.plan.changes import counts_from_tally
from sync.records import Issue
from sync.report import hold_notice, run_summary

EXIT_CODES = {
    RunStatus.APPLIED: 0,
    RunStatus.DRY_RUN: 0,
    RunStatus.DISCARDED: 0,
    RunStatus.FAILED: 1,
    RunStatus.HELD: 3,
}


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
        exit_failed(Issue(str(exc), **where))


def exit_failed(issue: Issue):
    """Print the JSON contract's object of a run that never started, and exit 1."""
    summary = {
        "run_id": None,
        "status": RunStatus.FAILED.value,
        "counts": counts_from_tally(defaultdict(int)),
        "issues": [issue.where()],
    }
    click.echo(json.dumps(summary, ensure_ascii=False))
    raise SystemExit(EXIT_CODES[RunStatus.FAILED])


def report_run(run: SyncRun, as_json: bool) -> None:
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
    if address := report_address(run.id):
        click.echo(f"Report: {address}")
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


def report_address(run_id: int) -> str:
    """The run's report page under [web] base_url (the route of sync.views.run); "" when no
    base URL is configured, since a command has no request to take the host from."""
    base_url = current_app.config["KURSA"]["web"]["base_url"]
    if not base_url:
        return ""
    path = current_app.url_map.bind("").build("sync.run", {"run_id": run_id})
    return base_url.rstrip("/") + path
