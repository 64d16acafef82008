"""A fast test double of the ops server: :class:`~opsconsole.core.api.OpsApi` on an
:class:`~opsconsole.core.facade.OpsCore`, in-process, for one person.

Why it exists: the console's pilot tests want a fleet on a *fake clock* (deterministic snapshots, a
frozen world, a clock advanced into a shutdown warning) and want to start in a fraction of a second;
the embedded server runs on the wall clock behind a Unix socket. This double answers with the server's
own service (:class:`opsconsole.server.service.OpsService`, the code behind ``/api/v1``), every answer
round-tripped through :mod:`opsconsole.core.wire` as over HTTP, and streams the core's bus as the
server's hub does (``job`` and ``request`` events) — so the console under test cannot tell the
difference. The tests that need the real server (``test_embedded.py``) use it.

Use::

    with sandbox_core(reader="sim", clock=FakeClock()) as core:
        api = CoreApi(core, "alice")
        api.fleet()
"""

from __future__ import annotations

import getpass
import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

from opsconsole.core import wire
from opsconsole.core.api import Assessment, Caller, Decided, Filed, RequestDetail, StreamEvent
from opsconsole.core.change.pipeline import RequestChanged
from opsconsole.core.change.records import ChangeRequest
from opsconsole.core.errors import OpsError
from opsconsole.core.facade import OpsCore
from opsconsole.core.fleet.view import FleetView
from opsconsole.core.runs.events import EventKind, JobEvent
from opsconsole.core.runs.records import Job
from opsconsole.server.service import OpsService, caller_for


def _wired(value: Any) -> Any:
    """``value`` as a client receives it: encoded and decoded, exactly as over HTTP."""
    return wire.loads(wire.dumps(value))


class CoreApi:
    """The OpsApi of ``core`` for ``person`` (a member of the sandbox cast; ``None``: the OS user, as
    the embedded server maps them).

    ``gate``, if given, is called with the operation's name before each call (tests slow a call down
    with it to make a race happen on purpose); ``may_change=False`` is a server that only reads.
    """

    def __init__(
        self,
        core: OpsCore,
        person: str | None = None,
        *,
        gate: Callable[[str], None] | None = None,
        may_change: bool = True,
    ) -> None:
        self.core = core
        directory = core.directory
        self.identity = directory.cast_member(person) if person else directory.os_user(getpass.getuser())
        caller = caller_for(self.identity, credential="embedded", sandbox=core.sandbox, may_change=may_change)
        self.service = OpsService(core, caller, self.identity, may_change=may_change)
        self._gate = gate
        self._streams: list[queue.Queue[StreamEvent | None]] = []
        self._lock = threading.Lock()
        self._unsubscribe: list[Callable[[], None]] = []

    def _call(self, operation: str, *args: Any, **kwargs: Any) -> Any:
        if self._gate is not None:
            self._gate(operation)
        return _wired(getattr(self.service, operation)(*args, **kwargs))

    # -- the contract ------------------------------------------------------------------------------------

    def whoami(self) -> Caller:
        return self._call("whoami")  # type: ignore[no-any-return]

    def fleet(self) -> FleetView:
        return self._call("fleet")  # type: ignore[no-any-return]

    def assess(self, action: str, params: Mapping[str, Any]) -> Assessment:
        return self._call("assess", action, params)  # type: ignore[no-any-return]

    def preview(self, action: str, params: Mapping[str, Any]) -> Job:
        return self._call("preview", action, params)  # type: ignore[no-any-return]

    def submit(
        self, action: str, params: Mapping[str, Any], *, break_glass_reason: str | None = None
    ) -> Filed:
        return self._call("submit", action, params, break_glass_reason=break_glass_reason)  # type: ignore[no-any-return]

    def requests(self, *, open_only: bool = True, limit: int = 50) -> list[ChangeRequest]:
        return self._call("requests", open_only=open_only, limit=limit)  # type: ignore[no-any-return]

    def request(self, request_id: str) -> RequestDetail:
        return self._call("request", request_id)  # type: ignore[no-any-return]

    def approve(self, request_id: str, *, run: bool = True) -> Decided:
        return self._call("approve", request_id, run=run)  # type: ignore[no-any-return]

    def reject(self, request_id: str, *, reason: str) -> Decided:
        return self._call("reject", request_id, reason=reason)  # type: ignore[no-any-return]

    def cancel_request(self, request_id: str, *, reason: str | None = None) -> Decided:
        return self._call("cancel_request", request_id, reason=reason)  # type: ignore[no-any-return]

    def run_request(self, request_id: str) -> Job:
        return self._call("run_request", request_id)  # type: ignore[no-any-return]

    def jobs(self, *, limit: int = 20) -> list[Job]:
        return self._call("jobs", limit=limit)  # type: ignore[no-any-return]

    def job(self, job_id: str) -> Job:
        return self._call("job", job_id)  # type: ignore[no-any-return]

    def job_events(self, job_id: str, *, after_seq: int = 0, wait_s: float = 0.0) -> list[JobEvent]:
        return self._call("job_events", job_id, after_seq=after_seq, wait_s=wait_s)  # type: ignore[no-any-return]

    def cancel_job(self, job_id: str) -> Job:
        return self._call("cancel_job", job_id)  # type: ignore[no-any-return]

    def audit(
        self,
        *,
        since: datetime | None = None,
        request_id: str | None = None,
        kinds: tuple[str, ...] = (),
        limit: int = 200,
    ) -> list[Any]:
        return self._call(  # type: ignore[no-any-return]
            "audit", since=since, request_id=request_id, kinds=kinds, limit=limit
        )

    def audit_verify(self) -> Any:
        return self._call("audit_verify")

    def schedules(self) -> tuple[datetime, list[Any]]:
        now, statuses = self._call("schedules")
        return now, list(statuses)

    def schedule_override(
        self,
        environment: str,
        kind: str,
        *,
        until: datetime | None = None,
        region: str | None = None,
        reason: str | None = None,
    ) -> Any:
        return self._call("schedule_override", environment, kind, until=until, region=region, reason=reason)

    def freeze_status(self) -> dict[str, Any]:
        """``GET /api/v1/freeze``: the store's emergency freeze (as opsconsole.server.freeze answers)."""
        from opsconsole.core.change.freeze import read_freeze, status_document  # noqa: PLC0415

        if self._gate is not None:
            self._gate("freeze_status")
        return _wired(status_document(read_freeze(self.core.database)))  # type: ignore[no-any-return]

    def freeze(self, on: bool, *, reason: str | None = None) -> dict[str, Any]:
        """``POST /api/v1/freeze``: admins only, refusals and switches audited, as the server's route."""
        from opsconsole.core.change.freeze import set_freeze, status_document  # noqa: PLC0415
        from opsconsole.core.change.gate import Act, Forbidden, authorize, fleet_scope  # noqa: PLC0415
        from opsconsole.server.freeze import AUDIT_REFUSED, wire_freeze  # noqa: PLC0415

        if self._gate is not None:
            self._gate("freeze")
        pipeline = self.core.pipeline
        try:
            authorize(Act.FREEZE, self.identity, scope=fleet_scope(self.core.fleet))
        except Forbidden as refused:
            pipeline.audit.append(AUDIT_REFUSED, actor=self.identity.person, face="tui",
                                  data={"on": on, "reason": refused.message})
            raise
        wire_freeze(self.core)
        frozen = set_freeze(self.core.database, pipeline.audit, on=on, reason=reason,
                            who=self.identity.person, face="tui", now=pipeline.clock.now())
        return _wired(status_document(frozen))  # type: ignore[no-any-return]

    def _runs(self) -> bool:
        try:
            self.core.runner  # noqa: B018 - raises on a core that only reads
        except OpsError:
            return False
        return True

    def stream(self) -> Iterator[StreamEvent]:
        """The core's bus as stream events (``job`` and ``request``), until :meth:`close`."""
        events: queue.Queue[StreamEvent | None] = queue.Queue()
        with self._lock:
            if not self._unsubscribe:
                self._unsubscribe.append(self.core.pipeline.bus.subscribe(self._publish))
                if self._runs() and self.core.runner.bus is not self.core.pipeline.bus:
                    self._unsubscribe.append(self.core.runner.bus.subscribe(self._publish))
            self._streams.append(events)
        try:
            while (event := events.get()) is not None:
                yield event
        finally:
            with self._lock:
                if events in self._streams:
                    self._streams.remove(events)

    def _publish(self, event: object) -> None:
        now = self.core.clock.now()
        if isinstance(event, JobEvent):
            data: dict[str, Any] = {"job_id": event.job_id, "event": event}
            if event.kind is EventKind.JOB_STATUS:
                data["status"] = event.data.get("status")
            out = StreamEvent("job", now, data)
        elif isinstance(event, RequestChanged):
            out = StreamEvent("request", now, {"id": event.request.id, "status": event.request.status.value})
        else:
            return
        out = _wired(out)
        with self._lock:
            for events in self._streams:
                events.put(out)

    def close(self) -> None:
        with self._lock:
            for unsubscribe in self._unsubscribe:
                unsubscribe()
            self._unsubscribe.clear()
            for events in self._streams:
                events.put(None)
