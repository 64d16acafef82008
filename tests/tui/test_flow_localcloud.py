"""The "Done when" flow on the local cloud, keyboard first, through the embedded ops server (as
``opsconsole`` opens it): find a region, drill down, scale a workload with a check-mode preview (a real
run of scale.yml in check mode, its log followed through the server's stream), file it, approve it as
a second person (``as bob``: another client of the same server), watch the job stream to its end, and
see the new replica count in the table."""

from __future__ import annotations

import pytest

from opsconsole.core.change.approvals import RequestStatus
from opsconsole.core.fleet.model import WorkloadState
from opsconsole.core.runs.records import JobStatus
from opsconsole.tui.screens.change import ActionScreen, ApprovalsScreen, JobsScreen
from opsconsole.tui.screens.dialogs import ConfirmScreen
from opsconsole.tui.screens.fleet import RegionScreen
from opsconsole.tui.widgets.table import FleetTable

from .helpers import embedded_app, refreshed, screen_text, until

pytestmark = pytest.mark.slow
KEY = "workload/eks-euw1-prod/checkout"


async def test_scale_with_preview_approved_by_someone_else_runs_and_shows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPSCONSOLE_SANDBOX_READER", "cloud")
    app = embedded_app(acting_as="alice")
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, app, timeout=90)
        await pilot.press("right", "right", "right", "right", "enter")  # eu-west-1
        await until(pilot, lambda: isinstance(app.screen, RegionScreen))
        region = app.screen
        table = region.query_one("#workloads", FleetTable)
        await until(pilot, lambda: table.row_count > 0)
        await pilot.press("slash", *"checkout", "enter")
        while table.selected_key != KEY:
            await pilot.press("down")
        assert app.view is not None
        before = app.view.snapshot.get(KEY)
        assert isinstance(before, WorkloadState)
        target = max(before.hpa_min, before.desired * 6 // 10)  # a max below the load: one approval

        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, ActionScreen))
        form = app.screen
        assert isinstance(form, ActionScreen)
        # The HPA max, not the replicas: the world's HPA, like a real one, scales a deployment cut below its
        # load straight back up (within a sync, 0.5 s: the console could miss the new count, and did on a
        # loaded machine); capped below the load, the count holds at the new max.
        form.query_one("#f-replicas").value = ""  # type: ignore[attr-defined]  # pre-filled with the current
        form.query_one("#f-hpa_max").value = str(target)  # type: ignore[attr-defined]
        # One approval, or two when the region's live state raises the risk (the world follows the wall
        # clock's time of day, so either may happen).
        await until(pilot, lambda: form.assessment is not None and form.assessment.risk.approvals_needed >= 1)
        assert form.assessment is not None
        approvers = ["bob", "carol"][: form.assessment.risk.approvals_needed]
        await pilot.press("ctrl+t")  # check mode: a real run of scale.yml that changes nothing
        await until(pilot, lambda: form.preview_status is JobStatus.SUCCEEDED, timeout=120)
        assert "changed" in screen_text(app)

        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("tab", "enter")  # off the default Cancel, onto Submit
        await until(pilot, lambda: isinstance(app.screen, ApprovalsScreen), timeout=30)
        request = form.submission.request if form.submission else None
        assert request is not None and request.status is RequestStatus.REQUESTED

        for approver in approvers:  # the sandbox cast: other people, approvers
            app.act_as(approver)
            await until(pilot, lambda: app.who is not None and app.who.person == approver)  # noqa: B023
            await refreshed(pilot, app, timeout=60)
            await pilot.press("a")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("tab", "enter")
            if approver != approvers[-1]:
                await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
        await until(pilot, lambda: isinstance(app.screen, JobsScreen), timeout=60)
        jobs = app.screen
        assert isinstance(jobs, JobsScreen)

        async def finished() -> bool:
            await refreshed(pilot, app, timeout=60)
            job = next((j for j in app.jobs if j.id == jobs.log_job), None)
            return job is not None and job.status.terminal

        for _ in range(120):
            if await finished():
                break
            await pilot.pause(1)
        job = next(j for j in app.jobs if j.id == jobs.log_job)
        assert job.status is JobStatus.SUCCEEDED, job.error
        assert "Set the HPA bounds" in screen_text(app)  # the live log streamed the tasks

        await pilot.press("escape", "escape")  # back to the region
        await until(pilot, lambda: isinstance(app.screen, RegionScreen))
        for _ in range(60):  # the server's cache takes the change in on its next refresh
            await refreshed(pilot, app, timeout=60)
            if table.cell_text(KEY, "ready").endswith(f"/{target}"):
                break
            await pilot.pause(0.5)
        assert table.cell_text(KEY, "ready").endswith(f"/{target}")
