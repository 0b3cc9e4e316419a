"""Records versus the directory: the change set a run would make. Reads, never writes.

Units are planned first (parents resolved, cycles refused, order fixed), then persons against
the planned tree, and last the units that left the source: they are inactivated only when
nothing active remains below them.
"""

from portal.directory.models import Customer
from sync.gcpause import gc_paused
from sync.plan.changes import (
    PERSON_FIELDS,
    Change,
    ChangeSet,
    PersonWrite,
    UnitWrite,
    counts_from_tally,
    source_label,
)
from sync.plan.persons import PersonPlanner
from sync.plan.units import UnitPlanner
from sync.records import SourceData

__all__ = [
    "PERSON_FIELDS",
    "Change",
    "ChangeSet",
    "PersonWrite",
    "UnitWrite",
    "counts_from_tally",
    "plan",
    "source_label",
]


def plan(data: SourceData, customer: Customer) -> ChangeSet:
    """Compare what the source says with the directory and return the changes to make."""
    with gc_paused():
        return _plan(data, customer)


def _plan(data: SourceData, customer: Customer) -> ChangeSet:
    changes = ChangeSet(customer.id, source_label(data), issues=list(data.issues))
    if data.fatal:
        changes.fatal = True
        return changes
    units = UnitPlanner(data, customer, changes)
    units.plan()
    if changes.fatal:
        return changes
    PersonPlanner(data, customer, changes, units).plan()
    units.inactivate_missing()
    return changes
