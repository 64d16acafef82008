"""The run engine against real ansible-runner and ansible-playbook, with the small playbooks in playbooks/.

What is checked is what the console promises an SRE: events stream live and are kept, a failure names
its task, check mode changes nothing, cancel and timeouts leave no process behind (checked in the process
table, not through the runner's own bookkeeping), secrets never reach a file, an event or a log line, a
console killed mid-run is reported as such on the next start, and run dirs are rotated.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsconsole.core.runs.events import EventBus, EventCapture, EventKind, JobEvent
from opsconsole.core.runs.jobs import JobStore
from opsconsole.core.runs.records import JobStatus
from opsconsole.core.runs.runner import (
    INTERRUPTED_ERROR,
    MARKER_VAR,
    RunError,
    Runner,
    job_processes,
    kill_job_processes,
)

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = Path(__file__).resolve().parent / "playbooks"
INVENTORY = PLAYBOOKS / "inventory" / "hosts.yml"
SECRET = "s3cr3t-value-4711"

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="the process checks read /proc")


def processes_matching(*needles: str) -> list[tuple[int, str]]:
    """Live processes whose command line or environment contains one of ``needles``: read straight from
    the process table, independently of the runner's own helpers."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            environ = (entry / "environ").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat[stat.rfind(")") + 2:][:1] in ("Z", "X"):
            continue
        if any(n.encode() in cmdline or n.encode() in environ for n in needles):
            found.append((int(entry.name), cmdline.decode(errors="replace")))
    return found


def assert_no_process_left(job_id: str, *needles: str, within_s: float = 3.0) -> None:
    deadline = time.monotonic() + within_s
    while True:
        left = processes_matching(f"{MARKER_VAR}={job_id}", job_id, *needles)
        if not left:
            return
        assert time.monotonic() < deadline, f"processes left behind: {left}"
        time.sleep(0.1)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    return path


@pytest.fixture
def store(home: Path) -> Iterator[JobStore]:
    job_store = JobStore(home)
    yield job_store
    for job in job_store.list(limit=100):  # a failed test must not leave its playbook running
        kill_job_processes(job.id)
    job_store.close()


@pytest.fixture
def bus() -> EventBus:
    return EventBus()


@pytest.fixture
def capture(bus: EventBus) -> EventCapture:
    events = EventCapture()
    bus.subscribe(events)
    return events


def make_runner(store: JobStore, bus: EventBus, home: Path, **kwargs: object) -> Runner:
    options: dict[str, object] = {"project_dir": REPO, "inventory": INVENTORY, "home": home}
    options.update(kwargs)
    return Runner(store, bus, **options)  # type: ignore[arg-type]


@pytest.fixture
def runner(store: JobStore, bus: EventBus, home: Path) -> Iterator[Runner]:
    engine = make_runner(store, bus, home)
    yield engine
    engine.close()


def wait_for_event(capture: EventCapture, predicate, timeout: float = 20.0) -> JobEvent:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in capture.events:
            if isinstance(event, JobEvent) and predicate(event):
                return event
        time.sleep(0.05)
    seen = [(e.kind, e.task) for e in capture.events]
    raise AssertionError(f"no such event within {timeout} s; got {seen}")


def waiting_in_module(event: JobEvent) -> bool:
    return event.kind is EventKind.TASK_START and event.task == "Wait in a module process"


def kinds(events: list[JobEvent]) -> list[str]:
    return [str(e.kind) for e in events]


def test_a_one_task_playbook_succeeds_with_events_in_order_in_store_and_on_bus(
    runner: Runner, store: JobStore, capture: EventCapture
) -> None:
    job = runner.run("hello", str(PLAYBOOKS / "one_task.yml"), {"greeting_target": "the test"},
                     actor="alice", face="cli")

    assert job.status is JobStatus.SUCCEEDED
    assert job.rc == 0 and job.error is None and job.last_task == "Say hello"
    assert job.started_at is not None and job.finished_at is not None and job.finished_at >= job.started_at
    assert job.stats["totals"]["ok"] == 1 and job.stats["hosts"]["localhost"]["failed"] == 0
    assert job.params == {"greeting_target": "the test"} and job.actor == "alice" and job.face == "cli"
    stored = store.events(job.id)
    assert kinds(stored) == ["job_status", "playbook_start", "play_start", "task_start", "ok", "stats",
                             "job_status"]
    assert [e.seq for e in stored] == list(range(1, len(stored) + 1))
    ok = stored[4]
    assert (ok.host, ok.task, ok.message) == ("localhost", "Say hello", "hello from the test")
    assert not ok.changed
    assert stored[-1].data["status"] == "succeeded"
    published = [e for e in capture.events if isinstance(e, JobEvent) and e.job_id == job.id]
    assert published == stored
    assert store.events(job.id, after_seq=5) == stored[5:]
    assert store.get(job.id) == job and store.list(limit=5)[0] == job


def test_events_stream_while_the_job_runs(runner: Runner, capture: EventCapture) -> None:
    job = runner.start("slow", str(PLAYBOOKS / "slow.yml"), {"sleep_s": 2}, actor="alice", face="tui")
    assert job.status is JobStatus.QUEUED
    first = wait_for_event(capture, lambda e: e.kind is EventKind.OK and e.task == "Before the wait")
    assert runner.store.get(job.id).status is JobStatus.RUNNING  # type: ignore[union-attr]
    assert first.job_id == job.id
    finished = runner.wait(job.id, timeout=30)
    assert finished.status is JobStatus.SUCCEEDED
    assert finished.stats["totals"]["ok"] == 3


def test_a_failing_task_fails_the_job_with_its_last_task(runner: Runner, store: JobStore) -> None:
    job = runner.run("fail", str(PLAYBOOKS / "fails.yml"), {}, actor="alice", face="cli")

    assert job.status is JobStatus.FAILED
    assert job.last_task == "Break on purpose"
    assert job.error is not None and "Break on purpose" in job.error and "fails on purpose" in job.error
    assert job.rc not in (None, 0)
    assert job.stats["totals"]["failed"] == 1
    failed = [e for e in store.events(job.id) if e.kind is EventKind.FAILED]
    assert len(failed) == 1 and failed[0].message == "this task fails on purpose"
    assert "Never reached" not in [e.task for e in store.events(job.id)]


def test_an_unknown_playbook_is_refused_before_a_job_exists(runner: Runner, store: JobStore) -> None:
    with pytest.raises(RunError, match="no playbook"):
        runner.start("x", "does-not-exist.yml", {}, actor="a", face="cli")
    assert store.list() == []


def test_check_mode_passes_check_and_changes_nothing_then_runs_are_idempotent(
    runner: Runner, store: JobStore, tmp_path: Path
) -> None:
    target = tmp_path / "managed.txt"
    preview = runner.run("write", str(PLAYBOOKS / "change_file.yml"), {"target_file": str(target)},
                         check=True, actor="alice", face="cli")

    assert preview.status is JobStatus.SUCCEEDED and preview.check_mode
    assert not target.exists()
    command = json.loads((runner.run_dir(preview.id) / "artifacts" / preview.id / "command").read_text())
    assert "--check" in command["command"] and "--diff" in command["command"]
    changed = [e for e in store.events(preview.id) if e.kind is EventKind.CHANGED]
    assert changed and changed[0].data["result"]["diff"], "the preview carries the diff"

    first = runner.run("write", str(PLAYBOOKS / "change_file.yml"), {"target_file": str(target)},
                       actor="alice", face="cli")
    second = runner.run("write", str(PLAYBOOKS / "change_file.yml"), {"target_file": str(target)},
                        actor="alice", face="cli")
    assert target.read_text() == "managed by opsconsole\n"
    assert first.stats["totals"]["changed"] == 1
    assert second.stats["totals"]["changed"] == 0
    # set_stats(opsconsole_timings) lands in the job's timings (that is how failover reports its RTO).
    assert list(first.timings) == [{"step": "write", "started": "2025-01-01T00:00:00Z",
                                    "finished": "2025-01-01T00:00:01Z", "seconds": 1.0}]


def test_cancel_mid_task_leaves_no_ansible_or_module_process(runner: Runner, capture: EventCapture) -> None:
    job = runner.start("slow", str(PLAYBOOKS / "slow.yml"), {"sleep_s": 47}, actor="alice", face="cli")
    wait_for_event(capture, waiting_in_module)
    deadline = time.monotonic() + 10
    while not processes_matching("sleep 47"):  # the module's own child is running
        assert time.monotonic() < deadline, "the sleep never started"
        time.sleep(0.05)
    assert job_processes(job.id), "the runner must see the job's processes"

    started = time.monotonic()
    assert runner.cancel(job.id) is True
    done = runner.wait(job.id, timeout=15)

    assert done.status is JobStatus.CANCELLED
    assert done.last_task == "Wait in a module process"
    assert time.monotonic() - started < 5
    assert_no_process_left(job.id, "sleep 47", str(runner.run_dir(job.id)))
    assert runner.cancel(job.id) is False


def test_cancel_from_another_console_process_is_kept(
    store: JobStore, bus: EventBus, home: Path, capture: EventCapture
) -> None:
    owner = make_runner(store, bus, home)
    other = make_runner(store, EventBus(), home)
    try:
        job = owner.start("slow", str(PLAYBOOKS / "slow.yml"), {"sleep_s": 48}, actor="a", face="bot")
        wait_for_event(capture, waiting_in_module)
        assert other.cancel(job.id) is True
        done = owner.wait(job.id, timeout=15)
        assert done.status is JobStatus.CANCELLED
        assert_no_process_left(job.id, "sleep 48")
    finally:
        owner.close()
        other.close()


def test_idle_timeout_kills_a_job_that_prints_nothing(runner: Runner) -> None:
    started = time.monotonic()
    job = runner.run("pause", str(PLAYBOOKS / "silent_pause.yml"), {"pause_s": 40}, actor="a", face="cli",
                     idle_timeout_s=1.5)

    assert job.status is JobStatus.TIMED_OUT
    assert job.error is not None and "idle timeout" in job.error
    assert job.last_task == "Pause without output"
    assert time.monotonic() - started < 10
    assert_no_process_left(job.id, str(runner.run_dir(job.id)))


def test_job_timeout_kills_a_job_that_runs_too_long(runner: Runner) -> None:
    started = time.monotonic()
    job = runner.run("slow", str(PLAYBOOKS / "slow.yml"), {"sleep_s": 49}, actor="a", face="cli",
                     idle_timeout_s=30, job_timeout_s=2.5)

    assert job.status is JobStatus.TIMED_OUT
    assert job.error is not None and "job timeout" in job.error
    assert job.last_task == "Wait in a module process"
    assert time.monotonic() - started < 10
    assert_no_process_left(job.id, "sleep 49", str(runner.run_dir(job.id)))


def test_a_secret_never_reaches_a_file_an_event_or_a_log_record(
    store: JobStore, bus: EventBus, home: Path, capture: EventCapture, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("MY_TOKEN", SECRET)
    monkeypatch.setenv("CONSOLE_ONLY_SETTING", "must-not-reach-ansible")
    engine = make_runner(store, bus, home, env={"MY_TOKEN": SECRET, "AWS_REGION": "eu-west-1"},
                         secrets=["extra-secret-99"])
    try:
        job = engine.run("leak", str(PLAYBOOKS / "leak_secret.yml"), {"note": "extra-secret-99"},
                         actor="alice", face="cli")
    finally:
        engine.close()

    assert job.status is JobStatus.SUCCEEDED
    run_dir = engine.run_dir(job.id)
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert len(files) > 5
    for path in files:
        content = path.read_bytes()
        assert SECRET.encode() not in content, f"secret in {path}"
        assert b"extra-secret-99" not in content, f"extra secret in {path}"
    command = json.loads((run_dir / "artifacts" / job.id / "command").read_text())
    assert "CONSOLE_ONLY_SETTING" not in command["env"], "Ansible gets only the env it was given"
    assert command["env"]["AWS_REGION"] == "eu-west-1" and command["env"]["MY_TOKEN"] == "***"

    stored = store.events(job.id)
    published = [e for e in capture.events if isinstance(e, JobEvent)]
    assert published and stored
    for event in [*stored, *published]:
        assert SECRET not in repr(event) and "extra-secret-99" not in repr(event)
    assert any(e.message == "the token is ***" for e in stored), "the task ran and was redacted"
    assert SECRET not in repr(store.get(job.id)) and "extra-secret-99" not in repr(store.get(job.id))
    assert caplog.records
    for record in caplog.records:
        text = record.getMessage() + (record.exc_text or "")
        assert SECRET not in text and "extra-secret-99" not in text


SIGKILL_SCRIPT = textwrap.dedent(
    """
    import sys, threading, time
    from pathlib import Path
    from opsconsole.core.runs.events import EventBus, EventKind
    from opsconsole.core.runs.runner import Runner
    from opsconsole.core.runs.jobs import JobStore

    home, playbooks, repo = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    bus = EventBus()
    waiting = threading.Event()
    bus.subscribe(lambda e: waiting.set() if e.task == "Wait in a module process" else None,
                  kinds={EventKind.TASK_START})
    inventory = playbooks / "inventory" / "hosts.yml"
    runner = Runner(JobStore(home), bus, project_dir=repo, inventory=inventory, home=home)
    job = runner.start("slow", str(playbooks / "slow.yml"), {"sleep_s": 46}, actor="a", face="cli")
    waiting.wait(30)
    print(job.id, flush=True)
    time.sleep(120)
    """
)


def test_sigkill_of_the_console_mid_run_is_recovered_as_interrupted_without_orphans(
    store: JobStore, bus: EventBus, home: Path, tmp_path: Path
) -> None:
    script = tmp_path / "console.py"
    script.write_text(SIGKILL_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    console = subprocess.Popen([sys.executable, str(script), str(home), str(PLAYBOOKS), str(REPO)],
                               stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert console.stdout is not None
        line = [""]
        reader = threading.Thread(target=lambda: line.__setitem__(0, console.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(40)
        job_id = line[0].strip()
        assert job_id, "the console never reached the slow task"
        deadline = time.monotonic() + 10
        while not processes_matching("sleep 46"):
            assert time.monotonic() < deadline, "the sleep never started"
            time.sleep(0.05)
    finally:
        console.send_signal(signal.SIGKILL)
        console.wait(10)

    assert store.get(job_id).status is JobStatus.RUNNING  # type: ignore[union-attr]
    # The run's watchdog saw its owner die and killed ansible-playbook and the module's sleep.
    assert_no_process_left(job_id, "sleep 46", within_s=5.0)

    engine = make_runner(store, bus, home)
    try:
        recovered = engine.recover()
    finally:
        engine.close()

    assert [j.id for j in recovered] == [job_id]
    job = recovered[0]
    assert job.status is JobStatus.INTERRUPTED
    assert job.error == INTERRUPTED_ERROR == "interrupted — outcome unknown"
    assert job.last_task == "Wait in a module process"
    assert store.events(job_id)[-1].data["status"] == "interrupted"
    assert_no_process_left(job_id, "sleep 46")
    assert make_runner(store, bus, home).recover() == [], "recover re-runs nothing and reports once"


def test_recover_leaves_jobs_of_live_consoles_alone(
    runner: Runner, store: JobStore, capture: EventCapture
) -> None:
    job = runner.start("slow", str(PLAYBOOKS / "slow.yml"), {"sleep_s": 3}, actor="a", face="cli")
    wait_for_event(capture, waiting_in_module)
    assert runner.recover() == []
    assert store.get(job.id).status is JobStatus.RUNNING  # type: ignore[union-attr]
    runner.cancel(job.id)
    runner.wait(job.id, timeout=15)


def test_run_dirs_are_rotated_to_keep_runs(store: JobStore, bus: EventBus, home: Path) -> None:
    engine = make_runner(store, bus, home, keep_runs=2)
    try:
        jobs = [engine.run("hello", str(PLAYBOOKS / "one_task.yml"), {}, actor="a", face="cli")
                for _ in range(3)]
    finally:
        engine.close()
    kept = sorted(p.name for p in (home / "runs").iterdir())
    assert kept == sorted(j.id for j in jobs[1:])
    assert len(store.list()) == 3, "rotation removes run dirs, never job records"


def test_store_round_trips_jobs_and_filters_by_status(store: JobStore) -> None:
    a = store.create_job(action="scale", params={"replicas": 4}, playbook="scale.yml", check_mode=True,
                         actor="alice", face="cli")
    b = store.create_job(action="failover", params={}, playbook="failover.yml", check_mode=False,
                         actor="bob", face="slack")
    assert store.update_job(b.id, status=JobStatus.RUNNING)
    assert not store.update_job(b.id, only_if_status=JobStatus.QUEUED, status=JobStatus.FAILED)
    assert [j.id for j in store.list(status=JobStatus.RUNNING)] == [b.id]
    assert {j.id for j in store.list(status=[JobStatus.RUNNING, JobStatus.QUEUED])} == {a.id, b.id}
    assert store.get(a.id) == a and store.get("nope") is None
    with pytest.raises(ValueError, match="not job fields"):
        store.update_job(a.id, colour="red")
    assert store.last_seq(a.id) == 0
