"""A run's stored report as it is handed out: the CLI's JSON summary, which carries the
notice of a hold, and the CSV rows of its changes and issues (sync.apply stores the report)."""

from collections import defaultdict
from collections.abc import Iterator

from sqlalchemy import select

from portal.core.db import db
from sync.models import RunStatus, SyncChange, SyncIssue, SyncRun
from sync.plan import counts_from_tally
from sync.records import Issue


def run_summary(run: SyncRun) -> dict:
    """The run as the CLI's JSON contract shows it.

    A held run carries the reason it is held as one more issue, without file or row, and so
    does a dry run that applying would hold: the contract has no other place for it, and a
    tool must learn it before approving or applying. A held run whose approval failed carries
    that error the same way.
    """
    stored = db.session.scalars(
        select(SyncIssue).where(SyncIssue.run_id == run.id).order_by(SyncIssue.id)
    )
    issues = [Issue(i.message, i.file, i.row, i.column, i.value).where() for i in stored]
    notice = hold_notice(run)
    if notice:
        issues.append(Issue(notice, severity="notice").where())
    if run.status == RunStatus.HELD and run.error:
        issues.append(Issue(run.error).where())
    return {
        "run_id": run.id,
        "status": run.status,
        "counts": run.counts or counts_from_tally(defaultdict(int)),
        "issues": issues,
    }


def hold_notice(run: SyncRun) -> str | None:
    """Why the run is held, or the warning that applying this dry run would be; else None."""
    if not run.hold_reason:
        return None
    if run.status == RunStatus.HELD:
        return f"This run is held for approval: {run.hold_reason}"
    if run.status == RunStatus.DRY_RUN:
        return f"Applying this preview would be held: {run.hold_reason}"
    return None


REPORT_HEADER = [
    "record",
    "entity",
    "key",
    "action",
    "before",
    "after",
    "severity",
    "file",
    "row",
    "column",
    "value",
    "message",
]


def report_rows(run: SyncRun) -> Iterator[list[str]]:
    """The run's changes and issues as CSV rows, header first; streams large runs."""
    yield REPORT_HEADER
    changes = db.session.execute(
        select(SyncChange)
        .where(SyncChange.run_id == run.id)
        .order_by(SyncChange.id)
        .execution_options(yield_per=2000)
    ).scalars()
    blank = [""] * 6
    for c in changes:
        row = ["change", c.entity, c.key, c.action, _plain(c.before), _plain(c.after), *blank]
        yield [_cell(cell) for cell in row]
    issues = db.session.scalars(
        select(SyncIssue).where(SyncIssue.run_id == run.id).order_by(SyncIssue.id)
    )
    for i in issues:
        row = [
            "issue",
            *blank[:5],
            i.severity,
            i.file or "",
            "" if i.row is None else str(i.row),
            i.column or "",
            i.value or "",
            i.message,
        ]
        yield [_cell(cell) for cell in row]


def _cell(text: str) -> str:
    """Spreadsheets run a cell starting with = + - @ as a formula: quote it (OWASP advice)."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _plain(values: dict | None) -> str:
    """Before/after values as HR reads them ('name: Sales, active: no'), without internal ids."""
    if not values:
        return ""
    shown = {k: v for k, v in values.items() if not k.endswith("_id")}
    return ", ".join(f"{k.replace('_', ' ')}: {_word(v)}" for k, v in shown.items())


def _word(value) -> str:
    if value is None:
        return "(empty)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)
