"""Database time: the one clock every host sharing a store agrees on.

Leases, leader leases, job heartbeats and request expiry are compared between processes that may run on
different machines, whose wall clocks drift, jump and disagree. A lease stamped by one host's clock and
judged by another's is a lease that looks expired while its holder is alive (and is stolen), or lives for
ever after a backward jump. So everything that decides *whether something is still alive or still valid*
asks the store for the time, in the same transaction as the rows it judges:

* SQLite: ``SELECT CURRENT_TIMESTAMP`` (UTC, as text ``YYYY-MM-DD HH:MM:SS``; whole seconds — SQLite's
  ``strftime('%Y-%m-%d %H:%M:%f','now')`` gives milliseconds, which is what is used here). On SQLite every
  process shares one machine (the file), so this is that machine's clock — but not a clock the process was
  *told* (an injected :class:`~opsconsole.core.clock.Clock`), and the same for every process.
* PostgreSQL: ``clock_timestamp()`` (the server's wall clock now, not the transaction's start).

Use::

    with engine.begin() as conn:
        now = database_now(conn)              # aware, UTC
        ... WHERE expires_at > :now ...

Components that take an injectable time source for tests accept a :class:`StoreTime` (``now(conn)``):
:data:`DATABASE_TIME` in production, :class:`ClockStoreTime` wrapping a fake clock in tests that need to
move time without waiting.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import Connection, Engine

from opsconsole.core.clock import Clock

__all__ = [
    "DATABASE_TIME", "ClockStoreTime", "DatabaseTime", "StoreTime", "database_now", "engine_now",
    "store_time_for",
]


def database_now(conn: Connection) -> datetime:
    """The store's current time as an aware UTC datetime, read on ``conn`` (inside its transaction)."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        value = conn.exec_driver_sql("SELECT clock_timestamp()").scalar_one()
    elif dialect == "sqlite":
        value = conn.exec_driver_sql("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')").scalar_one()
    else:  # any other SQL database: the standard function
        value = conn.exec_driver_sql("SELECT CURRENT_TIMESTAMP").scalar_one()
    return _aware(value)


def engine_now(engine: Engine) -> datetime:
    """:func:`database_now` on a connection of its own (for a caller outside any transaction)."""
    with engine.connect() as conn:
        return database_now(conn)


def _aware(value: object) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace(" ", "T"))
    if not isinstance(value, datetime):
        raise TypeError(f"the database answered {value!r} for the current time")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class StoreTime(Protocol):
    """Where leases and heartbeats get "now" from: the store, read on the connection being used."""

    def now(self, conn: Connection) -> datetime:
        ...


class DatabaseTime:
    """The store's own clock (:func:`database_now`): the default everywhere."""

    def now(self, conn: Connection) -> datetime:
        return database_now(conn)

    def __repr__(self) -> str:
        return "DatabaseTime()"


DATABASE_TIME = DatabaseTime()


class ClockStoreTime:
    """A :class:`~opsconsole.core.clock.Clock` standing in for the store's clock: for tests only, where a
    fake clock moves time (expiry after 90 s) without waiting. Every party to a test must share it."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def now(self, conn: Connection) -> datetime:
        return self.clock.now().astimezone(UTC)


def store_time_for(clock: Clock | None) -> StoreTime:
    """The store time a component uses when none is given: :data:`DATABASE_TIME`, unless ``clock`` is one
    a test moves by hand (it has ``advance()``, like :class:`opsconsole.testing.FakeClock`), whose time
    then stands for the store's too — every party of such a test shares it. A wall clock that is merely
    wrong (skewed, jumped, offset) never decides an expiry."""
    if clock is not None and callable(getattr(clock, "advance", None)):
        return ClockStoreTime(clock)
    return DATABASE_TIME
