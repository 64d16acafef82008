"""The terminal console against a real team server over HTTPS (a self-signed certificate made here):
it is who its token says, shows the fleet, and sees a request another client files, pushed by the
server's stream, without anyone reloading."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from opsconsole.client.remote import RemoteClient
from opsconsole.core import wire
from opsconsole.core.api import OpsApi
from opsconsole.tui.app import OpsConsoleApp

from .conftest import ServeFactory
from .test_embedded_tls import _self_signed

FAILOVER = {"action": "failover", "params": {"from_region": "eu-west-1", "to_region": "eu-central-1"}}


async def _until(pilot: Any, condition: Callable[[], object], timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out waiting"
        await pilot.pause(0.05)


def test_the_console_over_https_is_its_tokens_person_and_sees_others_requests(
    serve: ServeFactory, tmp_path: Path
) -> None:
    asyncio.run(_console_over_https(serve, tmp_path))  # Textual's pilot is async; this suite is not


async def _console_over_https(serve: ServeFactory, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server = serve(ssl_certfile=str(cert), ssl_keyfile=str(key), verify=str(cert))
    assert server.url.startswith("https://")

    @contextmanager
    def bobs_console() -> Iterator[OpsApi]:
        with RemoteClient(server.url, server.tokens["bob"], verify=str(cert), face="tui") as client:
            yield client

    app = OpsConsoleApp(bobs_console, refresh_s=0)
    async with app.run_test(size=(120, 40)) as pilot:
        await _until(pilot, lambda: app.who is not None and app.view is not None)
        assert app.who is not None and (app.who.person, app.who.credential) == ("bob", "token")
        assert app.view is not None and "eu-west-1" in app.view.fleet.regions

        with server.http("alice") as alice:  # another client, another person
            filed = wire.loads(alice.post("/api/v1/requests", json=FAILOVER).content).request
        await _until(pilot, lambda: any(r.id == filed.id for r in app.requests))
        shown = next(r for r in app.requests if r.id == filed.id)
        assert (shown.requester, shown.status.value) == ("alice", "requested")
