"""The console as ``opsconsole`` opens it: a client of the embedded ops server (uvicorn on a private
Unix socket, the HTTP client, the sim reader), or of a configured team server. Identity is the server's
answer; ``as bob`` opens another client of the same server; the server's stream moves the queue."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from opsconsole.client.remote import RemoteClient
from opsconsole.core.api import OpsApi
from opsconsole.core.errors import UsageError
from opsconsole.server.embedded import EmbeddedServer
from opsconsole.tui import AS_WITH_SERVER, client_as, open_api
from opsconsole.tui.app import OpsConsoleApp
from opsconsole.tui.screens.change import ActionScreen, ApprovalsScreen
from opsconsole.tui.screens.dialogs import ConfirmScreen
from opsconsole.tui.screens.records import AuditScreen
from opsconsole.tui.widgets.table import FleetTable

from .helpers import embedded_app, notified, refreshed, screen_text, sim_without_team_server, until


@pytest.fixture(autouse=True)
def _sim_and_no_team_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sim_without_team_server(tmp_path, monkeypatch)


class Embedded:
    """The embedded server behind the console, kept at hand to open other people's clients."""

    server: EmbeddedServer | None = None

    @contextmanager
    def factory(self) -> Iterator[OpsApi]:
        with EmbeddedServer.start(acting_as="alice") as server:
            self.server = server
            with server.client() as client:
                yield client

    def reopen(self, person: str) -> object:
        assert self.server is not None
        return client_as(self.server, person)


async def test_file_approve_as_someone_else_and_see_a_rejection_pushed_by_the_stream() -> None:
    embedded = Embedded()
    app = OpsConsoleApp(embedded.factory, refresh_s=0, reopen=embedded.reopen)  # type: ignore[arg-type]
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, app, timeout=60)
        assert app.who is not None and (app.who.person, app.who.credential) == ("alice", "embedded")
        assert "sandbox · alice" in app.sub_title
        assert "eu-west-1" in screen_text(app)

        app.open_action("failover", {"region": "eu-west-1", "to": "eu-central-1"})
        await until(pilot, lambda: isinstance(app.screen, ActionScreen))
        form = app.screen
        assert isinstance(form, ActionScreen)
        await until(pilot, lambda: form.assessment is not None)  # the server's plan and risk
        assert form.assessment is not None and form.assessment.risk.approvals_needed == 2
        assert "PRODUCTION CHANGE" in screen_text(app) and "needs 2 approvals" in screen_text(app)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.click("#confirm")
        await until(pilot, lambda: isinstance(app.screen, ApprovalsScreen))
        assert form.submission is not None
        request = form.submission.request
        assert request.requester == "alice" and request.face == "api"  # the server's face
        table = app.screen.query_one("#requests", FleetTable)
        await until(pilot, lambda: request.id in table._shown)
        table.move_cursor(row=table.get_row_index(request.id))

        await pilot.press("a")  # her own request: refused before any confirmation
        await until(pilot, lambda: notified(app, f"you filed {request.short_id}"))
        assert isinstance(app.screen, ApprovalsScreen)

        await pilot.press("ctrl+p")
        await pilot.pause(0.3)
        await pilot.press(*"as bob", "enter")
        await until(pilot, lambda: app.who is not None and app.who.person == "bob")
        assert "sandbox · bob" in app.sub_title
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.click("#confirm")
        await until(pilot, lambda: table.cell_text(request.id, "votes") == "1/2")

        # Carol rejects through her own client of the same server: no refresh, the stream says so.
        assert embedded.server is not None
        refreshes = app.refreshes
        with client_as(embedded.server, "carol") as carol:
            carol.reject(request.id, reason="not during the sale")
        await until(pilot, lambda: table.cell_text(request.id, "status") == "rejected")
        assert app.refreshes == refreshes
        detail = str(app.screen.query_one("#request-detail").render())
        assert "may still vote" not in detail and "not during the sale" in detail

        await pilot.press("6")
        await until(pilot, lambda: isinstance(app.screen, AuditScreen))
        await until(pilot, lambda: "chain verified" in screen_text(app))


async def test_without_as_the_server_says_who_you_are_and_refuses_a_viewer() -> None:
    app = embedded_app()  # the OS user: on the sandbox, unknown to rbac.yml, a viewer
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, app, timeout=60)
        assert app.who is not None and app.who.role == "viewer"
        assert "(viewer)" in app.sub_title
        app.open_action("failback", {"region": "eu-west-1"})
        await until(pilot, lambda: isinstance(app.screen, ActionScreen))
        form = app.screen
        assert isinstance(form, ActionScreen)
        await until(pilot, lambda: form.assessment is not None or "✗" in screen_text(app))
        if form.assessment is not None:
            await pilot.press("ctrl+s")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.click("#confirm")
            await until(pilot, lambda: notified(app, "viewer"))  # refused by the server's gate
            assert form.submission is None


def test_as_with_a_team_server_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSCONSOLE_SERVER", "http://127.0.0.1:9")
    monkeypatch.setenv("OPSCONSOLE_TOKEN", "opc_test")
    with pytest.raises(UsageError, match="--as is for the sandbox"):
        open_api(None, acting_as="bob")
    factory, reopen = open_api(None)
    assert reopen is None  # no `as NAME` on a team server
    with factory() as api:
        assert isinstance(api, RemoteClient)
    assert AS_WITH_SERVER.startswith("--as")


async def test_an_unreachable_team_server_is_a_notification_not_a_crash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPSCONSOLE_SERVER", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("OPSCONSOLE_TOKEN", "opc_test")
    factory, reopen = open_api(None)
    app = OpsConsoleApp(factory, refresh_s=0, reopen=reopen)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: len(app._notifications) > 0, timeout=30)
        assert app.api is None and app.is_running
        app.act_as("bob")
        await until(pilot, lambda: notified(app, "works only on the sandbox"))
