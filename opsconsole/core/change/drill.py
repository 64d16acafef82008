"""A DR drill: fail a region over, verify, fail it back, and write down what it took against the targets.

``opsconsole drill failover --from R --to R2`` (and any face or server that holds an
:class:`~opsconsole.core.api.OpsApi`) calls :func:`run_drill`. Every change goes through the normal
approval pipeline, exactly as ``opsconsole act failover`` / ``act failback`` would:

1. **before** — the fleet's findings and the two regions' state (DNS weights, database roles, replica lag);
2. **failover** — the request is filed; when it needs approval the drill *waits* for it, saying who may
   approve and the exact command (a drill is a planned exercise: the approvers are on hand, and a drill
   that quits at the first approval would have to be stitched back together by hand). The wait ends
   with the request's expiry; a rejection, expiry or cancellation ends the drill (``aborted``, nothing
   ran). ``--break-glass`` (admins) runs at once, audited as every break glass;
3. **verify** — until the server's view shows ``dns/R = {R2: 100}`` and, where R wrote, R2's database a
   write primary (``VERIFY_DEADLINE_S``); the findings after the failover;
4. **failback** — filed and approved the same way, followed, verified (``dns/R = {R: 100}``); the write
   primaries left in the fleet are stated (failback.yml demotes R2 again; two in a zone is flagged);
5. **report** — ``$OPSCONSOLE_HOME/drills/<UTC timestamp>-<R>-<R2>.md`` and ``.json``: each step's
   timing, the RTO (the failover job's verdict, recorded on the job and in the audit by the pipeline,
   see :mod:`opsconsole.core.change.rto`) and the RPO (R2's replica lag in the last view before the
   promotion) against their targets, the findings before and after, the jobs and requests.

``verdict`` is the RTO verdict (``met`` / ``missed``; ``aborted`` when the failover never ran, ``None`` for a
dry run); ``passed`` is the whole drill (RTO and RPO met, every step — failover, its verification,
failback, its verification — ok). What is wrong but not the drill's measure (two write primaries left
after the failback) is listed under ``problems``.
``--dry-run`` previews the failover (check mode) and reports only the preview.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from opsconsole.core.change.rto import clock, rto_target, verdict_of
from opsconsole.core.errors import OpsError, UsageError
from opsconsole.core.paths import opsconsole_home, private_dir

if TYPE_CHECKING:
    from opsconsole.core.change.records import ChangeRequest
    from opsconsole.core.runs.records import Job


class DrillOps(Protocol):
    """What a drill needs of the ops server: the part of :class:`opsconsole.core.api.OpsApi` it calls
    (the client and the server's service both are one; the change layer does not import the API's)."""

    def assess(self, action: str, params: Mapping[str, Any]) -> Any: ...
    def fleet(self) -> Any: ...
    def status(self, region: str | None = None) -> dict[str, Any]: ...
    def findings(self, region: str | None = None) -> dict[str, Any]: ...
    def preview(self, action: str, params: Mapping[str, Any]) -> Job: ...
    def submit(
        self, action: str, params: Mapping[str, Any], *, break_glass_reason: str | None = None
    ) -> Any: ...
    def request(self, request_id: str) -> Any: ...
    def run_request(self, request_id: str) -> Job: ...
    def job(self, job_id: str) -> Job: ...
    def job_events(self, job_id: str, *, after_seq: int = 0, wait_s: float = 0.0) -> list[Any]: ...

SCHEMA = "opsconsole.drill/v1"
#: How long the server's view may take to show a verified move before the drill calls it unverified.
VERIFY_DEADLINE_S = 120.0
#: How often the drill looks at a request waiting for approval, and at the view while verifying.
POLL_S = 2.0
#: How long a request may stay approved without a run (its last vote's run being prepared) before the
#: drill runs it itself.
APPROVED_RUN_GRACE_S = 60.0
#: How long a finished run's outcome may take to be recorded on its request.
SETTLE_S = 30.0


class DrillAborted(OpsError):
    """The drill stopped before a move ran (a request rejected, expired or cancelled)."""

    title = "drill aborted"


@dataclass
class DrillStep:
    """One step of the drill, timed on this machine's clock."""

    name: str
    started_at: datetime
    seconds: float = 0.0
    ok: bool = True
    detail: str = ""
    request_id: str | None = None
    job_id: str | None = None

    def document(self) -> dict[str, Any]:
        return {"name": self.name, "started_at": _iso(self.started_at), "seconds": round(self.seconds, 3),
                "ok": self.ok, "detail": self.detail, "request_id": self.request_id, "job_id": self.job_id}


@dataclass
class DrillReport:
    """What a drill found out: :meth:`document` is the JSON report, :func:`render_markdown` the other."""

    from_region: str
    to_region: str
    started_at: datetime
    dry_run: bool = False
    steps: list[DrillStep] = field(default_factory=list)
    rto: dict[str, Any] | None = None
    rto_target_s: float | None = None
    rto_tier: str | None = None
    rpo: dict[str, Any] | None = None
    #: Per phase (before, after_failover, after_failback): findings and the two regions' state.
    observed: dict[str, dict[str, Any]] = field(default_factory=dict)
    jobs: dict[str, Any] = field(default_factory=dict)
    requests: dict[str, str] = field(default_factory=dict)
    write_primaries_after: list[str] | None = None
    verdict: str | None = None
    passed: bool = False
    problems: list[str] = field(default_factory=list)
    finished_at: datetime | None = None
    paths: dict[str, str] = field(default_factory=dict)

    @property
    def rto_s(self) -> float | None:
        return float(self.rto["rto_s"]) if self.rto else None

    def document(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "drill": "failover",
            "from_region": self.from_region,
            "to_region": self.to_region,
            "dry_run": self.dry_run,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at) if self.finished_at else None,
            "verdict": self.verdict,
            "passed": self.passed,
            "rto_s": self.rto_s,
            "rto_target_s": self.rto_target_s,
            "rto_tier": self.rto_tier,
            "rto": self.rto,
            "rpo": self.rpo,
            "steps": [s.document() for s in self.steps],
            "jobs": self.jobs,
            "requests": self.requests,
            "write_primaries_after_failback": self.write_primaries_after,
            "observed": self.observed,
            "problems": self.problems,
            "report": self.paths.get("md"),
        }


def rpo_measure(lag_s: float | None, target_s: float | None) -> dict[str, Any]:
    """The RPO a promotion risked: the promoted replica's lag when it was promoted, against the target."""
    verdict = None
    if lag_s is not None and target_s is not None:
        verdict = "met" if lag_s <= target_s else "missed"
    return {"replica_lag_s": lag_s, "target_s": target_s, "verdict": verdict}


def drill_passed(report: DrillReport) -> bool:
    """The whole drill: the RTO met, the RPO met (or nothing promoted), every step ok."""
    rpo_ok = report.rpo is None or report.rpo.get("verdict") in (None, "met")
    return report.verdict == "met" and rpo_ok and all(s.ok for s in report.steps)


# -- the drill -------------------------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _region_state(status: Mapping[str, Any], *regions: str) -> dict[str, Any]:
    by_id = {str(r.get("id")): r for r in status.get("regions", [])}
    keys = ("dns_weights", "db_role", "replica_lag_s", "health", "rps", "error_rate", "findings")
    return {region: {k: by_id.get(region, {}).get(k) for k in keys} for region in regions}


def _findings(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {k: f.get(k) for k in ("severity", "region", "kind", "object", "title")}
        for f in document.get("findings", [])
    ]


def write_primaries(status: Mapping[str, Any]) -> list[str]:
    """The regions whose database is a write primary, as the server sees them."""
    return sorted(str(r.get("id")) for r in status.get("regions", []) if r.get("db_role") == "write_primary")


class _Drill:
    def __init__(self, ops: DrillOps, report: DrillReport, *, break_glass: str | None,
                 say: Callable[[str], None], follow: Callable[[Job], Job], verify_deadline_s: float,
                 poll_s: float) -> None:
        self.ops = ops
        self.report = report
        self.break_glass = break_glass
        self.say = say
        self.follow = follow
        self.verify_deadline_s = verify_deadline_s
        self.poll_s = poll_s

    def observe(self, phase: str) -> dict[str, Any]:
        status = self.ops.status()
        seen = {
            "at": _iso(datetime.now(UTC)),
            "regions": _region_state(status, self.report.from_region, self.report.to_region),
            "findings": _findings(self.ops.findings()),
            "write_primaries": write_primaries(status),
            "rpo_target_s": (status.get("totals") or {}).get("rpo_target_s"),
        }
        self.report.observed[phase] = seen
        return seen

    def step(self, name: str) -> DrillStep:
        step = DrillStep(name=name, started_at=datetime.now(UTC))
        self.report.steps.append(step)
        return step

    def move(self, name: str, action: str, params: Mapping[str, Any]) -> Job:
        """File ``action``, wait for its approval if needed, follow its run, wait for its outcome."""
        step = self.step(name)
        t0 = time.monotonic()
        filed = self.ops.submit(action, params, break_glass_reason=self.break_glass)
        request = filed.request
        step.request_id = request.id
        self.report.requests[name] = request.id
        job = filed.job
        if job is None:
            job = self.await_approval(request, filed.may_still_vote)
        step.job_id = job.id
        job = self.follow(job)
        request = self.settle(request.id)
        job = self.ops.job(job.id)  # as recorded, with the RTO verdict on it
        step.seconds = time.monotonic() - t0
        step.ok = job.status.value == "succeeded"
        step.detail = f"job {job.status.value}" + (f": {job.error}" if job.error else "")
        self.report.jobs[name] = {
            "id": job.id, "request_id": request.id, "status": job.status.value,
            "duration_s": job.duration_s, "timings": [dict(t) for t in job.timings],
            "rto": dict((job.stats or {}).get("rto") or {}) or None,
        }
        return job

    def await_approval(self, request: ChangeRequest, eligible: Sequence[str]) -> Job:
        who = ", ".join(eligible) or "no one eligible yet"
        self.say(f"request {request.short_id} ({request.action}) waits for {request.approvals_missing} "
                 f"approval(s) from {who}; approve it with: opsconsole approvals approve {request.short_id} "
                 f"(it expires {_iso(request.expires_at)}; Ctrl-C stops waiting and leaves it open)")
        drift_told: Any = None
        approved_since: float | None = None
        while True:
            current = self.ops.request(request.id).request
            drift = getattr(current, "drift", None)
            if drift and current.status.value == "requested" and drift != drift_told:
                drift_told = drift
                lines = "; ".join(str(line) for line in (drift.get("lines") or ()))
                self.say(f"request {current.short_id} ({current.action}) changed since it was approved "
                         f"({lines or 'its plan differs'}); nothing ran and its votes start over: it "
                         f"needs {current.approvals_missing} approval(s) again")
            if current.job_id:
                return self.ops.job(current.job_id)
            status = current.status.value
            if status == "approved":
                # The last vote usually runs the request itself: the request is "approved" without a
                # job while that run is planned again on a fresh read and its leases are taken (seconds
                # on a loaded machine). Only a request still without a run after the grace was approved
                # by a face that does not run it: the drill runs it then.
                approved_since = approved_since if approved_since is not None else time.monotonic()
                if time.monotonic() - approved_since >= APPROVED_RUN_GRACE_S:
                    return self._run_approved(current)
            else:
                approved_since = None
            if status in ("rejected", "expired", "cancelled"):
                raise DrillAborted(f"request {current.short_id} ({current.action}) was {status}"
                                   + (f": {current.reason}" if current.reason else "") + "; nothing ran")
            time.sleep(self.poll_s)

    def _run_approved(self, request: ChangeRequest) -> Job:
        """Run an approved request that has no run; if a run of it started meanwhile, follow that one."""
        try:
            return self.ops.run_request(request.id)
        except OpsError:
            started = self.ops.request(request.id).request
            if started.job_id:
                return self.ops.job(started.job_id)
            raise

    def settle(self, request_id: str) -> ChangeRequest:
        deadline = time.monotonic() + SETTLE_S
        while True:
            request: ChangeRequest = self.ops.request(request_id).request
            if request.status.terminal or time.monotonic() > deadline:
                return request
            time.sleep(0.2)

    def verify(self, name: str, check: Callable[[Mapping[str, Any]], str | None]) -> bool:
        """Until ``check(status)`` says nothing is wrong (``None``) or the deadline passes."""
        step = self.step(name)
        t0 = time.monotonic()
        problem: str | None = "not checked"
        while True:
            problem = check(self.ops.status())
            if problem is None or time.monotonic() - t0 > self.verify_deadline_s:
                break
            time.sleep(self.poll_s)
        step.seconds = time.monotonic() - t0
        step.ok = problem is None
        step.detail = "verified" if problem is None else f"not verified after {step.seconds:.0f} s: {problem}"
        if problem is not None:
            self.report.problems.append(f"{name}: {problem}")
        return problem is None


def _weights_are(status: Mapping[str, Any], region: str, expected: dict[str, int]) -> str | None:
    weights = _region_state(status, region)[region]["dns_weights"]
    return None if weights == expected else f"dns/{region} holds {weights}, expected {expected}"


def run_drill(
    ops: DrillOps,
    *,
    from_region: str,
    to_region: str,
    break_glass: str | None = None,
    dry_run: bool = False,
    say: Callable[[str], None] = lambda _text: None,
    follow: Callable[[Job], Job] | None = None,
    home: Path | None = None,
    verify_deadline_s: float = VERIFY_DEADLINE_S,
    poll_s: float = POLL_S,
) -> DrillReport:
    """Run a failover drill ``from_region`` → ``to_region`` and back through ``ops``; write its report.

    ``say`` receives a line for a person at each step; ``follow`` follows a started job to its end (the
    CLI prints its task lines and the RTO clock; by default the job is long-polled silently).

    The report is written however the drill ends once it has started: a request rejected, expired or
    cancelled, or anything the server refuses mid-way (a run refused, the store away), ends it with
    verdict ``aborted`` (if the failover had not run yet), ``passed`` False and the reason under
    ``problems`` -- every face then shows the same summary and report.

    Raises:
        UsageError: the regions are the same (``ops.assess`` refuses other bad pairs first, naming why:
            nothing is filed and no report written).
    """
    if from_region == to_region:
        raise UsageError(f"--from {from_region} --to {to_region}: a region cannot fail over to itself")
    params = {"from_region": from_region, "to_region": to_region}
    ops.assess("failover", params)  # a bad pair (residency, unknown region) is refused before anything
    report = DrillReport(from_region=from_region, to_region=to_region, started_at=datetime.now(UTC),
                         dry_run=dry_run)
    drill = _Drill(ops, report, break_glass=break_glass, say=say, follow=follow or (lambda j: _wait(ops, j)),
                   verify_deadline_s=verify_deadline_s, poll_s=poll_s)
    target = rto_target(ops.fleet().fleet, "failover", params)
    if target is not None:
        report.rto_target_s, report.rto_tier = target.target_s, target.tier
    say(f"{from_region} -> {to_region} and back: RTO target {clock(report.rto_target_s or 0)} "
        f"({report.rto_tier} tier)")
    before = drill.observe("before")
    try:
        if dry_run:
            step = drill.step("preview_failover")
            t0 = time.monotonic()
            job = drill.follow(ops.preview("failover", params))
            step.seconds, step.job_id = time.monotonic() - t0, job.id
            step.ok = job.status.value == "succeeded"
            step.detail = f"preview {job.status.value}"
            report.jobs["preview_failover"] = {"id": job.id, "status": job.status.value,
                                               "timings": [dict(t) for t in job.timings]}
        else:
            _failover_and_back(drill, params, before)
    except DrillAborted as aborted:
        report.verdict = report.verdict or "aborted"
        report.problems.append(aborted.message)
    except OpsError as refused:  # the server refused mid-way (a run refused, a store outage): reported
        report.verdict = report.verdict or "aborted"
        where = report.steps[-1].name if report.steps else "start"
        report.problems.append(f"stopped at {where}: {refused.title}: {refused.message}")
        if report.steps:
            report.steps[-1].ok = False
            report.steps[-1].detail = report.steps[-1].detail or f"{refused.title}: {refused.message}"
    finally:
        report.finished_at = datetime.now(UTC)
        report.passed = drill_passed(report) if not dry_run else all(s.ok for s in report.steps)
        write_report(report, home)
    return report


def _failover_and_back(drill: _Drill, params: Mapping[str, Any], before: Mapping[str, Any]) -> None:
    report, from_region, to_region = drill.report, drill.report.from_region, drill.report.to_region
    # RPO: what the promotion risks is the promoted replica's lag when it is promoted; the last view
    # before the failover runs is the nearest the server's view gets to that instant.
    promotes = before["regions"][from_region]["db_role"] == "write_primary" and \
        before["regions"][to_region]["db_role"] == "read_replica"
    lag = before["regions"][to_region]["replica_lag_s"]
    report.rpo = {**rpo_measure(float(lag) if lag is not None else None, before.get("rpo_target_s")),
                  "promoted": promotes, "region": to_region}
    drill.say(f"failover {from_region} -> {to_region}")
    job = drill.move("failover", "failover", params)
    verdict = verdict_of(job)
    if verdict is not None:
        report.rto = verdict.document()
        report.rto_target_s, report.rto_tier = verdict.target_s, verdict.tier
        report.verdict = verdict.verdict
        drill.say(verdict.sentence())
    else:
        report.verdict = "missed"
        report.problems.append(f"failover job {job.id[:12]} carries no RTO verdict ({job.status.value})")
    if job.status.value != "succeeded":
        report.problems.append(f"failover job {job.id[:12]} {job.status.value}: {job.error or 'see its log'}")
        return

    def failed_over(status: Mapping[str, Any]) -> str | None:
        problem = _weights_are(status, from_region, {to_region: 100})
        role = _region_state(status, to_region)[to_region]["db_role"]
        if problem is None and promotes and role != "write_primary":
            problem = f"{to_region}'s database is a {role}, expected a write primary"
        return problem

    drill.verify("verify_failover", failed_over)
    drill.observe("after_failover")
    drill.say(f"failback {from_region}")
    back = drill.move("failback", "failback", {"region": from_region})
    if back.status.value != "succeeded":
        report.problems.append(
            f"failback job {back.id[:12]} {back.status.value}: {back.error or 'see its log'}")
        return
    drill.verify("verify_failback", lambda status: _weights_are(status, from_region, {from_region: 100}))
    after = drill.observe("after_failback")
    report.write_primaries_after = list(after["write_primaries"])
    both = [r for r in (from_region, to_region) if r in after["write_primaries"]]
    if len(both) > 1:
        report.problems.append(f"after the failback {' and '.join(both)} are both write primaries "
                               f"(the promoted replica was not demoted)")


def _wait(ops: DrillOps, job: Job) -> Job:
    """Follow ``job`` silently to its end (long-polling its events)."""
    seq = 0
    while True:
        for event in ops.job_events(job.id, after_seq=seq, wait_s=10.0):
            seq = max(seq, event.seq)
        job = ops.job(job.id)
        if job.status.terminal:
            return job


# -- the report ---------------------------------------------------------------------------------------


def report_paths(report: DrillReport, home: Path | None = None) -> tuple[Path, Path]:
    """``<home>/drills/<UTC timestamp>-<from>-<to>.md`` and ``.json``."""
    folder = private_dir((home or opsconsole_home()) / "drills")
    stem = f"{report.started_at.astimezone(UTC):%Y%m%dT%H%M%SZ}-{report.from_region}-{report.to_region}"
    if report.dry_run:
        stem += "-dry-run"
    return folder / f"{stem}.md", folder / f"{stem}.json"


def write_report(report: DrillReport, home: Path | None = None) -> tuple[Path, Path]:
    md, js = report_paths(report, home)
    report.paths = {"md": str(md), "json": str(js)}
    md.write_text(render_markdown(report))
    js.write_text(json.dumps(report.document(), indent=2, default=str) + "\n")
    return md, js


def _seconds(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.1f} s"


def render_markdown(report: DrillReport) -> str:
    """The report a person reads (the JSON next to it has the same facts)."""
    doc = report.document()
    verdict = report.verdict or ("dry run" if report.dry_run else "n/a")
    lines = [
        f"# DR drill: failover {report.from_region} -> {report.to_region}",
        "",
        f"- started {doc['started_at']}, finished {doc['finished_at']}"
        + (" (dry run)" if report.dry_run else ""),
        f"- **RTO verdict: {verdict}**" + (f" — {report.rto['text']}" if report.rto else ""),
        f"- drill {'passed' if report.passed else 'FAILED'}",
        "",
        "## Targets",
        "",
        "| measure | measured | target | verdict |",
        "| --- | --- | --- | --- |",
        f"| RTO ({report.rto_tier or 'n/a'} tier) | {_seconds(report.rto_s)} | "
        f"{_seconds(report.rto_target_s)} | {report.verdict or 'n/a'} |",
    ]
    if report.rpo is not None:
        lines.append(f"| RPO (replica lag of {report.rpo.get('region')} at the promotion) | "
                     f"{_seconds(report.rpo.get('replica_lag_s'))} | "
                     f"{_seconds(report.rpo.get('target_s'))} | "
                     f"{report.rpo.get('verdict') or 'n/a'}"
                     + ("" if report.rpo.get("promoted") else " (nothing promoted)") + " |")
    lines += ["", "RTO is measured from the failover run's start to the verified end of the DNS move and "
              "promotion (the playbook's `verify` step).", "", "## Steps", "",
              "| step | seconds | ok | request | job | detail |", "| --- | --- | --- | --- | --- | --- |"]
    for s in report.steps:
        lines.append(f"| {s.name} | {s.seconds:.1f} | {'yes' if s.ok else 'NO'} | "
                     f"{(s.request_id or '')[:12]} | "
                     f"{(s.job_id or '')[:12]} | {s.detail} |")
    for name, job in report.jobs.items():
        timings = job.get("timings") or []
        if timings:
            lines += ["", f"### {name} playbook steps (job {job['id']})", ""]
            lines += [f"- {t.get('step')}: {_seconds(t.get('seconds'))}" for t in timings]
    if report.write_primaries_after is not None:
        lines += ["", "## Write primaries after the failback", "",
                  ", ".join(report.write_primaries_after) or "none"]
    for phase, seen in report.observed.items():
        lines += ["", f"## {phase.replace('_', ' ')} ({seen.get('at')})", ""]
        for region, state in seen.get("regions", {}).items():
            lines.append(f"- {region}: dns {state.get('dns_weights')}, database {state.get('db_role')}, "
                         f"replica lag {_seconds(state.get('replica_lag_s'))}, health {state.get('health')}")
        findings = seen.get("findings", [])
        lines.append(f"- findings: {len(findings)}")
        lines += [f"  - [{f.get('severity')}] {f.get('region')}: {f.get('title')}" for f in findings]
    if report.problems:
        lines += ["", "## Problems", ""] + [f"- {p}" for p in report.problems]
    return "\n".join(lines) + "\n"
