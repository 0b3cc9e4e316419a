"""A limit on login starts per client address, kept in the database so every node counts.

Each GET of a login address stores a LoginStart row; more than `[sso] login_starts_per_minute`
from one address within the last minute is answered 429. Rows older than the window are
deleted by the next start, so the table holds about a minute of traffic.
"""

import logging
from datetime import timedelta

from flask import current_app
from sqlalchemy import func, select

from portal.core.db import db, utcnow
from sso.models import LoginStart

logger = logging.getLogger(__name__)
WINDOW = timedelta(minutes=1)


def allow_login_start(client_address: str) -> bool:
    """Record a login start from `client_address`; False when it is over the limit.

    Count and insert are not one atomic step: two nodes may each let one start too many
    through at the edge, which does not matter for a limit meant to stop floods.
    """
    limit = current_app.config["KURSA"]["sso"]["login_starts_per_minute"]
    now = utcnow()
    address = (client_address or "unknown")[:64]
    db.session.execute(LoginStart.__table__.delete().where(LoginStart.created_at < now - WINDOW))
    recent = db.session.scalar(
        select(func.count(LoginStart.id)).where(
            LoginStart.client_address == address, LoginStart.created_at >= now - WINDOW
        )
    )
    if recent >= limit:
        logger.warning("login start refused: over %s per minute from one address", limit)
        return False
    db.session.add(LoginStart(client_address=address, created_at=now))
    db.session.flush()
    return True
