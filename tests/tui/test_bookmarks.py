"""Issue 16: bookmarks of regions, workloads and clusters (``m`` + letter, ``'`` + letter), kept under the
opsconsole home across restarts; a bad bookmarks file is a notification, never a crash."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from opsconsole.tui.app import OpsConsoleApp
from opsconsole.tui.bookmarks import Bookmark, BookmarkFile, LetterPrompt
from opsconsole.tui.screens.change import ActionScreen
from opsconsole.tui.screens.dialogs import HelpScreen
from opsconsole.tui.screens.fleet import FindingsScreen, OverviewScreen, RegionScreen
from opsconsole.tui.screens.pods import PodsScreen
from opsconsole.tui.widgets.table import FleetTable

from .helpers import notified, refreshed, screen_text, sim_app, until

WORKLOAD = "workload/eks-euw1-prod/checkout"
CLUSTER = "cluster/gke-euw1-prod"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OPSCONSOLE_HOME", str(tmp_path))
    return tmp_path


async def _region(pilot: Pilot[Any], app: OpsConsoleApp, region: str, tab: str) -> RegionScreen:
    app.open_region(region, tab=tab)
    await until(pilot, lambda: isinstance(app.screen, RegionScreen) and app.screen.region_id == region)
    screen = app.screen
    assert isinstance(screen, RegionScreen)
    await until(pilot, lambda: any(t.row_count for t in screen.query(f"#{tab}").results(FleetTable)))
    return screen


async def _select(pilot: Pilot[Any], table: FleetTable, key: str) -> None:
    table.focus()
    table.move_cursor(row=table.get_row_index(key))
    await pilot.pause()
    assert table.selected_key == key


async def _mark(pilot: Pilot[Any], app: OpsConsoleApp, letter: str) -> None:
    await pilot.press("m")
    await until(pilot, lambda: isinstance(app.screen, LetterPrompt))
    await pilot.press(letter)
    await until(pilot, lambda: not isinstance(app.screen, LetterPrompt))


async def _jump(pilot: Pilot[Any], app: OpsConsoleApp, letter: str) -> None:
    await pilot.press("apostrophe")
    await until(pilot, lambda: isinstance(app.screen, LetterPrompt))
    await pilot.press(letter)
    await until(pilot, lambda: not isinstance(app.screen, LetterPrompt))


async def test_bookmarks_survive_a_restart_and_jump_to_the_region_workload_and_cluster(home: Path) -> None:
    app = sim_app(acting_as="alice")
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, app)
        overview = app.screen
        assert isinstance(overview, OverviewScreen)
        app.screen.query_one("#card-ap-southeast-1").focus()
        await pilot.pause()
        await _mark(pilot, app, "r")
        assert notified(app, "'r → region ap-southeast-1")

        screen = await _region(pilot, app, "eu-west-1", "workloads")
        await _select(pilot, screen.query_one("#workloads", FleetTable), WORKLOAD)
        await pilot.press("m")
        await until(pilot, lambda: isinstance(app.screen, LetterPrompt))
        assert "checkout in eks-euw1-prod (eu-west-1)" in screen_text(app)
        assert "'r  region ap-southeast-1" in screen_text(app)  # the prompt lists the bookmarks there are
        await pilot.press("w")
        await until(pilot, lambda: notified(app, "'w → checkout in eks-euw1-prod (eu-west-1)"))

        screen.show_tab("nodes")
        await pilot.pause()
        await _select(pilot, screen.query_one("#nodes", FleetTable), CLUSTER)
        await _mark(pilot, app, "C")
        assert notified(app, "'C → cluster gke-euw1-prod (eu-west-1)")
        await pilot.press("q")

    saved = json.loads((home / "bookmarks.json").read_text())
    assert set(saved["bookmarks"]) == {"r", "w", "C"}
    assert saved["bookmarks"]["w"]["key"] == WORKLOAD
    assert (home / "bookmarks.json").stat().st_mode & 0o077 == 0

    again = sim_app(acting_as="alice")  # a new console: the bookmarks come from the file
    async with again.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, again)
        await _jump(pilot, again, "w")
        await until(pilot, lambda: isinstance(again.screen, RegionScreen) and again.screen.is_mounted)
        region = again.screen
        assert isinstance(region, RegionScreen) and region.region_id == "eu-west-1"
        table = region.query_one("#workloads", FleetTable)
        await until(pilot, lambda: table.selected_key == WORKLOAD and table.has_focus)
        assert "eu-west-1 › workloads" in screen_text(again).splitlines()[0]

        await _jump(pilot, again, "C")  # from a region screen: replaces it, escape leads to the fleet
        await until(pilot, lambda: isinstance(again.screen, RegionScreen) and again.screen is not region)
        nodes = again.screen.query_one("#nodes", FleetTable)
        await until(pilot, lambda: nodes.selected_key == CLUSTER)
        assert len(again.screen_stack) == 3  # the default screen, the overview, this region

        await _jump(pilot, again, "r")
        await until(pilot, lambda: isinstance(again.screen, RegionScreen)
                    and again.screen.region_id == "ap-southeast-1")
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(again.screen, OverviewScreen))

        await _jump(pilot, again, "z")  # no such bookmark: said, nothing moves
        await until(pilot, lambda: notified(again, "no bookmark 'z (bookmarks: 'C 'r 'w)"))
        assert isinstance(again.screen, OverviewScreen)


async def test_a_bad_bookmarks_file_is_a_notification_and_is_kept_aside(home: Path) -> None:
    (home / "bookmarks.json").write_text("{not json", encoding="utf-8")
    app = sim_app(acting_as="alice")
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, app)
        assert notified(app, "is not a bookmarks file")
        await pilot.press("apostrophe")  # nothing loaded: says how to make one
        await until(pilot, lambda: notified(app, "no bookmarks yet"))
        assert isinstance(app.screen, OverviewScreen)
        await _mark(pilot, app, "a")
        await until(pilot, lambda: notified(app, "kept as"))
    assert (home / "bookmarks.json.bad").read_text(encoding="utf-8") == "{not json"
    assert set(json.loads((home / "bookmarks.json").read_text())["bookmarks"]) == {"a"}


@pytest.mark.parametrize(
    "body",
    [
        '{"version": 1, "bookmarks": {"a": {"kind": "workload", "region": "eu-west-1"}}}',  # no key
        '{"version": 1, "bookmarks": {"ab": {"kind": "region", "region": "eu-west-1"}}}',  # not a letter
        '{"version": 1, "bookmarks": {"a": {"kind": "planet", "region": "eu-west-1"}}}',
        '["a"]',
        "",
    ],
)
def test_the_bookmarks_file_refuses_what_it_cannot_jump_to(tmp_path: Path, body: str) -> None:
    path = tmp_path / "bookmarks.json"
    path.write_text(body, encoding="utf-8")
    loaded = BookmarkFile(path).load()
    assert loaded.problem is not None and loaded.marks == {}


def test_a_directory_in_place_of_the_file_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "bookmarks.json").mkdir()
    loaded = BookmarkFile(tmp_path / "bookmarks.json").load()
    assert loaded.problem is not None and "cannot read" in loaded.problem
    assert BookmarkFile(tmp_path / "missing.json").load().problem is None


def test_labels_say_what_a_bookmark_names() -> None:
    assert Bookmark("workload", "eu-west-1", key=WORKLOAD).label == "checkout in eks-euw1-prod (eu-west-1)"
    assert Bookmark("region", "eu-west-1", tab="databases").label == "region eu-west-1 › databases"
    pods = Bookmark("pods", "eu-west-1", cluster="eks-euw1-prod", workload="checkout")
    assert Bookmark.from_json(pods.as_json()) == pods


async def test_command_line_lists_sets_and_forgets_bookmarks(home: Path) -> None:
    app = sim_app(acting_as="alice")
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, app)
        app.screen.query_one("#card-eu-west-1").focus()
        await pilot.press("colon", *"mark e", "enter")
        await until(pilot, lambda: notified(app, "'e → region eu-west-1"))
        await pilot.press("colon", *"marks", "enter")
        await until(pilot, lambda: isinstance(app.screen, LetterPrompt))
        assert "'e  region eu-west-1" in screen_text(app)
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, OverviewScreen))
        await pilot.press("colon", *"delmarks e", "enter")
        await until(pilot, lambda: notified(app, "forgot bookmark 'e"))
        assert app.marks.marks == {}


async def test_the_palette_offers_each_bookmark(home: Path) -> None:
    app = sim_app(acting_as="alice")
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, app)
        screen = await _region(pilot, app, "eu-west-1", "workloads")
        await _select(pilot, screen.query_one("#workloads", FleetTable), WORKLOAD)
        await _mark(pilot, app, "w")
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, OverviewScreen))
        await pilot.press("ctrl+p")
        await pilot.pause(0.3)
        await pilot.press(*"bookmark 'w")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, RegionScreen))
        table = app.screen.query_one("#workloads", FleetTable)
        await until(pilot, lambda: table.selected_key == WORKLOAD)


async def test_pods_screen_bookmark_reopens_the_pod_list(home: Path) -> None:
    app = sim_app(acting_as="alice")
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, app)
        app.open_pods("eks-euw1-prod", "checkout", "eu-west-1")
        await until(pilot, lambda: isinstance(app.screen, PodsScreen) and app.screen.is_mounted)
        await _mark(pilot, app, "p")
        assert notified(app, "'p → pods of checkout in eks-euw1-prod (eu-west-1)")
        await pilot.press("2")
        await until(pilot, lambda: isinstance(app.screen, FindingsScreen))
        await _jump(pilot, app, "p")
        await until(pilot, lambda: isinstance(app.screen, PodsScreen))
        pods = app.screen
        assert isinstance(pods, PodsScreen) and (pods.cluster, pods.workload) == ("eks-euw1-prod", "checkout")


async def test_where_nothing_can_be_bookmarked_it_says_so_and_forms_keep_their_letters(home: Path) -> None:
    app = sim_app(acting_as="alice")
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, app)
        await pilot.press("2")
        await until(pilot, lambda: isinstance(app.screen, FindingsScreen))
        await pilot.press("m")
        await until(pilot, lambda: notified(app, "nothing to bookmark here"))
        assert isinstance(app.screen, FindingsScreen)

        app.open_action("failover", {"region": "eu-west-1", "to": "eu-central-1"})
        await until(pilot, lambda: isinstance(app.screen, ActionScreen) and app.screen.query("#cancel"))
        form = app.screen
        await pilot.press("m", "apostrophe")  # typed into the form's field (or ignored): no prompt opens
        await pilot.pause(0.2)
        assert app.screen is form


async def test_help_names_the_bookmark_keys(home: Path) -> None:
    app = sim_app(acting_as="alice")
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, app)
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        text = screen_text(app)
        assert "Bookmark" in text and "m a   ' a" in text and ":delmarks a" in text
