"""Leases on targets, on both back ends: refusals name the holder, dead holders free their targets,
acquisition is atomic across processes, and a store that cannot be reached takes nothing."""

from __future__ import annotations

import multiprocessing
import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from sqlalchemy import event, insert, select
from sqlalchemy.engine import make_url

from opsconsole.core.change.locks import (
    Lease,
    LeaseConflict,
    LeaseHolder,
    LeaseLost,
    LeaseMode,
    Leases,
)
from opsconsole.core.clock import utc
from opsconsole.core.processes import pid_alive
from opsconsole.core.store.db import Database, StoreUnavailable, lease_guard_table, leases_table
from opsconsole.core.store.dbtime import ClockStoreTime
from opsconsole.testing import DEFAULT_NOW, FakeClock

REGION = "region/eu-west-1"
DNS = "dns/eu-west-1"
WORKLOAD = "workload/eks-euw1-prod/checkout"
T = TypeVar("T")
EXCLUSIVE = LeaseMode.EXCLUSIVE
SHARED = LeaseMode.SHARED


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    try:
        yield database
    finally:
        database.close()


def fake(db: Database, clock: FakeClock, **kwargs: Any) -> Leases:
    """Leases whose store time is ``clock`` (shared by every party of a test): time moves without waiting.

    Production leases use the store's own clock (see tests/faults/test_dbtime.py)."""
    return Leases(db, store_time=ClockStoreTime(clock), **kwargs)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def dead_pid() -> int:
    """The pid of a process of this machine that has exited and been reaped."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert not pid_alive(proc.pid)
    return proc.pid


def eventually(probe: Callable[[], T], timeout: float = 5.0) -> T:
    """``probe()`` once it is truthy (or its last value after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while not (value := probe()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return value


def names(holders: list[LeaseHolder] | tuple[LeaseHolder, ...]) -> list[tuple[str, str]]:
    return [(h.target, h.holder) for h in holders]


# -- taking and giving back ------------------------------------------------------------------------------


def test_acquire_then_release(db: Database, clock: FakeClock) -> None:
    leases = fake(db, clock, host="h1", pid=os.getpid())
    lease = leases.acquire([REGION, DNS], holder="alice", purpose="failover", request_id="r1")
    assert lease.targets == {DNS: EXCLUSIVE, REGION: EXCLUSIVE}
    assert lease.acquired_at == DEFAULT_NOW
    assert lease.expires_at == DEFAULT_NOW + timedelta(seconds=90)
    held = leases.holders()
    assert names(held) == [(DNS, "alice"), (REGION, "alice")]
    assert held[0] == LeaseHolder(target=DNS, mode=EXCLUSIVE, holder="alice", purpose="failover",
                                  request_id="r1", host="h1", pid=os.getpid(), acquired_at=DEFAULT_NOW,
                                  expires_at=DEFAULT_NOW + timedelta(seconds=90))
    assert held[0].acquired_at.tzinfo is not None
    assert names(leases.holders([REGION, "region/us-east-1"])) == [(REGION, "alice")]
    assert leases.holders([]) == []

    leases.release(lease)
    assert leases.holders() == []
    leases.release(lease)  # idempotent
    assert leases.acquire([REGION], holder="bob", purpose="scale").holder == "bob"


def test_a_conflicting_request_is_refused_naming_holder_purpose_and_since_when(
    db: Database, clock: FakeClock
) -> None:
    alice = fake(db, clock, ttl_s=3600, host="ops-1", pid=os.getpid())
    bob = fake(db, clock)
    alice.acquire({REGION: EXCLUSIVE}, holder="alice", purpose="failover eu-west-1 → eu-central-1",
                  request_id="3f2a91c0e8d94b5a9c1d2e3f4a5b6c7d")
    clock.advance(12 * 60 + 5)

    with pytest.raises(LeaseConflict) as caught:
        bob.acquire([REGION], holder="bob", purpose="scale checkout")
    conflict = caught.value
    assert conflict.title == "target busy"
    assert str(conflict) == (
        "region/eu-west-1 is held by alice (failover eu-west-1 → eu-central-1, request 3f2a91c0…) "
        f"since 12:00:00 UTC (12 min ago), on host ops-1 pid {os.getpid()}"
    )
    assert names(conflict.holders) == [(REGION, "alice")]
    # A shared request is refused by an exclusive holder too, and the preview says so without taking.
    with pytest.raises(LeaseConflict):
        bob.acquire({REGION: SHARED}, holder="bob", purpose="scale checkout")
    assert names(bob.conflicts({REGION: SHARED})) == [(REGION, "alice")]
    assert names(bob.holders()) == [(REGION, "alice")]


def test_shared_holders_coexist_and_exclude_an_exclusive_one(db: Database, clock: FakeClock) -> None:
    leases = fake(db, clock)
    # Two scales in one region: the region shared, each its workload exclusive.
    first = leases.acquire({REGION: SHARED, WORKLOAD: EXCLUSIVE}, holder="alice", purpose="scale checkout")
    leases.acquire({REGION: SHARED, "workload/eks-euw1-prod/search": EXCLUSIVE}, holder="bob",
                   purpose="scale search")
    # The same workload again: refused, though the region is shared by both.
    with pytest.raises(LeaseConflict) as same_workload:
        leases.acquire({REGION: SHARED, WORKLOAD: EXCLUSIVE}, holder="carol", purpose="scale checkout")
    assert names(same_workload.value.holders) == [(WORKLOAD, "alice")]
    # A failover of the region: refused, naming both shared holders.
    with pytest.raises(LeaseConflict) as failover:
        leases.acquire([REGION], holder="dave", purpose="failover")
    assert sorted(names(failover.value.holders)) == [(REGION, "alice"), (REGION, "bob")]
    assert {h.mode for h in failover.value.holders} == {SHARED}
    assert "is held (shared) by alice" in str(failover.value)
    assert sorted(names(leases.conflicts([REGION]))) == [(REGION, "alice"), (REGION, "bob")]
    assert leases.conflicts({REGION: SHARED}) == []

    leases.release(first)
    with pytest.raises(LeaseConflict) as still:
        leases.acquire([REGION], holder="dave", purpose="failover")
    assert names(still.value.holders) == [(REGION, "bob")]


def test_all_or_nothing(db: Database, clock: FakeClock) -> None:
    leases = fake(db, clock)
    leases.acquire([DNS], holder="alice", purpose="dns weights")
    with pytest.raises(LeaseConflict) as caught:
        leases.acquire([REGION, DNS, "database/eu-west-1"], holder="bob", purpose="failover")
    assert names(caught.value.holders) == [(DNS, "alice")]
    assert names(leases.holders()) == [(DNS, "alice")]  # neither region nor database was taken
    assert leases.acquire([REGION, "database/eu-west-1"], holder="carol", purpose="drill").holder == "carol"


def test_bad_requests_are_refused_before_the_store(db: Database) -> None:
    leases = Leases(db)
    with pytest.raises(ValueError, match="at least one target"):
        leases.acquire([], holder="alice", purpose="nothing")
    with pytest.raises(TypeError):
        leases.acquire(REGION, holder="alice", purpose="a string is not a list")
    with pytest.raises(ValueError):
        leases.acquire({REGION: "sometimes"}, holder="alice", purpose="bad mode")  # type: ignore[dict-item]
    with pytest.raises(ValueError):
        leases.acquire(["x" * 257], holder="alice", purpose="too long")
    with pytest.raises(ValueError):
        leases.acquire([REGION], holder="", purpose="nobody")
    assert leases.holders() == []


# -- dead holders ----------------------------------------------------------------------------------------


def test_an_expired_lease_lets_another_take_it(db: Database, clock: FakeClock) -> None:
    alice = fake(db, clock, ttl_s=90)
    bob = fake(db, clock)
    alice.acquire([REGION], holder="alice", purpose="failover")
    clock.advance(89)
    with pytest.raises(LeaseConflict):
        bob.acquire([REGION], holder="bob", purpose="failover")
    clock.advance(2)
    assert bob.holders() == []  # expired: never reported
    assert bob.conflicts([REGION]) == []
    lease = bob.acquire([REGION], holder="bob", purpose="failover")
    assert names(bob.holders()) == [(REGION, "bob")]
    assert lease.acquired_at == DEFAULT_NOW + timedelta(seconds=91)


def test_a_dead_process_on_this_host_frees_its_lease_at_once(db: Database, clock: FakeClock) -> None:
    gone = dead_pid()
    fake(db, clock, pid=gone).acquire([REGION, DNS], holder="crashed", purpose="failover")
    leases = fake(db, clock)
    assert leases.holders() == []
    assert leases.conflicts([REGION]) == []
    leases.acquire([REGION], holder="bob", purpose="failover")
    # The whole dead lease went, not only its row on the target asked for.
    with db.engine.connect() as conn:
        rows = conn.execute(select(leases_table.c.target, leases_table.c.holder)).all()
    assert [tuple(r) for r in rows] == [(REGION, "bob")]


def test_a_zombie_counts_as_dead(db: Database, clock: FakeClock) -> None:
    proc = subprocess.Popen(["true"])
    try:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline, "the child never became a zombie"
            time.sleep(0.01)
        assert not pid_alive(proc.pid)
        fake(db, clock, pid=proc.pid).acquire([REGION], holder="zombie", purpose="failover")
        assert fake(db, clock).acquire([REGION], holder="bob", purpose="failover").holder == "bob"
    finally:
        proc.wait()


def test_a_dead_pid_on_another_host_blocks_until_expiry(db: Database, clock: FakeClock) -> None:
    gone = dead_pid()
    fake(db, clock, host="ops-2.example", pid=gone).acquire([REGION], holder="alice",
                                                                     purpose="failover")
    leases = fake(db, clock)
    with pytest.raises(LeaseConflict) as caught:
        leases.acquire([REGION], holder="bob", purpose="failover")
    assert f"on host ops-2.example pid {gone}" in str(caught.value)
    clock.advance(91)
    leases.acquire([REGION], holder="bob", purpose="failover")


# -- renewing --------------------------------------------------------------------------------------------


def test_renew_extends(db: Database, clock: FakeClock) -> None:
    alice = fake(db, clock, ttl_s=90)
    bob = fake(db, clock)
    lease = alice.acquire([REGION, DNS], holder="alice", purpose="failover")
    clock.advance(60)
    renewed = alice.renew(lease)
    assert renewed.expires_at == DEFAULT_NOW + timedelta(seconds=150)
    assert renewed.lease_id == lease.lease_id and renewed.acquired_at == lease.acquired_at
    assert {h.expires_at for h in alice.holders()} == {renewed.expires_at}
    clock.advance(60)  # past the first expiry, not the renewed one
    with pytest.raises(LeaseConflict):
        bob.acquire([DNS], holder="bob", purpose="dns weights")
    # Renewing a lapsed lease nobody took meanwhile is fine: nothing was promised to anyone else.
    clock.advance(100)
    assert bob.holders() == []
    again = alice.renew(renewed)
    assert again.expires_at == clock.now() + timedelta(seconds=90)
    assert not lease.lost.is_set()


def test_renew_after_someone_else_took_it_raises_lease_lost(db: Database, clock: FakeClock) -> None:
    alice = fake(db, clock)
    bob = fake(db, clock)
    lease = alice.acquire([REGION, DNS], holder="alice", purpose="failover")
    clock.advance(91)
    taken = bob.acquire([DNS], holder="bob", purpose="dns weights")
    with pytest.raises(LeaseLost) as caught:
        alice.renew(lease)
    assert caught.value.title == "lease lost"
    assert "alice" in str(caught.value) and "failover" in str(caught.value)
    assert lease.lost.is_set() and lease.lost.error is caught.value
    with pytest.raises(LeaseLost):
        lease.lost.check()
    # Releasing the lost lease is harmless and leaves bob's alone.
    alice.release(lease)
    assert names(alice.holders()) == [(DNS, "bob")]
    bob.release(taken)


def test_renew_after_release_raises_lease_lost(db: Database, clock: FakeClock) -> None:
    leases = fake(db, clock)
    lease = leases.acquire([REGION], holder="alice", purpose="failover")
    leases.release(lease)
    with pytest.raises(LeaseLost, match="is gone"):
        leases.renew(lease)


# -- held(): the heartbeat ---------------------------------------------------------------------------


def test_held_heartbeats_keep_a_lease_alive_past_its_ttl(db: Database) -> None:
    # Real time: the heartbeat renews every ttl/3 = 2 s, so three renewals have a chance before the lease
    # would lapse (a loaded 2-core machine can hold a thread back for over a second).
    leases = Leases(db, ttl_s=6.0)
    other = Leases(db, ttl_s=6.0)
    with leases.held([REGION], holder="alice", purpose="failover") as lease:
        time.sleep(7.0)
        with pytest.raises(LeaseConflict):
            other.acquire([REGION], holder="bob", purpose="failover")
        (holder,) = other.holders([REGION])
        assert holder.expires_at > lease.expires_at  # renewed since
        assert not lease.lost.is_set()
    assert other.holders() == []
    assert not [t for t in threading.enumerate() if t.name.startswith("opsconsole-lease-")]


def test_held_releases_on_exception(db: Database, clock: FakeClock) -> None:
    leases = fake(db, clock)
    with (
        pytest.raises(RuntimeError, match="playbook blew up"),
        leases.held({REGION: SHARED, WORKLOAD: EXCLUSIVE}, holder="alice", purpose="scale"),
    ):
        assert len(leases.holders()) == 2
        raise RuntimeError("playbook blew up")
    assert leases.holders() == []
    # A refused held() runs nothing and holds nothing.
    with leases.held([REGION], holder="alice", purpose="failover"):
        ran = []
        with pytest.raises(LeaseConflict), leases.held([REGION], holder="bob", purpose="failover"):
            ran.append(True)
        assert ran == []


def test_held_reports_a_lost_lease(db: Database) -> None:
    """Bob comes an hour later (his store clock an hour on): alice's rows look dead to him and go."""
    alice = Leases(db, ttl_s=1.5)
    bob = Leases(db, store_time=ClockStoreTime(FakeClock(datetime.now(UTC) + timedelta(hours=1))))
    told: list[LeaseLost] = []
    with alice.held([REGION], holder="alice", purpose="failover", on_lost=told.append) as lease:
        bob.acquire([REGION], holder="bob", purpose="failover")
        assert lease.lost.wait(5), "the heartbeat did not notice"
        assert isinstance(lease.lost.error, LeaseLost)
        assert eventually(lambda: told) == [lease.lost.error]  # on_lost runs right after
    assert names(bob.holders()) == [(REGION, "bob")]  # leaving alice's block released nothing of bob's


def test_held_reports_a_store_gone_before_the_lease_lapses(db: Database) -> None:
    leases = Leases(db, ttl_s=3.0)  # real time: beats every second, so the loss is told a second ahead
    told: list[tuple[datetime, LeaseLost]] = []
    with leases.held([REGION], holder="alice", purpose="failover",
                     on_lost=lambda err: told.append((datetime.now(UTC), err))) as lease:
        with store_down(db):
            assert lease.lost.wait(10), "a heartbeat that cannot reach the store must say so"
        error = lease.lost.error
        assert error is not None and isinstance(error.__cause__, StoreUnavailable)
        ((told_at, told_error),) = eventually(lambda: told)
        assert told_error is error
        # The holder was told while its lease still stood in the store: it can stop before anyone else
        # may take the targets.
        with db.engine.connect() as conn:
            expires_at = utc(conn.execute(select(leases_table.c.expires_at)).scalar_one())
        assert expires_at is not None and told_at < expires_at
    # Leaving the block with the store back released it.
    assert leases.holders() == []


# -- atomic across processes ---------------------------------------------------------------------------


ROUNDS = 3
RACERS = 8


def _race(url: str, name: str, barrier: Any, results: Any) -> None:
    """One racer (a spawned process): every round, try the same exclusive target at the same moment."""
    try:
        database = Database(url)
        leases = Leases(database)
        for round_ in range(ROUNDS):
            barrier.wait(60)
            lease: Lease | None = None
            try:
                lease = leases.acquire([REGION], holder=name, purpose=f"round {round_}")
                results.put((round_, name, "won", ""))
            except LeaseConflict as conflict:
                results.put((round_, name, "refused", ",".join(h.holder for h in conflict.holders)))
            barrier.wait(60)  # everyone has tried
            if lease is not None:
                leases.release(lease)
            barrier.wait(60)  # released before the next round
        database.close()
    except BaseException as exc:
        results.put((-1, name, "error", repr(exc)))
        barrier.abort()
        raise


def test_racing_processes_exactly_one_wins_each_round(db: Database, db_url: str) -> None:
    # ``db`` made the schema; the guard row does not exist yet, so round 1 also races to create it.
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(RACERS)
    results = ctx.Queue()
    procs = [ctx.Process(target=_race, args=(db_url, f"racer-{i}", barrier, results), daemon=True)
             for i in range(RACERS)]
    for p in procs:
        p.start()
    try:
        got = [results.get(timeout=90) for _ in range(RACERS * ROUNDS)]
    except queue.Empty:
        pytest.fail("racers stalled")
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
    assert not [r for r in got if r[2] == "error"], got
    for round_ in range(ROUNDS):
        outcomes = [r for r in got if r[0] == round_]
        winners = [name for _, name, outcome, _ in outcomes if outcome == "won"]
        assert len(winners) == 1, outcomes
        refused = [detail for _, _, outcome, detail in outcomes if outcome == "refused"]
        assert refused == [winners[0]] * (RACERS - 1), outcomes
    assert all(p.exitcode == 0 for p in procs)
    assert Leases(db).holders() == []


def test_first_acquirers_racing_to_create_the_guard_all_succeed(db: Database) -> None:
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def take(i: int) -> None:
        barrier.wait(30)
        try:
            Leases(db).acquire([f"cluster/c{i}"], holder=f"t{i}", purpose="race")
            outcomes.append("ok")
        except Exception as exc:
            outcomes.append(repr(exc))

    threads = [threading.Thread(target=take, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert outcomes == ["ok"] * 8
    with db.engine.connect() as conn:
        assert conn.execute(select(lease_guard_table.c.generation)).scalar_one() == 8



def test_a_guard_row_created_meanwhile_is_retried(db: Database) -> None:
    """The acquirer finds no guard row, tries to create it and loses to one created meanwhile."""
    failures: list[str] = []
    event.listen(db.engine, "handle_error",
                 lambda ctx: failures.append(type(ctx.original_exception).__name__))
    taken: list[Lease] = []
    with db.engine.connect() as other:
        creating = other.begin()
        other.execute(insert(lease_guard_table).values(id=1, generation=100))
        acquirer = threading.Thread(
            target=lambda: taken.append(Leases(db).acquire([REGION], holder="alice", purpose="failover"))
        )
        acquirer.start()
        acquirer.join(0.5)
        assert acquirer.is_alive()  # waiting for the other transaction (its row, or SQLite's write lock)
        creating.commit()
    acquirer.join(30)
    assert [lease.holder for lease in taken] == ["alice"]
    with db.engine.connect() as conn:
        assert conn.execute(select(lease_guard_table.c.generation)).scalar_one() == 101
    if not db.sqlite:  # PostgreSQL let both insert; the loser's unique violation was retried, not raised
        assert failures == ["UniqueViolation"]

# -- fail closed ------------------------------------------------------------------------------------------


def test_an_unreachable_store_is_refused_without_its_password(db_url: str) -> None:
    dead = (
        "sqlite:////nonexistent-opsconsole-dir/store.db" if db_url.startswith("sqlite")
        else "postgresql+psycopg://x:pw@127.0.0.1:9/none"
    )
    with pytest.raises(StoreUnavailable) as caught:
        Database(dead)
    message = str(caught.value)
    assert ("nonexistent-opsconsole-dir" in message) if db_url.startswith("sqlite") else (
        "127.0.0.1:9" in message and "pw" not in message
    )


def test_a_store_gone_after_start_takes_nothing(db_url: str) -> None:
    url = db_url
    if not url.startswith("sqlite"):
        # The test server trusts everyone, so a password is accepted and must never be shown.
        url = make_url(db_url).set(password="s3cret-pw").render_as_string(hide_password=False)
    db = Database(url)
    try:
        leases = Leases(db)
        kept = leases.acquire([DNS], holder="alice", purpose="dns weights")
        with store_down(db):
            with pytest.raises(StoreUnavailable) as caught:
                leases.acquire([REGION], holder="bob", purpose="failover")
            message = str(caught.value)
            assert make_url(url).render_as_string(hide_password=True) in message
            assert "s3cret" not in message and "could not take a lease on region/eu-west-1" in message
            for call in (leases.holders, lambda: leases.conflicts([REGION]),
                         lambda: leases.renew(kept), lambda: leases.release(kept)):
                with pytest.raises(StoreUnavailable):
                    call()
        assert names(leases.holders()) == [(DNS, "alice")]  # bob got nothing; alice's lease is intact
        leases.renew(kept)
    finally:
        db.close()


@contextmanager
def store_down(db: Database) -> Iterator[None]:
    """Make ``db`` unreachable for the block, then bring it back.

    SQLite: the database file moves away and a directory takes its place (a volume unmounted, a file
    replaced), and the pool's connections are closed, as after a restart. PostgreSQL: the database stops
    accepting connections and its sessions are terminated (maintenance, a failover of the store).
    """
    url = make_url(db.url)
    if db.sqlite:
        path = Path(str(url.database))
        db.engine.dispose()
        moved = [s for s in ("", "-wal", "-shm") if Path(f"{path}{s}").exists()]
        for s in moved:
            Path(f"{path}{s}").rename(f"{path}.aside{s}")
        path.mkdir()
        try:
            yield
        finally:
            db.engine.dispose()
            path.rmdir()
            for s in moved:
                Path(f"{path}.aside{s}").rename(f"{path}{s}")
        return
    name = str(url.database)
    with psycopg.connect(host=url.host, port=url.port, user=url.username, dbname="postgres",
                         autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
        try:
            yield
        finally:
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')

