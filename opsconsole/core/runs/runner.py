"""The run engine: every change to the fleet is a playbook run through ansible-runner, started here.

This is the only module that imports ``ansible_runner`` (the layer test and import-linter allow it here
and nowhere else). It owns four promises the rest of the console relies on:

* **Live, recorded progress.** ansible-runner's event dicts are translated into :class:`JobEvent` records,
  persisted in the :class:`JobStore` and published on the :class:`EventBus` as they happen.
* **Nothing left behind.** Each run has its own private data dir ``<home>/runs/<job_id>``. Every process of
  a run (ansible-playbook, its workers, module processes in their own sessions, their children) carries the
  environment marker ``OPSCONSOLE_JOB_ID=<job_id>``; cancel, the idle and job timeouts, the end of every
  run and :meth:`Runner.recover` kill every process bearing the marker (ansible-runner alone only kills the
  process group, which misses modules running in their own session and everything once its parent died).
* **Secrets stay out.** Ansible gets a minimal environment: ``PATH``, ``HOME``, ``LANG``, the ``ANSIBLE_*``
  settings set here and exactly the ``env`` the runner was given, never the console's own environment.
  The values of ``secrets`` and of every variable whose name looks secret (TOKEN, SECRET, PASSWORD, KEY,
  CREDENTIAL…) are replaced by ``***`` in events, stored messages, log records, and, once a run ends, in
  every file of its run dir (ansible-runner writes the environment it was given into ``artifacts/<id>/
  command`` and module results into ``job_events/``).
* **A crash is told, not hidden.** If the console dies mid-run, the next :meth:`Runner.recover` marks the
  job ``interrupted`` ("interrupted — outcome unknown", with its last task), kills its orphans, and re-runs
  nothing.

Use::

    runner = Runner(store, bus, project_dir=repo, inventory=repo / "inventory/hosts.yml", home=home,
                    env={"AWS_REGION": "eu-west-1", ...})
    runner.recover()                                  # once, at start
    job = runner.start("scale", "scale.yml", {"region": "eu-west-1", ...}, actor="alice", face="cli",
                       idle_timeout_s=120, job_timeout_s=1800)
    runner.wait(job.id, timeout=60)                   # or follow the bus, or runner.cancel(job.id)
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import sysconfig
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# ansible-runner ships neither type hints nor a py.typed marker; everything it returns is translated below.
import ansible_runner  # type: ignore[import-untyped]

from opsconsole.core.clock import Clock, SystemClock
from opsconsole.core.errors import OpsError, UsageError
from opsconsole.core.paths import private_dir
from opsconsole.core.processes import pid_alive, process_state
from opsconsole.core.runs.events import EventBus, EventKind, JobEvent
from opsconsole.core.runs.jobs import JobStore
from opsconsole.core.runs.records import Job, JobStatus

log = logging.getLogger(__name__)

#: The ids the job store creates (``uuid4().hex``): anything else never names a run directory.
JOB_ID = re.compile(r"^[0-9a-f]{32}$")


def valid_job_id(job_id: str) -> bool:
    """Whether ``job_id`` has the exact shape of the ids the job store creates (32 lowercase hex)."""
    return isinstance(job_id, str) and JOB_ID.fullmatch(job_id) is not None

MARKER_VAR = "OPSCONSOLE_JOB_ID"
REDACTED = "***"
INTERRUPTED_ERROR = "interrupted — outcome unknown"
# Variables whose value is treated as a secret, by name (case-insensitive substring).
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW(?:OR)?D|KEY|CREDENTIAL|PRIVATE|AUTH", re.IGNORECASE)
# Values too common to be secrets: redacting them would mangle every message ("true" → "***").
_NOT_SECRET_VALUES = frozenset({"", "true", "false", "yes", "no", "none", "null", "on", "off"})
_MIN_ENV_SECRET_LEN = 4
# How often ansible-runner's loop polls the cancel callback (its default, 5 s, makes cancel feel broken).
POLL_S = 0.2
# A run's event ``data`` keeps the module result up to this size (JSON); bigger results keep a summary.
MAX_RESULT_BYTES = 32_768
MAX_MESSAGE_CHARS = 2_000
KILL_DEADLINE_S = 5.0

# ansible-runner's own settings for the child, kept from its prepared environment (everything else it
# copied from the console's environment is dropped).
_RUNNER_ENV_KEYS = (
    "ANSIBLE_STDOUT_CALLBACK", "ANSIBLE_RETRY_FILES_ENABLED", "ANSIBLE_HOST_KEY_CHECKING",
    "AWX_ISOLATED_DATA_DIR", "ANSIBLE_CACHE_PLUGIN", "ANSIBLE_CACHE_PLUGIN_CONNECTION",
    "RUNNER_OMIT_EVENTS", "RUNNER_ONLY_FAILED_EVENTS",
)

# Jobs being run by a Runner in this process: recover() must not call them interrupted.
_ACTIVE_LOCK = threading.Lock()
_ACTIVE_IN_PROCESS: set[str] = set()


class RunError(OpsError):
    """A run could not be started (no such playbook, extravars that are not JSON…)."""

    title = "run failed to start"


# -- redaction ------------------------------------------------------------------------------------


def looks_secret(name: str) -> bool:
    return bool(SECRET_NAME.search(name))


def secret_values(env: Mapping[str, str], *, min_len: int = _MIN_ENV_SECRET_LEN) -> list[str]:
    """The values of ``env`` whose variable names look secret (common non-secret values skipped)."""
    return [
        value for name, value in env.items()
        if looks_secret(name) and len(value) >= min_len and value.strip().lower() not in _NOT_SECRET_VALUES
    ]


class Redactor:
    """Replaces known secret values by ``***`` in text, nested data and files.

    Each secret is also matched in its JSON-escaped form, the way it appears inside artifact files.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        variants: set[str] = set()
        for secret in secrets:
            if not secret:
                continue
            variants.add(secret)
            variants.add(json.dumps(secret)[1:-1])
            variants.add(json.dumps(secret, ensure_ascii=False)[1:-1])
        self._variants = sorted(variants, key=len, reverse=True)  # longest first: no partial leftovers
        self._pattern = re.compile("|".join(re.escape(v) for v in self._variants)) if self._variants else None
        self._bytes = [v.encode() for v in self._variants]

    def __bool__(self) -> bool:
        return self._pattern is not None

    def text(self, value: str) -> str:
        return self._pattern.sub(REDACTED, value) if self._pattern is not None else value

    def data(self, value: Any) -> Any:
        """A copy of ``value`` (JSON-like: dicts, lists, strings, scalars) with every secret redacted."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.text(str(k)): self.data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        return value

    def file(self, path: Path) -> bool:
        """Rewrite ``path`` in place if it holds a secret; returns whether it did."""
        if not self._bytes:
            return False
        try:
            content = path.read_bytes()
        except OSError:
            return False
        redacted = content
        for secret in self._bytes:
            redacted = redacted.replace(secret, REDACTED.encode())
        if redacted == content:
            return False
        tmp = path.with_name(path.name + ".redacting")
        tmp.write_bytes(redacted)
        os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
        return True

    def tree(self, root: Path) -> int:
        """Redact every regular file under ``root``; returns how many were rewritten."""
        rewritten = 0
        if not root.exists():
            return 0
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                path = Path(dirpath) / name
                if path.is_file() and not path.is_symlink() and self.file(path):
                    rewritten += 1
        return rewritten


class _RedactingFilter(logging.Filter):
    """Redacts log records of a logger (ours and ansible-runner's) before any handler sees them."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        if self.redactor:
            message = record.getMessage()
            record.msg = self.redactor.text(message)
            record.args = None
            if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
                record.exc_text = self.redactor.text(logging.Formatter().formatException(record.exc_info))
            elif record.exc_text:
                record.exc_text = self.redactor.text(record.exc_text)
        return True


# -- processes ------------------------------------------------------------------------------------


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process (see :mod:`opsconsole.core.processes`)."""
    return pid_alive(pid)


def job_processes(job_id: str, run_dir: Path | None = None) -> list[int]:
    """Live processes of a job: those whose environment carries the job's marker, or whose command line
    names its run dir (e.g. when the environment cannot be read). Zombies are dead and are not listed."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: nothing to find; cancel still has ansible-runner's group kill
        return []
    marker = f"{MARKER_VAR}={job_id}".encode()
    run_dir_bytes = str(run_dir).encode() if run_dir is not None else None
    me = os.getpid()
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid == me:
            continue
        try:
            environ = (entry / "environ").read_bytes()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ours = marker in environ.split(b"\0") or (run_dir_bytes is not None and run_dir_bytes in cmdline)
        if ours and process_state(pid) not in (None, "Z", "X"):
            found.append(pid)
    return found


def kill_job_processes(
    job_id: str, run_dir: Path | None = None, *, deadline_s: float = KILL_DEADLINE_S
) -> int:
    """SIGKILL every process of a job until none is left (a parent may fork between two scans).

    Returns how many processes were killed.
    """
    killed: set[int] = set()
    end = time.monotonic() + deadline_s
    while True:
        pids = job_processes(job_id, run_dir)
        if not pids:
            return len(killed)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                pass
            except PermissionError:
                log.warning("job %s: may not kill process %d", job_id, pid)
        if time.monotonic() > end:
            log.warning("job %s: processes still alive after %.0f s: %s", job_id, deadline_s, pids)
            return len(killed)
        time.sleep(0.02)


# -- translation of ansible-runner events -----------------------------------------------------------

_TASK_EVENTS = {
    "runner_on_ok": EventKind.OK,
    "runner_on_failed": EventKind.FAILED,
    "runner_on_skipped": EventKind.SKIPPED,
    "runner_on_unreachable": EventKind.UNREACHABLE,
}
_STAT_KEYS = {
    "ok": "ok", "changed": "changed", "failures": "failed", "skipped": "skipped", "dark": "unreachable",
    "rescued": "rescued", "ignored": "ignored",
}


def _parse_time(value: Any, clock: Clock) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return clock.now()
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    return clock.now()


def _clip(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _result_summary(res: Mapping[str, Any]) -> dict[str, Any]:
    """The module result without Ansible's internal keys, shrunk to a summary if it is big."""
    result = {k: v for k, v in res.items() if not str(k).startswith("_ansible")}
    try:
        size = len(json.dumps(result, default=str))
    except (TypeError, ValueError):
        size = MAX_RESULT_BYTES + 1
    if size <= MAX_RESULT_BYTES:
        return _plain(result)
    summary: dict[str, Any] = {"truncated": True, "bytes": size}
    for key in ("msg", "changed", "failed", "rc", "skip_reason", "false_condition"):
        if key in result:
            summary[key] = result[key]
    for key in ("stdout", "stderr"):
        if isinstance(result.get(key), str):
            summary[key] = _clip(result[key], 4_000)
    if "diff" in result:
        diff = json.dumps(result["diff"], default=str)
        summary["diff"] = result["diff"] if len(diff) <= MAX_RESULT_BYTES // 2 else _clip(diff, 4_000)
    return _plain(summary)


def _plain(value: Mapping[str, Any]) -> dict[str, Any]:
    """A copy made of plain JSON types only (what the store and every face can take)."""
    plain: dict[str, Any] = json.loads(json.dumps(value, default=str))
    return plain


def _result_message(res: Mapping[str, Any]) -> str:
    for key in ("msg", "stderr", "stdout", "skip_reason"):
        value = res.get(key)
        if value:
            return _clip(value if isinstance(value, str) else json.dumps(value, default=str))
    return ""


def summarize_stats(event_data: Mapping[str, Any]) -> dict[str, Any]:
    """playbook_on_stats → ``{"hosts": {host: counts}, "totals": counts}``."""
    hosts: dict[str, dict[str, int]] = {}
    for source, name in _STAT_KEYS.items():
        for host, count in (event_data.get(source) or {}).items():
            hosts.setdefault(str(host), dict.fromkeys(_STAT_KEYS.values(), 0))[name] = int(count)
    for host in event_data.get("processed") or {}:
        hosts.setdefault(str(host), dict.fromkeys(_STAT_KEYS.values(), 0))
    totals = dict.fromkeys(_STAT_KEYS.values(), 0)
    for counts in hosts.values():
        for name, count in counts.items():
            totals[name] += count
    return {"hosts": hosts, "totals": totals}


@dataclass(frozen=True)
class _Translated:
    kind: EventKind
    host: str | None = None
    play: str | None = None
    task: str | None = None
    message: str = ""
    changed: bool = False
    data: Mapping[str, Any] = field(default_factory=dict)


def translate_event(raw: Mapping[str, Any]) -> _Translated | None:
    """One ansible-runner event dict → the fields of a :class:`JobEvent`, or None for events faces don't
    show (runner_on_start, per-item results — the task's own result follows —, verbose output…)."""
    name = raw.get("event")
    ed: Mapping[str, Any] = raw.get("event_data") or {}
    play = ed.get("play") or None
    task = ed.get("task") or None
    if name == "playbook_on_start":
        playbook = str(ed.get("playbook") or "")
        return _Translated(EventKind.PLAYBOOK_START, message=Path(playbook).name, data={"playbook": playbook})
    if name == "playbook_on_play_start":
        play = ed.get("play") or ed.get("name") or ""
        return _Translated(EventKind.PLAY_START, play=play, message=play,
                           data={"pattern": ed.get("play_pattern")})
    if name in ("playbook_on_task_start", "playbook_on_handler_task_start"):
        task = ed.get("task") or ed.get("name") or ""
        return _Translated(
            EventKind.TASK_START, play=play, task=task, message=task,
            data={"action": ed.get("task_action"), "handler": name == "playbook_on_handler_task_start",
                  "path": ed.get("task_path")},
        )
    if name in _TASK_EVENTS:
        res: Mapping[str, Any] = ed.get("res") or {}
        kind = _TASK_EVENTS[str(name)]
        changed = bool(res.get("changed"))
        if kind is EventKind.OK and changed:
            kind = EventKind.CHANGED
        data: dict[str, Any] = {"action": ed.get("task_action"), "duration": ed.get("duration"),
                                "result": _result_summary(res)}
        if kind is EventKind.FAILED:
            data["ignored"] = bool(ed.get("ignore_errors"))
        return _Translated(kind, host=ed.get("host"), play=play, task=task, message=_result_message(res),
                           changed=changed, data=data)
    if name == "playbook_on_stats":
        stats = summarize_stats(ed)
        totals = stats["totals"]
        message = " ".join(f"{k}={totals[k]}" for k in ("ok", "changed", "failed", "skipped", "unreachable"))
        artifact_data = _plain(ed.get("artifact_data") or {})
        return _Translated(EventKind.STATS, message=message, data={**stats, "artifact_data": artifact_data})
    return None


# -- the runner --------------------------------------------------------------------------------------


@dataclass
class _Run:
    """A job this runner is executing: what its callbacks share across threads."""

    job_id: str
    run_dir: Path
    idle_timeout_s: float | None
    job_timeout_s: float | None
    done: threading.Event = field(default_factory=threading.Event)
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    stop_reason: JobStatus | None = None  # set once: CANCELLED or TIMED_OUT
    stop_detail: str | None = None
    started: float = 0.0
    last_activity: float = 0.0
    last_store_check: float = 0.0
    seq: int = 0
    last_task: str | None = None
    failure: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    timings: list[Any] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Runner:
    """Runs playbooks through ansible-runner, one private data dir per job.

    Args:
        store: where jobs and their events are recorded.
        bus: where job events are published live.
        project_dir: the repository root; playbook names resolve under ``<project_dir>/playbooks/``.
        inventory: the inventory file passed with ``-i`` (``inventory/hosts.yml``).
        home: the state directory; run dirs live in ``<home>/runs/<job_id>``.
        env: the only environment Ansible gets besides PATH, HOME, LANG and the ANSIBLE_* settings set
            here (e.g. the sandbox's AWS dummies and region).
        secrets: extra values to redact everywhere (besides env values with secret-looking names).
        keep_runs: run dirs to keep, newest first (0 keeps all).
        clock: for timestamps.
    """

    def __init__(
        self,
        store: JobStore,
        bus: EventBus,
        *,
        project_dir: str | Path,
        inventory: str | Path,
        home: str | Path,
        env: Mapping[str, str] | None = None,
        secrets: Sequence[str] = (),
        keep_runs: int = 50,
        clock: Clock | None = None,
    ) -> None:
        self.store = store
        self.bus = bus
        self.project_dir = Path(project_dir).resolve()
        self.inventory = Path(inventory).resolve()
        self.home = Path(home)
        self.runs_dir = self.home / "runs"
        self.env = {str(k): str(v) for k, v in (env or {}).items()}
        self.keep_runs = keep_runs
        self.clock: Clock = clock or SystemClock()
        self._runs: dict[str, _Run] = {}
        #: Jobs :meth:`recover` skipped because their ids are not ids the store creates.
        self.skipped: list[str] = []
        self._lock = threading.Lock()
        self.redactor = Redactor([
            *[s for s in secrets if s],
            *secret_values(self.env),
            # The console's own secrets never reach Ansible, but may reach a message some other way.
            *secret_values(dict(os.environ)),
        ])
        self._log_filter = _RedactingFilter(self.redactor)
        for name in (__name__, "ansible-runner"):
            logging.getLogger(name).addFilter(self._log_filter)

    def close(self) -> None:
        """Detach the log filters (runs still going keep going)."""
        for name in (__name__, "ansible-runner"):
            logging.getLogger(name).removeFilter(self._log_filter)

    # -- public API ----------------------------------------------------------------------------

    def start(
        self,
        action: str,
        playbook: str,
        extravars: Mapping[str, Any],
        *,
        check: bool = False,
        diff: bool = True,
        actor: str,
        face: str,
        idle_timeout_s: float | None = None,
        job_timeout_s: float | None = None,
    ) -> Job:
        """Record a job and run it in a background thread; returns the queued job at once.

        Raises:
            RunError: the playbook does not exist or the extravars are not JSON.
        """
        job, run = self._prepare(action, playbook, extravars, check=check, actor=actor, face=face,
                                 idle_timeout_s=idle_timeout_s, job_timeout_s=job_timeout_s)
        thread = threading.Thread(
            target=self._execute, args=(job, run, extravars, check, diff),
            name=f"opsconsole-job-{job.id[:8]}", daemon=True,
        )
        thread.start()
        return job

    def run(
        self,
        action: str,
        playbook: str,
        extravars: Mapping[str, Any],
        *,
        check: bool = False,
        diff: bool = True,
        actor: str,
        face: str,
        idle_timeout_s: float | None = None,
        job_timeout_s: float | None = None,
    ) -> Job:
        """Like :meth:`start`, but runs in the calling thread and returns the finished job."""
        job, run = self._prepare(action, playbook, extravars, check=check, actor=actor, face=face,
                                 idle_timeout_s=idle_timeout_s, job_timeout_s=job_timeout_s)
        self._execute(job, run, extravars, check, diff)
        return self._get(job.id)

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Wait until a job of this runner ends (or ``timeout`` seconds pass); returns the job as it is then.

        A job this runner is not running is returned as the store has it.
        """
        with self._lock:
            run = self._runs.get(job_id)
        if run is not None:
            run.done.wait(timeout)
        return self._get(job_id)

    def cancel(self, job_id: str) -> bool:
        """Stop a queued or running job and every process it started. Returns False if it was not running.

        A job run by another console process is cancelled too: its processes are killed and its record set
        to ``cancelled``; its owner sees the processes die and keeps that status.
        """
        with self._lock:
            run = self._runs.get(job_id)
        if run is not None:
            if run.done.is_set():
                return False
            self._stop(run, JobStatus.CANCELLED, "cancelled")
            return True
        job = self.store.get(job_id)
        if job is None or job.status.terminal:
            return False
        if not self.store.update_job(job_id, only_if_status=job.status, status=JobStatus.CANCELLED,
                                     error="cancelled", finished_at=self.clock.now()):
            return False
        kill_job_processes(job_id, self.runs_dir / job_id if valid_job_id(job_id) else None)
        log.info("job %s cancelled (it was run by process %s)", job_id, job.pid)
        return True

    def recover(self) -> list[Job]:
        """Call once at start: jobs left queued or running by a console that is gone become ``interrupted``.

        Their orphan processes are killed and their run dirs redacted; nothing is re-run. Returns those jobs.
        A job whose id is not one the store creates (``../../x`` written into the store by hand) is
        skipped, never turned into a path, and reported (logged, and listed in :attr:`skipped`).
        """
        recovered = []
        self.skipped = []
        for job in self.store.list(limit=10_000, status=[JobStatus.RUNNING, JobStatus.QUEUED]):
            if not valid_job_id(job.id):
                log.warning("job %r in the store is not a job id opsconsole creates: skipped (nothing done "
                            "to any file)", job.id)
                self.skipped.append(job.id)
                continue
            with _ACTIVE_LOCK:
                if job.id in _ACTIVE_IN_PROCESS:
                    continue
            if job.pid is not None and job.pid != os.getpid() and process_alive(job.pid):
                continue  # another console is running it
            run_dir = self.runs_dir / job.id
            killed = kill_job_processes(job.id, run_dir)
            error = INTERRUPTED_ERROR if job.status is JobStatus.RUNNING else "interrupted before it started"
            if not self.store.update_job(job.id, only_if_status=job.status, status=JobStatus.INTERRUPTED,
                                         error=error, finished_at=self.clock.now()):
                continue
            self.redactor.tree(run_dir)
            seq = self.store.last_seq(job.id) + 1
            event = JobEvent(
                job_id=job.id, seq=seq, at=self.clock.now(), kind=EventKind.JOB_STATUS, task=job.last_task,
                message=f"{JobStatus.INTERRUPTED}: {error}" + (f" (last task: {job.last_task})"
                                                               if job.last_task else ""),
                data={"status": str(JobStatus.INTERRUPTED), "error": error, "last_task": job.last_task,
                      "orphans_killed": killed},
            )
            self.store.add_event(event)
            self.bus.publish(event)
            log.warning("job %s (%s) %s; last task: %s; %d orphan process(es) killed",
                        job.id, job.action, error, job.last_task, killed)
            recovered.append(self._get(job.id))
        return recovered

    def run_dir(self, job_id: str) -> Path:
        """``<home>/runs/<job_id>``.

        Raises:
            UsageError: ``job_id`` is not an id the job store creates (no path is made of it).
        """
        if not valid_job_id(job_id):
            raise UsageError(f"{job_id!r} is not a job id (32 hexadecimal digits)", title="no such job")
        return self.runs_dir / job_id

    # -- internals -----------------------------------------------------------------------------

    def _get(self, job_id: str) -> Job:
        job = self.store.get(job_id)
        if job is None:
            raise RunError(f"no job {job_id}")
        return job

    def _resolve_playbook(self, playbook: str) -> Path:
        path = Path(playbook)
        candidates = [path] if path.is_absolute() else [self.project_dir / "playbooks" / path,
                                                        self.project_dir / path]
        for candidate in candidates:
            if candidate.is_file():
                return candidate.resolve()
        raise RunError(f"no playbook {playbook!r} (looked in {', '.join(str(c) for c in candidates)})",
                       title="unknown playbook")

    def _prepare(
        self, action: str, playbook: str, extravars: Mapping[str, Any], *, check: bool, actor: str, face: str,
        idle_timeout_s: float | None, job_timeout_s: float | None,
    ) -> tuple[Job, _Run]:
        playbook_path = self._resolve_playbook(playbook)
        try:
            params = json.loads(json.dumps(dict(extravars)))
        except (TypeError, ValueError) as exc:
            raise UsageError(f"the parameters of {action} are not plain JSON values: {exc}") from exc
        for name, limit in (("idle_timeout_s", idle_timeout_s), ("job_timeout_s", job_timeout_s)):
            if limit is not None and limit <= 0:
                raise UsageError(f"{name} must be positive, got {limit}")
        job = self.store.create_job(
            action=action, params=self.redactor.data(params), playbook=str(playbook_path), check_mode=check,
            actor=actor, face=face, pid=os.getpid(),
        )
        run = _Run(job.id, self.run_dir(job.id), idle_timeout_s, job_timeout_s)
        with self._lock:
            self._runs[job.id] = run
        with _ACTIVE_LOCK:
            _ACTIVE_IN_PROCESS.add(job.id)
        return job, run

    def _child_env(self, prepared: Mapping[str, str], run: _Run) -> dict[str, str]:
        """ansible-playbook's whole environment: minimal, then ``self.env``, then the runner's plumbing."""
        tmp = run.run_dir / "tmp"
        scripts = [sysconfig.get_path("scripts")]
        found = shutil.which("ansible-playbook")
        if found:
            scripts.insert(0, str(Path(found).parent))
        env = {
            "PATH": ":".join(dict.fromkeys([*scripts, "/usr/local/bin", "/usr/bin", "/bin"])),
            "HOME": os.environ.get("HOME") or str(Path.home()),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            # Ansible's temp dirs inside the run dir: removed with it, and module command lines name it.
            "ANSIBLE_LOCAL_TEMP": str(tmp),
            "ANSIBLE_REMOTE_TMP": str(tmp),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_DEPRECATION_WARNINGS": "0",
            "PYTHONUNBUFFERED": "1",
        }
        config = self.project_dir / "ansible.cfg"
        if config.is_file():  # the cwd is the run dir, where Ansible would not look for it
            env["ANSIBLE_CONFIG"] = str(config)
        env.update(self.env)
        env.update({k: prepared[k] for k in _RUNNER_ENV_KEYS if k in prepared})
        callback_dir = prepared.get("ANSIBLE_CALLBACK_PLUGINS", "").split(":")[-1]
        env["ANSIBLE_CALLBACK_PLUGINS"] = ":".join(filter(None, (self.env.get("ANSIBLE_CALLBACK_PLUGINS"),
                                                                 callback_dir)))
        if "ANSIBLE_STDOUT_CALLBACK" in self.env:
            env["ORIGINAL_STDOUT_CALLBACK"] = self.env["ANSIBLE_STDOUT_CALLBACK"]
        env[MARKER_VAR] = run.job_id
        return env

    def _emit(self, run: _Run, translated: _Translated, at: datetime) -> None:
        with run.lock:
            run.seq += 1
            seq = run.seq
        event = JobEvent(
            job_id=run.job_id, seq=seq, at=at, kind=translated.kind, host=translated.host,
            play=self.redactor.text(translated.play) if translated.play else translated.play,
            task=self.redactor.text(translated.task) if translated.task else translated.task,
            message=self.redactor.text(translated.message), changed=translated.changed,
            data=self.redactor.data(translated.data),
        )
        self.store.add_event(event)
        self.bus.publish(event)

    def _on_event(self, run: _Run, raw: Mapping[str, Any]) -> bool:
        run.last_activity = time.monotonic()
        try:
            translated = translate_event(raw)
            if translated is None:
                return True
            if translated.kind is EventKind.TASK_START and translated.task:
                run.last_task = self.redactor.text(translated.task)
                self.store.update_job(run.job_id, last_task=run.last_task)
            elif translated.kind is EventKind.FAILED and not translated.data.get("ignored"):
                run.failure = self.redactor.text(
                    f"{translated.task}: {translated.message}" if translated.task else translated.message)
            elif translated.kind is EventKind.STATS:
                run.stats = {"hosts": translated.data["hosts"], "totals": translated.data["totals"]}
                timings = translated.data.get("artifact_data", {}).get("opsconsole_timings")
                if isinstance(timings, list):
                    run.timings = self.redactor.data(timings)
            self._emit(run, translated, _parse_time(raw.get("created"), self.clock))
        except Exception:
            # ansible-runner would abort the run on an exception here; a lost event is the lesser harm.
            log.exception("job %s: could not record event %s", run.job_id, raw.get("event"))
        return True  # keep ansible-runner's job_events/ files (redacted when the run ends)

    def _on_status(self, run: _Run, status_data: Mapping[str, Any], **_kwargs: Any) -> None:
        # status_data carries the whole child environment on "starting": never log it.
        log.debug("job %s: ansible-runner status %s", run.job_id, status_data.get("status"))

    def _stop(self, run: _Run, reason: JobStatus, detail: str) -> None:
        with run.lock:
            if run.stop_reason is None:
                run.stop_reason = reason
                run.stop_detail = detail
        run.cancel_requested.set()
        kill_job_processes(run.job_id, run.run_dir)

    def _should_cancel(self, run: _Run) -> bool:
        """ansible-runner's cancel callback, polled every POLL_S: cancel, timeouts, cancel from elsewhere."""
        try:
            now = time.monotonic()
            if run.cancel_requested.is_set():
                self._stop(run, JobStatus.CANCELLED, "cancelled")  # kill again: a fork may have raced
                return True
            if run.job_timeout_s is not None and now - run.started > run.job_timeout_s:
                detail = f"job timeout: still running after {run.job_timeout_s:g} s"
                self._stop(run, JobStatus.TIMED_OUT, detail)
                return True
            if run.idle_timeout_s is not None and now - run.last_activity > run.idle_timeout_s:
                self._stop(run, JobStatus.TIMED_OUT, f"idle timeout: no output for {run.idle_timeout_s:g} s")
                return True
            if now - run.last_store_check > 1.0:
                run.last_store_check = now
                job = self.store.get(run.job_id)
                if job is not None and job.status is JobStatus.CANCELLED:
                    self._stop(run, JobStatus.CANCELLED, job.error or "cancelled")
                    return True
        except Exception:
            log.exception("job %s: cancel check failed", run.job_id)
        return False

    def _execute(self, job: Job, run: _Run, extravars: Mapping[str, Any], check: bool, diff: bool) -> None:
        status: JobStatus = JobStatus.FAILED
        rc: int | None = None
        error: str | None = None
        runner_status = "unstarted"
        stdout_path = run.run_dir / "artifacts" / job.id / "stdout"
        try:
            if run.cancel_requested.is_set():
                raise _Cancelled
            private_dir(self.runs_dir)
            run.run_dir.mkdir(mode=0o700)
            (run.run_dir / "env").mkdir(mode=0o700)
            (run.run_dir / "tmp").mkdir(mode=0o700)
            extravars_file = run.run_dir / "env" / "extravars"
            extravars_file.touch(mode=0o600)
            extravars_file.write_text(json.dumps(dict(extravars)))
            cmdline = " ".join(flag for flag, on in (("--check", check), ("--diff", diff)) if on)
            config = ansible_runner.RunnerConfig(
                private_data_dir=str(run.run_dir), ident=job.id, playbook=job.playbook,
                inventory=str(self.inventory), cmdline=cmdline or None, quiet=True,
                # Timeouts are enforced in _should_cancel, which also kills what the group kill misses.
                settings={"pexpect_timeout": POLL_S, "suppress_ansible_output": True},
            )
            config.prepare()
            config.env = self._child_env(config.env, run)
            engine = ansible_runner.Runner(
                config=config,
                event_handler=lambda raw: self._on_event(run, raw),
                status_handler=lambda data, **kw: self._on_status(run, data, **kw),
                cancel_callback=lambda: self._should_cancel(run),
            )
            started_at = self.clock.now()
            run.started = run.last_activity = time.monotonic()
            self.store.update_job(job.id, status=JobStatus.RUNNING, started_at=started_at)
            self._emit(run, _Translated(EventKind.JOB_STATUS, message=str(JobStatus.RUNNING),
                                        data={"status": str(JobStatus.RUNNING), "check": check}), started_at)
            log.info("job %s (%s) started: %s%s", job.id, job.action, Path(job.playbook).name,
                     " --check" if check else "")
            if run.cancel_requested.is_set():
                raise _Cancelled
            runner_status, rc = engine.run()
        except _Cancelled:
            pass
        except Exception as exc:
            error = self.redactor.text(f"{type(exc).__name__}: {exc}")
            log.error("job %s: the run failed: %s", job.id, error)
        finally:
            # Whatever happened, nothing of this job may outlive it, and nothing it wrote may keep a secret.
            killed = kill_job_processes(job.id, run.run_dir)
            if killed:
                log.info("job %s: killed %d leftover process(es)", job.id, killed)
            self.redactor.tree(run.run_dir)

        if run.stop_reason is not None:
            status, error = run.stop_reason, run.stop_detail
        elif error is not None:
            status = JobStatus.FAILED
        elif runner_status == "successful" and rc == 0:
            status = JobStatus.SUCCEEDED
        elif runner_status == "timeout":
            status, error = JobStatus.TIMED_OUT, "timed out"
        elif runner_status == "canceled":
            status, error = JobStatus.CANCELLED, "cancelled"
        else:
            status = JobStatus.FAILED
            error = run.failure or self._stdout_tail(stdout_path) or f"ansible-playbook exited with rc {rc}"
        self._finish(job, run, status, rc, error)

    def _stdout_tail(self, path: Path, lines: int = 8) -> str:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            return ""
        tail = [line.rstrip() for line in text.replace("\r\n", "\n").splitlines() if line.strip()][-lines:]
        return _clip(self.redactor.text("\n".join(tail)))

    def _finish(self, job: Job, run: _Run, status: JobStatus, rc: int | None, error: str | None) -> None:
        finished_at = self.clock.now()
        fields: dict[str, Any] = {
            "finished_at": finished_at, "rc": rc, "stats": run.stats, "timings": run.timings,
            "last_task": run.last_task, "error": error,
        }
        try:
            updated = any(
                self.store.update_job(job.id, only_if_status=previous, status=status, **fields)
                for previous in (JobStatus.RUNNING, JobStatus.QUEUED)
            )
            if not updated:
                # Someone else decided the outcome (a cancel from another console): keep theirs.
                current = self.store.get(job.id)
                status = current.status if current is not None else status
                fields.pop("error")
                fields.pop("finished_at")
                self.store.update_job(job.id, **fields)
            self._emit(run, _Translated(
                EventKind.JOB_STATUS, task=run.last_task,
                message=f"{status}" + (f": {error}" if error and status is not JobStatus.SUCCEEDED else ""),
                data={"status": str(status), "rc": rc, "error": error, "stats": run.stats.get("totals", {}),
                      "timings": run.timings},
            ), finished_at)
            log.info("job %s (%s) %s (rc %s)%s", job.id, job.action, status, rc,
                     f": {error}" if error else "")
        finally:
            with _ACTIVE_LOCK:
                _ACTIVE_IN_PROCESS.discard(job.id)
            run.done.set()
            with self._lock:
                self._runs.pop(job.id, None)
                active = set(self._runs)
            try:
                self._rotate(keep=active)
            except Exception:
                log.exception("could not rotate run dirs under %s", self.runs_dir)

    def _rotate(self, keep: set[str]) -> None:
        """Keep the newest ``keep_runs`` run dirs; never remove one whose job is still going."""
        if self.keep_runs <= 0 or not self.runs_dir.is_dir():
            return
        dirs = sorted(_dirs_by_age(self.runs_dir), key=lambda pair: pair[0], reverse=True)
        for _mtime, path in dirs[self.keep_runs:]:
            if path.name in keep:
                continue
            with _ACTIVE_LOCK:
                if path.name in _ACTIVE_IN_PROCESS:
                    continue
            job = self.store.get(path.name)
            if job is not None and not job.status.terminal:
                continue
            shutil.rmtree(path, ignore_errors=True)


class _Cancelled(Exception):
    """Cancelled before ansible-playbook started."""


def _dirs_by_age(root: Path) -> Iterator[tuple[float, Path]]:
    for entry in os.scandir(root):
        if entry.is_dir(follow_symlinks=False):
            try:
                yield entry.stat(follow_symlinks=False).st_mtime, Path(entry.path)
            except OSError:
                continue
