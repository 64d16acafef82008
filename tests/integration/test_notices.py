"""The outbox on both back ends: a notice is delivered once, a dedupe key wins once, refs are shared."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from opsconsole.core.store.db import Database
from opsconsole.core.store.outbox import CLAIM_TIMEOUT, Outbox
from opsconsole.testing import FakeClock

T0 = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)


def test_a_notice_is_delivered_once_and_its_resolution_followed_up(db_url: str) -> None:
    db = Database(db_url)
    clock = FakeClock(T0)
    a, b = Outbox(db, clock=clock), Outbox(db, clock=clock)
    assert a.raise_notice("finding:x", kind="finding", subject="eu-west-1", data={"title": "p95"})
    assert not b.raise_notice("finding:x", kind="finding", subject="eu-west-1", data={"title": "p95"})
    first = a.claim("bot-a")
    assert [n.key for n in first] == ["finding:x"] and b.claim("bot-b") == []
    a.delivered(first[0], {"channel": "C1", "ts": "1.1"})
    assert a.claim("bot-a") == [] and b.claim("bot-b") == []
    assert b.resolve("finding:x") and not b.resolve("finding:x")
    follow = b.claim("bot-b")
    assert [n.needs_follow_up for n in follow] == [True]
    b.delivered(follow[0], {"channel": "C1", "ts": "1.2"}, follow_up=True)
    assert a.claim("bot-a") == []
    # It comes back: told again.
    assert a.raise_notice("finding:x", kind="finding", subject="eu-west-1", data={"title": "p95 again"})
    assert [n.data["title"] for n in a.claim("bot-a")] == ["p95 again"]
    db.close()


def test_a_dead_claimers_notice_is_claimed_again(db_url: str) -> None:
    db = Database(db_url)
    clock = FakeClock(T0)
    outbox = Outbox(db, clock=clock)
    outbox.raise_notice("shutdown:staging", kind="shutdown_warning", subject="staging", data={})
    assert len(outbox.claim("bot-a")) == 1
    assert outbox.claim("bot-b") == []
    clock.advance(CLAIM_TIMEOUT.total_seconds() + 1)
    assert [n.key for n in outbox.claim("bot-b")] == ["shutdown:staging"]
    db.close()


def test_dedupe_keys_win_once_across_threads(db_url: str) -> None:
    db = Database(db_url)
    outbox = Outbox(db)
    wins: list[bool] = []
    barrier = threading.Barrier(6)

    def click() -> None:
        barrier.wait()
        wins.append(outbox.first_time("action:approve:1700000000.000100:U0BOB"))

    threads = [threading.Thread(target=click) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False] * 5 + [True]
    db.close()


def test_message_refs_are_shared(db_url: str) -> None:
    db = Database(db_url)
    a, b = Outbox(db), Outbox(db)
    assert a.remember_message("request:r1", "slack", channel="C1", ts="1.5", data={"hash": "x"})
    assert not b.remember_message("request:r1", "slack", channel="C2", ts="9.9")
    ref = b.message_ref("request:r1", "slack")
    assert ref is not None and (ref.channel, ref.ts, ref.data) == ("C1", "1.5", {"hash": "x"})
    b.update_message("request:r1", "slack", data={"hash": "y"})
    again = a.message_ref("request:r1", "slack")
    assert again is not None and again.data == {"hash": "y"}
    db.close()
