"""The DR drill from the console (issue 14, "DR drills"): ``:drill failover FROM TO`` asks first, then a
screen follows the drill — its steps, the RTO clock of the move that runs, the verdict and the report's
path at the end. The console is the sim-read sandbox (it cannot run playbooks), so the drill's screen is
given a scripted ops server (requests approved after a few looks, runs that take a few looks to finish);
everything else is the real path: the command line, the confirmation, the worker thread, ``run_drill``
writing its report under the home. Bad commands are refused with a notification and open nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from opsconsole.core.change.approvals import RequestStatus
from opsconsole.core.change.rto import measure, rto_target
from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.fleet.model import Fleet
from opsconsole.core.runs.records import Job, JobStatus
from opsconsole.tui.app import OpsConsoleApp
from opsconsole.tui.screens import drill as drill_screen
from opsconsole.tui.screens.dialogs import CommandLine, ConfirmScreen
from opsconsole.tui.screens.drill import DrillScreen

from .helpers import notified, refreshed, sim_app, until


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _isolated_home: Path) -> Path:
    monkeypatch.setenv("OPSCONSOLE_SANDBOX_READER", "sim")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("OPSCONSOLE_SERVER", "OPSCONSOLE_TOKEN", "OPSCONSOLE_CA_FILE", "OPSCONSOLE_DB_URL"):
        monkeypatch.delenv(name, raising=False)
    return _isolated_home


@dataclass
class ScriptedOps:
    """An ops server for a drill: each request is approved at the second look, each run takes
    ``run_looks`` looks to finish (running, its clock ticking, meanwhile)."""

    spec: Fleet
    run_looks: int = 4
    dns: dict[str, int] = field(default_factory=lambda: {"eu-west-1": 100})
    roles: dict[str, str] = field(default_factory=lambda: {"eu-west-1": "write_primary",
                                                           "eu-central-1": "read_replica"})
    requests_: dict[str, Any] = field(default_factory=dict)
    jobs_: dict[str, Job] = field(default_factory=dict)
    looks: dict[str, int] = field(default_factory=dict)
    #: Runs do not finish until this is set (the test looks at the running clock first).
    release: threading.Event = field(default_factory=threading.Event)

    def assess(self, action: str, params: Mapping[str, Any]) -> None:
        return None

    def fleet(self) -> Any:
        return SimpleNamespace(fleet=self.spec)

    def status(self, region: str | None = None) -> dict[str, Any]:
        regions = [{"id": r, "dns_weights": dict(self.dns) if r == "eu-west-1" else {r: 100},
                    "db_role": role, "replica_lag_s": 1.5 if role == "read_replica" else 0.0, "health": "ok"}
                   for r, role in self.roles.items()]
        return {"regions": regions, "totals": {"rpo_target_s": 300.0}}

    def findings(self, region: str | None = None) -> dict[str, Any]:
        return {"findings": []}

    def preview(self, action: str, params: Mapping[str, Any]) -> Job:
        raise AssertionError("no preview in this drill")

    def submit(self, action: str, params: Mapping[str, Any], *, break_glass_reason: str | None = None) -> Any:
        rid = f"req{len(self.requests_)}0000000"
        self.requests_[rid] = SimpleNamespace(
            id=rid, short_id=rid[:8], action=action, params=dict(params), approvals_missing=2,
            expires_at=datetime.now(UTC) + timedelta(hours=1), reason=None, status=RequestStatus.REQUESTED,
            job_id=None)
        return SimpleNamespace(request=self.requests_[rid], job=None, may_still_vote=("bob", "carol"))

    def request(self, request_id: str) -> Any:
        request = self.requests_[request_id]
        if request.status is RequestStatus.REQUESTED:  # approved: the run starts
            now = datetime.now(UTC)
            job = Job(id=f"job{len(self.jobs_)}", action=request.action, params=request.params,
                      playbook=f"{request.action}.yml", check_mode=False, status=JobStatus.RUNNING,
                      actor="alice", face="tui", created_at=now, started_at=now)
            self.jobs_[job.id] = job
            request.status, request.job_id = RequestStatus.RUNNING, job.id
        elif request.status is RequestStatus.RUNNING and self.jobs_[request.job_id].status.terminal:
            request.status = RequestStatus.SUCCEEDED
        return SimpleNamespace(request=request)

    def run_request(self, request_id: str) -> Job:
        raise AssertionError("approved requests run by themselves here")

    def job(self, job_id: str) -> Job:
        job = self.jobs_[job_id]
        self.looks[job_id] = self.looks.get(job_id, 0) + 1
        if job.status is JobStatus.RUNNING and self.release.is_set() and self.looks[job_id] >= self.run_looks:
            job = replace(job, status=JobStatus.SUCCEEDED, finished_at=job.created_at + timedelta(seconds=21),
                          timings=[{"step": "verify", "seconds": 3}, {"step": "total", "seconds": 3}])
            target = rto_target(self.spec, job.action, job.params)
            assert target is not None
            job = replace(job, stats={"rto": measure(job, target).document()})
            if job.action == "failover":
                self.dns, self.roles["eu-central-1"] = {"eu-central-1": 100}, "write_primary"
            else:
                self.dns, self.roles["eu-central-1"] = {"eu-west-1": 100}, "read_replica"
            self.jobs_[job_id] = job
        return job

    def job_events(self, job_id: str, *, after_seq: int = 0, wait_s: float = 0.0) -> list[Any]:
        time.sleep(0.02)  # a long poll that found nothing
        return []


async def colon(pilot: Any, app: OpsConsoleApp, line: str) -> None:
    from textual.widgets import Input  # noqa: PLC0415

    await pilot.press("colon")
    await until(pilot, lambda: isinstance(app.screen, CommandLine))
    app.screen.query_one(Input).value = line
    await pilot.press("enter")


async def test_a_drill_asks_then_follows_its_steps_clock_verdict_and_report(
    monkeypatch: pytest.MonkeyPatch, _isolated_home: Path
) -> None:
    ops = ScriptedOps(load_inventory())
    monkeypatch.setattr(drill_screen, "DrillScreen", partial(DrillScreen, ops=ops, poll_s=0.0,
                                                             verify_deadline_s=5.0))
    monkeypatch.setattr(drill_screen, "WAIT_S", 0.0)
    app = sim_app(acting_as="alice")
    async with app.run_test(size=(140, 44)) as pilot:
        await refreshed(pilot, app)
        await colon(pilot, app, "drill failover eu-west-1 eu-central-1")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "DR DRILL" in str(app.screen.question) and not ops.requests_  # nothing filed before yes
        await pilot.click("#confirm")
        await until(pilot, lambda: isinstance(app.screen, DrillScreen))
        screen = app.screen
        assert isinstance(screen, DrillScreen)
        clocks: list[str] = []

        def running() -> bool:
            clocks.append(str(screen.query_one("#drill-clock").render()))
            return clocks[-1].startswith("failover running: RTO 0:0")

        await until(pilot, running, timeout=60)  # the running clock, on the screen
        assert "/ 15:00 (critical tier)" in clocks[-1], clocks[-1]
        ops.release.set()

        def seen() -> bool:
            clocks.append(screen.clock_text())
            return screen.report is not None or screen.error is not None

        await until(pilot, seen, timeout=60)
        assert screen.error is None, screen.error
        report = screen.report
        assert report is not None and report.verdict == "met" and report.passed, report.problems
        # the steps as the drill said them, the approvers named
        assert any("waits for 2 approval(s) from bob, carol" in line for line in screen.lines)
        # the clock ends on the move's recorded verdict
        assert "succeeded: RTO 0:21 / 15:00: met, 14:39 to spare (critical tier)" in clocks[-1], clocks[-1]
        verdict = str(screen.query_one("#drill-verdict").render())
        assert "drill passed: RTO verdict met" in verdict and str(report.paths["md"]) in verdict
        assert Path(report.paths["md"]).is_file()
        assert Path(report.paths["md"]).parent == _isolated_home / "drills"


async def test_a_bad_drill_command_is_refused_and_opens_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    app = sim_app(acting_as="alice")
    async with app.run_test(size=(140, 44)) as pilot:
        await refreshed(pilot, app)
        for line, said in (("drill failover eu-west-1", "expected :drill failover FROM TO"),
                           ("drill failover eu-west-1 eu-west-9", "eu-west-9: unknown region"),
                           ("drill failover eu-west-1 eu-west-1", "cannot fail over to itself")):
            await colon(pilot, app, line)
            await until(pilot, lambda s=said: notified(app, s))
            assert not isinstance(app.screen, ConfirmScreen | DrillScreen)


async def test_the_palette_runs_a_typed_drill_after_asking(monkeypatch: pytest.MonkeyPatch) -> None:
    ops = ScriptedOps(load_inventory())
    monkeypatch.setattr(drill_screen, "DrillScreen", partial(DrillScreen, ops=ops, poll_s=0.0,
                                                             verify_deadline_s=5.0))
    app = sim_app(acting_as="alice")
    async with app.run_test(size=(140, 44)) as pilot:
        await refreshed(pilot, app)
        await pilot.press("ctrl+p")
        await pilot.pause(0.3)
        await pilot.press(*"drill failover eu-west-1 eu-central-1")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.click("#cancel")  # Cancel: nothing filed, no drill screen
        await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
        assert not isinstance(app.screen, DrillScreen) and not ops.requests_
