"""Pilot tests of four console bugs (each failed before its fix): an answer arriving after its screen
was closed, singular and plural, who "may still vote" on a closed request, and a requester approving
her own request."""

from __future__ import annotations

import threading

from opsconsole.core.change.actions import plan_failover
from opsconsole.core.change.approvals import RequestStatus
from opsconsole.core.change.records import ChangeRequest
from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.testing import healthy_records, replace_record
from opsconsole.tui.app import OpsConsoleApp
from opsconsole.tui.data import plural
from opsconsole.tui.screens.change import ApprovalsScreen
from opsconsole.tui.screens.dialogs import ConfirmScreen
from opsconsole.tui.screens.fleet import FindingsScreen, OverviewScreen, RegionScreen
from opsconsole.tui.screens.records import SchedulesScreen
from opsconsole.tui.widgets.table import FleetTable

from .helpers import REPO, harness_of, notified, refreshed, screen_text, sim_app, until
from .test_screens import static_app


def file_failover(app: OpsConsoleApp, person: str = "alice") -> ChangeRequest:
    """File eu-west-1 → eu-central-1 as ``person`` straight through the core (another face)."""
    core = harness_of(app).core
    assert core is not None
    view = core.refresh()
    plan = plan_failover(view.fleet, view.snapshot, from_region="eu-west-1", to_region="eu-central-1")
    who = core.directory.cast_member(person)
    filed = core.pipeline.submit(plan, who, face="cli", snapshot=view.snapshot, wait=False).request
    assert filed.status is RequestStatus.REQUESTED
    return filed


async def test_an_answer_arriving_after_its_screen_was_closed_is_ignored() -> None:
    """`5` then Escape at once: the schedules' answer comes after the screen is gone (it used to crash
    with NoMatches: No nodes match '#schedule-warning')."""
    release = threading.Event()
    asked = threading.Event()

    def gate(operation: str) -> None:
        if operation == "schedules" and not asked.is_set():
            asked.set()
            release.wait(20)

    app = sim_app(gate=gate)
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, app)
        await pilot.press("5")
        await until(pilot, lambda: isinstance(app.screen, SchedulesScreen))
        await until(pilot, asked.is_set)
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, OverviewScreen))
        release.set()
        await until(pilot, lambda: not [w for w in app.workers if w.group == "calls" and w.is_running])
        await pilot.pause(0.2)
        assert app.is_running and isinstance(app.screen, OverviewScreen)
        await pilot.press("5")  # and the screen still works when opened again
        await until(pilot, lambda: isinstance(app.screen, SchedulesScreen) and "staging" in screen_text(app))


async def test_counts_are_singular_or_plural() -> None:
    assert (plural(0, "finding"), plural(1, "finding"), plural(2, "approval")) == (
        "0 findings",
        "1 finding",
        "2 approvals",
    )
    fleet = load_inventory(REPO / "inventory")
    records = replace_record(
        healthy_records(fleet),
        "workload/eks-euw1-prod/checkout",
        cpu_utilisation=0.99,
        desired=60,
        ready=60,
        hpa_max=60,
    )
    app = static_app(records, acting_as="alice")
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, app)
        assert app.view is not None and len(app.view.findings) == 1
        await pilot.press("2")
        await until(pilot, lambda: isinstance(app.screen, FindingsScreen))
        await until(pilot, lambda: "1 finding, worst first" in screen_text(app))
        assert "1 findings" not in screen_text(app)
        await pilot.press("escape")
        app.open_region("eu-west-1")
        await until(pilot, lambda: isinstance(app.screen, RegionScreen))
        await until(pilot, lambda: "· 1 finding" in screen_text(app))
        assert "1 findings" not in screen_text(app)

        filed = file_failover(app)  # needs two approvals
        await refreshed(pilot, app)
        app.open_action("failover", {"region": "eu-west-1", "to": "eu-central-1"})
        await until(pilot, lambda: "needs 2 approvals before it runs" in screen_text(app))
        assert "approval(s)" not in screen_text(app)
        assert filed.approvals_needed == 2


async def test_a_closed_request_does_not_say_who_may_still_vote() -> None:
    app = sim_app(acting_as="alice")
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, app)
        filed = file_failover(app)
        await refreshed(pilot, app)
        await pilot.press("3")
        await until(pilot, lambda: isinstance(app.screen, ApprovalsScreen))
        screen = app.screen
        assert isinstance(screen, ApprovalsScreen)
        table = screen.query_one("#requests", FleetTable)
        await until(pilot, lambda: filed.id in table._shown)
        table.move_cursor(row=table.get_row_index(filed.id))
        detail = screen.query_one("#request-detail")
        # Open: the server's answer (the approvers of the cast, not the requester).
        await until(pilot, lambda: "may still vote: " in str(detail.render()))
        await until(pilot, lambda: "…" not in str(detail.render()))
        assert "bob" in str(detail.render()) and "may still vote: alice" not in str(detail.render())

        await pilot.press("c")  # alice cancels her own request
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.click("#confirm")
        await until(pilot, lambda: table.cell_text(filed.id, "status") == "cancelled")
        text = str(detail.render())
        assert "cancelled" in text and "may still vote" not in text


async def test_the_requester_is_refused_before_the_approve_confirmation_opens() -> None:
    app = sim_app(acting_as="alice")
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, app)
        filed = file_failover(app, "alice")
        await refreshed(pilot, app)
        await pilot.press("3")
        await until(pilot, lambda: isinstance(app.screen, ApprovalsScreen))
        table = app.screen.query_one("#requests", FleetTable)
        await until(pilot, lambda: filed.id in table._shown)
        table.move_cursor(row=table.get_row_index(filed.id))
        await pilot.press("a")
        await until(pilot, lambda: notified(app, f"you filed {filed.short_id}"))
        await pilot.pause(0.2)
        assert isinstance(app.screen, ApprovalsScreen)  # no confirmation was asked
        core = harness_of(app).core
        assert core is not None and core.pipeline.requests.get(filed.id).votes == ()
