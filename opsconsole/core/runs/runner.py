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

import atexit
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import sys
import sysconfig
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# ansible-runner ships neither type hints nor a py.typed marker; everything it returns is translated below.
import ansible_runner  # type: ignore[import-untyped]
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from opsconsole.core.clock import Clock, SystemClock
from opsconsole.core.errors import OpsError, UsageError
from opsconsole.core.paths import private_dir
from opsconsole.core.processes import Owner, pid_alive, remove_orphan_dirs
from opsconsole.core.runs.events import EventBus, EventKind, JobEvent
from opsconsole.core.runs.jobs import JobStore
from opsconsole.core.runs.owners import HEARTBEAT_EVERY_S, HEARTBEAT_TTL_S, job_owner_dead
from opsconsole.core.runs.records import Job, JobStatus
from opsconsole.core.runs.supervise import (
    KILL_DEADLINE_S,
    MARKER_VAR,
    Watchdog,
    job_processes,
    kill_job_processes,
)
from opsconsole.core.store.db import StoreUnavailable

log = logging.getLogger(__name__)

#: The ids the job store creates (``uuid4().hex``): anything else never names a run directory.
JOB_ID = re.compile(r"^[0-9a-f]{32}$")


def valid_job_id(job_id: str) -> bool:
    """Whether ``job_id`` has the exact shape of the ids the job store creates (32 lowercase hex)."""
    return isinstance(job_id, str) and JOB_ID.fullmatch(job_id) is not None

__all__ = [
    "INTERRUPTED_ERROR", "KILL_DEADLINE_S", "MARKER_VAR", "REDACTED", "Redactor", "RunError", "Runner",
    "cancel_runs_at_exit", "job_processes", "kill_job_processes", "process_alive", "scrub_command_files",
    "stats_from_events", "valid_job_id",
]

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
        self._variants: list[str] = []
        self._pattern: re.Pattern[str] | None = None
        self._bytes: list[bytes] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Redact these too from now on (a credential that became known after the runner was built)."""
        variants: set[str] = set(self._variants)
        for secret in secrets:
            if not secret:
                continue
            variants.add(secret)
            variants.add(json.dumps(secret)[1:-1])
            variants.add(json.dumps(secret, ensure_ascii=False)[1:-1])
        ordered = sorted(variants, key=len, reverse=True)  # longest first: no partial leftovers
        pattern = re.compile("|".join(re.escape(v) for v in ordered)) if ordered else None
        self._variants, self._pattern, self._bytes = ordered, pattern, [v.encode() for v in ordered]

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


# -- the store being away, counts, artifacts ----------------------------------------------------------

#: Temporary directories a console makes (the local cloud's kubeconfigs) that recovery removes once their
#: owner (see :func:`opsconsole.core.processes.mark_owned`) is gone.
ORPHAN_DIR_PATTERN = "opsconsole-kube-*"
#: Playbooks one runner runs at once unless configured (``OPSCONSOLE_MAX_PARALLEL_RUNS``).
DEFAULT_PARALLEL_RUNS = 4
PARALLEL_RUNS_VAR = "OPSCONSOLE_MAX_PARALLEL_RUNS"


def _parallel_from_env() -> int:
    text = os.environ.get(PARALLEL_RUNS_VAR, "").strip()
    if not text:
        return DEFAULT_PARALLEL_RUNS
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"{PARALLEL_RUNS_VAR}={text!r}: expected a whole number of runs, e.g. 4") from None


#: Events a run keeps in memory while the store is away; beyond, the oldest are dropped (and counted).
MAX_BUFFERED_EVENTS = 10_000
#: How often a run's end is retried while the store is away.
STORE_RETRY_S = 1.0

_COUNTED = {
    EventKind.OK: "ok", EventKind.CHANGED: "ok", EventKind.FAILED: "failed", EventKind.SKIPPED: "skipped",
    EventKind.UNREACHABLE: "unreachable",
}


def _stats_from_counts(host_counts: Mapping[str, Mapping[str, int]]) -> dict[str, Any]:
    """A recap made of task-event counts (Ansible counts a changed result as ok *and* changed)."""
    names = tuple(_STAT_KEYS.values())
    hosts = {host: {name: int(counts.get(name, 0)) for name in names} for host, counts in host_counts.items()}
    totals = {name: sum(counts[name] for counts in hosts.values()) for name in names}
    return {"hosts": hosts, "totals": totals, "partial": True}


def stats_from_events(events: Iterable[JobEvent]) -> dict[str, Any]:
    """What a run did, from its stored events: the recap if it got one, else the task-event counts."""
    host_counts: dict[str, dict[str, int]] = {}
    for event in events:
        if event.kind is EventKind.STATS and isinstance(event.data.get("totals"), Mapping):
            return {"hosts": dict(event.data.get("hosts") or {}), "totals": dict(event.data["totals"])}
        name = _COUNTED.get(event.kind)
        if name is None:
            continue
        per_host = host_counts.setdefault(event.host or "?", {})
        per_host[name] = per_host.get(name, 0) + 1
        if event.changed:
            per_host["changed"] = per_host.get("changed", 0) + 1
    return _stats_from_counts(host_counts) if host_counts else {}


def scrub_command_files(run_dir: Path, redactor: Redactor | None = None) -> int:
    """Take the environment's secrets out of ``artifacts/*/command`` (ansible-runner writes the child's
    whole environment there): values of secret-looking names become ``***``, the rest are redacted by
    ``redactor``. Returns how many files were rewritten."""
    rewritten = 0
    for path in (run_dir / "artifacts").glob("*/command"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        env = data.get("env") if isinstance(data, dict) else None
        if not isinstance(env, dict):
            continue
        clean = {
            str(k): REDACTED if looks_secret(str(k)) else (redactor.text(str(v)) if redactor else str(v))
            for k, v in env.items()
        }
        if clean == env:
            continue
        data["env"] = clean
        tmp = path.with_name(path.name + ".scrubbing")
        tmp.write_text(json.dumps(data))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
        rewritten += 1
    return rewritten


def _last_task(events: Sequence[JobEvent]) -> str | None:
    """The task a run was last busy with: the last one that did something or was running when it stopped
    (a skipped task did nothing and is not named)."""
    skipped: set[str] = set()
    for event in reversed(events):
        if not event.task:
            continue
        if event.kind is EventKind.SKIPPED:
            skipped.add(event.task)
        elif event.kind in _COUNTED or (event.kind is EventKind.TASK_START and event.task not in skipped):
            return event.task
    return None


def _store_error(exc: BaseException) -> bool:
    """Whether ``exc`` means the store could not be used (away, locked, failing), not a bug of ours."""
    return isinstance(exc, SQLAlchemyError | StoreUnavailable | OSError)


def _duplicate(exc: BaseException) -> bool:
    return isinstance(exc, IntegrityError)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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
    #: The last task that did something (a result other than skipped): what the record names when the
    #: run ends on a task that was skipped.
    last_done_task: str | None = None
    #: Counted from the task events as they come (ok / changed / failed / skipped / unreachable), so that a
    #: run that never reaches its recap (killed, cancelled, timed out) still tells what it changed.
    counts: dict[str, int] = field(default_factory=dict)
    host_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    failure: str | None = None
    #: Events not yet written (the store was away), oldest first; see Runner._flush.
    pending: deque[JobEvent] = field(default_factory=deque)
    dropped: int = 0
    store_down: bool = False
    final_emitted: bool = False
    flush_lock: threading.Lock = field(default_factory=threading.Lock)
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
        owner: who owns the runs started here (this process by default): recorded with each job, with a
            heartbeat renewed every ``heartbeat_s`` in database time; :meth:`recover` judges other
            owners' jobs by it (see :mod:`opsconsole.core.runs.owners`).
        heartbeat_ttl_s: how old another host's heartbeat may be before its job counts as dead.
        max_parallel: how many playbooks run at once; more jobs wait ``queued`` for a free slot. Default:
            ``OPSCONSOLE_MAX_PARALLEL_RUNS``, else :data:`DEFAULT_PARALLEL_RUNS`.
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
        owner: Owner | None = None,
        heartbeat_s: float = HEARTBEAT_EVERY_S,
        heartbeat_ttl_s: float = HEARTBEAT_TTL_S,
        max_parallel: int | None = None,
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
        self.owner = owner or Owner.current()
        self.heartbeat_s = heartbeat_s
        self.heartbeat_ttl_s = heartbeat_ttl_s
        self.max_parallel = max_parallel if max_parallel is not None else _parallel_from_env()
        if self.max_parallel < 1:
            raise UsageError(f"max_parallel runs must be at least 1, not {self.max_parallel}")
        self._slots = threading.BoundedSemaphore(self.max_parallel)
        self._beat_stop = threading.Event()
        self._beat_thread: threading.Thread | None = None
        self._runs: dict[str, _Run] = {}
        #: Jobs that ended but whose end is not in the store yet (the store was away), as they ended.
        self._outcomes: dict[str, Job] = {}
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

    def add_env(self, env: Mapping[str, str]) -> None:
        """Variables for the runs started from now on; the secret-looking ones are redacted from then on
        (a progressive start learns the sandbox's AWS credentials after the runner was built)."""
        self.env.update({str(k): str(v) for k, v in env.items()})
        self.redactor.add(secret_values(env))

    def close(self) -> None:
        """Detach the log filters and stop the heartbeat (runs still going keep going)."""
        self._beat_stop.set()
        for name in (__name__, "ansible-runner"):
            logging.getLogger(name).removeFilter(self._log_filter)

    def active(self) -> list[str]:
        """The ids of the jobs this runner is running now."""
        with self._lock:
            return [job_id for job_id, run in self._runs.items() if not run.done.is_set()]

    def cancel_all(
        self, detail: str = "cancelled: the console shut down", *, wait_s: float = 10.0
    ) -> list[str]:
        """Cancel every run of this runner and wait (up to ``wait_s``) until each has recorded its end.

        For a normal shutdown (SIGTERM, SIGINT, the end of the program): the runs' processes are killed
        and their jobs recorded ``cancelled`` with what they changed so far, not left ``running``.
        Returns the ids of the jobs cancelled.
        """
        with self._lock:
            runs = [run for run in self._runs.values() if not run.done.is_set()]
        for run in runs:
            self._stop(run, JobStatus.CANCELLED, detail)
        deadline = time.monotonic() + wait_s
        for run in runs:
            run.done.wait(max(0.0, deadline - time.monotonic()))
        return [run.job_id for run in runs]

    def _ensure_heartbeat(self) -> None:
        with self._lock:
            if self._beat_thread is not None and self._beat_thread.is_alive():
                return
            self._beat_stop.clear()
            self._beat_thread = threading.Thread(target=self._beat, name="opsconsole-job-heartbeat",
                                                 daemon=True)
            self._beat_thread.start()

    def _beat(self) -> None:
        """Renew the heartbeat of this runner's jobs in database time until it has none left."""
        failing = False
        while not self._beat_stop.wait(self.heartbeat_s):
            ids = self.active()
            if not ids:
                with self._lock:
                    if not any(not r.done.is_set() for r in self._runs.values()):
                        self._beat_thread = None
                        return
                continue
            try:
                self.store.heartbeat(ids)
                if failing:
                    log.info("job heartbeat: the store answers again")
                failing = False
            except Exception as exc:  # the store is away: the run goes on, the beat retries
                if not failing:
                    log.warning("job heartbeat: could not reach the store (%s): retrying", _first_line(exc))
                failing = True

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
        """Jobs left queued or running by an owner that is provably gone become ``interrupted``.

        Call it at start, and from anything that lists jobs: it repairs only what it can prove dead (see
        :mod:`opsconsole.core.runs.owners`) — an owner on this host and boot whose exact process is gone,
        or, wherever the owner was, a heartbeat older than ``heartbeat_ttl_s`` in database time. Another
        host's job with a live heartbeat is left alone. The job's record says what its events say it did
        (changed counts, last task); its orphan processes are killed and its run dir scrubbed of secrets;
        nothing is re-run. Returns those jobs.

        A job whose id is not one the store creates (``../../x`` written into the store by hand) is
        skipped, never turned into a path, and reported (logged, and listed in :attr:`skipped`).
        """
        recovered = []
        self.skipped = []
        # A crashed console's temporary local cloud (kubeconfigs) goes too, once its owner is provably gone.
        for leftover in remove_orphan_dirs(ORPHAN_DIR_PATTERN):
            log.info("removed %s, left by a process that is gone", leftover)
        now = self.store.database_now()
        for job in self.store.list(limit=10_000, status=[JobStatus.RUNNING, JobStatus.QUEUED]):
            if not valid_job_id(job.id):
                log.warning("job %r in the store is not a job id opsconsole creates: skipped (nothing done "
                            "to any file)", job.id)
                self.skipped.append(job.id)
                continue
            with _ACTIVE_LOCK:
                if job.id in _ACTIVE_IN_PROCESS:
                    continue
            if not job_owner_dead(job.owner, job.heartbeat_at, now=now, legacy_pid=job.pid,
                                  ttl_s=self.heartbeat_ttl_s, this_owner=self.owner):
                continue  # its owner is alive, or on another host with a fresh heartbeat
            recovered_job = self._interrupt(job)
            if recovered_job is not None:
                recovered.append(recovered_job)
        return recovered

    def _interrupt(self, job: Job) -> Job | None:
        run_dir = self.runs_dir / job.id
        mine = Owner.parse(job.owner)
        here = mine is None or mine.alive_here(host=self.owner.host, boot=self.owner.boot) is not None
        # Another host's processes are not in this /proc: only this host's are ours to kill.
        killed = kill_job_processes(job.id, run_dir) if here else 0
        events = self.store.events(job.id)
        stats = job.stats or stats_from_events(events)
        last_task = _last_task(events) or job.last_task
        error = INTERRUPTED_ERROR if job.status is JobStatus.RUNNING else "interrupted before it started"
        if not self.store.update_job(job.id, only_if_status=job.status, status=JobStatus.INTERRUPTED,
                                     error=error, finished_at=self.clock.now(), stats=stats,
                                     last_task=last_task):
            return None
        if here:
            scrub_command_files(run_dir, self.redactor)
            self.redactor.tree(run_dir)
        seq = (events[-1].seq if events else 0) + 1
        totals = stats.get("totals", {}) if stats else {}
        event = JobEvent(
            job_id=job.id, seq=seq, at=self.clock.now(), kind=EventKind.JOB_STATUS, task=last_task,
            message=f"{JobStatus.INTERRUPTED}: {error}" + (f" (last task: {last_task})" if last_task else "")
            + (f"; changed {totals.get('changed', 0)} before it stopped" if totals else ""),
            data={"status": str(JobStatus.INTERRUPTED), "error": error, "last_task": last_task,
                  "orphans_killed": killed, "stats": totals},
        )
        with suppress(IntegrityError):  # a settling owner wrote its last event meanwhile
            self.store.add_event(event)
        self.bus.publish(event)
        log.warning("job %s (%s) %s; last task: %s; %d orphan process(es) killed",
                    job.id, job.action, error, last_task, killed)
        return self._get(job.id)

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
        with self._lock:
            known = self._outcomes.get(job_id)
        try:
            job = self.store.get(job_id)
        except Exception as exc:
            if known is not None and _store_error(exc):
                return known  # ended while the store is away: what happened, from memory
            raise
        if job is None:
            raise RunError(f"no job {job_id}")
        if known is not None and not job.status.terminal:
            return known
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
            actor=actor, face=face, pid=os.getpid(), owner=self.owner.token(),
        )
        run = _Run(job.id, self.run_dir(job.id), idle_timeout_s, job_timeout_s)
        with self._lock:
            self._runs[job.id] = run
        with _ACTIVE_LOCK:
            _ACTIVE_IN_PROCESS.add(job.id)
        self._ensure_heartbeat()
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
            run.pending.append(event)
            if len(run.pending) > MAX_BUFFERED_EVENTS:
                run.pending.popleft()
                run.dropped += 1
        self._flush(run)
        self.bus.publish(event)

    def _flush(self, run: _Run) -> bool:
        """Write the run's buffered events, in order; returns whether none is left.

        While the store is away the events stay in memory (at most :data:`MAX_BUFFERED_EVENTS`, the oldest
        dropped beyond) and the run goes on: one warning says so, one more when the store answers again.
        """
        with run.flush_lock:
            while True:
                with run.lock:
                    if not run.pending:
                        break
                    event = run.pending[0]
                try:
                    self.store.add_event(event)
                except Exception as exc:
                    if _duplicate(exc):  # written by an attempt whose answer was lost with the store
                        with run.lock:
                            run.pending.popleft()
                        continue
                    if not run.store_down:
                        run.store_down = True
                        log.warning("job %s: the store is unreachable (%s): the run goes on; its events "
                                    "are kept in memory and written when the store returns",
                                    run.job_id, _first_line(exc))
                    return False
                with run.lock:
                    run.pending.popleft()
            if run.store_down:
                run.store_down = False
                log.warning("job %s: the store answers again: %s buffered event(s) written", run.job_id,
                            "its" if not run.dropped else f"its (minus {run.dropped} dropped)")
            return True

    def _count(self, run: _Run, translated: _Translated) -> None:
        name = _COUNTED.get(translated.kind)
        if name is None:
            return
        with run.lock:
            run.counts[name] = run.counts.get(name, 0) + 1
            host = translated.host or "?"
            per_host = run.host_counts.setdefault(host, {})
            per_host[name] = per_host.get(name, 0) + 1
            if translated.changed and name != "changed":
                run.counts["changed"] = run.counts.get("changed", 0) + 1
                per_host["changed"] = per_host.get("changed", 0) + 1

    def _live_stats(self, run: _Run) -> dict[str, Any]:
        """The recap when there is one, else the counts of the task events seen (a run cut short)."""
        if run.stats:
            return run.stats
        with run.lock:
            if not run.counts:
                return {}
            return _stats_from_counts(run.host_counts)

    def _on_event(self, run: _Run, raw: Mapping[str, Any]) -> bool:
        run.last_activity = time.monotonic()
        try:
            translated = translate_event(raw)
            if translated is None:
                return True
            self._count(run, translated)
            if translated.kind is EventKind.TASK_START and translated.task:
                run.last_task = self.redactor.text(translated.task)
                if not run.store_down:
                    with suppress(Exception):  # the final record carries it anyway
                        self.store.update_job(run.job_id, last_task=run.last_task)
            elif translated.kind is EventKind.SKIPPED:
                # A skipped task did nothing: the job's last task stays the last one that did something.
                if translated.task and run.last_task == self.redactor.text(translated.task):
                    run.last_task = run.last_done_task
            elif translated.kind is EventKind.FAILED and not translated.data.get("ignored"):
                run.failure = self.redactor.text(
                    f"{translated.task}: {translated.message}" if translated.task else translated.message)
            elif translated.kind is EventKind.STATS:
                run.stats = {"hosts": translated.data["hosts"], "totals": translated.data["totals"]}
                timings = translated.data.get("artifact_data", {}).get("opsconsole_timings")
                if isinstance(timings, list):
                    run.timings = self.redactor.data(timings)
            if translated.kind in _COUNTED and translated.kind is not EventKind.SKIPPED and translated.task:
                run.last_done_task = run.last_task = self.redactor.text(translated.task)
            self._emit(run, translated, _parse_time(raw.get("created"), self.clock))
        except Exception:
            # ansible-runner would abort the run on an exception here; a lost event is the lesser harm.
            log.exception("job %s: could not record event %s", run.job_id, raw.get("event"))
        return True  # keep ansible-runner's job_events/ files (redacted when the run ends)

    def _on_status(self, run: _Run, status_data: Mapping[str, Any], **_kwargs: Any) -> None:
        # status_data carries the whole child environment on "starting": never log it.
        log.debug("job %s: ansible-runner status %s", run.job_id, status_data.get("status"))
        if status_data.get("status") == "running":
            # ansible-runner has just written artifacts/<id>/command with the child's whole environment:
            # take the secrets out now, not when the run ends (a crash would leave them there).
            scrub_command_files(run.run_dir, self.redactor)

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
                if run.pending and not self._flush(run):
                    return False  # the store is away: nobody can have cancelled it there
                job = self.store.get(run.job_id)
                if job is not None and job.status is JobStatus.CANCELLED:
                    self._stop(run, JobStatus.CANCELLED, job.error or "cancelled")
                    return True
        except Exception as exc:  # the store is away: the run goes on (told once by _flush)
            log.debug("job %s: cancel check failed: %s", run.job_id, _first_line(exc))
        return False

    def _execute(self, job: Job, run: _Run, extravars: Mapping[str, Any], check: bool, diff: bool) -> None:
        """Run the job once one of the runner's ``max_parallel`` slots is free (it stays ``queued`` till
        then; a cancel while it waits ends it without starting anything)."""
        took = self._take_slot(job, run)
        try:
            self._execute_in_slot(job, run, extravars, check, diff)
        finally:
            if took:
                self._slots.release()

    def _take_slot(self, job: Job, run: _Run) -> bool:
        if self._slots.acquire(blocking=False):
            return True
        log.info("job %s (%s) queued: %d runs already going (at most %d at once)", job.id, job.action,
                 self.max_parallel, self.max_parallel)
        while not self._slots.acquire(timeout=POLL_S):
            if run.cancel_requested.is_set():
                return False
        return True

    def _execute_in_slot(
        self, job: Job, run: _Run, extravars: Mapping[str, Any], check: bool, diff: bool
    ) -> None:
        rc: int | None = None
        error: str | None = None
        runner_status = "unstarted"
        watchdog: Watchdog | None = None
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
            watchdog = Watchdog.start(job.id, run.run_dir)
            engine = ansible_runner.Runner(
                config=config,
                event_handler=lambda raw: self._on_event(run, raw),
                status_handler=lambda data, **kw: self._on_status(run, data, **kw),
                cancel_callback=lambda: self._should_cancel(run),
            )
            started_at = self.clock.now()
            run.started = run.last_activity = time.monotonic()
            self._store_retry(run, lambda: self.store.update_job(job.id, only_if_status=JobStatus.QUEUED,
                                                                 status=JobStatus.RUNNING,
                                                                 started_at=started_at), once=True)
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
            if watchdog is not None:
                watchdog.done()
            self.redactor.tree(run.run_dir)

        status, error = self._outcome(run, runner_status, rc, error, stdout_path)
        self._finish(job, run, status, rc, error)

    def _outcome(
        self, run: _Run, runner_status: str, rc: int | None, error: str | None, stdout_path: Path
    ) -> tuple[JobStatus, str | None]:
        if run.stop_reason is not None:
            return run.stop_reason, run.stop_detail
        if error is not None:
            return JobStatus.FAILED, error
        if runner_status == "successful" and rc == 0:
            return JobStatus.SUCCEEDED, None
        if runner_status == "timeout":
            return JobStatus.TIMED_OUT, "timed out"
        if runner_status == "canceled":
            return JobStatus.CANCELLED, "cancelled"
        return JobStatus.FAILED, (run.failure or self._stdout_tail(stdout_path)
                                  or f"ansible-playbook exited with rc {rc}")

    def _stdout_tail(self, path: Path, lines: int = 8) -> str:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            return ""
        tail = [line.rstrip() for line in text.replace("\r\n", "\n").splitlines() if line.strip()][-lines:]
        return _clip(self.redactor.text("\n".join(tail)))

    def _finish(self, job: Job, run: _Run, status: JobStatus, rc: int | None, error: str | None) -> None:
        finished_at = self.clock.now()
        stats = self._live_stats(run)
        fields: dict[str, Any] = {
            "finished_at": finished_at, "rc": rc, "stats": stats, "timings": run.timings,
            "last_task": run.last_task, "error": error,
        }
        # What happened, known here whatever the store says: waiters get it even while the store is away.
        with self._lock:
            self._outcomes[job.id] = replace(
                job, status=status, started_at=job.started_at or finished_at, **fields)
        try:
            if self._store_retry(run, lambda: self._record_end(job, run, status, rc, error, fields),
                                 once=True):
                return
            log.warning("job %s (%s) %s; the store is unreachable: the outcome is recorded when it returns",
                        job.id, job.action, status)
            threading.Thread(target=self._settle, args=(job, run, status, rc, error, fields),
                             name=f"opsconsole-settle-{job.id[:8]}", daemon=True).start()
        finally:
            with _ACTIVE_LOCK:
                _ACTIVE_IN_PROCESS.discard(job.id)
            run.done.set()
            with self._lock:
                self._runs.pop(job.id, None)
                active = set(self._runs)
            try:
                self._rotate(keep=active)
            except Exception as exc:
                log.warning("could not rotate run dirs under %s: %s", self.runs_dir, _first_line(exc))

    def _settle(self, job: Job, run: _Run, status: JobStatus, rc: int | None, error: str | None,
                fields: dict[str, Any]) -> None:
        """Retry recording a run's end until the store answers (the process may exit first: the next
        start's recovery then records what the events say)."""
        with _ACTIVE_LOCK:
            _ACTIVE_IN_PROCESS.add(job.id)  # recovery in this process must not call it interrupted
        try:
            while not self._store_retry(run, lambda: self._record_end(job, run, status, rc, error, fields),
                                        once=True):
                time.sleep(STORE_RETRY_S)
        finally:
            with _ACTIVE_LOCK:
                _ACTIVE_IN_PROCESS.discard(job.id)

    def _record_end(self, job: Job, run: _Run, status: JobStatus, rc: int | None, error: str | None,
                    fields: dict[str, Any]) -> None:
        """Write the buffered events and the job's end; raises if the store is away (nothing half done:
        the final ``job_status`` event goes last)."""
        if not self._flush(run):
            raise StoreUnavailable(f"job {job.id}: the store is unreachable")
        updated = any(
            self.store.update_job(job.id, only_if_status=previous, status=status, **fields)
            for previous in (JobStatus.RUNNING, JobStatus.QUEUED, JobStatus.INTERRUPTED)
        )
        if not updated:
            # Someone else decided the outcome (a cancel from another console): keep theirs.
            current = self.store.get(job.id)
            status = current.status if current is not None else status
            rest = {k: v for k, v in fields.items() if k not in ("error", "finished_at")}
            self.store.update_job(job.id, **rest)
        stats = fields.get("stats") or {}
        if not run.final_emitted:
            run.final_emitted = True
            self._emit(run, _Translated(
                EventKind.JOB_STATUS, task=run.last_task,
                message=f"{status}" + (f": {error}" if error and status is not JobStatus.SUCCEEDED else ""),
                data={"status": str(status), "rc": rc, "error": error, "stats": stats.get("totals", {}),
                      "timings": run.timings},
            ), fields["finished_at"])
            if not self._flush(run):
                raise StoreUnavailable(f"job {job.id}: the store is unreachable")
        with self._lock:
            self._outcomes.pop(job.id, None)
        log.info("job %s (%s) %s (rc %s)%s", job.id, job.action, status, rc, f": {error}" if error else "")

    def _store_retry(self, run: _Run, work: Callable[[], object], *, once: bool = False) -> bool:
        """Do ``work`` against the store; returns False (logged once per outage) if the store is away."""
        try:
            work()
            return True
        except Exception as exc:
            if not _store_error(exc):
                raise
            if not run.store_down:
                run.store_down = True
                log.warning("job %s: the store is unreachable (%s): the run goes on; what it does is kept "
                            "in memory and written when the store returns", run.job_id, _first_line(exc))
            return False

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


def cancel_runs_at_exit(runner: Runner, *, on_sigterm: bool = True) -> None:
    """A normal end of the owning process (return, ``sys.exit``, Ctrl-C, SIGTERM) cancels its runs first.

    Registers :meth:`Runner.cancel_all` with :mod:`atexit`, and, called from the main thread where SIGTERM
    still has its default action, makes SIGTERM exit the way Ctrl-C does (``SystemExit``, so ``finally``
    blocks and ``atexit`` run). Each run is then stopped, its processes killed and its job recorded
    ``cancelled`` with what it changed so far — not left ``running``. (``kill -9`` runs none of this: the
    run's watchdog kills its processes, and the next :meth:`Runner.recover` records it ``interrupted``.)
    """
    atexit.register(_cancel_at_exit, runner)
    if (on_sigterm and threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None)):
        signal.signal(signal.SIGTERM, _exit_on_sigterm)


def _cancel_at_exit(runner: Runner) -> None:
    if runner.active():
        cancelled = runner.cancel_all("cancelled: the console exited")
        # Said on stderr whatever the logging setup (a CLI logs nothing by default): an interrupt that
        # lands before the command follows its run (while it is still being filed) is told here only.
        for job_id in cancelled:
            with contextlib.suppress(OSError, ValueError):  # stderr closed at exit
                sys.stderr.write(f"cancelled job {job_id[:12]}: the process that ran it is exiting\n")
                sys.stderr.flush()


def _exit_on_sigterm(signo: int, _frame: object) -> None:
    raise SystemExit(128 + signo)


def _dirs_by_age(root: Path) -> Iterator[tuple[float, Path]]:
    for entry in os.scandir(root):
        if entry.is_dir(follow_symlinks=False):
            try:
                yield entry.stat(follow_symlinks=False).st_mtime, Path(entry.path)
            except OSError:
                continue
