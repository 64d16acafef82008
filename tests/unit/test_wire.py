"""The records on the wire come back as the very records that left: enums as enums, tuples as tuples."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest

from opsconsole.core import wire
from opsconsole.core.change.approvals import Decision, RequestStatus, Vote
from opsconsole.core.fleet.engine import FleetService
from opsconsole.core.fleet.findings import evaluate, region_health
from opsconsole.core.fleet.model import Cloud, Fleet
from opsconsole.core.fleet.view import FleetView
from opsconsole.core.runs.records import Job, JobStatus
from opsconsole.testing import healthy_records, snapshot_of

AT = datetime(2026, 12, 6, 7, 0, tzinfo=UTC)


def test_a_whole_fleet_view_round_trips(seed_fleet: Fleet) -> None:
    snapshot = snapshot_of(healthy_records(seed_fleet))
    changes = FleetService([]).refresh()[1]
    findings = tuple(evaluate(seed_fleet, snapshot))
    view = FleetView(seed_fleet, snapshot, changes, findings, region_health(seed_fleet, snapshot, findings))
    back = wire.loads(wire.dumps(view))
    assert back == view
    assert isinstance(back.fleet.source, Path)
    assert all(isinstance(cloud, Cloud) for cloud in next(iter(back.fleet.regions.values())).cloud_regions)


def test_string_enums_come_back_as_enums_not_strings() -> None:
    job = Job(id="a" * 32, action="scale", params={"replicas": 3}, playbook="scale.yml", check_mode=False,
              status=JobStatus.RUNNING, actor="alice", face="cli", created_at=AT, timings=({"step": 1},))
    back = wire.loads(wire.dumps(job))
    assert back.status is JobStatus.RUNNING
    assert back == job
    vote = Vote(person="bob", decision=Decision.APPROVE, role="approver", at=AT, plan_hash="h", face="tui")
    assert wire.loads(wire.dumps((vote, RequestStatus.APPROVED))) == (vote, RequestStatus.APPROVED)


def test_a_payload_naming_a_class_outside_the_records_is_refused() -> None:
    with pytest.raises(wire.WireError, match="not a record"):
        wire.decode({"$t": "subprocess:Popen", "args": ["true"]})
    with pytest.raises(wire.WireError, match="not a record"):
        wire.decode({"$t": "opsconsole.core.fleet.model:Path"})


def test_fields_a_newer_server_added_are_dropped_and_missing_ones_named() -> None:
    job = wire.encode(Job(id="b" * 32, action="scale", params={}, playbook="scale.yml", check_mode=True,
                          status=JobStatus.QUEUED, actor="alice", face="cli", created_at=AT))
    assert wire.decode({**job, "added_later": 1}).id == "b" * 32
    del job["actor"]
    with pytest.raises(wire.WireError, match="actor"):
        wire.decode(job)


def test_every_dataclass_the_api_returns_is_in_a_record_module() -> None:
    from opsconsole.core import api  # noqa: PLC0415

    for cls in (api.Caller, api.Assessment, api.Filed, api.RequestDetail, api.Decided, api.StreamEvent):
        assert dataclasses.is_dataclass(cls)
        assert cls.__module__ in wire.RECORD_MODULES
