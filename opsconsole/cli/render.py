"""How the CLI shows the core's records: the styles (one place) and the renderers every command shares.

Why it exists: the commands receive the same records from any ops server (a
:class:`~opsconsole.core.fleet.view.FleetView`, change requests, jobs and their events, audit entries,
schedule statuses) and must print them the same way whatever command asked: the status screen, the
findings table, a job's task lines and outcome, a request's line and its JSON document. The JSON
documents here are the CLI's documented output (``--json``); their keys do not change.

Styles are keyed by the records' string values (``"degraded"``, ``"succeeded"``…), so this module needs
no enum and stays cheap to import. (The TUI keeps its own copy in ``opsconsole/tui/data.py``.)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from opsconsole.core.change.rto import verdict_of
from opsconsole.core.errors import OpsError

if TYPE_CHECKING:
    from opsconsole.core.audit.records import AuditEntry, AuditVerification, StoreVerification
    from opsconsole.core.change.records import ChangeRequest
    from opsconsole.core.change.risk import RiskAssessment
    from opsconsole.core.runs.events import JobEvent
    from opsconsole.core.runs.records import Job

# -- styles: one home for both faces (opsconsole/styles.py) ------------------------------------------------

from opsconsole.styles import (
    CLOUD_ABBREVIATION,
    EVENT_STYLE,
    HEALTH_STYLE,
    JOB_STATUS_STYLE,
    REQUEST_STATUS_STYLE,
    RISK_STYLE,
    SEVERITY_STYLE,
    SOURCE_STATUS_STYLE,
    style,
)

# -- small formats ----------------------------------------------------------------------------------------


def fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def availability(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.3f}%"


def measure(value: float | str) -> str:
    return f"{value:,.4g}" if isinstance(value, float) else str(value)


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def print_json(document: Any, *, ensure_ascii: bool = True) -> None:
    """A JSON document on stdout, plain (never through rich: scripts parse it)."""
    print(json.dumps(document, indent=2, ensure_ascii=ensure_ascii))


# -- the fleet --------------------------------------------------------------------------------------------


def status_view(document: Mapping[str, Any]) -> Group:
    """The status screen (from the ``opsconsole.fleet.status/v1`` document the server sends) as one
    renderable, printed once or redrawn by ``--watch``. Rendering the document, not the whole fleet view,
    keeps the thin client's work and what it downloads small."""
    lines: list[RenderableType] = []
    total = document["totals"]
    stamp = datetime.fromisoformat(document["taken_at"]).strftime("%Y-%m-%d %H:%M:%S UTC")
    partial = " [bold yellow](partial: some sources stale or failed)[/]" if document["partial"] else ""
    lines.append(f"[bold]Fleet status[/] at {stamp}{partial}")
    p95_target = total["api_p95_target_ms"]
    p95_style = "red" if (total["worst_p95_ms"] or 0) > p95_target else "green"
    lines.append(
        f"  traffic {total['rps']:,.0f} rps / {total['api_rps_target']:,.0f} target · "
        f"users {total['concurrent_users']:,} · "
        f"p95 [{p95_style}]{fmt(total['api_p95_ms'], '.0f')} ms[/] "
        f"(worst {fmt(total['worst_p95_ms'], '.0f')}) "
        f"/ {p95_target:.0f} ms · avg {fmt(total['global_avg_latency_ms'], '.0f')} ms "
        f"/ {fmt(total.get('global_avg_latency_target_ms'), '.0f')} ms"
    )
    lines.append(
        f"  availability {availability(total['availability'])} / {total['availability_target'] * 100:.2f}% · "
        f"error-budget burn {fmt(total['error_budget_burn'], '.1f', 'x')} · "
        f"worst replica lag {fmt(total['worst_replica_lag_s'], '.1f', ' s')} "
        f"/ RPO {total['rpo_target_s']:.0f} s · "
        f"DB {total['db_tps']:,.0f} tps"
    )
    regions = document["regions"]
    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    for column, justify in (
        ("region", "left"), ("tier", "right"), ("clouds", "left"), ("health", "left"), ("p95 ms", "right"),
        ("avail", "right"), ("rps", "right"), ("db", "left"), ("lag s", "right"), ("pods", "right"),
        ("nodes", "right"), ("cache", "right"), ("findings", "right"),
    ):
        # The region id is what a reader looks for: never cut or wrapped, whatever the width.
        table.add_column(column, justify=justify, no_wrap=column == "region",  # type: ignore[arg-type]
                         min_width=max((len(r["id"]) for r in regions), default=6)
                         if column == "region" else None)
    for summary in regions:
        clouds = "/".join(
            f"{CLOUD_ABBREVIATION.get(cloud, cloud)}{share * 100:.0f}"
            for cloud, share in summary["cloud_mix"].items()
        )
        p95 = Text(fmt(summary["p95_ms"], ".0f"))
        if summary["p95_ms"] is not None and summary["p95_ms"] > p95_target:
            p95.stylize("bold red")
        lag = Text(fmt(summary["replica_lag_s"], ".1f"))
        if summary["replica_lag_s"] is not None and summary["replica_lag_s"] > total["rpo_target_s"]:
            lag.stylize("bold red")
        findings = Text(str(summary["findings"]))
        if summary["worst_severity"] is not None:
            findings.stylize(style(SEVERITY_STYLE, summary["worst_severity"]))
        db_role = summary["db_role"]
        table.add_row(
            summary["id"],
            str(summary["tier"]),
            clouds,
            Text(summary["health"], style=style(HEALTH_STYLE, summary["health"])),
            p95,
            availability(summary["availability"]),
            fmt(summary["rps"], ",.0f"),
            "primary" if db_role == "write_primary" else ("replica" if db_role else "—"),
            lag,
            f"{summary['pods_ready']}/{summary['pods_desired']}" if summary.get("pods_known", True) else "?",
            f"{summary['nodes_ready']}/{summary['nodes']}" if summary.get("nodes_known", True) else "?",
            summary["cache_nodes"] or "—",
            findings,
        )
    lines.append(table)
    sources = " · ".join(
        f"{s['name']} [{style(SOURCE_STATUS_STYLE, s['status'], 'yellow')}]{s['status']}[/]"
        + (f" ({s['error']})" if s["error"] else "")
        + (f" age {s['age_s']:.1f} s" if s["age_s"] is not None else "")
        for s in document["sources"]
    )
    count = document["findings_count"]
    lines.append(f"  sources: {sources}")
    lines.append(f"  {count} finding{'' if count == 1 else 's'}; details: opsconsole fleet findings")
    return Group(*lines)


def status_problem(document: Mapping[str, Any]) -> OpsError | None:
    """Why a status document shows no fleet at all, as the error a command exits with (``None``: some
    region reports). A local cloud that froze, or clouds that all refuse, must not look like a quiet
    fleet: ``opsconsole fleet status`` prints what it has, then exits 1 with this line."""
    total = document.get("totals", {})
    if total.get("regions_reporting", 0) > 0:
        return None
    failing = [s for s in document.get("sources", ()) if s.get("status") != "ok"]
    named = "; ".join(f"{s['name']} {s['status']}" + (f" ({s['error']})" if s.get("error") else "")
                      for s in failing) or "no source answered"
    return OpsError(f"0 of {total.get('regions_total', '?')} regions reporting: {named}. Check the clouds "
                    f"(on the sandbox: is `opsconsole sandbox up` running and responsive?)",
                    title="fleet unreadable")


def findings_table(document: Mapping[str, Any]) -> Table | None:
    """What is off target, worst first (from the ``opsconsole.fleet.findings/v1`` document); None when
    every target is met."""
    findings = document["findings"]
    if not findings:
        return None
    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    for column in ("severity", "region", "finding", "measured", "target", "suggested action"):
        table.add_column(column)
    for finding in findings:
        action = finding["suggested_action"]
        table.add_row(
            Text(finding["severity"], style=style(SEVERITY_STYLE, finding["severity"])),
            finding["region"] or "fleet",
            finding["title"],
            measure(finding["measured"]),
            measure(finding["target"]),
            action["summary"] if action else "—",
        )
    return table


# -- changes: risk, requests -------------------------------------------------------------------------------


def print_risk(console: Console, assessment: RiskAssessment) -> None:
    level = assessment.level.value
    needs = "runs without approval"
    if assessment.approvals_needed:
        needs = (f"needs {assessment.approvals_needed} approval(s) from approvers of "
                 f"{assessment.approver_scope.describe()}")
    console.print(f"  risk: [{style(RISK_STYLE, level)}]{level}[/] ({assessment.rule}) — {needs}")
    for reason in assessment.reasons:
        console.print(f"    · {reason}")
    if assessment.freeze:
        console.print(f"  [bold red]change freeze[/]: {assessment.freeze}")


def request_summary(request: ChangeRequest) -> dict[str, Any]:
    return {
        "request_id": request.id, "status": request.status.value, "risk": request.risk,
        "needs": {"approvals": request.approvals_missing, "of": request.approvals_needed,
                  "approver_scope": _plain(request.approver_scope)},
        "expires_at": request.expires_at.isoformat(),
    }


def request_document(request: ChangeRequest, may_still_vote: Iterable[str]) -> dict[str, Any]:
    """The ``approvals … --json`` document of one request."""
    return {
        **request_summary(request),
        "action": request.action,
        "params": _plain(request.params),
        "targets": list(request.targets),
        "summary": list(request.summary),
        "risk_reasons": list(request.risk_reasons),
        "requester": request.requester,
        "face": request.face,
        "created_at": request.created_at.isoformat(),
        "approvers": list(request.approvers),
        "may_still_vote": list(may_still_vote),
        "votes": [
            {
                "person": v.person,
                "decision": v.decision.value,
                "role": v.role,
                "at": v.at.isoformat(),
                "reason": v.reason,
                "face": v.face,
                "current_plan": v.plan_hash == request.plan_hash,
            }
            for v in request.votes
        ],
        "plan_hash": request.plan_hash,
        "job_id": request.job_id,
        "break_glass": request.break_glass,
        "review_due_at": request.review_due_at.isoformat() if request.review_due_at else None,
        "reason": request.reason,
        "drift": _plain(request.drift) if request.drift else None,
    }


def request_line(request: ChangeRequest) -> str:
    params = " ".join(f"{k}={v}" for k, v in request.params.items())
    votes = f"{len(request.approvers)}/{request.approvals_needed}" if request.approvals_needed else "—"
    glass = " [bold red]BREAK-GLASS[/]" if request.break_glass else ""
    return (
        f"{request.short_id}  {request.created_at:%Y-%m-%d %H:%M}  "
        f"[{style(REQUEST_STATUS_STYLE, request.status)}]{request.status.value:<11}[/] "
        f"{request.risk:<6} {votes:>5}  {request.action} {params}  by {request.requester}{glass}"
    )


# -- jobs ----------------------------------------------------------------------------------------------------


def action_params(job: Job) -> dict[str, Any]:
    """The request's own parameters, without the connection variables every run gets."""
    return {k: _plain(v) for k, v in job.params.items() if not k.startswith("opsconsole_")}


def job_document(job: Job) -> dict[str, Any]:
    return {
        "id": job.id, "action": job.action, "params": action_params(job), "playbook": job.playbook,
        "check_mode": job.check_mode, "status": job.status.value, "actor": job.actor, "face": job.face,
        "created_at": job.created_at.isoformat(), "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at), "rc": job.rc, "last_task": job.last_task,
        "stats": _plain(job.stats), "timings": [_plain(t) for t in job.timings], "error": job.error,
        # a failover / failback's RTO verdict (also in stats.rto), null for any other run
        "rto": _plain((job.stats or {}).get("rto")),
    }


def job_line(job: Job) -> str:
    mode = " (preview)" if job.check_mode else ""
    params = " ".join(f"{k}={v}" for k, v in action_params(job).items())
    return (f"{job.id[:12]}  {job.created_at:%Y-%m-%d %H:%M:%S}  "
            f"[{style(JOB_STATUS_STYLE, job.status)}]{job.status.value:<11}[/] "
            f"{job.action}{mode} {params}  by {job.actor} ({job.face})")


def print_event(console: Console, event: JobEvent, *, show_skipped: bool = True) -> None:
    """One line per task result (``show_skipped=False``: the playbooks' other branches stay in
    ``jobs logs``)."""
    kind = event.kind.value
    if kind == "task_start" or (kind == "skipped" and not show_skipped):
        return
    if kind in ("ok", "changed", "failed", "skipped", "unreachable"):
        line = Text(f"  {kind:<8}", style=style(EVENT_STYLE, kind, "green"))
        line.append(f" {event.task or ''}")
        if kind in ("failed", "unreachable") and event.message:
            line.append(f": {event.message}", style="red")
        console.print(line)


def print_outcome(console: Console, errors: Console, job: Job) -> None:
    totals = job.stats.get("totals", {}) if job.stats else {}
    duration = f" in {job.duration_s:.1f} s" if job.duration_s is not None else ""
    console.print(
        f"[{style(JOB_STATUS_STYLE, job.status)}]{job.status.value}[/]{duration} — changed "
        f"{totals.get('changed', 0)}, failed {totals.get('failed', 0)} (job {job.id}; "
        f"opsconsole jobs logs {job.id})"
    )
    if job.error:
        errors.print(f"  {job.error}")
    for step in job.timings:
        console.print(f"  step {step.get('step')}: {float(step.get('seconds', 0)):.1f} s")
    verdict = verdict_of(job)
    if verdict is not None:
        console.print(f"  [{'green' if verdict.met else 'red'}]{verdict.sentence()}[/]")


# -- audit ---------------------------------------------------------------------------------------------------

#: How much of an entry's data fits on its line of the table (``--json`` has all of it).
AUDIT_DATA_WIDTH = 90


def utc(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def describe_entry(entry: AuditEntry) -> str:
    about = f" request {entry.request_id}" if entry.request_id else ""
    about += f" job {entry.job_id}" if entry.job_id else ""
    return f"#{entry.seq} {utc(entry.at)} UTC {entry.kind} by {entry.actor} ({entry.face}){about}"


def verification_document(result: AuditVerification | StoreVerification) -> dict[str, Any]:
    return {
        "ok": result.ok, "checked": result.checked, "head_seq": result.head_seq,
        "head_hash": result.head_hash,
        "first_bad_seq": result.first_bad_seq, "problem": result.problem or None,
        "entry": result.entry.document() if result.entry is not None else None,
        "discrepancies": list(getattr(result, "discrepancies", ())),
    }


def audit_table(entries: list[AuditEntry]) -> Table:
    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    for column, justify in (("seq", "right"), ("time (UTC)", "left"), ("kind", "left"), ("actor", "left"),
                            ("face", "left"), ("request", "left"), ("data", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for entry in entries:
        data = json.dumps(_plain(entry.data), ensure_ascii=False, separators=(",", ":"))
        if len(data) > AUDIT_DATA_WIDTH:
            data = data[: AUDIT_DATA_WIDTH - 1] + "…"
        table.add_row(str(entry.seq), utc(entry.at), escape(str(entry.kind)), escape(entry.actor),
                      escape(entry.face), entry.request_id or "—", escape(data))
    return table


def _plain(value: Any) -> Any:
    """Records' mappings and tuples as plain JSON-ready values (what came off the wire may be tuples,
    frozensets or read-only mappings)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, frozenset | set):
        return sorted((_plain(v) for v in value), key=repr)
    if isinstance(value, datetime):
        return value.isoformat()
    return getattr(value, "value", value) if not isinstance(value, str | int | float | bool) else value
