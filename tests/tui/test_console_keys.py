"""Issue 16, defects 4 (console side), 8 (console side), 10, 11, 12 and the k9s-style additions: the
palette's sentences do what they say, keys never act silently nor behind an open form, help names real
keys, the ``:`` command line, breadcrumbs, copying an id, the audit entry in full, new jobs on top,
schedules that say their clock, the compact overview at 80 columns."""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot
from textual.widgets import Button, Input

from opsconsole.tui.app import OpsConsoleApp
from opsconsole.tui.screens.change import ActionScreen, JobsScreen
from opsconsole.tui.screens.dialogs import CommandLine, DetailScreen, HelpScreen
from opsconsole.tui.screens.fleet import FindingsScreen, OverviewScreen, RegionScreen
from opsconsole.tui.screens.pods import PodsScreen
from opsconsole.tui.screens.records import AuditScreen, SchedulesScreen, schedule_rows
from opsconsole.tui.widgets.table import FleetTable

from .helpers import notified, refreshed, screen_text, sim_app, until


async def _palette(pilot: Pilot[Any], text: str) -> None:
    await pilot.press("ctrl+p")
    await pilot.pause(0.3)
    await pilot.press(*text)
    await pilot.pause(0.5)
    await pilot.press("enter")


async def test_palette_as_erin_switches_identity_and_opens_no_region() -> None:
    app = sim_app(acting_as="alice")
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, app)
        await _palette(pilot, "as erin")
        await until(pilot, lambda: app.who is not None and app.who.person == "erin")
        assert not isinstance(app.screen, RegionScreen)


async def test_palette_scale_names_the_only_cluster_or_says_every_cluster_it_changes() -> None:
    app = sim_app(acting_as="alice")
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, app)
        await _palette(pilot, "scale checkout in eu-west-1 to 12")
        await until(pilot, lambda: isinstance(app.screen, ActionScreen))
        form = app.screen
        assert isinstance(form, ActionScreen)
        await until(pilot, lambda: form.assessment is not None)
        await until(pilot, lambda: "applies to 3 clusters" in screen_text(app))
        text = screen_text(app)
        for cluster in ("eks-euw1-prod", "gke-euw1-prod", "aks-euw1-prod"):
            assert cluster in text.split("applies to 3 clusters")[1]


async def test_a_no_op_scale_is_refused_in_the_form() -> None:
    app = sim_app(acting_as="alice")
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, app)
        assert app.view is not None
        w = app.view.snapshot.get("workload/eks-euw1-prod/checkout")
        params = {"service": "checkout", "region": "eu-west-1", "environment": "prod"}
        app.open_action("scale", {**params, "cluster": "eks-euw1-prod", "replicas": w.desired})  # type: ignore[union-attr]
        await until(pilot, lambda: isinstance(app.screen, ActionScreen))
        await until(pilot, lambda: "no change" in screen_text(app))
        assert "scale-up" not in screen_text(app)


async def test_digit_keys_do_not_leave_an_open_form() -> None:
    app = sim_app(acting_as="alice")
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, app)
        app.open_action("failover", {"region": "eu-west-1", "to": "eu-central-1"})
        await until(pilot, lambda: isinstance(app.screen, ActionScreen) and app.screen.query("#cancel"))
        form = app.screen
        form.query_one("#cancel", Button).focus()  # not in an input: the digit would reach the app
        await pilot.press("2")
        await pilot.pause()
        assert app.screen is form and notified(app, "close this form first")
        form.query_one("#f-region", Input).focus()
        await pilot.press("end", "3")
        assert form.query_one("#f-region", Input).value == "eu-west-13" and app.screen is form


async def test_read_only_says_why_a_key_does_nothing_and_the_palette_too() -> None:
    app = sim_app(read_only=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, app)
        app.open_region("eu-west-1")
        await until(pilot, lambda: isinstance(app.screen, RegionScreen) and app.screen.query("#workloads"))
        table = app.screen.query_one("#workloads", FleetTable)
        await until(pilot, lambda: table.row_count > 0)
        await pilot.press("s")
        await pilot.pause()
        assert not isinstance(app.screen, ActionScreen)
        assert notified(app, "--read-only")
        app._notifications.clear()
        await _palette(pilot, "scale checkout in eu-west-1 to 12")
        await until(pilot, lambda: notified(app, "--read-only"))
        assert not isinstance(app.screen, ActionScreen)


async def test_help_names_real_keys_and_the_footer_offers_filter_only_where_it_filters() -> None:
    app = sim_app(acting_as="alice")
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, app)
        await until(pilot, lambda: isinstance(app.screen, OverviewScreen))
        await pilot.pause(0.2)
        assert "Filter" not in screen_text(app).splitlines()[-1]  # cards: nothing to filter
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        text = screen_text(app)
        assert "question_mark" not in text
        for words in ("ctrl+p", "/ ", "[  ]", "next tab", ": "):
            assert words in text, words
        await pilot.press("escape")
        app.open_region("eu-west-1")
        await until(pilot, lambda: isinstance(app.screen, RegionScreen))
        await until(pilot, lambda: "/ Filter" in (screen_text(app).splitlines() or [""])[-1])


async def test_region_tabs_switch_with_brackets_and_the_header_shows_breadcrumbs() -> None:
    app = sim_app(acting_as="alice")
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, app)
        app.open_region("eu-west-1")
        await until(pilot, lambda: isinstance(app.screen, RegionScreen))
        await pilot.pause(0.2)
        await pilot.press("right_square_bracket")
        await until(pilot, lambda: "opsconsole › fleet › eu-west-1 › nodes" in screen_text(app))
        await pilot.press("left_square_bracket", "left_square_bracket")
        await until(pilot, lambda: "eu-west-1 › chart" in screen_text(app))


async def _colon(pilot: Pilot[Any], app: OpsConsoleApp, line: str) -> None:
    await pilot.press("colon")
    await until(pilot, lambda: isinstance(app.screen, CommandLine))
    await pilot.press(*line, "enter")
    await pilot.pause(0.2)


async def test_the_colon_command_line() -> None:
    app = sim_app(acting_as="alice")
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, app)
        await _colon(pilot, app, "findings")
        await until(pilot, lambda: isinstance(app.screen, FindingsScreen))
        await _colon(pilot, app, "region eu-west-1")
        await until(pilot, lambda: isinstance(app.screen, RegionScreen))
        await _colon(pilot, app, "nodes")
        screen = app.screen
        assert isinstance(screen, RegionScreen)
        await until(pilot, lambda: screen.query_one("#tabs").active == "tab-nodes")  # type: ignore[attr-defined]
        await _colon(pilot, app, "pods")  # the pods of the cluster selected on the Nodes tab
        await until(pilot, lambda: isinstance(app.screen, PodsScreen))
        await _colon(pilot, app, "nope")
        assert notified(app, "not a command")
        await _colon(pilot, app, "jobs")
        await until(pilot, lambda: isinstance(app.screen, JobsScreen))
        await _colon(pilot, app, "q")
        await until(pilot, lambda: app._exit, timeout=10)


async def test_y_copies_the_selected_key_with_osc52() -> None:
    app = sim_app(acting_as="alice")
    copied: list[str] = []
    async with app.run_test(size=(120, 40)) as pilot:
        app.copy_to_clipboard = copied.append  # type: ignore[method-assign]
        await refreshed(pilot, app)
        app.open_region("eu-west-1")
        await until(pilot, lambda: isinstance(app.screen, RegionScreen) and app.screen.query("#workloads"))
        table = app.screen.query_one("#workloads", FleetTable)
        await until(pilot, lambda: table.row_count > 0)
        await pilot.press("y")
        assert copied == [table.selected_key] and notified(app, "copied")


async def test_the_audit_shows_its_data_and_enter_opens_the_entry() -> None:
    app = sim_app(acting_as="alice")
    async with app.run_test(size=(160, 40)) as pilot:
        await refreshed(pilot, app)
        app.open_action("failover", {"region": "eu-west-1", "to": "eu-central-1"})
        await until(pilot, lambda: isinstance(app.screen, ActionScreen))
        form = app.screen
        assert isinstance(form, ActionScreen)
        await until(pilot, lambda: form.assessment is not None)
        await pilot.press("ctrl+s")
        await pilot.pause(0.3)
        await pilot.click("#confirm")
        await until(pilot, lambda: form.submission is not None)
        await pilot.press("6")
        await until(pilot, lambda: isinstance(app.screen, AuditScreen))
        audit = app.screen
        assert isinstance(audit, AuditScreen)
        table = audit.query_one("#audit", FleetTable)
        await until(pilot, lambda: table.row_count > 0)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DetailScreen))
        text = screen_text(app)
        assert "audit entry #" in text and "data:" in text
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is audit)


def _job(job_id: str, minute: int) -> Any:
    from datetime import UTC, datetime  # noqa: PLC0415
    from types import SimpleNamespace  # noqa: PLC0415

    from opsconsole.core.runs.records import JobStatus  # noqa: PLC0415

    return SimpleNamespace(
        id=job_id,
        status=JobStatus.SUCCEEDED,
        action="scale",
        check_mode=True,
        actor="alice",
        started_at=datetime(2025, 1, 6, 12, minute, tzinfo=UTC),
        duration_s=3.0,
        last_task="apply",
    )


async def test_a_new_job_appears_on_top_without_reentering_the_screen() -> None:
    app = sim_app(acting_as="alice")
    async with app.run_test(size=(160, 40)) as pilot:
        await refreshed(pilot, app)
        await pilot.press("4")
        await until(pilot, lambda: isinstance(app.screen, JobsScreen) and app.screen.query("#jobs"))
        screen = app.screen
        assert isinstance(screen, JobsScreen)
        screen._follow = lambda _job_id: None  # type: ignore[method-assign] - no log to fetch for these
        table = screen.query_one("#jobs", FleetTable)
        app.jobs = [_job("job-b", 2), _job("job-a", 1)]  # newest first, as the server lists them
        screen.show_data()
        await pilot.pause()
        assert table._order == ["job-b", "job-a"]
        app.jobs = [_job("job-c", 3), *app.jobs]
        screen.show_data()
        await pilot.pause()
        assert table._order == ["job-c", "job-b", "job-a"]


def test_schedules_say_their_clock_and_what_not_applied_means() -> None:
    from datetime import UTC, datetime  # noqa: PLC0415
    from types import SimpleNamespace  # noqa: PLC0415

    at = datetime(2025, 1, 6, 19, 0, tzinfo=UTC)
    status = SimpleNamespace(
        environment="staging",
        region="eu-west-1",
        applied=None,
        desired="up",
        next_transitions=[SimpleNamespace(state="down", at=at)],
        overrides=[],
        holds=[],
        clusters=["gke-euw1-staging"],
    )
    row = schedule_rows((status,))  # type: ignore[arg-type]
    cells = row["staging/eu-west-1"]
    assert "UTC" in cells[4] and "Mon 19:00" in cells[4]
    assert "not applied yet" not in str(cells[2]) and "untouched" in str(cells[2])
    assert SchedulesScreen.screen_name == "schedules"


async def test_the_overview_is_compact_below_120_columns_and_c_switches() -> None:
    app = sim_app(acting_as="alice")
    async with app.run_test(size=(80, 24)) as pilot:
        await refreshed(pilot, app)
        screen = app.screen
        assert isinstance(screen, OverviewScreen)
        regions = screen.query_one("#regions", FleetTable)
        await until(pilot, lambda: regions.display and regions.row_count == len(app.view.fleet.regions))  # type: ignore[union-attr]
        assert not screen.query_one("#cards").display
        footer = screen_text(app).splitlines()[-1]
        for key in ("? help", "1-6", "q quit"):
            assert key in footer, footer
        await pilot.press("j", "enter")
        await until(pilot, lambda: isinstance(app.screen, RegionScreen))
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is screen)
        await pilot.press("c")
        await until(pilot, lambda: screen.query_one("#cards").display and not regions.display)


async def test_the_env_form_opens_on_a_combination_that_exists() -> None:
    from opsconsole.core.fleet.model import Environment  # noqa: PLC0415
    from opsconsole.tui.screens.fleet import env_params  # noqa: PLC0415

    app = sim_app(acting_as="alice")
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, app)
        view = app.view
        assert view is not None
        for region in view.fleet.regions:
            params = env_params(view, region)
            env = Environment(params["environment"])
            assert env is not Environment.PROD
            where = params["region"] or None
            assert any(
                c.environment is env and (where is None or c.region == where)
                for c in view.fleet.clusters.values()
            ), (region, params)
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, ActionScreen))
        form = app.screen
        assert isinstance(form, ActionScreen)
        await until(pilot, lambda: form.assessment is not None or "✗" in screen_text(app))
        assert form.assessment is not None, screen_text(app)
