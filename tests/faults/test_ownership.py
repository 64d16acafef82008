"""A run never outlives its owner unnoticed, and liveness is judged by owner identity and heartbeat.

Issue 17 items 1, 2 and 9: a real owner process (a console stand-in) runs a real playbook that changes two
things and then waits in a module process; the owner is killed with SIGKILL, SIGTERM or SIGINT. Within
2 s of the owner's death no process of the run is left (read from /proc, not the runner's bookkeeping),
and the job record is true: ``cancelled`` with "changed 2" when the owner could still say so (SIGTERM,
SIGINT), ``interrupted`` with "changed 2" and the task it was in once any later command repairs it
(SIGKILL). Then two owners with distinct identities share one store: one host's recovery leaves another
host's live run alone and judges it only by its heartbeat in database time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from opsconsole.core.processes import Owner, boot_id, process_start_time
from opsconsole.core.runs.events import EventBus
from opsconsole.core.runs.jobs import JobStore
from opsconsole.core.runs.records import JobStatus
from opsconsole.core.runs.runner import INTERRUPTED_ERROR, Runner
from opsconsole.core.store.db import jobs_table

from .conftest import INVENTORY, PLAYBOOKS, REPO, ansible_processes, eventually

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc").is_dir(), reason="the process checks read /proc"),
]

OWNER_SCRIPT = textwrap.dedent(
    """
    import sys, threading, time
    from pathlib import Path
    from opsconsole.core.processes import Owner
    from opsconsole.core.runs.events import EventBus, EventKind
    from opsconsole.core.runs.jobs import JobStore
    from opsconsole.core.runs.runner import Runner, cancel_runs_at_exit

    url, home, playbook, inventory, host, sleep_s = sys.argv[1:7]
    bus = EventBus()
    waiting = threading.Event()
    bus.subscribe(lambda e: waiting.set() if e.task == "Wait in a module process" else None,
                  kinds={EventKind.TASK_START})
    current = Owner.current()
    owner = Owner(host, current.boot, current.pid, current.start) if host != "-" else current
    runner = Runner(JobStore(url), bus, project_dir=Path(playbook).parent, inventory=inventory, home=home,
                    owner=owner, heartbeat_s=0.3)
    cancel_runs_at_exit(runner)
    job = runner.start("slow", playbook, {"sleep_s": int(sleep_s)}, actor="a", face="cli")
    waiting.wait(60)
    print(job.id, flush=True)
    while True:
        time.sleep(0.5)
    """
)


def start_owner(tmp_path: Path, url: str, home: Path, *, host: str = "-", sleep_s: int = 61
                ) -> tuple[subprocess.Popen[str], str]:
    """An owner process with one run in its slow task; returns it and the job id."""
    script = tmp_path / "owner.py"
    script.write_text(OWNER_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    owner = subprocess.Popen(
        [sys.executable, str(script), url, str(home), str(PLAYBOOKS / "changes_then_waits.yml"),
         str(INVENTORY), host, str(sleep_s)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    assert owner.stdout is not None
    job_id = owner.stdout.readline().strip()
    assert job_id, "the owner never reached the slow task"
    eventually(lambda: ansible_processes(job_id, f"sleep {sleep_s}"), what="the module's sleep")
    return owner, job_id


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    return path


@pytest.mark.parametrize("signo", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_a_signalled_owner_leaves_no_process_and_a_true_record(
    db_url: str, home: Path, tmp_path: Path, signo: signal.Signals
) -> None:
    owner, job_id = start_owner(tmp_path, db_url, home)
    owner.send_signal(signo)
    owner.wait(30)
    gone_at = time.monotonic()
    # Within 2 s of the owner's death no process of the run is left (kill -9 included: the watchdog).
    while ansible_processes(job_id, "sleep 61"):
        assert time.monotonic() - gone_at < 2.0, f"left behind: {ansible_processes(job_id, 'sleep 61')}"
        time.sleep(0.05)

    store = JobStore(db_url)
    try:
        job = store.get(job_id)
        assert job is not None
        if signo is signal.SIGKILL:
            # Nothing of the owner could speak: the record is repaired by the next command that looks.
            assert job.status is JobStatus.RUNNING
            runner = Runner(store, EventBus(), project_dir=PLAYBOOKS, inventory=INVENTORY, home=home)
            try:
                assert [j.id for j in runner.recover()] == [job_id]
            finally:
                runner.close()
            job = store.get(job_id)
            assert job is not None
            assert job.status is JobStatus.INTERRUPTED
            assert job.error == INTERRUPTED_ERROR
        else:
            assert job.status is JobStatus.CANCELLED, job
            assert job.error == "cancelled: the console exited"
            # ... and the owner said so on its way out, whatever its logging (a CLI logs nothing).
            assert owner.stderr is not None
            assert f"cancelled job {job_id[:12]}: the process that ran it is exiting" in owner.stderr.read()
        # The truth of what it did, though it never reached its recap: two changes, stopped in the wait.
        assert job.stats["totals"]["changed"] == 2
        assert job.last_task == "Wait in a module process"
    finally:
        store.close()


def test_a_run_dies_with_its_owner_even_before_the_module_starts(
    db_url: str, home: Path, tmp_path: Path
) -> None:
    """The watchdog also covers ansible-playbook itself (no module process yet worth the name)."""
    owner, job_id = start_owner(tmp_path, db_url, home, sleep_s=62)
    playbook_pids = [p for p, cmd in ansible_processes(job_id) if "ansible-playbook" in cmd]
    assert playbook_pids, "ansible-playbook is not running"
    owner.kill()
    owner.wait(30)
    eventually(lambda: not ansible_processes(job_id, "sleep 62"), within_s=2.0, what="no process left")


# -- two owners on one store: identity and heartbeat, not pid --------------------------------------------


def test_another_hosts_live_run_is_left_alone_and_judged_by_its_heartbeat(
    db_url: str, home: Path, tmp_path: Path
) -> None:
    """Replica B (another host name, same pid space) runs a job; replica A's recovery must not touch it
    while B's heartbeat is fresh, though B's pid means nothing on A — and must once B stops beating."""
    store = JobStore(db_url)
    a = Runner(store, EventBus(), project_dir=PLAYBOOKS, inventory=INVENTORY, home=home,
               owner=Owner("replica-a", boot_id(), os.getpid(), None), heartbeat_ttl_s=4.0)
    owner, job_id = start_owner(tmp_path, db_url, tmp_path / "home-b", host="replica-b", sleep_s=63)
    try:
        job = store.get(job_id)
        assert job is not None and job.owner is not None and job.owner.startswith("replica-b/")
        first_beat = job.heartbeat_at
        assert first_beat is not None
        eventually(lambda: (store.get(job_id).heartbeat_at or first_beat) > first_beat,  # type: ignore[union-attr]
                   what="a renewed heartbeat")
        assert a.recover() == []
        assert store.get(job_id).status is JobStatus.RUNNING  # type: ignore[union-attr]
        # B goes silent (its process is frozen, or its network is cut): only an old heartbeat makes it dead.
        owner.send_signal(signal.SIGSTOP)
        time.sleep(1.0)
        assert a.recover() == []
        with store.engine.begin() as conn:  # as if 10 s of silence went by, in database time
            conn.execute(update(jobs_table).where(jobs_table.c.id == job_id)
                         .values(heartbeat_at=store.database_now() - timedelta(seconds=10)))
        recovered = a.recover()
        assert [j.id for j in recovered] == [job_id]
        assert recovered[0].status is JobStatus.INTERRUPTED
        assert recovered[0].stats["totals"]["changed"] == 2
    finally:
        owner.kill()
        owner.wait(30)
        a.close()
        store.close()


def test_this_hosts_dead_owner_is_judged_at_once_by_pid_and_start_time(db_url: str, home: Path) -> None:
    """On this host and boot, a gone owner is dead without waiting; a reused pid does not keep it alive
    (same pid, another start time), nor does a live pid of an earlier boot."""
    store = JobStore(db_url)
    me = Owner.current()
    runner = Runner(store, EventBus(), project_dir=PLAYBOOKS, inventory=INVENTORY, home=home)
    try:
        cases = {
            "reused pid": Owner(me.host, me.boot, os.getpid(), (me.start or 0) + 1),
            "earlier boot": Owner(me.host, "an-earlier-boot", os.getpid(), me.start),
            "live owner": Owner(me.host, me.boot, os.getppid(), process_start_time(os.getppid())),
            "other host": Owner("elsewhere", "b", os.getpid(), me.start),
        }
        ids = {}
        for name, owner in cases.items():
            job = store.create_job(action=name, params={}, playbook="x.yml", check_mode=False, actor="a",
                                   face="cli", status=JobStatus.RUNNING, pid=owner.pid, owner=owner.token())
            ids[name] = job.id
        recovered = {j.action for j in runner.recover()}
        assert recovered == {"reused pid", "earlier boot"}
    finally:
        runner.close()
        store.close()
