"""The RTO clock of a failover / failback and its verdict: one computation for every face.

A failover is held to the recovery time objective of the most critical service tier it affects: the
services deployed in the region whose users move (the environments of its clusters), their
:class:`~opsconsole.core.fleet.model.Criticality` giving the RTO (critical 15 min, important 1 h, standard
4 h, from ``inventory/group_vars/all.yml``'s catalogue). :func:`rto_target` picks it.

The RTO a run achieved is measured from the run's start (the job's ``started_at``, ansible's start
included) to the verified end of the DNS move / promotion: the end of the playbook's ``verify`` step in
its ``opsconsole_timings`` (set_stats; see ``playbooks/failover.yml``). :func:`measure` turns a finished
job into an :class:`RtoVerdict` (met / missed and by how much); a run that failed, or never verified,
missed it. The pipeline records the verdict on the job (``job.stats["rto"]``, see :func:`verdict_of`) and
in the run's ``run_finished`` audit entry; the CLI, the console's jobs screen and the Slack thread show
the live clock with :func:`clock_text` and the verdict with :meth:`RtoVerdict.sentence`.

Use::

    target = rto_target(fleet, "failover", {"from_region": "eu-west-1", "to_region": "eu-central-1"})
    clock_text(elapsed_s=151, target_s=target.target_s)   # "RTO 2:31 / 15:00"
    verdict = measure(job, target)                        # RtoVerdict(rto_s=21.4, verdict="met", ...)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from opsconsole.core.fleet.model import Criticality, Fleet
from opsconsole.core.runs.records import Job, JobStatus

#: The actions that run against an RTO clock.
RTO_ACTIONS = ("failover", "failback")
#: The playbook steps whose end is the verified end of the move (failover.yml / failback.yml).
END_STEPS = ("verify",)
#: The key of the verdict in a job's ``stats``.
STATS_KEY = "rto"


@dataclass(frozen=True)
class RtoTarget:
    """The RTO a move is held to: the most critical tier among the services the region runs."""

    region: str
    tier: str
    target_s: float
    #: The services of that tier the move affects.
    services: tuple[str, ...]

    def document(self) -> dict[str, Any]:
        return {"region": self.region, "tier": self.tier, "target_s": self.target_s,
                "services": list(self.services)}


def affected_region(action: str, params: Mapping[str, Any]) -> str | None:
    """The region whose users move: ``from_region`` of a failover, ``region`` of a failback."""
    if action == "failover":
        value = params.get("from_region")
    elif action == "failback":
        value = params.get("region")
    else:
        return None
    return str(value) if value else None


def rto_target(fleet: Fleet, action: str, params: Mapping[str, Any]) -> RtoTarget | None:
    """The RTO ``action`` is held to, or ``None`` (not a failover / failback, or an unknown region)."""
    region = affected_region(action, params)
    if region is None or region not in fleet.regions or not fleet.services:
        return None
    environments = {c.environment for c in fleet.clusters_in(region)}
    services = [s for s in fleet.services.values() if environments & set(s.environments)]
    services = services or list(fleet.services.values())
    tier = min((s.criticality for s in services), key=lambda c: c.rto_minutes)
    return RtoTarget(
        region=region,
        tier=tier.value,
        target_s=float(tier.rto_minutes * 60),
        services=tuple(sorted(s.name for s in services if s.criticality is tier)),
    )


def strictest_rto_s(fleet: Fleet) -> float | None:
    """The strictest RTO of the fleet's services (what a move in an unknown region is held to)."""
    return min((s.criticality.rto_minutes * 60.0 for s in fleet.services.values()), default=None)


def tier_targets() -> dict[str, float]:
    """Every tier's RTO in seconds (critical 900, important 3600, standard 14400)."""
    return {c.value: float(c.rto_minutes * 60) for c in Criticality}


def clock(seconds: float) -> str:
    """``m:ss`` (``h:mm:ss`` from an hour): how the RTO clock reads."""
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def clock_text(elapsed_s: float, target_s: float) -> str:
    """The live clock: ``RTO 2:31 / 15:00``."""
    return f"RTO {clock(elapsed_s)} / {clock(target_s)}"


def elapsed_s(job: Job, now: datetime) -> float | None:
    """Seconds since the run started (to its end once it ended), or ``None`` before it starts."""
    if job.started_at is None:
        return None
    end = job.finished_at or now
    return max(0.0, (end - job.started_at).total_seconds())


@dataclass(frozen=True)
class RtoVerdict:
    """What a move achieved against its RTO."""

    action: str
    region: str
    tier: str
    target_s: float
    #: From the run's start to the verified end of the move (to the run's end when it never got there).
    rto_s: float
    verdict: str  # "met" | "missed"
    #: ``target_s - rto_s``: time to spare (positive) or how much it was over (negative).
    margin_s: float
    #: Whether the move reached its verified end (a failed run did not).
    completed: bool
    #: The step whose end stopped the clock (``None``: the run's end).
    end_step: str | None = None

    @property
    def met(self) -> bool:
        return self.verdict == "met"

    def sentence(self) -> str:
        """``RTO 0:21 / 15:00: met, 14:39 to spare`` or ``…: missed by 2:03`` (``not completed`` said)."""
        text = clock_text(self.rto_s, self.target_s)
        if not self.completed:
            return f"{text}: missed (the {self.action} did not complete)"
        if self.met:
            return f"{text}: met, {clock(self.margin_s)} to spare ({self.tier} tier)"
        return f"{text}: missed by {clock(-self.margin_s)} ({self.tier} tier)"

    def document(self) -> dict[str, Any]:
        return {
            "action": self.action, "region": self.region, "tier": self.tier, "target_s": self.target_s,
            "rto_s": round(self.rto_s, 3), "verdict": self.verdict, "margin_s": round(self.margin_s, 3),
            "completed": self.completed, "end_step": self.end_step, "text": self.sentence(),
        }

    @classmethod
    def from_document(cls, data: Mapping[str, Any]) -> RtoVerdict:
        return cls(
            action=str(data.get("action", "")), region=str(data.get("region", "")),
            tier=str(data.get("tier", "")), target_s=float(data["target_s"]), rto_s=float(data["rto_s"]),
            verdict=str(data["verdict"]), margin_s=float(data.get("margin_s", 0.0)),
            completed=bool(data.get("completed", True)),
            end_step=str(data["end_step"]) if data.get("end_step") else None,
        )


def _seconds(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def measure(job: Job, target: RtoTarget) -> RtoVerdict:
    """The verdict of a finished ``job`` against ``target``.

    RTO = the job's duration less what the playbook did after its verify step (the timings' ``total``
    minus the steps through ``verify``): the run's start, ansible's start included, to the verified end of
    the move. Without a verify step (a run that failed before it), the clock runs to the run's end and
    the verdict is ``missed``.
    """
    duration = job.duration_s or 0.0
    through: float | None = None
    end_step: str | None = None
    steps_s = 0.0
    total: float | None = None
    for step in job.timings:
        name = str(step.get("step", ""))
        seconds = _seconds(step.get("seconds"))
        if name == "total":
            total = seconds
            continue
        steps_s += seconds
        if name in END_STEPS:
            through, end_step = steps_s, name
    completed = job.status is JobStatus.SUCCEEDED and through is not None
    if completed and through is not None:
        after_verify = max(0.0, (total - through)) if total is not None else 0.0
        rto_s = max(through, duration - after_verify) if duration else through
    else:
        rto_s, end_step = duration, None
    met = completed and rto_s <= target.target_s
    return RtoVerdict(
        action=job.action, region=target.region, tier=target.tier, target_s=target.target_s, rto_s=rto_s,
        verdict="met" if met else "missed", margin_s=target.target_s - rto_s, completed=completed,
        end_step=end_step,
    )


def verdict_of(job: Job) -> RtoVerdict | None:
    """The verdict recorded on ``job`` (``job.stats["rto"]``), if any."""
    data = (job.stats or {}).get(STATS_KEY)
    if not isinstance(data, Mapping) or "verdict" not in data:
        return None
    try:
        return RtoVerdict.from_document(data)
    except (KeyError, TypeError, ValueError):
        return None


def job_clock(job: Job, target_s: float | None, now: datetime) -> str | None:
    """What a face shows for ``job``: its verdict once recorded, else the live clock; ``None`` when the
    job is no move against an RTO (or a preview)."""
    if job.action not in RTO_ACTIONS or job.check_mode:
        return None
    verdict = verdict_of(job)
    if verdict is not None:
        return verdict.sentence()
    if target_s is None:
        return None
    elapsed = elapsed_s(job, now)
    if elapsed is None:
        return f"RTO clock not started / {clock(target_s)}"
    return clock_text(elapsed, target_s)


def record_verdict(database: Any, fleet: Fleet, job: Job) -> tuple[Job, RtoVerdict | None]:
    """Judge a finished run of a move against its RTO and record the verdict on the job
    (``stats["rto"]``); returns the job as recorded and the verdict (``None``: nothing to judge).

    ``database`` is the store's :class:`~opsconsole.core.store.db.Database` (the jobs' table).
    """
    if job.action not in RTO_ACTIONS or job.check_mode or not job.status.terminal:
        return job, None
    target = rto_target(fleet, job.action, job.params)
    if target is None:
        return job, None
    # the store (SQLAlchemy) only when recording: the CLI imports this module for the clock alone
    from opsconsole.core.runs.jobs import JobStore  # noqa: PLC0415

    verdict = measure(job, target)
    stats = {**dict(job.stats or {}), STATS_KEY: verdict.document()}
    JobStore(database).update_job(job.id, stats=stats)
    return replace(job, stats=stats), verdict
