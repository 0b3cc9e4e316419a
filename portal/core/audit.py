"""The audit log: who did what to which object, readable by admins."""

import logging
from datetime import datetime

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from portal.core.db import db, utcnow

logger = logging.getLogger(__name__)


class AuditEntry(db.Model):
    __tablename__ = "audit_entries"
    __table_args__ = (Index("ix_audit_entries_object", "object_type", "object_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    object_type: Mapped[str] = mapped_column(String(50))
    object_id: Mapped[str] = mapped_column(String(100))
    details: Mapped[dict] = mapped_column(default=dict)


def record(actor: str, action: str, obj_type: str, obj_id, **details) -> AuditEntry:
    """Add an audit entry to the current transaction (flushed with it, never committed here)."""
    entry = AuditEntry(
        actor=actor, action=action, object_type=obj_type, object_id=str(obj_id), details=details
    )
    db.session.add(entry)
    return entry
