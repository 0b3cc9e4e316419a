"""Python's cycle collector held off while a sync builds its many short-lived records.

Reading, planning and applying 20,000 persons allocates a few hundred thousand containers
(entries, records, tuples, dicts). Each allocation burst makes CPython's generational
collector walk every object the process holds -- the whole Flask app and SQLAlchemy included
-- again and again: measured at a third of a full LDAP sync. Records hold no reference
cycles, so reference counting frees them anyway; the collector runs as usual once the phase
is over. The switch is process-wide: with two runs in threads, the first to finish turns the
collector back on for the other, which then only loses speed.
"""

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Hold off the cycle collector inside the block; nested blocks restore what they found."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
