""":class:`RemoteClient`: :class:`~opsconsole.core.api.OpsApi` over HTTP, to an ops server.

Why it exists: every face (CLI, TUI) asks the one authority the same way, whether that is the team's
server over TLS or the embedded server ``make run`` starts on a private Unix socket. This client turns
each :class:`~opsconsole.core.api.OpsApi` call into one ``/api/v1`` request with the caller's bearer
token, decodes the answer with :mod:`opsconsole.core.wire` into the core's own records, and turns the
server's ``application/problem+json`` errors back into the error hierarchy the faces already render:

* 400 / 403 / 404 / 409 / 413 → :class:`~opsconsole.core.errors.UsageError` (title and detail as the
  server said them; the CLI exits 2);
* 401 → :class:`~opsconsole.client.Unauthenticated` (a ``UsageError`` saying how to log in);
* 5xx, an unreachable server, a timeout or an unreadable answer → :class:`~opsconsole.core.errors.OpsError`
  (exit 1).

It never sends a name: who is calling is the token's person, decided by the server.

Use::

    with RemoteClient("https://ops.example.net", token, verify="/etc/ssl/team-ca.pem") as ops:
        view = ops.fleet()
    RemoteClient("http://opsconsole", token, uds="/run/opsconsole/api.sock")   # a Unix socket

Importing this module loads httpx and the wire codec only (no SQLAlchemy, no cloud SDK, no Textual);
``python -X importtime -c "import opsconsole.client.remote"`` shows it.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator, Mapping
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from opsconsole import __version__
from opsconsole.client import LOGIN_HINT, Unauthenticated
from opsconsole.core import wire
from opsconsole.core.errors import OpsError, UsageError

if TYPE_CHECKING:
    from opsconsole.core.api import Assessment, Caller, Decided, Filed, RequestDetail, StreamEvent
    from opsconsole.core.change.records import ChangeRequest
    from opsconsole.core.fleet.pods import EventInfo, PodDescription, PodInfo, PodLog
    from opsconsole.core.fleet.view import FleetView
    from opsconsole.core.runs.events import JobEvent
    from opsconsole.core.runs.records import Job

__all__ = ["RemoteClient", "ServerError", "Unauthenticated", "Unreachable"]

API = "/api/v1"
#: How much longer than a long-poll's own wait the client waits for its answer.
LONG_POLL_MARGIN_S = 10.0
#: Statuses that are the user's to fix (exit 2).
_USER_STATUSES = frozenset({400, 403, 404, 405, 409, 413, 422})


class Unreachable(OpsError):
    """Nothing answered at the server's address (refused, unknown host, TLS failure, timeout)."""

    title = "server unreachable"


class ServerError(OpsError):
    """The server failed (5xx) or answered something this client cannot read."""

    title = "server error"


class RemoteClient:
    """:class:`~opsconsole.core.api.OpsApi` over HTTP with a bearer token (see the module docstring).

    Args:
        base_url: the server, e.g. ``https://ops.example.net:8443`` (with ``uds``, any ``http://`` name).
        token: the personal API token (``opc_…``), an OIDC bearer JWT or an embedded session token.
        uds: a Unix socket path to connect to instead of TCP.
        verify: TLS verification: ``True`` (system CAs), a CA bundle path, or ``False`` (tests only).
        timeout_s: how long one call may take (long-polls add their own wait).
        face: which face this client is (``cli``, ``tui``): what the audit's ``face`` column shows. It
            says nothing about who is calling; the server knows that from the token.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        uds: str | None = None,
        verify: bool | str = True,
        timeout_s: float = 30.0,
        face: str = "api",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._where = f"{self.base_url} (socket {uds})" if uds else self.base_url
        # A CA bundle becomes an SSL context (httpx deprecates a path); the transport carries it too.
        tls: bool | ssl.SSLContext = ssl.create_default_context(cafile=verify) if isinstance(verify, str) \
            else verify
        transport = httpx.HTTPTransport(uds=uds, verify=tls) if uds else None
        self._http = httpx.Client(
            base_url=self.base_url,
            transport=transport,
            verify=tls,
            timeout=timeout_s,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "User-Agent": f"opsconsole/{__version__}",
                "X-Opsconsole-Face": face,
            },
        )

    # -- lifecycle ---------------------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RemoteClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:  # never the token
        return f"RemoteClient({self._where!r})"

    # -- transport -----------------------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        body: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> Any:
        """One request; the decoded answer, or the error it maps to."""
        try:
            response = self._http.request(
                method,
                API + path,
                params=params,
                content=None if body is None else json.dumps(body, default=_plain),
                headers=None if body is None else {"Content-Type": "application/json"},
                timeout=timeout_s if timeout_s is not None else self.timeout_s,
            )
        except httpx.TimeoutException:
            raise Unreachable(
                f"the ops server at {self._where} did not answer within "
                f"{timeout_s if timeout_s is not None else self.timeout_s:.0f} s"
            ) from None
        except httpx.TransportError as exc:
            hint = ""
            if "CERTIFICATE_VERIFY_FAILED" in str(exc) or "certificate verify failed" in str(exc):
                hint = ("; if the server's certificate is signed by your team's own CA, pass it: "
                        "opsconsole login --server URL --ca-file CA.pem")
            raise Unreachable(f"cannot reach the ops server at {self._where}: {exc}{hint}") from None
        if response.status_code >= 400:
            raise self._error(response)
        try:
            return wire.loads(response.content)
        except wire.WireError as exc:
            raise ServerError(f"{method} {path}: {exc.message}", title=exc.title) from None

    def _error(self, response: httpx.Response) -> OpsError:
        """The problem+json answer as the error the faces render."""
        status = response.status_code
        title, detail = "", ""
        try:
            problem = json.loads(response.content)
        except ValueError:
            problem = None
        if isinstance(problem, dict):
            title = str(problem.get("title") or "")
            detail = str(problem.get("detail") or "")
        if not detail:
            text = response.text.strip()
            detail = text[:300] if text and not text.startswith("<") else response.reason_phrase
        if status == 401:
            return Unauthenticated(f"{detail or 'the server did not accept the credential'}; {LOGIN_HINT}")
        if status in _USER_STATUSES or (400 <= status < 500):
            return UsageError(detail, title=title or "refused")
        return ServerError(f"{detail} (HTTP {status} from {self._where})", title=title or "server error")

    # -- OpsApi ----------------------------------------------------------------------------------------------

    def whoami(self) -> Caller:
        result: Caller = self._call("GET", "/whoami")
        return result

    def fleet(self) -> FleetView:
        result: FleetView = self._call("GET", "/fleet")
        return result

    def status(self, region: str | None = None) -> dict[str, Any]:
        document: dict[str, Any] = self._call("GET", "/fleet/status", params=_region(region))
        return document

    def findings(self, region: str | None = None) -> dict[str, Any]:
        document: dict[str, Any] = self._call("GET", "/fleet/findings", params=_region(region))
        return document

    def sources(self) -> dict[str, Any]:
        document: dict[str, Any] = self._call("GET", "/fleet/sources")
        return document

    def pods(
        self, cluster: str, *, workload: str | None = None, namespace: str | None = None
    ) -> list[PodInfo]:
        params = {k: v for k, v in (("workload", workload), ("namespace", namespace)) if v}
        result: list[PodInfo] = self._call("GET", f"/clusters/{_seg(cluster)}/pods", params=params or None)
        return result

    def pod_log(
        self,
        cluster: str,
        namespace: str,
        pod: str,
        *,
        previous: bool = False,
        tail: int = 200,
        container: str | None = None,
    ) -> PodLog:
        params: dict[str, Any] = {"previous": "true" if previous else "false", "tail": tail}
        if container:
            params["container"] = container
        result: PodLog = self._call("GET", f"{_pod_path(cluster, namespace, pod)}/log", params=params)
        return result

    def pod_events(self, cluster: str, namespace: str, pod: str) -> list[EventInfo]:
        result: list[EventInfo] = self._call("GET", f"{_pod_path(cluster, namespace, pod)}/events")
        return result

    def describe_pod(self, cluster: str, namespace: str, pod: str) -> PodDescription:
        result: PodDescription = self._call("GET", f"{_pod_path(cluster, namespace, pod)}/describe")
        return result

    def assess(self, action: str, params: Mapping[str, Any]) -> Assessment:
        result: Assessment = self._call("POST", "/assess", body={"action": action, "params": dict(params)})
        return result

    def preview(self, action: str, params: Mapping[str, Any]) -> Job:
        result: Job = self._call("POST", "/previews", body={"action": action, "params": dict(params)})
        return result

    def submit(
        self, action: str, params: Mapping[str, Any], *, break_glass_reason: str | None = None
    ) -> Filed:
        result: Filed = self._call("POST", "/requests", body={
            "action": action, "params": dict(params), "break_glass_reason": break_glass_reason,
        })
        return result

    def requests(self, *, open_only: bool = True, limit: int = 50) -> list[ChangeRequest]:
        result: list[ChangeRequest] = self._call(
            "GET", "/requests", params={"open_only": "true" if open_only else "false", "limit": limit}
        )
        return result

    def request(self, request_id: str) -> RequestDetail:
        result: RequestDetail = self._call("GET", f"/requests/{_seg(request_id)}")
        return result

    def approve(self, request_id: str, *, run: bool = True) -> Decided:
        result: Decided = self._call("POST", f"/requests/{_seg(request_id)}/approve", body={"run": run})
        return result

    def reject(self, request_id: str, *, reason: str) -> Decided:
        result: Decided = self._call("POST", f"/requests/{_seg(request_id)}/reject", body={"reason": reason})
        return result

    def cancel_request(self, request_id: str, *, reason: str | None = None) -> Decided:
        result: Decided = self._call("POST", f"/requests/{_seg(request_id)}/cancel", body={"reason": reason})
        return result

    def run_request(self, request_id: str) -> Job:
        result: Job = self._call("POST", f"/requests/{_seg(request_id)}/run", body={})
        return result

    def jobs(self, *, limit: int = 20) -> list[Job]:
        result: list[Job] = self._call("GET", "/jobs", params={"limit": limit})
        return result

    def job(self, job_id: str) -> Job:
        result: Job = self._call("GET", f"/jobs/{_seg(job_id)}")
        return result

    def job_events(self, job_id: str, *, after_seq: int = 0, wait_s: float = 0.0) -> list[JobEvent]:
        result: list[JobEvent] = self._call(
            "GET", f"/jobs/{_seg(job_id)}/events", params={"after_seq": after_seq, "wait_s": wait_s},
            timeout_s=self.timeout_s + wait_s + (LONG_POLL_MARGIN_S if wait_s else 0.0),
        )
        return result

    def cancel_job(self, job_id: str) -> Job:
        result: Job = self._call("POST", f"/jobs/{_seg(job_id)}/cancel", body={})
        return result

    def audit(
        self,
        *,
        since: datetime | None = None,
        request_id: str | None = None,
        kinds: tuple[str, ...] = (),
        limit: int = 200,
    ) -> list[Any]:
        params: list[tuple[str, Any]] = [("limit", limit)]
        if since is not None:
            params.append(("since", since.isoformat()))
        if request_id:
            params.append(("request_id", request_id))
        params += [("kind", kind) for kind in kinds]
        result: list[Any] = self._call("GET", "/audit", params=params)
        return result

    def audit_verify(self) -> Any:
        return self._call("GET", "/audit/verify")

    def schedules(self) -> tuple[datetime, list[Any]]:
        answer = self._call("GET", "/schedules")
        if not isinstance(answer, dict) or "statuses" not in answer:
            raise ServerError("GET /schedules: expected an object with now and statuses")
        return answer["now"], list(answer["statuses"])

    def schedule_override(
        self,
        environment: str,
        kind: str,
        *,
        until: datetime | None = None,
        region: str | None = None,
        reason: str | None = None,
    ) -> Any:
        return self._call("POST", "/schedules/overrides", body={
            "environment": environment, "kind": kind, "until": until, "region": region, "reason": reason,
        })

    def freeze_status(self) -> dict[str, Any]:
        document: dict[str, Any] = self._call("GET", "/freeze")
        return document

    def freeze(self, on: bool, *, reason: str | None = None) -> dict[str, Any]:
        document: dict[str, Any] = self._call("POST", "/freeze", body={"on": on, "reason": reason})
        return document

    def stream(self) -> Iterator[StreamEvent]:
        """Server-sent events, decoded, until the caller stops iterating (the connection then closes)."""
        timeout = httpx.Timeout(self.timeout_s, read=None)
        try:
            with self._http.stream("GET", API + "/stream", timeout=timeout,
                                   headers={"Accept": "text/event-stream"}) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self._error(response)
                yield from parse_sse(response.iter_lines())
        except httpx.TransportError as exc:
            raise Unreachable(f"lost the ops server's stream at {self._where}: {exc}") from None


def parse_sse(lines: Iterator[str]) -> Iterator[StreamEvent]:
    """``event:`` / ``data:`` blocks (ended by a blank line) as StreamEvents; comments (``: keepalive``)
    and unknown fields are skipped, as the SSE specification says."""
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r")
        if not line:
            if data:
                event = wire.loads("\n".join(data))
                data = []
                yield event
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
    if data:
        yield wire.loads("\n".join(data))


# -- enums that arrived as strings -------------------------------------------------------------------------
#
def _plain(value: Any) -> Any:
    """Request bodies are plain JSON: times as ISO-8601 strings."""
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot send a {type(value).__name__}")


def _seg(identifier: str) -> str:
    """An id as one path segment (a prefix typed by a user may hold anything)."""
    if not identifier.strip():
        raise UsageError("an id is required")
    return quote(identifier.strip(), safe="")


def _pod_path(cluster: str, namespace: str, pod: str) -> str:
    return f"/clusters/{_seg(cluster)}/pods/{_seg(namespace)}/{_seg(pod)}"


def _region(region: str | None) -> dict[str, str] | None:
    return {"region": region} if region else None
