"""A per-address limit on requests a flood could abuse, kept in the database so every node counts.

Each counted request stores a RateLimitHit row under a scope ("sso-login-start",
"login-form"); more than the scope's limit from one client within the last minute is
refused. A client is an IPv4 address, or an IPv6 address's /64 prefix: every IPv6
subscriber holds at least a /64, so counting whole addresses would let one client rotate
through 2^64 of them. Rows older than the window are deleted by the next hit of the same
scope, and `purge_rate_limit_hits` removes what a quiet scope leaves behind.
"""

import ipaddress
import logging
from datetime import datetime, timedelta

from sqlalchemy import Index, String, delete, func, select
from sqlalchemy.orm import Mapped, mapped_column

from portal.core.db import db, utcnow

logger = logging.getLogger(__name__)
WINDOW = timedelta(minutes=1)
RETRY_AFTER = {"Retry-After": str(int(WINDOW.total_seconds()))}


class RateLimitHit(db.Model):
    """One counted request from one client (`client_address`: see client_of)."""

    __tablename__ = "rate_limit_hits"
    __table_args__ = (Index("ix_rate_limit_hits_scope_address", "scope", "client_address"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(32))
    client_address: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


def allow(scope: str, client_address: str, limit: int) -> bool:
    """Count a request of `scope` from `client_address` (by its client_of); False when it is
    over `limit`.

    Count and insert are not one atomic step: two nodes may each let one request too many
    through at the edge, which does not matter for a limit meant to stop floods. The caller
    commits, also after a refusal (so the purge of old rows stands).
    """
    now = utcnow()
    address = client_of(client_address)
    db.session.execute(
        delete(RateLimitHit).where(
            RateLimitHit.scope == scope, RateLimitHit.created_at < now - WINDOW
        )
    )
    recent = db.session.scalar(
        select(func.count(RateLimitHit.id)).where(
            RateLimitHit.scope == scope,
            RateLimitHit.client_address == address,
            RateLimitHit.created_at >= now - WINDOW,
        )
    )
    if recent >= limit:
        logger.warning("%s refused: over %s per minute from one client", scope, limit)
        return False
    db.session.add(RateLimitHit(scope=scope, client_address=address, created_at=now))
    db.session.flush()
    return True


def client_of(address: str) -> str:
    """What a limit counts a request by: an IPv4 address as it is, an IPv6 address by its /64
    (an IPv4-mapped one as its IPv4 address); anything else (no address, a unix socket's
    name) as given, cut to the column's length."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return (address or "unknown")[:64]
    if parsed.version == 6 and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    if parsed.version == 4:
        return str(parsed)
    return str(ipaddress.ip_network((parsed, 64), strict=False))


def purge_rate_limit_hits(now: datetime | None = None) -> int:
    """Delete every hit older than the window (of every scope); returns how many."""
    cutoff = (now or utcnow()) - WINDOW
    return db.session.execute(delete(RateLimitHit).where(RateLimitHit.created_at < cutoff)).rowcount
