"""Parallel, bounded work: independent approved runs go at once (never more than the bound), and when two
replicas race for the same approved requests each request runs exactly once.

Issue 17, "parallel, bounded work". Real pipelines, runners and ansible-playbook; on SQLite and
PostgreSQL (where the look-up is ``SELECT … FOR UPDATE SKIP LOCKED``). The overlap of runs is read from
the jobs' recorded start and end, not from sleeps.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest

from opsconsole.core.audit.records import AuditKind
from opsconsole.core.change.actions import ActionPlan, plan_scale
from opsconsole.core.change.approvals import RequestStatus
from opsconsole.core.change.pipeline import Executor, Pipeline
from opsconsole.core.change.rbac import Directory
from opsconsole.core.change.risk import load_policy
from opsconsole.core.change.runqueue import RunQueue
from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.runs.events import EventBus, EventKind
from opsconsole.core.runs.jobs import JobStore
from opsconsole.core.runs.records import Job, JobStatus
from opsconsole.core.runs.runner import Runner
from opsconsole.core.store.db import Database
from opsconsole.testing import healthy_records, snapshot_of

from .conftest import INVENTORY, PLAYBOOKS, REPO, eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

SERVICES = ("checkout", "search", "catalog", "carts")


@dataclass
class Replica:
    pipeline: Pipeline
    runner: Runner
    jobs: JobStore
    started: list[str] = field(default_factory=list)

    def close(self) -> None:
        self.pipeline.close()
        self.runner.close()
        self.pipeline.database.close()


def _replica(db_url: str, inventory: Path, home: Path, sleep_s: int) -> Replica:
    fleet = load_inventory(inventory)
    snapshot = snapshot_of(healthy_records(fleet))
    database = Database(db_url)
    jobs = JobStore(database)
    runner = Runner(jobs, EventBus(), project_dir=PLAYBOOKS, inventory=INVENTORY, home=home)
    replica: Replica

    def start(plan: ActionPlan, check: bool, actor: str, face: str) -> Job:
        job = runner.start(plan.action.value, str(PLAYBOOKS / "changes_then_waits.yml"),
                           {"sleep_s": sleep_s}, check=check, actor=actor, face=face)
        replica.started.append(job.id)
        return job

    pipeline = Pipeline(
        fleet=fleet, database=database, directory=Directory.load(inventory, sandbox=True, fleet=fleet),
        policy=load_policy(inventory, fleet), snapshot=lambda: snapshot,
        executor=Executor(start=start, wait=runner.wait, cancel=runner.cancel, get=jobs.get),
        playbook_dir=REPO / "playbooks",
    )
    replica = Replica(pipeline, runner, jobs)
    return replica


@pytest.fixture
def replicas(db_url: str, inventory_copy: Path, tmp_path: Path) -> Iterator[list[Replica]]:
    built = [_replica(db_url, inventory_copy, tmp_path / f"home-{i}", sleep_s=2) for i in range(2)]
    yield built
    for replica in built:
        replica.close()


def _approved(replica: Replica, n: int) -> list[str]:
    """``n`` independent approved requests (scales of different services), none run yet."""
    pipeline = replica.pipeline
    ids = []
    for service in SERVICES[:n]:
        # Down to its HPA min: a prod scale-down of more than 30 % from the test kit's nominal replicas.
        plan = plan_scale(pipeline.fleet, pipeline._snapshot(), service=service, region="eu-west-1",
                          replicas=pipeline.fleet.services[service].hpa.min)
        filed = pipeline.submit(plan, pipeline.directory.cast_member("alice"), face="cli").request
        assert filed.status is RequestStatus.REQUESTED, "a scale of this size needs an approval"
        pipeline.approve(filed.id, pipeline.directory.cast_member("bob"), face="cli")
        ids.append(filed.id)
    return ids


def _peak_overlap(jobs: list[Job]) -> int:
    edges: list[tuple[datetime, int]] = []
    for job in jobs:
        assert job.started_at is not None and job.finished_at is not None
        edges += [(job.started_at, 1), (job.finished_at, -1)]
    peak = current = 0
    for _at, step in sorted(edges, key=lambda e: (e[0], e[1])):
        current += step
        peak = max(peak, current)
    return peak


def test_two_replicas_racing_for_approved_requests_run_each_exactly_once(replicas: list[Replica]) -> None:
    ids = _approved(replicas[0], 4)
    queues = [RunQueue(r.pipeline, who=r.pipeline.directory.cast_member("erin"), face="queue",
                       max_parallel=4) for r in replicas]
    barrier = threading.Barrier(len(queues), timeout=60)

    def race(queue: RunQueue) -> None:
        for _ in range(3):  # both look at the same instant, three times over
            barrier.wait()
            queue.drain()

    threads = [threading.Thread(target=race, args=(q,)) for q in queues]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for queue in queues:
        queue.join(120)

    started = replicas[0].started + replicas[1].started
    assert len(started) == len(ids) == len(set(started)), "a request ran twice, or not at all"
    pipeline = replicas[0].pipeline
    for request_id in ids:
        request = pipeline.requests.get(request_id)
        assert request.status is RequestStatus.SUCCEEDED, request
        kinds = [e.kind for e in pipeline.audit.entries(request_id=request_id)]
        assert kinds.count(AuditKind.RUN_STARTED) == 1
        assert kinds.count(AuditKind.RUN_FINISHED) == 1


def test_independent_runs_go_at_once_within_the_bound(replicas: list[Replica]) -> None:
    replica = replicas[0]
    ids = _approved(replica, 4)
    queue = RunQueue(replica.pipeline, who=replica.pipeline.directory.cast_member("erin"), max_parallel=2)
    assert len(queue.drain()) == 2, "two slots, two runs taken"
    assert queue.drain() == [], "no slot is free while both run"
    eventually(lambda: queue.drain() or not queue.running, within_s=120, what="a free slot")
    eventually(lambda: (queue.drain(), all(replica.pipeline.requests.get(i).status.terminal for i in ids))[1],
               within_s=180, what="every run to end")
    queue.join(60)
    jobs = [replica.jobs.get(job_id) for job_id in replica.started]
    assert all(j is not None and j.status is JobStatus.SUCCEEDED for j in jobs), jobs
    assert len(jobs) == 4
    # Runs overlapped (one slow run did not hold the rest) and never more than the bound.
    assert _peak_overlap([j for j in jobs if j is not None]) == 2


def test_the_runner_runs_at_most_its_bound_and_the_rest_wait_queued(db_url: str, tmp_path: Path) -> None:
    """Whoever starts runs (a face, the queue, the scheduler), one runner runs at most ``max_parallel``
    playbooks at once; the others wait ``queued`` — and a queued one cancelled never starts."""
    store = JobStore(db_url)
    runner = Runner(store, EventBus(), project_dir=PLAYBOOKS, inventory=INVENTORY, home=tmp_path / "home",
                    max_parallel=2)
    try:
        jobs = [runner.start("slow", str(PLAYBOOKS / "changes_then_waits.yml"), {"sleep_s": 3}, actor="a",
                             face="cli") for _ in range(3)]
        eventually(lambda: sum(store.get(j.id).status is JobStatus.RUNNING for j in jobs) == 2,  # type: ignore[union-attr]
                   what="two runs going")
        waiting = [j for j in jobs if store.get(j.id).status is JobStatus.QUEUED]  # type: ignore[union-attr]
        assert len(waiting) == 1
        assert runner.cancel(waiting[0].id)
        ended = [runner.wait(j.id, timeout=90) for j in jobs]
        statuses = {j.id: j.status for j in ended}
        assert statuses[waiting[0].id] is JobStatus.CANCELLED
        assert store.events(waiting[0].id)[-1].data["status"] == "cancelled"
        assert not any(e.kind is EventKind.PLAYBOOK_START for e in store.events(waiting[0].id))
        assert sorted(s for i, s in statuses.items() if i != waiting[0].id) == [JobStatus.SUCCEEDED] * 2
    finally:
        runner.close()
        store.close()
