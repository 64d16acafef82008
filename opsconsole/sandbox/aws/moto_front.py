"""moto's threaded server, with a WSGI front for what moto lacks (ElastiCache replica counts).

Why this file exists: the AWS APIs other than CloudWatch are moto's; this module runs moto on
127.0.0.1 in this process, quietly, and patches in the calls the playbooks need that moto misses.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Iterable
from typing import Any, Protocol
from urllib.parse import parse_qs, urlencode

from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

from opsconsole.sandbox.aws.cloudwatch import _REGION_OF_AUTH


class ReplicaCounts(Protocol):
    """What the front needs of the cloud (:class:`~opsconsole.sandbox.aws.cloud.AwsCloud` is one)."""

    def change_cache_replicas(
        self, region: str, group_id: str, new_replicas: int, *, increase: bool
    ) -> tuple[str, str] | None: ...


class _QuietMotoHandler(MotoRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


class _MotoFront:
    """WSGI middleware before moto: ElastiCache Increase/DecreaseReplicaCount, applied to moto's group."""

    def __init__(self, app: Any, cloud: ReplicaCounts) -> None:
        self._app = app
        self._cloud = cloud

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        auth = str(environ.get("HTTP_AUTHORIZATION", ""))
        if environ.get("REQUEST_METHOD") != "POST" or "/elasticache/" not in auth:
            return self._app(environ, start_response)  # type: ignore[no-any-return]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        params = parse_qs(body.decode(errors="replace"))
        action = params.get("Action", [""])[0]
        if action not in ("IncreaseReplicaCount", "DecreaseReplicaCount"):
            return self._app(environ, start_response)  # type: ignore[no-any-return]
        group_id = params.get("ReplicationGroupId", [""])[0]
        region_match = _REGION_OF_AUTH.search(auth)
        region = region_match.group(1) if region_match else "us-east-1"
        try:
            replicas = int(params.get("NewReplicaCount", ["-1"])[0])
        except ValueError:
            replicas = -1
        error = self._cloud.change_cache_replicas(region, group_id, replicas, increase=action.startswith("I"))
        if error is not None:
            xml = (
                f'<ErrorResponse><Error><Type>Sender</Type><Code>{error[0]}</Code>'
                f"<Message>{error[1]}</Message></Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
            ).encode()
            start_response("400 Bad Request",
                           [("Content-Type", "text/xml"), ("Content-Length", str(len(xml)))])
            return [xml]
        # Answer with moto's own serialisation of the group, under this action's result element.
        modify = urlencode({"Action": "ModifyReplicationGroup", "Version": "2015-02-02",
                           "ReplicationGroupId": group_id}).encode()
        environ["wsgi.input"] = io.BytesIO(modify)
        environ["CONTENT_LENGTH"] = str(len(modify))
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return lambda _data: None

        chunks = b"".join(self._app(environ, capture))
        chunks = chunks.replace(b"ModifyReplicationGroup", action.encode())
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(chunks))))
        start_response(captured["status"], headers)
        return [chunks]


class _MotoServer(ThreadedMotoServer):
    """moto's threaded server on 127.0.0.1, with :class:`_MotoFront`, quiet, and a real close on stop."""

    def __init__(self, port: int, cloud: ReplicaCounts) -> None:
        super().__init__(ip_address="127.0.0.1", port=port, verbose=False)
        self.app = _MotoFront(DomainDispatcherApplication(create_backend_app), cloud)

    def _server_entry(self) -> None:
        self._server = make_server(
            self._ip_address, self._port, self.app, True, request_handler=_QuietMotoHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()  # moto's stop leaves the socket listening
        if self._thread is not None:
            self._thread.join(timeout=5)
