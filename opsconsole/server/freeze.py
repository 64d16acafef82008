"""``/api/v1/freeze``: the emergency change freeze, switched by an admin, read by anyone.

Why this module exists: during an incident an admin stops every medium and high risk change at once, for
every face and every server that shares the store, without editing ``policy.yml``
(:mod:`opsconsole.core.change.freeze` holds the switch). The server is where the switch is judged (only an
admin may turn it: :data:`opsconsole.core.change.gate.Act.FREEZE`), audited, and wired into the change
pipeline's risk policy, so that a filing refused by it names the reason, and break glass (by an admin)
still passes.

Routes::

    GET  /api/v1/freeze                                  → {"on", "reason", "by", "since"}
    POST /api/v1/freeze  {"on": true, "reason": "…"}     → the same document (admins; audited)
    POST /api/v1/freeze  {"on": false}                   → the same document (admins; audited)

Include it with ``install(app, runtime)`` (``opsconsole.server.app.create_app`` does): it adds the router
and a small middleware that wires the switch into the pipeline's policy before the first request is
served (and retries while the store cannot be reached).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from opsconsole.core.change.freeze import read_freeze, set_freeze, status_document
from opsconsole.core.change.gate import Act, Forbidden, authorize, fleet_scope
from opsconsole.core.change.risk import with_emergency
from opsconsole.core.errors import OpsError
from opsconsole.server.auth import AuthResult, Unauthenticated

__all__ = ["FreezeBody", "install", "router", "wire_freeze"]

log = logging.getLogger(__name__)

API = "/api/v1"
#: opsconsole.server.app.AUTH_SCOPE_KEY / FACE_HEADER / CLIENT_FACES (app imports this module).
AUTH_SCOPE_KEY = "opsconsole.auth"
FACE_HEADER = "x-opsconsole-face"
CLIENT_FACES = frozenset({"api", "cli", "tui"})

#: Audit kind of a refused switch (the switches themselves: ``freeze_on`` / ``freeze_off``).
AUDIT_REFUSED = "freeze_refused"

router = APIRouter(tags=["api"])
_wire_lock = threading.Lock()


class FreezeBody(BaseModel):
    """``POST /api/v1/freeze``: ``on`` with a ``reason``, or off."""

    model_config = ConfigDict(extra="forbid")

    on: bool
    reason: str | None = None


def wire_freeze(core: Any) -> None:
    """Make ``core``'s pipeline consult the store's emergency freeze on every assessment (idempotent)."""
    with _wire_lock:
        pipeline = core.pipeline
        if pipeline.policy.emergency is not None:
            return
        database = core.database
        pipeline.policy = with_emergency(pipeline.policy, lambda: read_freeze(database))


def _who(request: Request) -> AuthResult:
    who = request.scope.get(AUTH_SCOPE_KEY)
    if not isinstance(who, AuthResult):  # the guard authenticates every /api/v1 route first
        raise Unauthenticated("no credential")
    return who


def _runtime(request: Request) -> Any:
    return request.app.state.runtime


@router.get(f"{API}/freeze")
def freeze_status(request: Request) -> Response:
    """Whether the emergency change freeze is on, why, by whom, since when. Any authenticated person."""
    _who(request)
    core = _runtime(request).core
    return JSONResponse(status_document(read_freeze(core.database)))


@router.post(f"{API}/freeze")
def freeze_switch(request: Request, body: FreezeBody) -> Response:
    """Turn the emergency change freeze on (with a reason) or off. Admins only; audited."""
    who = _who(request)
    runtime = _runtime(request)
    core = runtime.core
    face = request.headers.get(FACE_HEADER, "api")
    face = face if face in CLIENT_FACES else "api"
    pipeline = core.pipeline
    try:
        authorize(Act.FREEZE, who.identity, scope=fleet_scope(core.fleet))
    except Forbidden as refused:
        pipeline.audit.append(
            AUDIT_REFUSED,
            actor=who.identity.person,
            face=face,
            data={"on": body.on, "reason": refused.message},
        )
        raise
    wire_freeze(core)
    frozen = set_freeze(
        core.database,
        pipeline.audit,
        on=body.on,
        reason=body.reason,
        who=who.identity.person,
        face=face,
        now=pipeline.clock.now(),
    )
    return JSONResponse(status_document(frozen))


class _WireFreeze:
    """Pure ASGI middleware: wires the switch into the pipeline before the first HTTP request runs."""

    def __init__(self, app: Any, runtime: Any) -> None:
        self.app = app
        self.runtime = runtime
        self.done = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if not self.done and scope.get("type") == "http" and getattr(self.runtime, "may_change", True):
            await run_in_threadpool(self._wire)
        await self.app(scope, receive, send)

    def _wire(self) -> None:
        try:
            wire_freeze(self.runtime.core)
        except OpsError as exc:  # the store is down: the filing itself will say so; try again next time
            log.warning("emergency freeze not wired yet: %s", exc.message)
            return
        self.done = True


def install(app: FastAPI, runtime: Any) -> None:
    """Add the freeze routes to ``app`` and wire the switch into ``runtime.core``'s pipeline."""
    app.include_router(router)
    app.add_middleware(_WireFreeze, runtime=runtime)
