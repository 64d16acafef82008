"""Claims are serialised: two conflicting high-risk filings at the same instant → one filed, one refused.

Issue 17 item 6. Two pipelines (two replicas, each with its own connection pool) on one store file a
failover of the same region. Both have read "the targets are free" before either files — a barrier
after each one's check makes that instant happen every time, on a loaded machine too — so only the check
inside the filing's transaction (PostgreSQL: an advisory lock; SQLite: ``BEGIN IMMEDIATE``) can refuse
the second. Exactly one request is filed, the other is refused with the words of the claim rule and an
audited refusal; on SQLite and PostgreSQL.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opsconsole.core.audit.records import AuditKind
from opsconsole.core.change.actions import plan_failover
from opsconsole.core.change.approvals import RequestStatus
from opsconsole.core.change.pipeline import Pipeline
from opsconsole.core.change.rbac import Directory
from opsconsole.core.change.requests import RequestRefused
from opsconsole.core.change.risk import load_policy
from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.store.db import Database
from opsconsole.testing import healthy_records, snapshot_of

from .conftest import REPO

REPLICAS = 2


def _pipeline(db_url: str, inventory: Path) -> Pipeline:
    fleet = load_inventory(inventory)
    snapshot = snapshot_of(healthy_records(fleet))
    return Pipeline(
        fleet=fleet, database=Database(db_url),
        directory=Directory.load(inventory, sandbox=True, fleet=fleet),
        policy=load_policy(inventory, fleet), snapshot=lambda: snapshot, executor=None,
        playbook_dir=REPO / "playbooks",
    )


@pytest.fixture
def replicas(db_url: str, inventory_copy: Path) -> Iterator[list[Pipeline]]:
    built = [_pipeline(db_url, inventory_copy) for _ in range(REPLICAS)]
    yield built
    for pipeline in built:
        pipeline.database.close()


def test_simultaneous_conflicting_filings_file_exactly_one(replicas: list[Pipeline]) -> None:
    checked = threading.Barrier(REPLICAS, timeout=60)
    for pipeline in replicas:
        original = pipeline._filing

        def filing_then_wait(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            facts = _original(*args, **kwargs)
            assert not facts.claims, "the targets must look free to both before either files"
            checked.wait()  # both have seen "free": only the filing's own transaction can tell them apart
            return facts

        pipeline._filing = filing_then_wait  # type: ignore[method-assign]

    outcomes: list[object] = [None] * REPLICAS
    people = ["alice", "erin"]

    def file(i: int) -> None:
        pipeline = replicas[i]
        plan = plan_failover(pipeline.fleet, pipeline._snapshot(), from_region="eu-west-1",
                             to_region="eu-central-1")
        try:
            outcomes[i] = pipeline.submit(plan, pipeline.directory.cast_member(people[i]), face="cli")
        except Exception as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=file, args=(i,)) for i in range(REPLICAS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)

    refused = [o for o in outcomes if isinstance(o, RequestRefused)]
    filed = [o for o in outcomes if o is not None and not isinstance(o, Exception)]
    assert len(filed) == 1 and len(refused) == 1, outcomes
    assert "claimed by open request" in refused[0].message
    open_requests = replicas[0].requests.list(statuses=[RequestStatus.REQUESTED, RequestStatus.APPROVED])
    assert len(open_requests) == 1
    kinds = [e.kind for e in replicas[0].audit.entries()]
    assert kinds.count(AuditKind.REQUEST_FILED) == 1
    assert kinds.count(AuditKind.REQUEST_REFUSED) == 1


def test_filings_that_do_not_conflict_are_both_filed(replicas: list[Pipeline]) -> None:
    """The serialisation refuses only a real conflict: two failovers of different regions both file."""
    results = []
    for pipeline, (source, target), who in zip(
        replicas, [("eu-west-1", "eu-central-1"), ("us-east-1", "us-west-2")], ["alice", "erin"], strict=True
    ):
        plan = plan_failover(pipeline.fleet, pipeline._snapshot(), from_region=source, to_region=target)
        results.append(pipeline.submit(plan, pipeline.directory.cast_member(who), face="cli"))
    assert [r.request.status for r in results] == [RequestStatus.REQUESTED] * 2
