"""Notices, dedupe keys and message references: what the faces share so that N processes act as one.

Several Slack bot replicas and consoles may share one PostgreSQL. Three things must then happen once,
whichever process notices first:

* **a notice is delivered once** (a high-severity finding to its region's channel, a warning before a
  non-prod shutdown): the core or the scheduler *raises* it in the :class:`Outbox` under a key that says
  what it is about (``finding:<key>``, ``shutdown:<env>:<region>:<instant>``); a deliverer *claims* it with
  a compare-and-set, delivers it, and records where it went. Raising the same key again is a no-op while
  it is open; *resolving* it asks for one follow-up ("resolved") in the same place;
* **a retried or replayed payload takes effect once**: :meth:`Outbox.first_time` inserts a dedupe key
  (a Slack event id, or action id + message ts + user) and says whether this process was first;
* **a message about a subject is edited in place by anyone**: :meth:`Outbox.message_ref` remembers where
  a face posted about a subject (``request:<id>`` → Slack channel and ts) and what it last rendered.

Pure bookkeeping in the shared database; nothing here knows Slack.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from opsconsole.core.clock import Clock, SystemClock, utc
from opsconsole.core.store.db import (
    Database,
    StoreUnavailable,
    dedupe_keys_table,
    message_refs_table,
    notices_table,
    write_transaction,
)

#: A claim not followed by a delivery within this long is taken back (the claimer died).
CLAIM_TIMEOUT = timedelta(minutes=2)


@dataclass(frozen=True)
class Notice:
    """One thing to tell people about, and whether it was told (and its resolution)."""

    key: str
    kind: str
    subject: str
    data: Mapping[str, Any]
    created_at: datetime
    resolved_at: datetime | None
    delivered: Mapping[str, Any]
    version: int

    @property
    def needs_delivery(self) -> bool:
        return "first" not in self.delivered

    @property
    def needs_follow_up(self) -> bool:
        return (
            self.resolved_at is not None and "first" in self.delivered and "follow_up" not in self.delivered
        )


@dataclass(frozen=True)
class MessageRef:
    subject: str
    face: str
    channel: str
    ts: str
    data: Mapping[str, Any]
    updated_at: datetime


def _notice(row: RowMapping) -> Notice:
    created = utc(row["created_at"])
    assert created is not None
    return Notice(
        key=row["key"],
        kind=row["kind"],
        subject=row["subject"],
        data=row["data"] or {},
        created_at=created,
        resolved_at=utc(row["resolved_at"]),
        delivered=row["delivered"] or {},
        version=row["version"],
    )


class Outbox:
    """Notices, dedupe keys and message references in the shared database (see the module docstring)."""

    def __init__(self, database: Database, *, clock: Clock | None = None) -> None:
        self.database = database
        self.clock: Clock = clock or SystemClock()

    def _unavailable(self, exc: SQLAlchemyError) -> StoreUnavailable:
        return self.database.unavailable(exc)

    # -- notices ------------------------------------------------------------------------------------

    def raise_notice(self, key: str, *, kind: str, subject: str, data: Mapping[str, Any]) -> bool:
        """Open a notice under ``key``; returns False if one is already open under it.

        A resolved notice raised again opens anew (a finding that came back is told again).
        """
        now = self.clock.now()
        try:
            with write_transaction(self.database.engine) as conn:
                row = conn.execute(select(notices_table).where(notices_table.c.key == key)).mappings().first()
                if row is None:
                    conn.execute(
                        insert(notices_table).values(
                            key=key,
                            kind=kind,
                            subject=subject,
                            data=dict(data),
                            created_at=now,
                            version=1,
                            delivered={},
                        )
                    )
                    return True
                if row["resolved_at"] is None:
                    return False
                conn.execute(
                    update(notices_table)
                    .where(notices_table.c.key == key)
                    .values(
                        kind=kind,
                        subject=subject,
                        data=dict(data),
                        created_at=now,
                        resolved_at=None,
                        claimed_by=None,
                        claimed_at=None,
                        delivered={},
                        version=row["version"] + 1,
                    )
                )
                return True
        except IntegrityError:
            return False  # raised by another process at the same instant
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc

    def resolve(self, key: str, *, data: Mapping[str, Any] | None = None) -> bool:
        """Mark the open notice ``key`` resolved (a follow-up is then due); False if none is open."""
        values: dict[str, Any] = {"resolved_at": self.clock.now(), "version": notices_table.c.version + 1}
        if data is not None:
            values["data"] = dict(data)
        try:
            with write_transaction(self.database.engine) as conn:
                moved = conn.execute(
                    update(notices_table)
                    .where(notices_table.c.key == key, notices_table.c.resolved_at.is_(None))
                    .values(values)
                ).rowcount
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc
        return bool(moved)

    def open_keys(self, kind: str) -> builtins.list[str]:
        """Keys of the open (unresolved) notices of ``kind`` (to resolve those no longer true)."""
        try:
            with self.database.engine.connect() as conn:
                return builtins.list(
                    conn.execute(
                        select(notices_table.c.key).where(
                            notices_table.c.kind == kind, notices_table.c.resolved_at.is_(None)
                        )
                    ).scalars()
                )
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc

    def claim(
        self, worker: str, *, kinds: Sequence[str] | None = None, limit: int = 10
    ) -> builtins.list[Notice]:
        """Notices due a delivery or a follow-up that ``worker`` now owns (nobody else gets them).

        A claim left undelivered for :data:`CLAIM_TIMEOUT` (the worker died) can be claimed again.
        """
        now = self.clock.now()
        stale = now - CLAIM_TIMEOUT
        due = or_(
            notices_table.c.claimed_by.is_(None),
            notices_table.c.claimed_at < stale,
        )
        statement = select(notices_table).where(due).order_by(notices_table.c.created_at).limit(limit * 4)
        if kinds:
            statement = statement.where(notices_table.c.kind.in_(builtins.list(kinds)))
        claimed: builtins.list[Notice] = []
        try:
            with self.database.engine.connect() as conn:
                candidates = [_notice(r) for r in conn.execute(statement).mappings()]
            for notice in candidates:
                if len(claimed) >= limit:
                    break
                if not (notice.needs_delivery or notice.needs_follow_up):
                    continue
                with write_transaction(self.database.engine) as conn:
                    won = conn.execute(
                        update(notices_table)
                        .where(
                            notices_table.c.key == notice.key,
                            notices_table.c.version == notice.version,
                        )
                        .values(claimed_by=worker, claimed_at=now, version=notice.version + 1)
                    ).rowcount
                if won:
                    claimed.append(self._get(notice.key))
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc
        return claimed

    def delivered(self, notice: Notice, where: Mapping[str, Any], *, follow_up: bool = False) -> None:
        """Record the claimed ``notice`` (or its follow-up) as delivered ``where``; release the claim."""
        try:
            with write_transaction(self.database.engine) as conn:
                row = (
                    conn.execute(select(notices_table).where(notices_table.c.key == notice.key))
                    .mappings()
                    .one()
                )
                record = dict(row["delivered"] or {})
                record["follow_up" if follow_up else "first"] = dict(where)
                conn.execute(
                    update(notices_table)
                    .where(notices_table.c.key == notice.key)
                    .values(delivered=record, claimed_by=None, claimed_at=None, version=row["version"] + 1)
                )
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc

    def release(self, notice: Notice) -> None:
        """Give a claimed notice back undelivered (the delivery failed; another try will come)."""
        try:
            with write_transaction(self.database.engine) as conn:
                conn.execute(
                    update(notices_table)
                    .where(notices_table.c.key == notice.key)
                    .values(claimed_by=None, claimed_at=None, version=notices_table.c.version + 1)
                )
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc

    def get(self, key: str) -> Notice | None:
        try:
            return self._get(key)
        except LookupError:
            return None
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc

    def _get(self, key: str) -> Notice:
        with self.database.engine.connect() as conn:
            row = conn.execute(select(notices_table).where(notices_table.c.key == key)).mappings().first()
        if row is None:
            raise LookupError(key)
        return _notice(row)

    # -- dedupe ------------------------------------------------------------------------------------

    def first_time(self, key: str) -> bool:
        """True for the first caller with ``key`` across every process; False for every repeat."""
        try:
            with write_transaction(self.database.engine) as conn:
                conn.execute(insert(dedupe_keys_table).values(key=key[:256], created_at=self.clock.now()))
        except IntegrityError:
            return False
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc
        return True

    def forget_before(self, before: datetime) -> int:
        """Drop dedupe keys older than ``before`` (Slack retries within minutes; keep a day)."""
        try:
            with write_transaction(self.database.engine) as conn:
                return int(
                    conn.execute(
                        delete(dedupe_keys_table).where(dedupe_keys_table.c.created_at < before)
                    ).rowcount
                )
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc

    # -- message references --------------------------------------------------------------------------

    def message_ref(self, subject: str, face: str) -> MessageRef | None:
        try:
            with self.database.engine.connect() as conn:
                row = (
                    conn.execute(
                        select(message_refs_table).where(
                            and_(message_refs_table.c.subject == subject, message_refs_table.c.face == face)
                        )
                    )
                    .mappings()
                    .first()
                )
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc
        if row is None:
            return None
        updated = utc(row["updated_at"])
        assert updated is not None
        return MessageRef(
            subject=row["subject"],
            face=row["face"],
            channel=row["channel"],
            ts=row["ts"],
            data=row["data"] or {},
            updated_at=updated,
        )

    def remember_message(
        self, subject: str, face: str, *, channel: str, ts: str, data: Mapping[str, Any] | None = None
    ) -> bool:
        """Record where ``face`` posted about ``subject``; False if another process recorded one first."""
        try:
            with write_transaction(self.database.engine) as conn:
                conn.execute(
                    insert(message_refs_table).values(
                        subject=subject,
                        face=face,
                        channel=channel,
                        ts=ts,
                        data=dict(data or {}),
                        updated_at=self.clock.now(),
                    )
                )
        except IntegrityError:
            return False
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc
        return True

    def update_message(self, subject: str, face: str, *, data: Mapping[str, Any]) -> None:
        """Record what was last rendered into the message (to coalesce and skip identical edits)."""
        try:
            with write_transaction(self.database.engine) as conn:
                conn.execute(
                    update(message_refs_table)
                    .where(
                        and_(
                            message_refs_table.c.subject == subject,
                            message_refs_table.c.face == face,
                        )
                    )
                    .values(data=dict(data), updated_at=self.clock.now())
                )
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc
