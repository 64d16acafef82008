"""Leases, leader leases and request expiry are judged in the store's time, not each host's wall clock.

Issue 17 item 7. A process whose clock is ten minutes off (ahead or behind: skew between hosts, or a
jump) shares a store with a process whose clock is right. On SQLite and PostgreSQL: it neither steals a
live lease nor stretches its own; it does not expire a live request, and the requests it files expire
when the store says, not ten minutes early or late; it does not take a live scheduler leadership.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from opsconsole.core.change.actions import plan_failover
from opsconsole.core.change.approvals import RequestStatus
from opsconsole.core.change.locks import LeaseConflict, Leases
from opsconsole.core.change.pipeline import Pipeline
from opsconsole.core.change.rbac import Directory
from opsconsole.core.change.risk import load_policy
from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.store.db import Database
from opsconsole.core.store.dbtime import database_now, engine_now
from opsconsole.testing import healthy_records, snapshot_of

from .conftest import REPO

OFFSET = timedelta(minutes=10)
#: How far apart two readings of "now" may be on a loaded machine.
SLACK = timedelta(seconds=20)


class OffsetClock:
    """A wall clock that is off by a fixed amount (a skewed host; not a test clock moved by hand)."""

    def __init__(self, offset: timedelta) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    yield database
    database.close()


def test_database_now_is_aware_utc_and_the_stores_clock(db: Database) -> None:
    with db.engine.connect() as conn:
        first = database_now(conn)
    second = engine_now(db.engine)
    assert first.tzinfo is not None and first.utcoffset() == timedelta(0)
    assert first <= second
    assert abs(second - datetime.now(UTC)) < SLACK  # this machine hosts both stores in the test


@pytest.mark.parametrize("sign", [1, -1], ids=["ahead", "behind"])
def test_a_skewed_host_neither_steals_nor_stretches_a_lease(db: Database, sign: int) -> None:
    right = Leases(db, ttl_s=30)
    skewed = Leases(db, ttl_s=30, clock=OffsetClock(sign * OFFSET), host="skewed-host")
    held = right.acquire(["region/eu-west-1"], holder="alice", purpose="failover")
    # Ten minutes ahead, the holder's lease "expired" nine and a half minutes ago: it is not taken.
    with pytest.raises(LeaseConflict):
        skewed.acquire(["region/eu-west-1"], holder="bob", purpose="failover")
    assert [h.holder for h in skewed.holders(["region/eu-west-1"])] == ["alice"]
    # The skewed host's own lease lives ttl_s in the store's time, not ten minutes more or less.
    own = skewed.acquire(["region/us-east-1"], holder="bob", purpose="scale")
    store_now = engine_now(db.engine)
    assert abs(own.expires_at - (store_now + timedelta(seconds=30))) < SLACK
    renewed = skewed.renew(own)
    assert abs(renewed.expires_at - (engine_now(db.engine) + timedelta(seconds=30))) < SLACK
    right.release(held)


def _pipeline(db: Database, inventory: Path, clock: OffsetClock | None) -> Pipeline:
    fleet = load_inventory(inventory)
    snapshot = snapshot_of(healthy_records(fleet))
    return Pipeline(
        fleet=fleet, database=db, directory=Directory.load(inventory, sandbox=True, fleet=fleet),
        policy=load_policy(inventory, fleet), snapshot=lambda: snapshot, executor=None,
        playbook_dir=REPO / "playbooks", clock=clock,
    )


@pytest.mark.parametrize("sign", [1, -1], ids=["ahead", "behind"])
def test_a_skewed_host_neither_expires_a_live_request_nor_stretches_its_own(
    db: Database, inventory_copy: Path, sign: int
) -> None:
    right = _pipeline(db, inventory_copy, None)
    skewed = _pipeline(db, inventory_copy, OffsetClock(sign * OFFSET))
    plan = plan_failover(right.fleet, right._snapshot(), from_region="eu-west-1", to_region="eu-central-1")
    filed = right.submit(plan, right.directory.cast_member("alice"), face="cli").request
    assert skewed.expire_due() == []
    assert right.requests.get(filed.id).status is RequestStatus.REQUESTED
    # A request the skewed host files expires by the store's clock.
    other = plan_failover(skewed.fleet, skewed._snapshot(), from_region="us-east-1", to_region="us-west-2")
    mine = skewed.submit(other, skewed.directory.cast_member("erin"), face="cli").request
    ttl = mine.expires_at - mine.created_at
    assert abs(mine.expires_at - (engine_now(db.engine) + ttl)) < SLACK
    assert right.expire_due() == []


def test_a_skewed_replica_does_not_take_a_live_scheduler_leadership(
    db: Database, inventory_copy: Path
) -> None:
    """The scheduler's leader lease is judged in database time too: replica B, ten minutes ahead, does
    not see replica A's 30 s leadership as long expired."""
    from types import SimpleNamespace  # noqa: PLC0415

    from opsconsole.core.schedule.engine import Scheduler  # noqa: PLC0415

    fleet = load_inventory(inventory_copy)
    core: Any = SimpleNamespace(database=db, fleet=fleet, clock=OffsetClock(timedelta(0)), audit_key=None,
                                audit_head_file=None)
    right = Scheduler(core, clock=OffsetClock(timedelta(0)), instance_id="replica-a", lease_s=30.0)
    ahead = Scheduler(core, clock=OffsetClock(OFFSET), instance_id="replica-b", lease_s=30.0)
    behind = Scheduler(core, clock=OffsetClock(-OFFSET), instance_id="replica-c", lease_s=30.0)
    assert right.is_leader()
    time.sleep(0.1)
    assert not ahead.is_leader(), "a clock ten minutes ahead must not see the leadership as expired"
    assert not behind.is_leader()
    assert right.is_leader()
