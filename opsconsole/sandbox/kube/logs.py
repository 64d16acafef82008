"""Container logs for the Kubernetes API emulator: ``GET /api/v1/namespaces/{ns}/pods/{name}/log``.

Why this module exists: an SRE chasing a crash-looping pod reads its log (``kubectl logs``, ``--previous``,
``-f``), and the console does the same through the official client. The sandbox has no containers, so
the lines are synthesised, deterministically, from the stored pod:

* a serving pod logs its start-up, then one request line every :data:`REQUEST_EVERY_S` wall seconds
  (path, status and latency drawn from a hash of the pod and the second), the last
  :data:`WINDOW_S` seconds of them kept, as a container runtime's rotated log would;
* a crash-looping pod (:mod:`opsconsole.sandbox.kube.crashloop`) logs, for each run, its start-up, a
  failed schema check, a Python stack trace and ``exiting with status 1``. The current log is the latest
  run (the one running, or the one that just died while the container waits in ``CrashLoopBackOff``);
  ``previous=true`` is the run ``lastState.terminated`` describes.

The query parameters are the real ones: ``container`` (default: the pod's only container),
``previous``, ``tailLines``, ``sinceSeconds``, ``timestamps`` (an RFC 3339 timestamp before each line)
and ``follow`` (:func:`follow_log`: a chunked stream of new lines while the pod lives). Errors are the
real API's 400s: ``previous terminated container "x" in pod "y" not found``, ``container "x" in pod
"y" is waiting to start: ContainerCreating``, ``container x is not valid for pod y``.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta

from opsconsole.sandbox.kube.crashloop import CRASH_STATE, STATE_ANNOTATION
from opsconsole.sandbox.kube.resources import JsonObj
from opsconsole.sandbox.kube.status import ApiError, bad_request
from opsconsole.sandbox.kube.watch import WatchDropped, WatchHub

__all__ = ["FOLLOW_MAX_S", "REQUEST_EVERY_S", "WINDOW_S", "Entry", "follow_log", "log_entries", "render"]

#: A serving pod logs one request line this often (wall seconds).
REQUEST_EVERY_S = 2
#: How far back a serving pod's log goes (seconds): older lines were rotated away.
WINDOW_S = 15 * 60
#: A follow stream ends after this long (clients re-open it, as after any dropped stream).
FOLLOW_MAX_S = 15 * 60
_POLL_S = 0.5
_FMT = "%Y-%m-%dT%H:%M:%SZ"

#: One log line: when it was written, and its text.
Entry = tuple[datetime, str]

_PATHS = ("/v1/{svc}", "/v1/{svc}/{id}", "/v1/{svc}/search", "/healthz")
_STATUSES = (200,) * 40 + (201, 204, 304, 400, 404, 409, 499, 503)


def _time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.strptime(value, _FMT).replace(tzinfo=UTC)
    except ValueError:
        return None


def _container(pod: JsonObj, container: str | None) -> tuple[str, JsonObj]:
    """The container's name and status; 400 when the pod has no such container."""
    name = pod["metadata"]["name"]
    names = [c.get("name", "") for c in (pod.get("spec") or {}).get("containers") or []]
    chosen = container or (names[0] if len(names) == 1 else None)
    if chosen is None:
        raise bad_request(f"a container name must be specified for pod {name}, choose one of: {names}")
    if chosen not in names:
        raise bad_request(f"container {chosen} is not valid for pod {name}")
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    status = next((s for s in statuses if s.get("name") == chosen), None)
    if status is None:
        raise bad_request(f'container "{chosen}" in pod "{name}" is waiting to start: ContainerCreating')
    return chosen, status


def log_entries(pod: JsonObj, *, container: str | None, previous: bool, now: datetime) -> list[Entry]:
    """Every line the container's log holds at wall time ``now`` (oldest first); ApiError 400 as above."""
    name = pod["metadata"]["name"]
    chosen, status = _container(pod, container)
    image = str(status.get("image") or "")
    version = image.rsplit(":", 1)[-1] if ":" in image else "latest"
    crash = ((pod["metadata"].get("annotations") or {}).get(STATE_ANNOTATION)) == CRASH_STATE
    last = (status.get("lastState") or {}).get("terminated")
    if previous:
        if not last:
            raise bad_request(f'previous terminated container "{chosen}" in pod "{name}" not found')
        started = _time(last.get("startedAt")) or now
        return _crash_run(chosen, version, started, complete=True)
    state = status.get("state") or {}
    if crash:
        running = state.get("running")
        if running:
            started = _time(running.get("startedAt")) or now
            return _crash_run(chosen, version, started, complete=False)
        if last:
            return _crash_run(chosen, version, _time(last.get("startedAt")) or now, complete=True)
        raise bad_request(f'container "{chosen}" in pod "{name}" is waiting to start: ContainerCreating')
    if "waiting" in state:
        reason = (state.get("waiting") or {}).get("reason") or "ContainerCreating"
        raise bad_request(f'container "{chosen}" in pod "{name}" is waiting to start: {reason}')
    started = _time((state.get("running") or {}).get("startedAt")) or _time(
        pod["metadata"].get("creationTimestamp")) or now
    return _serving(name, chosen, version, started, now)


def _serving(pod: str, svc: str, version: str, started: datetime, now: datetime) -> list[Entry]:
    """A serving container: start-up, then a request line every REQUEST_EVERY_S seconds."""
    out: list[Entry] = []
    horizon = now - timedelta(seconds=WINDOW_S)
    if started >= horizon:
        out += [
            (started, f"INFO  starting {svc} {version} pid=1"),
            (started + timedelta(milliseconds=300), "INFO  connected to postgres primary; schema ok"),
            (started + timedelta(milliseconds=900), "INFO  listening on :8080; ready"),
        ]
    first = max(started + timedelta(seconds=REQUEST_EVERY_S), horizon)
    step = REQUEST_EVERY_S
    t = int(first.timestamp())
    t += (-t) % step
    end = now.timestamp()
    while t <= end:
        h = zlib.crc32(f"{pod}/{t}".encode())
        path = _PATHS[h % len(_PATHS)].format(svc=svc, id=h % 100000)
        status = _STATUSES[(h >> 8) % len(_STATUSES)]
        ms = 4 + (h >> 16) % 180
        method = "GET" if (h >> 4) % 5 else "POST"
        out.append((datetime.fromtimestamp(t, UTC), f'INFO  {method} {path} {status} {ms}ms'))
        t += step
    return out


def _crash_run(svc: str, version: str, started: datetime, *, complete: bool) -> list[Entry]:
    """One run of the bad release: start-up, the failed schema check, the stack trace, exit 1."""

    def at(ms: int) -> datetime:
        return started + timedelta(milliseconds=ms)

    lines: list[Entry] = [
        (at(0), f"INFO  starting {svc} {version} pid=1"),
        (at(250), f"INFO  loading configuration from /etc/voltage/{svc}.yaml"),
        (at(800), "INFO  connecting to postgres primary (db-primary.voltage.internal:5432)"),
        (at(1400), "INFO  connected; verifying schema revision 0142_orders_currency"),
    ]
    if not complete:
        return lines
    trace = [
        'ERROR schema check failed: column "orders.currency_code" does not exist',
        "Traceback (most recent call last):",
        f'  File "/app/voltage/{svc}/main.py", line 48, in <module>',
        "    app = create_app(settings)",
        f'  File "/app/voltage/{svc}/app.py", line 112, in create_app',
        "    migrations.verify(db, expected=settings.schema_revision)",
        '  File "/app/voltage/common/migrations.py", line 77, in verify',
        "    raise SchemaMismatch(f\"column {missing!r} does not exist\")",
        'voltage.common.migrations.SchemaMismatch: column "orders.currency_code" does not exist',
    ]
    lines += [(at(2600), text) for text in trace]
    lines.append((at(2900), f"FATAL {svc} exiting with status 1"))
    return lines


def render(entries: list[Entry], *, timestamps: bool) -> bytes:
    """The log body: one line per entry, with its RFC 3339 timestamp first when asked."""
    if timestamps:
        text = "".join(f"{t.strftime('%Y-%m-%dT%H:%M:%S.%f')}000Z {line}\n" for t, line in entries)
    else:
        text = "".join(f"{line}\n" for _, line in entries)
    return text.encode()


def select(entries: list[Entry], query: Mapping[str, str], now: datetime) -> list[Entry]:
    """``sinceSeconds`` then ``tailLines`` (400 when they are not non-negative integers)."""
    since = _int_param(query, "sinceSeconds")
    if since is not None:
        horizon = now - timedelta(seconds=since)
        entries = [e for e in entries if e[0] >= horizon]
    tail = _int_param(query, "tailLines")
    if tail is not None:
        entries = entries[-tail:] if tail else []
    return entries


def _int_param(query: Mapping[str, str], key: str) -> int | None:
    raw = query.get(key)
    if raw in (None, ""):
        return None
    try:
        value = int(str(raw))
    except ValueError:
        raise bad_request(f"{key}: invalid value {raw!r}: must be an integer") from None
    if value < 0:
        raise bad_request(f"{key}: Invalid value: {value}: must be greater than or equal to 0")
    return value


def follow_log(
    hub: WatchHub,
    lock: threading.RLock,
    current: Callable[[], JsonObj | None],
    first: list[Entry],
    *,
    container: str | None,
    previous: bool,
    timestamps: bool,
) -> Iterator[bytes]:
    """The ``follow=true`` stream: ``first`` at once, then every newer line of the pod's log as it comes,
    until the pod is gone (the stream ends), the emulator drops its streams (:class:`WatchDropped`), or
    :data:`FOLLOW_MAX_S` passed."""
    with hub.cond:
        generation = hub.generation
    if first:
        yield render(first, timestamps=timestamps)
    last = first[-1][0] if first else None
    end = time.monotonic() + FOLLOW_MAX_S
    while time.monotonic() < end:
        with hub.cond:
            hub.cond.wait(_POLL_S)
            if hub.generation != generation:
                raise WatchDropped()
        with lock:
            pod = current()
        if pod is None:
            return
        try:
            entries = log_entries(pod, container=container, previous=previous, now=datetime.now(UTC))
        except ApiError:  # the container is waiting again: nothing new to send yet
            continue
        new = [e for e in entries if last is None or e[0] > last]
        if new:
            last = new[-1][0]
            yield render(new, timestamps=timestamps)
