"""A finding's suggested action opens its form filled in, for every kind of action (issue 14): nodes,
read replicas, Redis, a database demotion and a failover, not only a workload scale; the server assesses
the filled-in form (its preview and risk show), so the suggestion is runnable as shown."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from opsconsole.core.facade import OpsCore
from opsconsole.core.fleet.engine import SourceReading
from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.fleet.model import ClusterState, DbRole, Fleet, FleetRecord
from opsconsole.testing import FakeClock, healthy_records, replace_record
from opsconsole.tui.app import OpsConsoleApp
from opsconsole.tui.commands import FleetCommands
from opsconsole.tui.screens.change import FIELDS, ActionScreen, form_of, form_request
from opsconsole.tui.screens.fleet import FindingsScreen
from opsconsole.tui.widgets.table import FleetTable

from .helpers import REPO, core_app, refreshed, until


class _Records:
    name = "test"

    def __init__(self, records: list[FleetRecord]) -> None:
        self.records = records

    def read(self) -> SourceReading:
        return SourceReading(tuple(self.records))


def _app(records: list[FleetRecord]) -> OpsConsoleApp:
    fleet = load_inventory(REPO / "inventory")

    @contextmanager
    def factory() -> Iterator[OpsCore]:
        with OpsCore(fleet, [_Records(records)], clock=FakeClock(), sandbox=True) as core:  # type: ignore[list-item]
            yield core

    return core_app(factory, acting_as="alice")


def _cluster(records: list[FleetRecord], name: str) -> ClusterState:
    found = next(r for r in records if isinstance(r, ClusterState) and r.cluster == name)
    return found


def nodes_at_max(fleet: Fleet, records: list[FleetRecord]) -> list[FleetRecord]:
    c = _cluster(records, "gke-usw2-prod")
    return replace_record(records, c.key, nodes=c.nodes_max, ready_nodes=c.nodes_max)


def slow_queries(fleet: Fleet, records: list[FleetRecord]) -> list[FleetRecord]:
    return replace_record(records, "database/ap-northeast-1", query_p95_ms=fleet.targets.db_query_p95_ms * 2)


def redis_below_min(fleet: Fleet, records: list[FleetRecord]) -> list[FleetRecord]:
    return replace_record(records, "cache/ap-south-1", healthy_nodes=fleet.bounds.redis_nodes.min - 1)


def split_brain(fleet: Fleet, records: list[FleetRecord]) -> list[FleetRecord]:
    return replace_record(records, "database/eu-central-1", role=DbRole.WRITE_PRIMARY, replicates_from=None)


def region_down(fleet: Fleet, records: list[FleetRecord]) -> list[FleetRecord]:
    return replace_record(records, "traffic/us-west-2", health_check_ok=False)


@pytest.mark.parametrize(
    ("scenario", "action", "form", "filled"),
    [
        (nodes_at_max, "nodes", "nodes", {"cluster": "gke-usw2-prod"}),
        (slow_queries, "replicas", "replicas", {"region": "ap-northeast-1"}),
        (redis_below_min, "cache", "cache", {"region": "ap-south-1"}),
        (split_brain, "database", "database",
         {"region": "eu-central-1", "change": "demote", "source_region": "eu-west-1"}),
        (region_down, "failover", "failover", {"region": "us-west-2", "to": "us-east-1"}),
    ],
)
async def test_a_findings_suggested_action_opens_its_form_filled_in(
    scenario: object, action: str, form: str, filled: dict[str, str]
) -> None:
    fleet = load_inventory(REPO / "inventory")
    records = scenario(fleet, healthy_records(fleet))  # type: ignore[operator]
    app = _app(records)
    async with app.run_test(size=(140, 44)) as pilot:
        await refreshed(pilot, app)
        assert app.view is not None
        await pilot.press("2")
        await until(pilot, lambda: isinstance(app.screen, FindingsScreen))
        wanted = [f for f in app.view.findings
                  if f.suggested_action is not None and f.suggested_action.action == action]
        assert wanted, [f.id for f in app.view.findings]
        table = app.screen.query_one("#findings", FleetTable)
        table.move_cursor(row=table.get_row_index(wanted[0].id))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ActionScreen))
        screen = app.screen
        assert isinstance(screen, ActionScreen) and screen.action_name == form
        values = screen.values()
        assert {k: values[k] for k in filled} == filled
        # The numbers of the suggestion are there too, and the server accepts the form as it is.
        suggested = wanted[0].suggested_action
        assert suggested is not None
        assert form_request(form, values) == (action, dict(suggested.params))
        await until(pilot, lambda: screen.assessment is not None, timeout=30)
        assert screen.assessment is not None and screen.assessment.summary


def test_every_form_round_trips_the_servers_parameters() -> None:
    for action, params in (
        ("nodes", {"cluster": "aks-usw2-prod", "nodes_min": 3, "nodes_max": 35, "nodes_desired": 8}),
        ("replicas", {"region": "us-west-2", "read_replicas": 3}),
        ("database", {"region": "eu-central-1", "change": "promote"}),
        ("cache", {"region": "eu-west-1", "nodes": 7}),
        ("failover", {"from_region": "eu-west-1", "to_region": "eu-central-1"}),
    ):
        form, fields = form_of(action, params)
        assert form in FIELDS
        values = {name: str(fields.get(name, "")) for name, _ in FIELDS[form]}
        assert form_request(form, values) == (action, params)


async def test_the_palette_offers_the_new_forms() -> None:
    fleet = load_inventory(REPO / "inventory")
    app = _app(healthy_records(fleet))
    async with app.run_test(size=(140, 44)) as pilot:
        await refreshed(pilot, app)
        provider = FleetCommands(app.screen)
        texts = [text for text, _, _ in provider._static()]
        for wanted in ("Change a cluster's nodes…", "Change a database's read replicas…",
                       "Promote / demote a database…", "Change a region's Redis nodes…"):
            assert wanted in texts
