"""The database handle, the model base and engine tuning for SQLite and PostgreSQL."""

from datetime import UTC, datetime

import orjson
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import JSON, DateTime, Engine, MetaData, Text, event
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, registry
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Materialised paths are compared byte-wise so that a branch is one index range scan.
PathString = Text().with_variant(Text(collation="C"), "postgresql")


def json_text(value) -> str:
    """JSON columns are written with orjson: sync reports hold 100,000s of them."""
    return orjson.dumps(value).decode()


def contains_text(expression, text: str):
    """A condition: `expression` holds `text` anywhere, its `%` and `_` taken as the letters
    they are (typed into a search box, they would otherwise match everything)."""
    escaped = text.replace("/", "//").replace("%", "/%").replace("_", "/_")
    return expression.like(f"%{escaped}%", escape="/")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Stores naive UTC, always returns aware UTC (SQLite keeps no zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where UTC is required")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    registry = registry(
        metadata=MetaData(naming_convention=NAMING_CONVENTION),
        type_annotation_map={datetime: UTCDateTime(), dict: JSON},
    )


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


db = SQLAlchemy(model_class=Base)


@event.listens_for(Engine, "connect")
def _tune_sqlite(dbapi_connection, connection_record):
    module = type(dbapi_connection).__module__
    if not module.startswith("sqlite3"):
        return
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # A run holds the write lock while it applies (seconds for 100,000 persons); others wait.
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.close()


def branch_bounds(path: str) -> tuple[str, str]:
    """The half-open range [low, high) of paths at or below `path` ('/1/7/' -> '/1/70')."""
    return path, path[:-1] + chr(ord("/") + 1)
