"""Leases on targets: two runs never change the same thing at once.

A playbook run holds a lease on the targets of its plan (``region/eu-west-1``, ``dns/eu-west-1``,
``workload/<cluster>/<service>``…) for as long as it runs. The leases live in the shared database, so
they hold across every face (terminal, Slack bot, CLI, scheduler) and every process and machine that
shares the store. A request that would overlap a live lease is refused with :class:`LeaseConflict`,
which names who holds the target, for what, and since when. Leases come in two modes: *shared* holders
of a target coexist (two scales in one region), an *exclusive* holder excludes every other one (a
failover of that region).

A lease is kept alive by renewing it; one that is not renewed for ``ttl_s`` seconds (its holder died
or lost the store) expires and stops blocking anyone. Expiry is judged in **database time** (the store's
clock, :mod:`opsconsole.core.store.dbtime`), never the host's: a process whose clock is minutes off (or
jumps) neither steals a live lease nor stretches its own. A lease records its owner (host, boot id, pid and
the pid's start time: :class:`~opsconsole.core.processes.Owner`); one taken on *this* host and boot by a
process that is gone (or a zombie, or whose pid now belongs to another process) is dead at once: nobody
waits ``ttl_s`` after a crash on the same machine. If the
store cannot be reached, nothing is taken and :class:`~opsconsole.core.store.db.StoreUnavailable` is raised:
callers fail closed and run nothing.

Use::

    leases = Leases(Database())
    with leases.held({"region/eu-west-1": LeaseMode.EXCLUSIVE}, holder="alice",
                     purpose="failover eu-west-1 → eu-central-1", request_id=req.id,
                     on_lost=lambda err: runner.cancel(job.id)) as lease:
        runner.run(...)              # between steps: lease.lost.check() raises LeaseLost
    leases.conflicts(["region/eu-west-1"])   # a preview: who would block this now, taking nothing

How taking a lease stays atomic without dialect-specific locking: every acquirer (and every renewer)
first updates the single ``lease_guard`` row in its transaction. That serialises them on both back ends
(SQLite's write lock, PostgreSQL's row lock), so "delete the dead, look for conflicting holders,
insert" cannot interleave with another acquirer's. Releasing only deletes the lease's own rows, which
can never make a conflict, so it does not take the guard.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any, TypeVar

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from opsconsole.core.clock import Clock, SystemClock, monotonic, utc
from opsconsole.core.errors import OpsError
from opsconsole.core.processes import Owner, boot_id, pid_alive, process_start_time
from opsconsole.core.store.db import Database, StoreUnavailable, db_value, lease_guard_table, leases_table
from opsconsole.core.store.dbtime import DATABASE_TIME, StoreTime

__all__ = [
    "DEFAULT_TTL_S",
    "Lease",
    "LeaseConflict",
    "LeaseHolder",
    "LeaseLost",
    "LeaseMode",
    "Leases",
    "LossSignal",
]

log = logging.getLogger(__name__)

#: How long a lease lives without a renewal. The heartbeat of :meth:`Leases.held` renews every third of
#: it, so a holder survives one missed beat; a crashed holder on another machine blocks for at most this.
DEFAULT_TTL_S = 90.0
#: Two first-time acquirers may both try to create the guard row; the loser retries (then finds it).
_GUARD_ATTEMPTS = 5
_GUARD_ID = 1
#: The widths of the ``leases`` columns a caller fills in (longer values would be a store error).
_MAX_TARGET = 256
_MAX_HOLDER = 256

T = TypeVar("T")


class LeaseMode(StrEnum):
    EXCLUSIVE = "exclusive"
    SHARED = "shared"


def compatible(a: LeaseMode | str, b: LeaseMode | str) -> bool:
    """Whether two holders of one target in these modes may coexist: only shared with shared.

    A mode this version does not know (a newer console wrote it) counts as exclusive: fail closed.
    """
    return str(a) == LeaseMode.SHARED and str(b) == LeaseMode.SHARED


@dataclass(frozen=True)
class LeaseHolder:
    """One live holder of one target, as the TUI and the bot show it and as a conflict names it."""

    target: str
    mode: LeaseMode
    holder: str
    purpose: str
    request_id: str | None
    host: str
    pid: int
    acquired_at: datetime
    expires_at: datetime


class LossSignal:
    """Set, once, when the holder learns that its lease is lost; shared by every copy of a :class:`Lease`.

    The heartbeat of :meth:`Leases.held` sets it; a caller polls :meth:`is_set` / :meth:`check` between
    steps, or blocks in :meth:`wait`. Once it is set the targets may already be someone else's: stop
    changing them (the pipeline cancels the run), then leave the ``held()`` block.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._error: LeaseLost | None = None

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the lease is lost or ``timeout`` seconds passed; returns whether it is lost."""
        return self._event.wait(timeout)

    @property
    def error(self) -> LeaseLost | None:
        """Why the lease is lost, or ``None`` while it is not."""
        return self._error

    def check(self) -> None:
        """Raise :class:`LeaseLost` if the lease is lost; do nothing otherwise."""
        if self._error is not None:
            raise self._error

    def set(self, error: LeaseLost) -> bool:
        """Record the loss; returns False (and keeps the first reason) if it was recorded already."""
        if self._event.is_set():
            return False
        self._error = error
        self._event.set()
        return True

    def __repr__(self) -> str:
        return f"LossSignal(lost={self.is_set()})"


@dataclass(frozen=True)
class Lease:
    """Targets held by one holder, from :meth:`Leases.acquire`; pass it to ``renew`` / ``release``.

    ``expires_at`` is as of the acquisition or renewal that returned this object (a heartbeat's renewals
    do not change the object a ``held()`` block got). ``lost`` is shared by every copy of one lease.
    """

    lease_id: str
    targets: Mapping[str, LeaseMode] = field(hash=False)
    holder: str
    purpose: str
    request_id: str | None
    acquired_at: datetime
    expires_at: datetime
    lost: LossSignal = field(default_factory=LossSignal, compare=False, repr=False)


class LeaseConflict(OpsError):
    """A target is held in a mode that excludes the request; nothing was taken.

    ``holders`` are the live holders in the way, one per (lease, target), oldest first.
    """

    title = "target busy"

    def __init__(self, holders: Sequence[LeaseHolder], *, now: datetime) -> None:
        self.holders = tuple(holders)
        super().__init__("; ".join(describe_holder(h, now=now) for h in self.holders) or "target busy")


class LeaseLost(OpsError):
    """A lease could not be renewed: it expired and someone else took a target, or its rows are gone.

    Whoever held it must stop changing its targets.
    """

    title = "lease lost"


def describe_holder(holder: LeaseHolder, *, now: datetime) -> str:
    """``region/x is held by alice (failover…, request 3f2a91c0…) since 14:02:11 UTC (12 min ago), on
    host h pid 123``."""
    how = " (shared)" if holder.mode is LeaseMode.SHARED else ""
    why = holder.purpose or "no purpose given"
    if holder.request_id:
        why += f", request {_short_id(holder.request_id)}"
    now = now.astimezone(UTC)
    since = holder.acquired_at.astimezone(UTC)
    stamp = f"{since:%H:%M:%S}" if since.date() == now.date() else f"{since:%Y-%m-%d %H:%M:%S}"
    return (
        f"{holder.target} is held{how} by {holder.holder} ({why}) since {stamp} UTC "
        f"({_ago((now - holder.acquired_at).total_seconds())}), on host {holder.host} pid {holder.pid}"
    )


def _short_id(value: str) -> str:
    return value if len(value) <= 12 else value[:8] + "…"


def _ago(seconds: float) -> str:
    if seconds < 1:
        return "just now"
    if seconds < 60:
        return f"{int(seconds)} s ago"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min ago"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min ago" if minutes else f"{hours} h ago"


# -- this machine's processes ----------------------------------------------------------------------


# -- the leases ----------------------------------------------------------------------------------------


class Leases:
    """Take, renew, release and list leases on targets in the shared database.

    Args:
        database: the shared store; its ``engine`` is used for every call.
        clock: this process's clock; it decides nothing about expiry (see ``store_time``).
        store_time: where "now" comes from for stamping and expiry: the store's clock
            (:data:`~opsconsole.core.store.dbtime.DATABASE_TIME`) unless a test shares a fake one
            (:class:`~opsconsole.core.store.dbtime.ClockStoreTime`) among every party.
        ttl_s: how long a lease lives without a renewal.
        host: recorded as the holder's host; ``socket.gethostname()`` by default.
        pid: recorded as the holder's process; the calling process (at each acquisition) by default.

    Every method raises :class:`~opsconsole.core.store.db.StoreUnavailable` when the store cannot be reached
    or answers with an error; nothing is taken then.
    """

    def __init__(
        self,
        database: Database,
        *,
        clock: Clock | None = None,
        ttl_s: float = DEFAULT_TTL_S,
        host: str | None = None,
        pid: int | None = None,
        store_time: StoreTime | None = None,
    ) -> None:
        if not ttl_s > 0:
            raise ValueError(f"a lease's ttl must be positive, not {ttl_s}")
        self.database = database
        self.clock: Clock = clock or SystemClock()
        self.store_time: StoreTime = store_time or DATABASE_TIME
        self.ttl_s = ttl_s
        #: This machine, for telling whether a holder's process is gone (only knowable here).
        self._this_host = socket.gethostname()
        self.host = host or self._this_host
        self._pid = pid

    @property
    def pid(self) -> int:
        return self._pid if self._pid is not None else os.getpid()

    def owner(self) -> Owner:
        """Who takes a lease through this object now (recorded with it, judged by :meth:`_dead`)."""
        pid = self.pid
        return Owner(self.host, boot_id(), pid, process_start_time(pid))

    # -- taking and giving back -------------------------------------------------------------------

    def acquire(
        self,
        targets: Mapping[str, LeaseMode] | Sequence[str],
        *,
        holder: str,
        purpose: str,
        request_id: str | None = None,
    ) -> Lease:
        """Take every target in its mode, or none.

        Args:
            targets: target → mode; a plain sequence of targets means all exclusive.
            holder: who holds it (a principal), shown to whoever is refused.
            purpose: what for, in words ("failover eu-west-1 → eu-central-1").
            request_id: the change request the run carries out, if any.

        Returns:
            The lease, live until ``expires_at`` unless renewed.

        Raises:
            LeaseConflict: a live holder of a target is incompatible; nothing was taken.
            StoreUnavailable: the store cannot be reached; nothing was taken.
            ValueError: no targets, an empty or over-long target or holder, an unknown mode.
        """
        wanted = _normalise(targets)
        if not holder or len(holder) > _MAX_HOLDER:
            raise ValueError(f"a lease holder is 1 to {_MAX_HOLDER} characters, not {holder!r}")
        lease_id = uuid.uuid4().hex
        host, pid = self.host, self.pid
        owner = self.owner().token()

        def take(conn: Connection) -> Lease:
            now = self.store_time.now(conn)
            rows = self._rows_on(conn, wanted)
            dead = {r["lease_id"] for r in rows if self._dead(r, now)}
            if dead:
                # The whole lease goes, not only its rows on these targets: a lease is dead as a unit.
                conn.execute(delete(leases_table).where(leases_table.c.lease_id.in_(sorted(dead))))
            blocking = [
                _holder(r)
                for r in rows
                if r["lease_id"] not in dead and not compatible(wanted[r["target"]], r["mode"])
            ]
            if blocking:
                raise LeaseConflict(_ordered(blocking), now=now)
            expires_at = now + timedelta(seconds=self.ttl_s)
            conn.execute(
                insert(leases_table),
                [
                    {
                        "target": target, "lease_id": lease_id, "mode": str(mode), "holder": holder,
                        "purpose": purpose, "request_id": request_id, "host": host, "pid": pid,
                        "owner": owner,
                        "acquired_at": db_value(now), "renewed_at": db_value(now),
                        "expires_at": db_value(expires_at),
                    }
                    for target, mode in wanted.items()
                ],
            )
            return Lease(lease_id=lease_id, targets=MappingProxyType(dict(wanted)), holder=holder,
                         purpose=purpose, request_id=request_id, acquired_at=now, expires_at=expires_at)

        return self._serialised(take, doing=f"take a lease on {', '.join(wanted)}")

    def renew(self, lease: Lease) -> Lease:
        """Extend ``lease`` by ``ttl_s`` from now; returns it with the new ``expires_at``.

        A lease that expired is renewed too, as long as it is still whole and no one else took a target
        meanwhile: nobody was refused because of it, so nothing was promised to anyone else.

        Raises:
            LeaseLost: its rows are gone (it was released, or found dead and cleared by an acquirer), or
                it expired and someone else now holds a target in a conflicting mode. The lease's
                remaining rows are removed and ``lease.lost`` is set.
            StoreUnavailable: the store cannot be reached (the lease may still be live until it expires).
        """

        def extend(conn: Connection) -> Lease | LeaseLost:
            now = self.store_time.now(conn)
            rows = conn.execute(
                select(leases_table).where(leases_table.c.lease_id == lease.lease_id)
            ).mappings().all()
            present = {r["target"] for r in rows}
            lost: LeaseLost | None = None
            if present != set(lease.targets):
                missing = sorted(set(lease.targets) - present)
                lost = LeaseLost(
                    f"the lease of {lease.holder} ({lease.purpose}) on {', '.join(missing or present)} is "
                    f"gone: it was released, or it lapsed (it expired at {_hms(lease.expires_at)} UTC) and "
                    "was cleared by someone who took the target"
                )
            elif any(_aware(r["expires_at"]) < now for r in rows):
                others = [
                    r for r in self._rows_on(conn, lease.targets)
                    if r["lease_id"] != lease.lease_id and not self._dead(r, now)
                    and not compatible(lease.targets[r["target"]], r["mode"])
                ]
                if others:
                    lost = LeaseLost(
                        f"the lease of {lease.holder} ({lease.purpose}) expired at "
                        f"{_hms(lease.expires_at)} UTC and meanwhile "
                        + "; ".join(describe_holder(_holder(r), now=now) for r in others)
                    )
            if lost is not None:
                conn.execute(delete(leases_table).where(leases_table.c.lease_id == lease.lease_id))
                return lost
            expires_at = now + timedelta(seconds=self.ttl_s)
            conn.execute(
                update(leases_table)
                .where(leases_table.c.lease_id == lease.lease_id)
                .values(renewed_at=db_value(now), expires_at=db_value(expires_at))
            )
            return replace(lease, expires_at=expires_at)

        outcome = self._serialised(extend, doing=f"renew the lease on {', '.join(lease.targets)}")
        if isinstance(outcome, LeaseLost):
            lease.lost.set(outcome)
            raise outcome
        return outcome

    def release(self, lease: Lease) -> None:
        """Give ``lease`` back. Idempotent: releasing a released, expired or lost lease does nothing.

        Raises:
            StoreUnavailable: the store cannot be reached (the lease then lapses after ``ttl_s``).
        """

        def give_back(conn: Connection) -> None:
            conn.execute(delete(leases_table).where(leases_table.c.lease_id == lease.lease_id))

        self._plain(give_back, write=True, doing=f"release the lease on {', '.join(lease.targets)}")

    @contextmanager
    def held(
        self,
        targets: Mapping[str, LeaseMode] | Sequence[str],
        *,
        holder: str,
        purpose: str,
        request_id: str | None = None,
        on_lost: Callable[[LeaseLost], None] | None = None,
    ) -> Iterator[Lease]:
        """Hold ``targets`` for the duration of a ``with`` block, renewed by a heartbeat.

        Acquires like :meth:`acquire` (and raises like it, before the block runs), then a daemon thread
        renews the lease every ``ttl_s / 3`` seconds. On leaving the block, also by an exception, the
        heartbeat stops and the lease is released.

        When the lease is lost, the heartbeat sets ``lease.lost`` (with the reason, a :class:`LeaseLost`)
        and calls ``on_lost`` from its thread; it does not interrupt the block. It is lost when a renewal
        raises :class:`LeaseLost`, or when renewals fail (store unreachable) for so long that the next
        beat would come after the lease expires: with the default ttl, the second failure in a row, which
        leaves a third of the ttl to stop. **A caller must then stop changing the targets**: the pipeline
        cancels the run (``on_lost``) or checks ``lease.lost.check()`` between steps, then leaves the
        block. Every failed renewal is logged as a warning.

        A release that fails on leaving (store unreachable) is logged, not raised: the run is over either
        way, and the lease lapses by itself within ``ttl_s``.
        """
        lease = self.acquire(targets, holder=holder, purpose=purpose, request_id=request_id)
        with self.kept(lease, on_lost=on_lost):
            yield lease

    @contextmanager
    def kept(self, lease: Lease, *, on_lost: Callable[[LeaseLost], None] | None = None) -> Iterator[Lease]:
        """Keep an already acquired ``lease`` alive for a ``with`` block (heartbeat), then release it.

        For a caller that must know it got the lease before it hands the work to another thread (the
        pipeline acquires in the request's thread, then keeps the lease in the run's): the loss rules and
        the release on leaving are those of :meth:`held`.
        """
        beat = _Heartbeat(self, lease, on_lost)
        beat.start()
        try:
            yield lease
        finally:
            beat.stop()
            try:
                self.release(lease)
            except StoreUnavailable as exc:
                log.warning("could not release the lease %s on %s (it lapses within %.0f s): %s",
                            lease.lease_id, ", ".join(lease.targets), self.ttl_s, exc)

    # -- looking ---------------------------------------------------------------------------------

    def holders(self, targets: Iterable[str] | None = None) -> list[LeaseHolder]:
        """The live holders of ``targets`` (of every target if ``None``), by target, oldest first."""
        wanted = None if targets is None else sorted(set(targets))

        def read(conn: Connection) -> list[LeaseHolder]:
            now = self.store_time.now(conn)
            statement = select(leases_table)
            if wanted is not None:
                statement = statement.where(leases_table.c.target.in_(wanted))
            rows = conn.execute(statement).mappings().all()
            return _ordered(_holder(r) for r in rows if not self._dead(r, now))

        if wanted == []:
            return []
        return self._plain(read, write=False, doing="list leases")

    def conflicts(self, targets: Mapping[str, LeaseMode] | Sequence[str]) -> list[LeaseHolder]:
        """The live holders that would make :meth:`acquire` of ``targets`` fail now; takes nothing."""
        wanted = _normalise(targets)

        def read(conn: Connection) -> list[LeaseHolder]:
            now = self.store_time.now(conn)
            return _ordered(
                _holder(r) for r in self._rows_on(conn, wanted)
                if not self._dead(r, now) and not compatible(wanted[r["target"]], r["mode"])
            )

        return self._plain(read, write=False, doing=f"look up leases on {', '.join(wanted)}")

    # -- internals -------------------------------------------------------------------------------

    def _dead(self, row: RowMapping, now: datetime) -> bool:
        """Expired in database time, or its owner provably gone (on this host and boot)."""
        expires_at = utc(row["expires_at"])
        if expires_at is None or expires_at < now:
            return True
        owner = Owner.parse(row.get("owner"))
        if owner is not None:
            return owner.alive_here(host=self._this_host) is False
        return bool(row["host"] == self._this_host and not pid_alive(int(row["pid"])))

    @staticmethod
    def _rows_on(conn: Connection, targets: Iterable[str]) -> Sequence[RowMapping]:
        statement = select(leases_table).where(leases_table.c.target.in_(sorted(targets)))
        return conn.execute(statement).mappings().all()

    def _serialised(self, work: Callable[[Connection], T], *, doing: str) -> T:
        """Run ``work`` in a transaction that first takes the guard row (creating it on first use)."""
        guard = lease_guard_table
        for attempt in range(1, _GUARD_ATTEMPTS + 1):
            creating = False
            try:
                with self.database.engine.begin() as conn:
                    bumped = conn.execute(
                        update(guard).where(guard.c.id == _GUARD_ID).values(generation=guard.c.generation + 1)
                    ).rowcount
                    if not bumped:
                        creating = True
                        conn.execute(insert(guard).values(id=_GUARD_ID, generation=1))
                        creating = False
                    return work(conn)
            except IntegrityError as exc:
                if creating and attempt < _GUARD_ATTEMPTS:
                    continue  # another acquirer created it first: its row is there for the next attempt
                raise self._unavailable(exc, doing) from exc
            except SQLAlchemyError as exc:
                raise self._unavailable(exc, doing) from exc
        raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover

    def _plain(self, work: Callable[[Connection], T], *, write: bool, doing: str) -> T:
        try:
            if write:
                with self.database.engine.begin() as conn:
                    return work(conn)
            with self.database.engine.connect() as conn:
                return work(conn)
        except SQLAlchemyError as exc:
            raise self._unavailable(exc, doing) from exc

    def _unavailable(self, exc: SQLAlchemyError, doing: str) -> StoreUnavailable:
        return self.database.unavailable(exc, doing)


class _Heartbeat:
    """Renews one lease every ``ttl_s / 3`` in a daemon thread until stopped or the lease is lost."""

    def __init__(self, leases: Leases, lease: Lease, on_lost: Callable[[LeaseLost], None] | None) -> None:
        self._leases = leases
        self._lease = lease
        self._on_lost = on_lost
        self._interval = leases.ttl_s / 3
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"opsconsole-lease-{lease.lease_id[:8]}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        # A renewal in flight is bounded by the store's timeouts; don't hang a finished run on it longer.
        self._thread.join(self._leases.ttl_s)

    def _run(self) -> None:
        # The local deadline is measured on the monotonic clock: a wall-clock jump must not make the
        # heartbeat believe it still has time.
        valid_until = monotonic() + self._leases.ttl_s
        while not self._stop.wait(self._interval):
            started = monotonic()
            try:
                self._lease = self._leases.renew(self._lease)
            except LeaseLost as exc:
                self._lost(exc)
                return
            except StoreUnavailable as exc:
                log.warning("could not renew the lease %s on %s: %s", self._lease.lease_id,
                            ", ".join(self._lease.targets), exc)
                if monotonic() + self._interval >= valid_until:
                    lost = LeaseLost(
                        f"the lease of {self._lease.holder} ({self._lease.purpose}) on "
                        f"{', '.join(self._lease.targets)} could not be renewed and lapses before the "
                        f"next try: {exc}"
                    )
                    lost.__cause__ = exc
                    self._lost(lost)
                    return
                continue
            except Exception as exc:  # a bug must not leave a lease silently unrenewed
                log.exception("the heartbeat of lease %s failed", self._lease.lease_id)
                lost = LeaseLost(f"the heartbeat of the lease on {', '.join(self._lease.targets)} "
                                 f"failed: {type(exc).__name__}: {exc}")
                lost.__cause__ = exc
                self._lost(lost)
                return
            valid_until = started + self._leases.ttl_s

    def _lost(self, error: LeaseLost) -> None:
        log.warning("lease lost: %s", error)
        self._lease.lost.set(error)
        if self._on_lost is not None:
            try:
                self._on_lost(error)
            except Exception:
                log.exception("on_lost of lease %s failed", self._lease.lease_id)


def _normalise(targets: Mapping[str, LeaseMode] | Sequence[str]) -> dict[str, LeaseMode]:
    if isinstance(targets, str):
        raise TypeError(f"targets is a sequence or mapping of targets, not one string: {targets!r}")
    if isinstance(targets, Mapping):
        wanted = {str(t): LeaseMode(m) for t, m in targets.items()}
    else:
        wanted = dict.fromkeys((str(t) for t in targets), LeaseMode.EXCLUSIVE)
    if not wanted:
        raise ValueError("a lease needs at least one target")
    for target in wanted:
        if not target or len(target) > _MAX_TARGET:
            raise ValueError(f"a target is 1 to {_MAX_TARGET} characters, not {target!r}")
    return dict(sorted(wanted.items()))


def _holder(row: RowMapping) -> LeaseHolder:
    try:
        mode = LeaseMode(row["mode"])
    except ValueError:  # written by a newer console: shown (and treated) as exclusive
        mode = LeaseMode.EXCLUSIVE
    return LeaseHolder(
        target=row["target"],
        mode=mode,
        holder=row["holder"],
        purpose=row["purpose"],
        request_id=row["request_id"],
        host=row["host"],
        pid=int(row["pid"]),
        acquired_at=_aware(row["acquired_at"]),
        expires_at=_aware(row["expires_at"]),
    )


def _aware(value: Any) -> datetime:
    stamped = utc(value)
    assert stamped is not None  # the columns are NOT NULL
    return stamped


def _ordered(holders: Iterable[LeaseHolder]) -> list[LeaseHolder]:
    return sorted(holders, key=lambda h: (h.target, h.acquired_at, h.holder))


def _hms(at: datetime) -> str:
    return f"{_aware(at):%H:%M:%S}"
