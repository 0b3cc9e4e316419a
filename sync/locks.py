"""Run locks in the database: one run of a source at a time, across processes and machines.

A lock is a row of sync_locks. Taking it is one INSERT (the primary key lets only one process
win) or, when the row's `expires_at` has passed because its holder died, one UPDATE that
names the expired holder (so of two processes taking over, one wins). While the run lasts a
thread renews `expires_at` every third of the lock's lifetime; release deletes the row.

Locks are written on their own connection and committed at once, apart from the run's
session, so they are visible to every other process the moment they are taken.
"""

import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from portal.core.db import db, utcnow
from portal.core.errors import Conflict
from sync.models import SyncLock

logger = logging.getLogger(__name__)


class LockBusy(Conflict):
    """Another process is running the same source."""


def holder_name() -> str:
    """Who holds a lock: host and process, plus a random part so two threads differ."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class RunLock:
    name: str
    holder: str
    lifetime: timedelta
    engine: Engine
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def renew(self) -> bool:
        """Push the expiry on; False when the lock was lost (taken over after expiring)."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(SyncLock)
                .where(SyncLock.name == self.name, SyncLock.holder == self.holder)
                .values(expires_at=utcnow() + self.lifetime)
            )
        return result.rowcount == 1

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self.engine.begin() as conn:
            conn.execute(
                delete(SyncLock).where(SyncLock.name == self.name, SyncLock.holder == self.holder)
            )
        logger.info("run lock %s released by %s", self.name, self.holder)

    def start_heartbeat(self) -> None:
        self._thread = threading.Thread(target=self._beat, name=f"lock-{self.name}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.lifetime.total_seconds() / 3):
            try:
                if not self.renew():
                    logger.warning("run lock %s was lost by %s", self.name, self.holder)
                    return
            except Exception:  # a database hiccup: try again at the next beat
                logger.exception("run lock %s could not be renewed", self.name)


def acquire(
    name: str, *, lifetime: timedelta | None = None, engine: Engine | None = None
) -> RunLock:
    """Take lock `name` or raise LockBusy naming its holder; start renewing it."""
    lifetime = lifetime or default_lifetime()
    lock = RunLock(name, holder_name(), lifetime, engine or db.engine)
    if not _insert(lock) and not _take_over(lock):
        raise LockBusy(_busy_message(lock))
    lock.start_heartbeat()
    logger.info("run lock %s taken by %s", name, lock.holder)
    return lock


@contextmanager
def run_lock(name: str, *, lifetime: timedelta | None = None) -> Iterator[RunLock]:
    lock = acquire(name, lifetime=lifetime)
    try:
        yield lock
    finally:
        lock.release()


def default_lifetime() -> timedelta:
    return timedelta(seconds=current_app.config["KURSA"]["schedule"]["lock_seconds"])


def _insert(lock: RunLock) -> bool:
    now = utcnow()
    try:
        with lock.engine.begin() as conn:
            conn.execute(
                insert(SyncLock).values(
                    name=lock.name,
                    holder=lock.holder,
                    acquired_at=now,
                    expires_at=now + lock.lifetime,
                )
            )
    except IntegrityError:
        return False
    return True


def _take_over(lock: RunLock) -> bool:
    with lock.engine.begin() as conn:
        row = conn.execute(select(SyncLock).where(SyncLock.name == lock.name)).one_or_none()
        if row is None:  # released between our insert and now: try once more
            return _insert(lock)
        now = utcnow()
        if row.expires_at > now:
            return False
        taken = conn.execute(
            update(SyncLock)
            .where(SyncLock.name == lock.name, SyncLock.holder == row.holder)
            .values(holder=lock.holder, acquired_at=now, expires_at=now + lock.lifetime)
        )
    if taken.rowcount == 1:
        logger.warning(
            "run lock %s taken over from %s, which stopped renewing it at %s",
            lock.name,
            row.holder,
            row.expires_at.isoformat(timespec="seconds"),
        )
        return True
    return False


def current_holder(name: str, engine: Engine | None = None) -> SyncLock | None:
    """The row of lock `name` as it is now (read on its own connection), or None if free."""
    with (engine or db.engine).connect() as conn:
        row = conn.execute(select(SyncLock).where(SyncLock.name == name)).one_or_none()
    return SyncLock(**row._asdict()) if row else None


def _busy_message(lock: RunLock) -> str:
    with lock.engine.connect() as conn:
        row = conn.execute(select(SyncLock).where(SyncLock.name == lock.name)).one_or_none()
    since = _when(row.acquired_at) if row else "a moment ago"
    holder = row.holder if row else "another process"
    return (
        f"{lock.name.split(':', 1)[-1]} is being synced already (by {holder}, since {since}); "
        "nothing was started. Try again when that run has finished."
    )


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")
