"""Queries over a customer's run history: the trend chart of its last runs, and the runs that
need someone's attention (held and not approved, or failed since their source's last applied
run, while that source is enabled)."""

import math
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import aliased, selectinload

from portal.core.db import db
from sync.models import RunStatus, SyncIssue, SyncRun, SyncSource

CHART_RUNS = 30
SERIES = ("created", "moved", "inactivated", "errors")
# The outcomes the chart shows. Dry runs (previews) change nothing and mostly precede an
# applied run with the same counts, so they would only double the bars; a run still running
# has no outcome yet (a stale one is closed as failed by the next run, and then shows). A
# discarded run is left out too: its bars would draw changes that were never made, and an
# admin has decided it needs no one (its report stays in the list of runs).
CHARTED = (RunStatus.APPLIED, RunStatus.HELD, RunStatus.FAILED)
AXIS_FONT = 11  # the chart's font size, in the SVG's units
# Character widths (em) a little over those of DejaVu Sans, the widest sans-serif a browser
# is likely to pick (a digit is 0.64 em there, 0.56 in Arial), so a label's room is never
# too small; any other character counts as a digit.
AXIS_CHAR_EM = {".": 0.35, "k": 0.6, "M": 0.9}
AXIS_DIGIT_EM = 0.65
AXIS_GAP = 3  # between the label and the bars, and between the label and the edge


@dataclass(frozen=True)
class ChartRun:
    """One run as the chart shows it: persons created, moved, inactivated; errors.

    For a held run the counts are what it would change once approved; a failed run changed
    nothing, so its counts are zero and only its errors show. Reactivations have no bar (they
    are rare outside a revert) but are named in the run's summary line when there are any.
    """

    id: int
    started_at: datetime
    status: str
    created: int
    moved: int
    inactivated: int
    errors: int
    reactivated: int = 0

    def value(self, series: str) -> int:
        return getattr(self, series)

    def summary(self, series) -> str:
        """'0 created, 0 moved, 0 inactivated, 70 reactivated, 0 errors' (reactivated when any)."""
        counts = [s for s in series if s != "errors"]
        if self.reactivated:
            counts.append("reactivated")
        counts += [s for s in series if s == "errors"]
        return ", ".join(f"{self.value(s)} {s}" for s in counts)

    @property
    def is_flagged(self) -> bool:
        """Held or failed: a run HR must look at, drawn apart from the applied ones."""
        return self.status != RunStatus.APPLIED


@dataclass(frozen=True)
class ChartAxis:
    """The chart's y-axis: its top value, the label written there, and the room left of the
    bars that the label needs (in the SVG's units, where the text is AXIS_FONT high)."""

    top: int
    label: str
    left: int

    @property
    def label_x(self) -> int:
        """Where the labels end (they are anchored at their end), a gap left of the bars."""
        return self.left - AXIS_GAP


def chart_axis(points: list[ChartRun], series=SERIES) -> ChartAxis:
    """The y-axis of `points`: up to the largest value (at least 1), labelled short (1.2k).

    The left margin is the label's estimated width and a gap, so a long label is not cut
    off by the viewBox (which scales with the screen, so the same holds at any width)."""
    top = max([p.value(s) for p in points for s in series] + [1])
    label = axis_label(top)
    return ChartAxis(top, label, math.ceil(label_width(label) + AXIS_GAP * 2))


def axis_label(value: int) -> str:
    """`value` in at most four characters: 950, 1.2k, 12k, 120k, 1.2M (the bars' titles
    carry the exact counts)."""
    if value < 1000:
        return str(value)
    for unit, size in (("k", 1e3), ("M", 1e6)):
        scaled = value / size
        text = (f"{scaled:.1f}" if scaled < 9.95 else f"{scaled:.0f}").removesuffix(".0")
        if len(text) <= 3:
            return text + unit
    return str(value)  # a billion persons: the margin grows with the label


def label_width(text: str) -> float:
    """An upper estimate of the width of the chart's text `text`, in the SVG's units."""
    return sum(AXIS_CHAR_EM.get(c, AXIS_DIGIT_EM) for c in text) * AXIS_FONT


def chart_runs(customer_id: int, limit: int = CHART_RUNS) -> list[ChartRun]:
    """The customer's last `limit` runs that are not dry runs, oldest first: two queries.

    Applied, held and failed runs all count, scheduled or manual: a held or failed run is the
    one HR must notice, so leaving it out would hide exactly what the chart is for. A revert is
    an applied run of its own (it changed the directory back) and shows like one; the run it
    reverted keeps its bars, as those changes did happen. Errors are the run's issues of
    severity "error"; a failed run counts at least one, its failure, also when that was only
    written as the run's error (a skipped or interrupted run stores no issue).
    """
    runs = list(
        db.session.scalars(
            select(SyncRun)
            .where(
                SyncRun.customer_id == customer_id,
                SyncRun.status.in_(CHARTED),
                SyncRun.is_dry_run.is_(False),
            )
            .order_by(SyncRun.started_at.desc(), SyncRun.id.desc())
            .limit(limit)
        )
    )
    errors = _error_counts([run.id for run in runs])
    return [_point(run, errors.get(run.id, 0)) for run in reversed(runs)]


@dataclass(frozen=True)
class Attention:
    """One line of the "needs attention" box: a held run, or a source's failed runs.

    Failed runs of the same source are one line: `run` is the newest, `count` how many failed
    in a row since that source's last applied run, `latest_at` when the newest started.
    """

    run: SyncRun
    count: int = 1

    @property
    def latest_at(self) -> datetime:
        return self.run.started_at

    @property
    def source_label(self) -> str:
        return source_label(self.run)


def source_label(run: SyncRun) -> str:
    """What the run read, as a person names it: 'source hq-ad', 'file drop', 'file import'."""
    if run.source_kind == "files":
        return "file drop" if run.source_name == "drop" else "file import"
    if run.source_kind == "revert":
        return f"revert of {run.source_name}" if run.source_name else "revert"
    return f"source {run.source_name}" if run.source_name else run.source_kind


def needing_attention(customer_ids) -> list[Attention]:
    """Held runs not yet approved or discarded, and failed runs started after their source's
    last applied run (or its approval), newest first. `customer_ids` is a list or a select of
    ids.

    A source is the customer's file import, its file drop, each of its LDAP sources (a run's
    kind and name): another source's successful run says nothing of a failing one, so it
    leaves that one's failures flagged.

    Failed runs of one source (customer, kind and name) are collapsed into one line with
    their count and the newest run, so a source failing every night is one line, not thirty.
    Each held run is a line of its own: each is approved or discarded on its own.

    A failed dry run (a preview) is left out: it changed nothing and asks nothing of HR;
    whoever asked for the preview sees its outcome on the request's page and the source's
    page (its last run). Flagging it here would send HR after a test an IT admin is busy with.

    So are the failed and held runs of a directory source that is disabled (deleting a source
    with runs disables it): an IT admin has acted on it, and a disabled source never gets the
    applied run that would otherwise clear its failures, so they would stay flagged for good.
    The flag is worked out, not stored: enabling the source again brings back those of its
    runs still unresolved (failed since its last applied run, held and not decided), as they
    describe the source that is running again. A held run of a disabled source can still be
    approved or discarded on its report.
    """
    applied = aliased(SyncRun, name="applied")
    # A held run approved later counts from its approval: the directory is newer than that.
    last_applied = (
        select(func.max(func.coalesce(applied.approved_at, applied.started_at)))
        .where(
            applied.status == RunStatus.APPLIED,
            applied.customer_id == SyncRun.customer_id,
            applied.source_kind == SyncRun.source_kind,
            applied.source_name == SyncRun.source_name,
        )
        .scalar_subquery()
    )
    failed_since = (
        (SyncRun.status == RunStatus.FAILED)
        & SyncRun.is_dry_run.is_(False)
        & (last_applied.is_(None) | (SyncRun.started_at > last_applied))
    )
    source_disabled = (
        select(SyncSource.id)
        .where(
            SyncSource.customer_id == SyncRun.customer_id,
            SyncSource.kind == SyncRun.source_kind,
            SyncSource.name == SyncRun.source_name,
            SyncSource.is_enabled.is_(False),
        )
        .exists()
    )
    query = (
        select(SyncRun)
        .options(selectinload(SyncRun.customer))
        .where(SyncRun.customer_id.in_(customer_ids))
        .where(or_(SyncRun.status == RunStatus.HELD, failed_since))
        .where(~source_disabled)
        .order_by(SyncRun.id.desc())
    )
    lines: list[Attention] = []
    failed_line: dict[tuple, int] = {}  # (customer, kind, name) -> index of its line
    for run in db.session.scalars(query):
        if run.status == RunStatus.HELD:
            lines.append(Attention(run))
            continue
        key = (run.customer_id, run.source_kind, run.source_name)
        if key in failed_line:
            index = failed_line[key]
            lines[index] = Attention(lines[index].run, lines[index].count + 1)
        else:
            failed_line[key] = len(lines)
            lines.append(Attention(run))
    return lines


def _error_counts(run_ids: list[int]) -> dict[int, int]:
    if not run_ids:
        return {}
    query = (
        select(SyncIssue.run_id, func.count())
        .where(SyncIssue.run_id.in_(run_ids), SyncIssue.severity == "error")
        .group_by(SyncIssue.run_id)
    )
    return dict(db.session.execute(query).all())


def _point(run: SyncRun, errors: int) -> ChartRun:
    persons = (run.counts or {}).get("persons", {})
    if run.status == RunStatus.FAILED:
        errors = max(errors, 1)
    return ChartRun(
        run.id,
        run.started_at,
        run.status,
        persons.get("created", 0),
        persons.get("moved", 0),
        persons.get("inactivated", 0),
        errors,
        persons.get("reactivated", 0),
    )
