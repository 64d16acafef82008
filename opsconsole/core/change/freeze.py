"""The emergency change freeze: one switch, held in the store, that refuses medium and high risk changes.

Why this module exists: the change freezes of ``policy.yml`` are planned windows (Black Friday), written
in a file and reviewed like code. During an incident an admin needs the same brake *now*, in one command
(``opsconsole freeze on --reason "…"``), for every face and every server sharing the store, and lifted as
quickly. The state lives in the store's ``store_meta`` table (no migration needed: three keys), the switch
is audited, and :func:`opsconsole.core.change.risk.assess` treats an emergency freeze that is on exactly
like a policy window in force over the whole fleet: low-risk requests still run, medium and high ones are
refused unless glass is broken (by an admin).

Use::

    freeze = read_freeze(database)                         # EmergencyFreeze or None
    set_freeze(database, audit, on=True, reason="incident 42", who="erin", face="cli", now=clock.now())
    policy = risk.with_emergency(policy, lambda: read_freeze(database))   # what assess() consults

Who may switch it is the gate's business (:data:`opsconsole.core.change.gate.Act.FREEZE`: admins).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import SQLAlchemyError

from opsconsole.core.audit.log import AuditLog
from opsconsole.core.errors import UsageError
from opsconsole.core.store.db import Database, store_meta_table

__all__ = [
    "FREEZE_KEYS",
    "MAX_REASON",
    "EmergencyFreeze",
    "read_freeze",
    "set_freeze",
    "status_document",
]

#: store_meta keys of the switch; the ``reason`` row being present means "on".
_REASON, _BY, _SINCE = "emergency_freeze.reason", "emergency_freeze.by", "emergency_freeze.since"
FREEZE_KEYS = (_REASON, _BY, _SINCE)
#: The longest reason accepted (store_meta values hold 256 characters).
MAX_REASON = 200
#: Audit kinds of the switch.
AUDIT_ON, AUDIT_OFF = "freeze_on", "freeze_off"


@dataclass(frozen=True)
class EmergencyFreeze:
    """An emergency freeze that is on: why, who turned it on, since when (UTC)."""

    reason: str
    by: str
    since: datetime

    def describe(self) -> str:
        since = self.since.strftime("%Y-%m-%d %H:%M")
        return f"emergency freeze (since {since} UTC, by {self.by}): {self.reason}"

    def to_dict(self) -> dict[str, object]:
        return {"on": True, "reason": self.reason, "by": self.by, "since": self.since.isoformat()}


def status_document(freeze: EmergencyFreeze | None) -> dict[str, object]:
    """The JSON document of ``GET /api/v1/freeze`` and ``opsconsole freeze status --json``."""
    if freeze is None:
        return {"on": False, "reason": None, "by": None, "since": None}
    return freeze.to_dict()


def read_freeze(database: Database) -> EmergencyFreeze | None:
    """The emergency freeze if it is on, else ``None``.

    Raises:
        StoreUnavailable: the database cannot be reached (a freeze that cannot be read is not "off").
    """
    meta = store_meta_table.c
    try:
        with database.engine.connect() as conn:
            found = conn.execute(select(meta.key, meta.value).where(meta.key.in_(FREEZE_KEYS)))
            rows = {str(key): str(value) for key, value in found}
    except SQLAlchemyError as exc:
        raise database.unavailable(exc, "read the emergency change freeze") from exc
    reason = rows.get(_REASON)
    if reason is None:
        return None
    since = datetime.fromisoformat(rows.get(_SINCE) or "1970-01-01T00:00:00+00:00")
    return EmergencyFreeze(reason=reason, by=rows.get(_BY) or "?", since=since)


def set_freeze(
    database: Database,
    audit: AuditLog,
    *,
    on: bool,
    reason: str | None,
    who: str,
    face: str,
    now: datetime,
) -> EmergencyFreeze | None:
    """Turn the emergency freeze on (``reason`` required) or off; the change and its audit entry commit
    together. Turning it on while on replaces the reason (and keeps who and since of the new switch).

    Returns:
        The freeze now in force, or ``None`` once off.

    Raises:
        UsageError: on without a reason, or a reason over :data:`MAX_REASON` characters.
        StoreUnavailable: the database cannot be reached: nothing changed.
    """
    text = (reason or "").strip()
    if on and not text:
        raise UsageError('an emergency freeze needs a reason: opsconsole freeze on --reason "…"')
    if len(text) > MAX_REASON:
        raise UsageError(f"the reason is {len(text)} characters long; at most {MAX_REASON} are kept")
    if now.tzinfo is None:
        raise ValueError(f"a naive datetime has no place in opsconsole: {now!r}")
    now = now.astimezone(UTC)
    previous = read_freeze(database)
    meta = store_meta_table.c
    frozen = EmergencyFreeze(reason=text, by=who, since=now) if on else None
    try:
        with database.engine.begin() as conn:
            # The write first: on SQLite a transaction that reads before writing can fail as locked.
            conn.execute(delete(store_meta_table).where(meta.key.in_(FREEZE_KEYS)))
            if frozen is not None:
                conn.execute(
                    insert(store_meta_table),
                    [
                        {"key": _REASON, "value": frozen.reason},
                        {"key": _BY, "value": frozen.by[:256]},
                        {"key": _SINCE, "value": frozen.since.isoformat()},
                    ],
                )
            data: dict[str, object] = {"on": on, "was_on": previous is not None}
            if frozen is not None:
                data["reason"] = frozen.reason
            elif previous is not None:
                data["reason"] = previous.reason
                data["since"] = previous.since.isoformat()
                data["by"] = previous.by
            audit.append_in(conn, AUDIT_ON if on else AUDIT_OFF, actor=who, face=face, data=data)
    except SQLAlchemyError as exc:
        raise database.unavailable(exc, "switch the emergency change freeze") from exc
    return frozen
