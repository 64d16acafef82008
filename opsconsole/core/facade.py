"""``OpsCore``: the one facade every face (CLI, TUI, Slack bot, scheduler) calls.

A face never assembles the core's parts itself; it asks the facade for a :class:`FleetView` — the
snapshot, what changed since the last one, the findings and each region's health — and renders it;
it asks the facade to *plan* a change (the action catalogue validates and previews it), to *preview*
it (the run engine runs its playbook in check mode, which changes nothing), and to *submit* it to the
:attr:`OpsCore.pipeline` — the only way a change runs: risk, approvals, leases, audit. Which sources feed
the core, and how playbooks reach the clouds, is decided once, outside the core, by
:mod:`opsconsole.wiring`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from opsconsole.core.change.actions import ActionPlan
from opsconsole.core.change.freeze import read_freeze
from opsconsole.core.change.pipeline import Executor, Pipeline
from opsconsole.core.change.preview import preview_document
from opsconsole.core.change.rbac import Directory
from opsconsole.core.change.risk import load_policy, with_emergency
from opsconsole.core.clock import Clock, SystemClock
from opsconsole.core.errors import ExecutionUnavailable, OpsError
from opsconsole.core.fleet.engine import FleetService, FleetSource, Snapshot, SourceStatus
from opsconsole.core.fleet.findings import evaluate, region_health
from opsconsole.core.fleet.model import Fleet
from opsconsole.core.fleet.view import FleetView
from opsconsole.core.runs.jobs import JobStore
from opsconsole.core.runs.records import Job
from opsconsole.core.runs.runner import Runner
from opsconsole.core.store.db import Database, StoreUnavailable

#: How many fresh reads an approved change gets while a source is late (past its deadline).
CHANGE_READ_ATTEMPTS = 3
#: How long such a read waits for the late source's answer before reading again.
LATE_READ_WAIT_S = 10.0


@dataclass(frozen=True)
class Connection:
    """How playbooks reach the fleet: the connection variables every playbook receives."""

    extravars: Mapping[str, Any] = field(default_factory=dict)


class OpsCore:
    """The ops core behind every face.

    Args:
        fleet: the validated inventory.
        sources: where the fleet's live state comes from.
        deadline_s: how long a refresh waits for any one source.
        clock: the time source for stamps (a fake one in tests).
        runner: the run engine; ``None`` for a core that only reads.
        connection: the connection variables for the playbooks.
        after_run: called after every run that was not a preview (the sandbox uses it to let the
            world take in what the playbook changed before the next refresh).
        database: the shared database of requests, leases and audit (default: the runner's, else
            ``OPSCONSOLE_DB_URL`` / the home's SQLite file), opened on first use of :attr:`pipeline`.
        sandbox: whether this core runs on the sandbox (the sandbox cast then applies).
        playbook_dir: where the playbooks are (default: the runner's).
        audit_key: the audit key (:func:`opsconsole.core.audit.log.load_or_create_key`): every audit
            entry then carries its MAC, and runs count only votes whose audited entries carry a valid
            one. ``None``: no MACs (a console without a server).
        audit_head_file: where the audit head is published after every append (``None``: nowhere).
        store_problem: why the store cannot be used (down, missing, replaced): the core then reads the
            fleet only, and everything that needs the store raises this (as a ``StoreUnavailable``).

    The database is claimed for this core's world (``sandbox`` or ``live``) when first used: a store of
    the other world is refused (:class:`~opsconsole.core.store.db.WrongWorld`).
    """

    def __init__(
        self,
        fleet: Fleet,
        sources: Sequence[FleetSource],
        *,
        deadline_s: float = 2.0,
        clock: Clock | None = None,
        runner: Runner | None = None,
        connection: Connection | None = None,
        after_run: Callable[[Job], None] | None = None,
        database: Database | None = None,
        sandbox: bool = True,
        playbook_dir: Path | None = None,
        audit_key: bytes | None = None,
        audit_head_file: Path | None = None,
        store_problem: StoreUnavailable | None = None,
    ) -> None:
        self.fleet = fleet
        #: Why this core has no store (it then only reads the fleet): every use of the store raises it.
        self.store_problem = store_problem
        self.clock: Clock = clock or SystemClock()
        self.sandbox = sandbox
        self._fleet_service = FleetService(sources, deadline_s=deadline_s, clock=clock)
        self._runner = runner
        self._connection = connection or Connection()
        self._after_run = after_run
        self._database = database
        self._playbook_dir = playbook_dir
        self.audit_key = audit_key
        self.audit_head_file = audit_head_file
        self._world_claimed = False
        self._pipeline: Pipeline | None = None
        self._directory: Directory | None = None

    @property
    def snapshot(self) -> Snapshot | None:
        """The latest snapshot, if any refresh happened."""
        return self._fleet_service.snapshot

    @property
    def fleet_sources(self) -> tuple[FleetSource, ...]:
        """The fleet's sources (the server asks the one that can for pods, logs and events)."""
        return self._fleet_service.sources

    def prepare_fleet(self) -> None:
        """Build the sources that are built on first need (a one-shot command's; see
        :mod:`opsconsole.core.fleet.deferred`): a no-op once built, and for sources built at once."""
        self._fleet_service.prepare()

    def on_fleet_change(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call ``callback(source_name)`` when a source that can tell says its data changed (a watch
        event); returns the unsubscribe function. The server's cache refreshes early on it."""
        return self._fleet_service.on_change(callback)

    @property
    def runner(self) -> Runner:
        if self._runner is None:
            raise ExecutionUnavailable("this console was started read-only: it cannot run playbooks")
        return self._runner

    @property
    def jobs(self) -> JobStore:
        return self.runner.store

    @property
    def directory(self) -> Directory:
        """Who is who (``inventory/rbac.yml``), with the sandbox cast when on the sandbox."""
        if self._directory is None:
            self._directory = Directory.load(self.fleet.source, sandbox=self.sandbox, fleet=self.fleet)
        return self._directory

    @property
    def database(self) -> Database:
        if self.store_problem is not None:
            raise StoreUnavailable(self.store_problem.message, title=self.store_problem.title)
        if self._database is None:
            self._database = self._runner.store.database if self._runner is not None else Database()
        if not self._world_claimed:
            self._database.claim_world(self.world)
            self._world_claimed = True
        return self._database

    @property
    def world(self) -> str:
        """``sandbox`` or ``live``."""
        return "sandbox" if self.sandbox else "live"

    @property
    def pipeline(self) -> Pipeline:
        """The change pipeline: the only way a change runs (see :mod:`opsconsole.core.change.pipeline`)."""
        if self._pipeline is None:
            executor = None
            if self._runner is not None:
                runner = self._runner
                executor = Executor(
                    start=lambda plan, check, actor, face: self._start(
                        plan, check=check, actor=actor, face=face
                    ),
                    wait=runner.wait, cancel=runner.cancel, after_run=self._after_run,
                    get=runner.store.get,
                )
            self._pipeline = Pipeline(
                fleet=self.fleet, database=self.database, directory=self.directory,
                # The emergency freeze lives in the store: every core on it (the server's, the bot's, a
                # CLI's on the sandbox) honours it, not only the server that switched it.
                policy=with_emergency(load_policy(self.fleet.source, self.fleet),
                                      lambda: read_freeze(self.database)),
                snapshot=self._snapshot_for_change,
                executor=executor, playbook_dir=self._playbook_dir or self._default_playbook_dir(),
                clock=self.clock, bus=self._runner.bus if self._runner is not None else None,
                audit_key=self.audit_key, audit_head_file=self.audit_head_file,
            )
            if self._runner is not None:
                store = self._runner.store
                self._pipeline.reconcile(lambda job_id: (job.status if (job := store.get(job_id)) else None))
        return self._pipeline

    def _default_playbook_dir(self) -> Path:
        if self._runner is not None:
            return self._runner.project_dir / "playbooks"
        return self.fleet.source.parent / "playbooks"

    def preview(self, plan: ActionPlan, *, actor: str, face: str, wait: bool = True) -> Job:
        """Run ``plan``'s playbook in check mode with diffs: what it would change, changing nothing."""
        job = self._start(plan, check=True, actor=actor, face=face)
        return self.runner.wait(job.id) if wait else job

    def preview_document(self, job: Job) -> dict[str, Any]:
        """A finished preview job as the document faces show and requests keep (see core/preview.py)."""
        return preview_document(job, self.jobs.events(job.id))

    def execute(
        self, plan: ActionPlan, *, check: bool, actor: str, face: str, wait: bool = True
    ) -> Job:
        """A check-mode preview (``check=True``). A change is never run from here: submit it to the
        :attr:`pipeline`, which checks the risk, the approvals and the leases first.

        Raises:
            OpsError: ``check`` is False.
        """
        if not check:
            raise OpsError("changes run only through the approval pipeline (OpsCore.pipeline.submit)",
                           title="bypass refused")
        return self.preview(plan, actor=actor, face=face, wait=wait)

    def _start(self, plan: ActionPlan, *, check: bool, actor: str, face: str) -> Job:
        extravars = {**self._connection.extravars, **plan.extravars}
        return self.runner.start(
            plan.action.value, plan.playbook, extravars, check=check, diff=True, actor=actor, face=face,
            idle_timeout_s=plan.idle_timeout_s, job_timeout_s=plan.job_timeout_s,
        )

    def refresh(self) -> FleetView:
        """Read every source (concurrently, within the deadline) and judge the result."""
        snapshot, changes = self._fleet_service.refresh()
        findings = tuple(evaluate(self.fleet, snapshot))
        return FleetView(
            fleet=self.fleet,
            snapshot=snapshot,
            changes=changes,
            findings=findings,
            health=region_health(self.fleet, snapshot, findings),
        )

    def _snapshot_for_change(self) -> Snapshot:
        """What an approved change is planned again on before it runs: a fresh read, read again (up to
        :data:`CHANGE_READ_ATTEMPTS` in all) while a source is missing from it. On a loaded machine one
        source past its deadline would otherwise refuse a sound change ("no figures") or send it back to
        its approvers as drifted (an observation it was approved on is missing)."""
        snapshot = self.refresh().snapshot
        for _ in range(CHANGE_READ_ATTEMPTS - 1):
            late = [s for s in snapshot.sources if s.status is not SourceStatus.OK and s.duration_s is None]
            if not late or not self._fleet_service.await_late_reads(LATE_READ_WAIT_S):
                break  # a source that answered with a failure is not asked again: that is its answer
            snapshot = self.refresh().snapshot
        return snapshot

    def close(self) -> None:
        if self._pipeline is not None:
            self._pipeline.join(timeout=0)
        self._fleet_service.close()
        if self._runner is not None:
            self._runner.close()
        elif self._database is not None:
            self._database.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
