"""What a crash or a cut-short run leaves behind, and what its record says (issue 17 item 9, run side).

* a crashed console's temporary local cloud (``/tmp/opsconsole-kube-*``) is removed by the next
  recovery once its owner is provably gone (and only then);
* secrets from the environment never stay in ``artifacts/<id>/command``: taken out the moment
  ansible-runner writes it, so a crash at any point after leaves none;
* a job names the last task that did something, not a skipped one;
* a run cancelled mid-way records its request ``cancelled``, not ``failed``.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsconsole.core.change.actions import ActionPlan, plan_scale
from opsconsole.core.change.approvals import RequestStatus
from opsconsole.core.change.pipeline import Executor, Pipeline
from opsconsole.core.change.rbac import Directory
from opsconsole.core.change.risk import load_policy
from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.processes import OWNER_FILE, Owner, mark_owned
from opsconsole.core.runs.events import EventBus, EventKind, JobEvent
from opsconsole.core.runs.jobs import JobStore
from opsconsole.core.runs.records import Job, JobStatus
from opsconsole.core.runs.runner import Runner
from opsconsole.core.store.db import Database
from opsconsole.testing import healthy_records, snapshot_of

from .conftest import INVENTORY, PLAYBOOKS, REPO, eventually

SECRET = "env-secret-7f3a9c2e"


@pytest.fixture
def store(db_url: str) -> Iterator[JobStore]:
    jobs = JobStore(db_url)
    yield jobs
    jobs.close()


def _runner(store: JobStore, home: Path, bus: EventBus | None = None, **kwargs: object) -> Runner:
    return Runner(store, bus or EventBus(), project_dir=PLAYBOOKS, inventory=INVENTORY, home=home,
                  **kwargs)  # type: ignore[arg-type]


def test_recovery_removes_a_dead_consoles_kube_dirs_only(
    store: JobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr(tempfile, "tempdir", None)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    me = Owner.current()
    left = temp / "opsconsole-kube-crashed"
    left.mkdir()
    (left / OWNER_FILE).write_text(Owner(me.host, me.boot, dead.pid, None).token())
    (left / "kubeconfig").write_text("token: x")
    live = temp / "opsconsole-kube-live"
    live.mkdir()
    mark_owned(live)
    unmarked = temp / "opsconsole-kube-unknown"
    unmarked.mkdir()

    runner = _runner(store, tmp_path / "home")
    try:
        runner.recover()
    finally:
        runner.close()
    assert not left.exists()
    assert live.exists() and unmarked.exists()


@pytest.mark.slow
def test_env_secrets_are_out_of_the_command_file_while_the_run_still_goes(
    store: JobStore, tmp_path: Path
) -> None:
    bus = EventBus()
    waiting = threading.Event()
    bus.subscribe(lambda e: waiting.set() if e.task == "Wait in a module process" else None,
                  kinds={EventKind.TASK_START})
    home = tmp_path / "home"
    runner = _runner(store, home, bus, env={"CLOUD_API_TOKEN": SECRET, "AWS_REGION": "eu-west-1"})
    try:
        job = runner.start("slow", str(PLAYBOOKS / "changes_then_waits.yml"), {"sleep_s": 30}, actor="a",
                           face="cli")
        assert waiting.wait(60)
        command = home / "runs" / job.id / "artifacts" / job.id / "command"
        text = eventually(lambda: command.is_file() and command.read_text(), what="the command file")
        # A crash now (kill -9) would leave exactly this file behind: the secret is already out of it.
        assert SECRET not in text
        assert '"CLOUD_API_TOKEN": "***"' in text.replace(" ", " ")
        assert "eu-west-1" in text
        runner.cancel(job.id)
        runner.wait(job.id, timeout=30)
    finally:
        runner.close()
    for path in (home / "runs").rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


@pytest.mark.slow
def test_the_last_task_is_the_last_that_did_something(store: JobStore, tmp_path: Path) -> None:
    runner = _runner(store, tmp_path / "home")
    try:
        job = runner.run("skip", str(PLAYBOOKS / "ends_skipped.yml"), {}, actor="a", face="cli")
    finally:
        runner.close()
    assert job.status is JobStatus.SUCCEEDED
    assert job.last_task == "The real change"
    final = store.events(job.id)[-1]
    assert final.kind is EventKind.JOB_STATUS and final.task == "The real change"


@pytest.mark.slow
def test_a_cancelled_run_records_its_request_cancelled(
    db_url: str, tmp_path: Path, inventory_copy: Path
) -> None:
    database = Database(db_url)
    jobs = JobStore(database)
    bus = EventBus()
    waiting = threading.Event()

    def seen(event: JobEvent) -> None:
        if event.task == "Wait in a module process":
            waiting.set()

    bus.subscribe(seen, kinds={EventKind.TASK_START})
    runner = _runner(jobs, tmp_path / "home", bus)
    fleet = load_inventory(inventory_copy)
    snapshot = snapshot_of(healthy_records(fleet))

    def start(plan: ActionPlan, check: bool, actor: str, face: str) -> Job:
        return runner.start(plan.action.value, str(PLAYBOOKS / "changes_then_waits.yml"), {"sleep_s": 60},
                            check=check, actor=actor, face=face)

    pipeline = Pipeline(
        fleet=fleet, database=database, directory=Directory.load(inventory_copy, sandbox=True, fleet=fleet),
        policy=load_policy(inventory_copy, fleet), snapshot=lambda: snapshot,
        executor=Executor(start=start, wait=runner.wait, cancel=runner.cancel, get=jobs.get),
        playbook_dir=REPO / "playbooks",
    )
    try:
        # Down to its HPA min: a prod scale-down of more than 30 % (one approval) from the nominal replicas.
        plan = plan_scale(fleet, snapshot, service="checkout", region="eu-west-1",
                          replicas=fleet.services["checkout"].hpa.min)
        filed = pipeline.submit(plan, pipeline.directory.cast_member("alice"), face="cli").request
        pipeline.approve(filed.id, pipeline.directory.cast_member("bob"), face="cli")
        job = pipeline.execute(filed.id, pipeline.directory.cast_member("alice"), face="cli", wait=False)
        assert waiting.wait(60)
        pipeline.cancel_job(job.id, pipeline.directory.cast_member("alice"), face="cli")
        pipeline.join(60)
        request = pipeline.requests.get(filed.id)
        assert request.status is RequestStatus.CANCELLED
        recorded = jobs.get(job.id)
        assert recorded is not None and recorded.status is JobStatus.CANCELLED
        assert recorded.stats["totals"]["changed"] == 2  # what it did before it was stopped
    finally:
        pipeline.close()
        runner.close()
        database.close()
