"""The ops server's HTTP face: ``/api/v1`` for the TUI and CLI, ``/healthz``, ``/metrics``, Slack.

Why it exists: one server is the authority (store, credentials, runs, scheduler); its clients speak
JSON over HTTP. :func:`create_app` builds the FastAPI application over a :class:`Runtime` (the core,
the fleet cache, the event hub, the authenticator). Every ``/api/v1`` route but the OpenAPI document
and the docs needs ``Authorization: Bearer <token>``; the credential is checked by :class:`Guard` —
an ASGI middleware in front of the routes — *before* any body is read, and bodies are capped
(413 before parsing). Records go out as :func:`opsconsole.core.wire.dumps` JSON; errors as
``application/problem+json`` (``title``, ``status``, ``detail``, ``user_error``), never a traceback.

Use::

    runtime = Runtime(core=core, cache=cache, hub=hub, auth=authenticator)
    app = create_app(runtime)          # serve with uvicorn (see embedded.py and main.py)
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

from fastapi import Body, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.engine import make_url
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from opsconsole.core import wire
from opsconsole.core.change.gate import Forbidden
from opsconsole.core.change.requests import RequestNotFound, RequestRefused
from opsconsole.core.errors import ExecutionUnavailable, OpsError
from opsconsole.core.facade import OpsCore
from opsconsole.core.fleet.engine import SourceStatus
from opsconsole.core.store.db import StoreUnavailable
from opsconsole.server.auth import Authenticator, AuthResult, Unauthenticated
from opsconsole.server.cache import FleetCache, FleetUnavailable, Hub
from opsconsole.server.problems import PROBLEM, problem
from opsconsole.server.service import NotFound, OpsService, caller_for

log = logging.getLogger(__name__)
#: One scheduler per runtime, however many first requests race to build it.
_SCHEDULER_LOCK = threading.Lock()

API = "/api/v1"
DEFAULT_MAX_BODY = 1024 * 1024
#: Paths under /api/v1 that need no credential.
PUBLIC_API_PATHS = frozenset({f"{API}/openapi.json", f"{API}/docs", f"{API}/docs/oauth2-redirect"})
AUTH_SCOPE_KEY = "opsconsole.auth"
#: The header a client names its face with (``cli``, ``tui``), for the audit; never an identity.
FACE_HEADER = "x-opsconsole-face"
CLIENT_FACES = frozenset({"api", "cli", "tui"})

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass
class Runtime:
    """What the application serves: the core and the server-wide parts around it.

    Args:
        core: the server's core (the only one).
        cache: the one fleet refresh loop.
        hub: where stream events are fanned out.
        auth: resolves credentials to people.
        may_change: False for a read-only server (``--live`` without a team server).
        scheduler: the scheduler whose status ``/schedules`` shows (built on first use if ``None``).
        max_body_bytes: the largest request body accepted.
        keepalive_s: seconds between ``: keepalive`` comments on an idle stream.
        slack_app: a Bolt ``App`` to serve at ``/slack/events`` (``None``: no Slack).
    """

    core: OpsCore
    cache: FleetCache
    hub: Hub
    auth: Authenticator
    may_change: bool = True
    scheduler: Any = None
    max_body_bytes: int = DEFAULT_MAX_BODY
    keepalive_s: float = 15.0
    slack_app: Any = None
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def schedules_engine(self) -> Any:
        """The scheduler, built on first use: building one reads the schedules and opens its outbox
        (half a second), which no other route needs -- not on the path of a console's first ``whoami``."""
        with _SCHEDULER_LOCK:
            if self.scheduler is None:
                from opsconsole.core.schedule.engine import Scheduler  # noqa: PLC0415

                self.scheduler = Scheduler(self.core)
            return self.scheduler

    def service(self, who: AuthResult, *, face: str = "api") -> OpsService:
        caller = caller_for(who.identity, credential=who.credential, sandbox=self.core.sandbox,
                            may_change=self.may_change)
        return OpsService(self.core, caller, who.identity, may_change=self.may_change, cache=self.cache,
                          scheduler=self.scheduler or self.schedules_engine, face=face)


# -- errors ------------------------------------------------------------------------------------------------


def status_for(exc: OpsError) -> int:
    """The HTTP status an :class:`OpsError` is answered with."""
    if isinstance(exc, Unauthenticated):
        return 401
    if isinstance(exc, NotFound | RequestNotFound):
        return 404
    if isinstance(exc, Forbidden):
        return 403
    if isinstance(exc, RequestRefused):
        return 409
    if isinstance(exc, StoreUnavailable | FleetUnavailable | ExecutionUnavailable):
        return 503
    return 400 if exc.user_error else 500


def _problem_bytes(status: int, title: str, detail: str, *, user_error: bool) -> bytes:
    return json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail,
                       "user_error": user_error}).encode()


def _validation_detail(exc: RequestValidationError) -> str:
    parts: list[str] = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        if error.get("type") == "json_invalid":
            return "the body is not valid JSON"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


# -- the guard: metrics, body cap, authentication ----------------------------------------------------------


class _Metrics:
    def __init__(self, runtime: Runtime) -> None:
        registry = runtime.registry
        self.requests = Counter("opsconsole_server_requests", "HTTP requests by route and status",
                                ["route", "method", "status"], registry=registry)
        self.latency = Histogram("opsconsole_server_request_seconds", "HTTP request latency by route",
                                 ["route"], registry=registry)
        streams = Gauge("opsconsole_server_stream_clients", "Connected /api/v1/stream clients",
                        registry=registry)
        streams.set_function(lambda: runtime.hub.subscriber_count)
        duration = Gauge("opsconsole_server_cache_refresh_seconds", "How long the last fleet refresh took",
                         registry=registry)
        duration.set_function(lambda: runtime.cache.last_duration_s or 0.0)
        age = Gauge("opsconsole_server_cache_age_seconds", "Seconds since the last fleet refresh finished",
                    registry=registry)
        age.set_function(lambda: runtime.cache.age_s() or 0.0)


class _TooLarge(Exception):
    pass


class Guard:
    """ASGI middleware: counts and times requests, caps bodies, authenticates ``/api/v1`` before any
    body is read, and turns unexpected errors into a 500 problem (logged here, never sent)."""

    def __init__(self, app: ASGIApp, runtime: Runtime, metrics: _Metrics) -> None:
        self.app = app
        self.runtime = runtime
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_box = [500]
        response_started = [False]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_started[0] = True
                status_box[0] = int(message["status"])
            await send(message)

        try:
            await self._handle(scope, receive, send_wrapper)
        except Exception:
            log.exception("unexpected error serving %s %s", scope.get("method"), scope.get("path"))
            if not response_started[0]:
                await self._send_problem(send_wrapper, 500, "internal error",
                                         "the server failed to answer; the error is in its log", False)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or ("unmatched" if status_box[0] == 404 else "other")
            self.metrics.requests.labels(name, scope.get("method", ""), str(status_box[0])).inc()
            self.metrics.latency.labels(name).observe(time.perf_counter() - started)

    async def _send_problem(self, send: Send, status: int, title: str, detail: str, user_error: bool) -> None:
        body = _problem_bytes(status, title, detail, user_error=user_error)
        headers = [(b"content-type", PROBLEM.encode()), (b"content-length", str(len(body)).encode())]
        if status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="opsconsole"'))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        cap = self.runtime.max_body_bytes
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        length = headers.get("content-length")
        if length is not None:
            try:
                too_big = int(length) > cap
            except ValueError:
                await self._send_problem(send, 400, "invalid request", "Content-Length is not a number", True)
                return
            if too_big:
                await self._send_problem(send, 413, "body too large",
                                         f"the body is {length} bytes; at most {cap} are accepted", True)
                return
        path: str = scope.get("path", "")
        if path.startswith(API + "/") and path not in PUBLIC_API_PATHS:
            client = scope.get("client")
            addr = client[0] if client else None
            try:
                who = await run_in_threadpool(
                    self.runtime.auth.authenticate, headers.get("authorization"), addr)
            except OpsError as exc:
                status = status_for(exc)
                await self._send_problem(send, status, exc.title, exc.message, exc.user_error)
                return
            scope[AUTH_SCOPE_KEY] = who
        if scope.get("method") in ("POST", "PUT", "PATCH", "DELETE"):
            try:
                receive = await self._buffered(receive, cap)
            except _TooLarge:
                await self._send_problem(send, 413, "body too large",
                                         f"at most {cap} bytes are accepted", True)
                return
        await self.app(scope, receive, send)

    @staticmethod
    async def _buffered(receive: Receive, cap: int) -> Receive:
        """Read the whole body (counting, whatever Content-Length claimed), then replay it."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                first = message
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > cap:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                first = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
                break
        replayed = [False]

        async def replay() -> Message:
            if not replayed[0]:
                replayed[0] = True
                return first
            return await receive()

        return replay


# -- bodies ------------------------------------------------------------------------------------------------


class PlanBody(BaseModel):
    action: str = Field(description="scale, failover, failback, environment, nodes, replicas, database "
                        "or cache")
    params: dict[str, Any] = Field(default_factory=dict, description="the planner's keyword parameters")


class SubmitBody(PlanBody):
    break_glass_reason: str | None = None


class ApproveBody(BaseModel):
    run: bool = True


class RejectBody(BaseModel):
    reason: str


class CancelBody(BaseModel):
    reason: str | None = None


class OverrideBody(BaseModel):
    environment: str
    kind: str
    until: datetime | None = None
    region: str | None = None
    reason: str | None = None


def _wire(value: Any, status: int = 200) -> Response:
    return Response(wire.dumps(value), status_code=status, media_type="application/json")


# -- health ------------------------------------------------------------------------------------------------


def store_check(core: OpsCore) -> str | None:
    """``None`` when the store answers a cheap query; else why not (password-free)."""
    database = core.database
    try:
        if database.sqlite:
            path = make_url(database.url).database
            if path and path != ":memory:":
                if not os.path.isfile(path):
                    return f"{path}: no database file"
                raw = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=2)
                try:
                    raw.execute("SELECT count(*) FROM store_meta").fetchone()
                finally:
                    raw.close()
                return None
        with database.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any driver failure means the same: the store is not there
        return database.unavailable(exc).message
    return None


def health(runtime: Runtime) -> tuple[int, dict[str, Any]]:
    problem_text = store_check(runtime.core)
    view = runtime.cache.peek()
    sources: dict[str, str] = {}
    all_failed = False
    if view is not None:
        for source in view.snapshot.sources:
            # A source still starting (SourceStatus.STARTING: within its startup_s, its first read under
            # way) is neither failing nor a reason to fail the check; past startup_s it turns ERROR.
            sources[source.name] = {SourceStatus.OK: "ok", SourceStatus.STALE: "stale",
                                    SourceStatus.STARTING: "starting"}.get(source.status, "failing")
        all_failed = bool(view.snapshot.sources) and all(
            s.status is SourceStatus.ERROR for s in view.snapshot.sources)
    elif runtime.cache.error is not None:
        sources["fleet"] = "failing"
        all_failed = True
    else:
        sources["fleet"] = "starting"
    failing = problem_text is not None or all_failed
    body = {
        "status": "failing" if failing else "ok",
        "checks": {"store": problem_text or "ok", "sources": sources},
    }
    return (503 if failing else 200), body


# -- the application ---------------------------------------------------------------------------------------


def create_app(runtime: Runtime) -> FastAPI:
    """The FastAPI application over ``runtime`` (see the module docstring for the routes)."""
    app = FastAPI(
        title="opsconsole ops server",
        version="1",
        openapi_url=f"{API}/openapi.json",
        docs_url=f"{API}/docs",
        redoc_url=None,
    )
    app.state.runtime = runtime
    metrics = _Metrics(runtime)

    @app.exception_handler(OpsError)
    async def ops_error(_request: Request, exc: OpsError) -> Response:
        return problem(status_for(exc), exc.title, exc.message, user_error=exc.user_error)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> Response:
        return problem(400, "invalid request", _validation_detail(exc), user_error=True)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) else "request refused"
        title = {404: "not found", 405: "method not allowed"}.get(exc.status_code, "request refused")
        return problem(exc.status_code, title, detail, user_error=exc.status_code < 500,
                       headers=dict(exc.headers or {}))

    def service(request: Request) -> OpsService:
        who = request.scope.get(AUTH_SCOPE_KEY)
        if not isinstance(who, AuthResult):  # the guard authenticates every /api/v1 route first
            raise Unauthenticated("no credential")
        # Which face the client is (cli, tui) is what the audit's ``face`` column shows; it says nothing
        # about who is calling, so an unknown value is simply recorded as ``api``.
        face = request.headers.get(FACE_HEADER, "api")
        return runtime.service(who, face=face if face in CLIENT_FACES else "api")

    # -- unauthenticated ---------------------------------------------------------------------------------

    @app.get("/healthz", tags=["ops"])
    def healthz() -> Response:
        status, body = health(runtime)
        return JSONResponse(body, status_code=status)

    @app.get("/metrics", tags=["ops"])
    def metrics_route() -> Response:
        from opsconsole.core.fleet.metering import METER  # noqa: PLC0415

        # The fleet sources' API calls (opsconsole.core.fleet.metering), as Prometheus counters.
        lines = [
            "# HELP opsconsole_source_api_calls_total API calls made by a fleet source, per operation",
            "# TYPE opsconsole_source_api_calls_total counter",
        ]
        extra: dict[str, list[str]] = {"units": [], "errors": [], "throttles": []}
        for c in METER.snapshot():
            labels = f'source="{c.source}",operation="{c.operation}"'
            lines.append(f"opsconsole_source_api_calls_total{{{labels}}} {c.calls}")
            extra["units"].append(f"opsconsole_source_api_units_total{{{labels}}} {c.units}")
            extra["errors"].append(f"opsconsole_source_api_errors_total{{{labels}}} {c.errors}")
            extra["throttles"].append(f"opsconsole_source_api_throttles_total{{{labels}}} {c.throttles}")
        for kind, help_text in (("units", "billable units (e.g. metrics requested)"),
                                ("errors", "failed calls"), ("throttles", "throttled calls")):
            lines += [f"# HELP opsconsole_source_api_{kind}_total API {help_text} of a fleet source",
                      f"# TYPE opsconsole_source_api_{kind}_total counter", *extra[kind]]
        body = generate_latest(runtime.registry) + ("\n".join(lines) + "\n").encode()
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    # -- /api/v1 -----------------------------------------------------------------------------------------

    @app.get(f"{API}/whoami", tags=["api"])
    def whoami(request: Request) -> Response:
        return _wire(service(request).whoami())

    @app.get(f"{API}/fleet", tags=["api"])
    def fleet(request: Request) -> Response:
        svc = service(request)  # who is asking is checked even though every caller gets the same view
        if svc.cache is not None:
            return Response(svc.cache.latest_encoded(), media_type="application/json")
        return _wire(svc.fleet())

    @app.get(f"{API}/fleet/status", tags=["api"])
    def fleet_status(request: Request, region: str | None = None) -> Response:
        return JSONResponse(service(request).status(region))

    @app.get(f"{API}/fleet/sources", tags=["api"])
    def fleet_sources(request: Request) -> Response:
        return JSONResponse(service(request).sources())

    @app.get(f"{API}/fleet/findings", tags=["api"])
    def fleet_findings(request: Request, region: str | None = None) -> Response:
        return JSONResponse(service(request).findings(region))

    @app.post(f"{API}/assess", tags=["api"])
    def assess(request: Request, body: PlanBody) -> Response:
        return _wire(service(request).assess(body.action, body.params))

    @app.post(f"{API}/previews", tags=["api"], status_code=201)
    def previews(request: Request, body: PlanBody) -> Response:
        return _wire(service(request).preview(body.action, body.params), 201)

    @app.post(f"{API}/requests", tags=["api"], status_code=201)
    def submit(request: Request, body: SubmitBody) -> Response:
        filed = service(request).submit(body.action, body.params, break_glass_reason=body.break_glass_reason)
        return _wire(filed, 201)

    @app.get(f"{API}/requests", tags=["api"])
    def requests(
        request: Request,
        open_only: bool = True,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> Response:
        return _wire(service(request).requests(open_only=open_only, limit=limit))

    @app.get(f"{API}/requests/{{request_id}}", tags=["api"])
    def request_detail(request: Request, request_id: str) -> Response:
        return _wire(service(request).request(request_id))

    @app.post(f"{API}/requests/{{request_id}}/approve", tags=["api"])
    def approve(
        request: Request, request_id: str, body: Annotated[ApproveBody | None, Body()] = None
    ) -> Response:
        run = body.run if body is not None else True
        return _wire(service(request).approve(request_id, run=run))

    @app.post(f"{API}/requests/{{request_id}}/reject", tags=["api"])
    def reject(request: Request, request_id: str, body: RejectBody) -> Response:
        return _wire(service(request).reject(request_id, reason=body.reason))

    @app.post(f"{API}/requests/{{request_id}}/cancel", tags=["api"])
    def cancel(
        request: Request, request_id: str, body: Annotated[CancelBody | None, Body()] = None
    ) -> Response:
        return _wire(service(request).cancel_request(request_id, reason=body.reason if body else None))

    @app.post(f"{API}/requests/{{request_id}}/run", tags=["api"], status_code=201)
    def run(request: Request, request_id: str) -> Response:
        return _wire(service(request).run_request(request_id), 201)

    @app.get(f"{API}/jobs", tags=["api"])
    def jobs(request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 20) -> Response:
        return _wire(service(request).jobs(limit=limit))

    @app.get(f"{API}/jobs/{{job_id}}", tags=["api"])
    def job(request: Request, job_id: str) -> Response:
        return _wire(service(request).job(job_id))

    @app.get(f"{API}/jobs/{{job_id}}/events", tags=["api"])
    def job_events(
        request: Request,
        job_id: str,
        after_seq: Annotated[int, Query(ge=0)] = 0,
        wait_s: Annotated[float, Query(ge=0, le=25)] = 0.0,
    ) -> Response:
        return _wire(service(request).job_events(job_id, after_seq=after_seq, wait_s=wait_s))

    @app.post(f"{API}/jobs/{{job_id}}/cancel", tags=["api"])
    def cancel_job(request: Request, job_id: str) -> Response:
        return _wire(service(request).cancel_job(job_id))

    @app.get(f"{API}/audit", tags=["api"])
    def audit(
        request: Request,
        since: datetime | None = None,
        request_id: str | None = None,
        kind: Annotated[list[str] | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 200,
    ) -> Response:
        entries = service(request).audit(since=since, request_id=request_id or None,
                                         kinds=tuple(kind or ()), limit=limit)
        return _wire(entries)

    @app.get(f"{API}/audit/verify", tags=["api"])
    def audit_verify(request: Request) -> Response:
        return _wire(service(request).audit_verify())

    @app.get(f"{API}/schedules", tags=["api"])
    def schedules(request: Request) -> Response:
        now, statuses = service(request).schedules()
        return _wire({"now": now, "statuses": statuses})

    @app.post(f"{API}/schedules/overrides", tags=["api"], status_code=201)
    def override(request: Request, body: OverrideBody) -> Response:
        created = service(request).schedule_override(
            body.environment, body.kind, until=body.until, region=body.region, reason=body.reason)
        return _wire(created, 201)

    @app.get(f"{API}/stream", tags=["api"])
    async def stream(request: Request) -> Response:
        if not isinstance(request.scope.get(AUTH_SCOPE_KEY), AuthResult):
            raise Unauthenticated("no credential")
        hub = runtime.hub
        keepalive_s = runtime.keepalive_s

        async def events() -> AsyncIterator[str]:
            sub = hub.subscribe()
            try:
                yield ": connected\n\n"
                while True:
                    batch = await sub.next_batch(keepalive_s)
                    if batch is None:
                        return
                    if not batch:
                        yield ": keepalive\n\n"
                        continue
                    for event in batch:
                        yield f"event: {event.kind}\ndata: {wire.dumps(event)}\n\n"
            finally:
                sub.unsubscribe()

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    # -- Slack -------------------------------------------------------------------------------------------

    if runtime.slack_app is not None:
        from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response  # noqa: PLC0415

        slack_app = runtime.slack_app

        @app.post("/slack/events", include_in_schema=False)
        async def slack_events(request: Request) -> Response:
            body = await request.body()
            bolt_request = to_bolt_request(request, body)
            bolt_response = await run_in_threadpool(slack_app.dispatch, bolt_request)
            return to_starlette_response(bolt_response)

    from opsconsole.server.pods import router as pods_router  # noqa: PLC0415  # pods, logs, events

    app.include_router(pods_router)
    from opsconsole.server.freeze import install as install_freeze  # noqa: PLC0415  # emergency freeze
    install_freeze(app, runtime)
    app.add_middleware(Guard, runtime=runtime, metrics=metrics)
    return app
