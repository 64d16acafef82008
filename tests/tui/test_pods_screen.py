"""The console's pod views (pilot): from the region's Workloads tab, ``p`` opens the pods of a workload whose
new version crash-loops; Enter opens the crashed container's log (stack trace and exit), ``e`` its events.

Real parts: the Kubernetes API emulator over a socket (a world with a ``bad_deploy``), the ``k8s`` source,
the ops server on 127.0.0.1 and the console's HTTP client.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from opsconsole import wiring
from opsconsole.client.remote import RemoteClient
from opsconsole.core.api import OpsApi
from opsconsole.core.facade import OpsCore
from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.providers.k8s import KubernetesSource
from opsconsole.providers.sim import SimSource
from opsconsole.sandbox.kube import KubeApiEmulator
from opsconsole.sandbox.world import World
from opsconsole.server.app import create_app
from opsconsole.server.embedded import ServedApp
from opsconsole.server.main import server_runtime
from opsconsole.server.settings import ServerSettings
from opsconsole.tui.app import OpsConsoleApp
from opsconsole.tui.screens.fleet import RegionScreen
from opsconsole.tui.screens.pods import PodEventsScreen, PodLogScreen, PodsScreen
from opsconsole.tui.widgets.table import FleetTable

from .helpers import REPO, refreshed, until

CLUSTER = "eks-use1-prod"
REGION = "us-east-1"


@pytest.fixture
def server_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A server whose core reads the world in-process and the pods from the emulator; (url, token)."""
    monkeypatch.setenv("OPSCONSOLE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OPSCONSOLE_SANDBOX_READER", "sim")
    monkeypatch.delenv("OPSCONSOLE_DB_URL", raising=False)
    fleet = load_inventory(REPO / "inventory")
    world = World(fleet, seed=42, start=datetime(2025, 1, 15, 20, tzinfo=UTC))
    world.trigger_incident("bad_deploy", REGION, duration=4 * 3600)
    world.advance_by(600)
    with ExitStack() as stack:
        emulator = KubeApiEmulator(fleet)
        endpoints = emulator.start()
        stack.callback(emulator.stop)
        emulator.publish(world)
        k8s = KubernetesSource.from_endpoints(fleet, endpoints, clusters=[CLUSTER], timeout_s=10)
        stack.callback(k8s.close)
        store = wiring.world_store(fleet, home=tmp_path / "home")
        core = stack.enter_context(OpsCore(fleet, [SimSource(store), k8s], deadline_s=10.0, sandbox=True))
        runtime = stack.enter_context(
            server_runtime(ServerSettings(refresh_s=0.5), core=core, scheduler=False, slack=False)
        )
        served = ServedApp(create_app(runtime), host="127.0.0.1", port=0)
        served.start()
        stack.callback(served.stop)
        tokens = runtime.auth.tokens
        assert tokens is not None
        _, token = tokens.create("victor", created_by="test", label="victor's test token")  # a viewer
        yield f"http://127.0.0.1:{served.port}", token


def _app(url: str, token: str) -> OpsConsoleApp:
    @contextmanager
    def factory() -> Iterator[OpsApi]:
        with RemoteClient(url, token, face="tui") as client:
            yield client

    return OpsConsoleApp(factory, refresh_s=0)


@pytest.mark.slow
async def test_pods_of_a_crash_looping_workload_their_log_and_events(server_url: tuple[str, str]) -> None:
    app = _app(*server_url)
    async with app.run_test(size=(200, 50)) as pilot:
        await refreshed(pilot, app)
        app.push_screen(RegionScreen(REGION))
        await until(pilot, lambda: isinstance(app.screen, RegionScreen) and app.screen.query("#workloads"))
        workloads = app.screen.query_one("#workloads", FleetTable)
        key = f"workload/{CLUSTER}/checkout"
        await until(pilot, lambda: workloads.row_count > 0 and key in workloads._index)
        workloads.move_cursor(row=workloads.get_row_index(key))
        await pilot.pause()
        await pilot.press("p")
        screen = await until(pilot, lambda: app.screen if isinstance(app.screen, PodsScreen) else None)
        assert screen.cluster == CLUSTER and screen.workload == "checkout"
        table = screen.query_one("#pods", FleetTable)
        await until(pilot, lambda: screen.loads > 0 and table.row_count > 0)
        crashing = [p for p in screen.pods.values() if p.status == "CrashLoopBackOff"]
        assert len(crashing) == 2
        assert table.selected_key == sorted(p.name for p in crashing)[0]  # the unhealthy ones come first
        assert table.cell_text(crashing[0].name, "status") == "CrashLoopBackOff"
        assert "node group" in str(screen.query_one("#pod-path").render())
        # Enter: the log of the container that crashed.
        await pilot.press("enter")
        log_screen = await until(pilot, lambda: app.screen if isinstance(app.screen, PodLogScreen) else None)
        assert log_screen.previous  # a crash-looping pod opens on its previous container
        await until(pilot, lambda: any("exiting with status 1" in line for line in log_screen.lines))
        assert any(line.startswith("Traceback") for line in log_screen.lines)
        # "/" searches the log.
        await pilot.press("slash")
        for ch in "schemamismatch":
            await pilot.press(ch)
        await until(pilot, lambda: log_screen.matches)
        assert all("SchemaMismatch" in log_screen.lines[i] for i in log_screen.matches)
        await pilot.press("enter")
        # p: the current container (the same crash, as it waits in back-off).
        await pilot.press("p")
        await until(pilot, lambda: not log_screen.previous and log_screen.lines)
        assert any("starting checkout" in line for line in log_screen.lines)
        # e: the pod's events.
        await pilot.press("e")
        events = await until(pilot, lambda: app.screen if isinstance(app.screen, PodEventsScreen) else None)
        await until(pilot, lambda: events.events)
        reasons = {e.reason for e in events.events if e.type == "Warning"}
        assert {"BackOff", "Unhealthy"} <= reasons
        await pilot.press("escape")
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, PodsScreen))


async def _region(pilot: object, app: OpsConsoleApp, tab: str | None = None) -> RegionScreen:
    await refreshed(pilot, app)  # type: ignore[arg-type]
    app.push_screen(RegionScreen(REGION, tab))
    await until(pilot, lambda: isinstance(app.screen, RegionScreen) and app.screen.query("#nodes"))  # type: ignore[arg-type]
    screen = app.screen
    assert isinstance(screen, RegionScreen)
    return screen


async def _colon(pilot: object, line: str) -> None:
    keys = ["colon", *("space" if ch == " " else ch for ch in line), "enter"]
    await pilot.press(*keys)  # type: ignore[attr-defined]


@pytest.mark.slow
async def test_colon_pods_opens_the_pods_of_the_selection_or_of_a_named_cluster(
    server_url: tuple[str, str],
) -> None:
    app = _app(*server_url)
    async with app.run_test(size=(200, 50)) as pilot:
        await refreshed(pilot, app)
        # On the overview, :pods asks which cluster (and names the focused region's), opening nothing.
        await _colon(pilot, "pods")
        await until(pilot, lambda: any("which cluster" in n.message for n in app._notifications))
        assert not isinstance(app.screen, PodsScreen)
        # :pods CLUSTER WORKLOAD opens those pods from anywhere; an unknown cluster is refused by name.
        await _colon(pilot, "pods nope")
        await until(pilot, lambda: any(":pods nope: no such" in n.message for n in app._notifications))
        await _colon(pilot, f"pods {CLUSTER} checkout")
        screen = await until(pilot, lambda: app.screen if isinstance(app.screen, PodsScreen) else None)
        assert (screen.cluster, screen.workload, screen.region_id) == (CLUSTER, "checkout", REGION)
        await pilot.press("escape")
        # On the region screen, :pods is `p`: the selected workload's pods.
        region = await _region(pilot, app)
        workloads = region.query_one("#workloads", FleetTable)
        key = f"workload/{CLUSTER}/checkout"
        await until(pilot, lambda: key in workloads._index)
        workloads.move_cursor(row=workloads.get_row_index(key))
        await pilot.pause()
        await _colon(pilot, "pods")
        screen = await until(pilot, lambda: app.screen if isinstance(app.screen, PodsScreen) else None)
        assert (screen.cluster, screen.workload) == (CLUSTER, "checkout")


@pytest.mark.slow
async def test_from_the_nodes_tab_enter_or_p_lists_the_pods_on_a_cluster_or_node_group(
    server_url: tuple[str, str],
) -> None:
    app = _app(*server_url)
    async with app.run_test(size=(200, 50)) as pilot:
        region = await _region(pilot, app, "nodes")
        nodes = region.query_one("#nodes", FleetTable)
        key = f"cluster/{CLUSTER}"
        await until(pilot, lambda: key in nodes._index)
        nodes.move_cursor(row=nodes.get_row_index(key))
        await pilot.pause()
        # Enter on a cluster's row: every pod of the cluster, with its node and node group.
        await pilot.press("enter")
        screen = await until(pilot, lambda: app.screen if isinstance(app.screen, PodsScreen) else None)
        assert (screen.cluster, screen.workload, screen.node_group) == (CLUSTER, None, None)
        await until(pilot, lambda: screen.loads > 0 and screen.pods)
        assert len({p.workload for p in screen.pods.values()}) > 1
        groups = sorted({p.node_group for p in screen.pods.values() if p.node_group})
        assert groups
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is region)
        # p does the same; a node group's row (the cloud adapters report them; the sim reader does not,
        # so the row's key is given here) lists only the pods in that group.
        await pilot.press("p")
        screen = await until(pilot, lambda: app.screen if isinstance(app.screen, PodsScreen) else None)
        assert (screen.cluster, screen.node_group) == (CLUSTER, None)
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is region)
        region.pods_of_node_row(f"nodegroup/{CLUSTER}/{groups[0]}")
        screen = await until(pilot, lambda: app.screen if isinstance(app.screen, PodsScreen) else None)
        assert (screen.cluster, screen.node_group) == (CLUSTER, groups[0])
        await until(pilot, lambda: screen.loads > 0 and screen.pods)
        assert {p.node_group for p in screen.pods.values()} == {groups[0]}
        assert f"in node group {groups[0]}" in str(screen.query_one("#pods-title").render())
