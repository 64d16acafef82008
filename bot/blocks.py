"""Block Kit, built from plain data by pure functions.

Every message, modal and Home tab the bot shows is made here, from the core's records (region
summaries, totals, requests, jobs, audit entries, notices) and nothing else: no clock, no I/O, no Slack
client. The same input always gives the same JSON, which is what the snapshot tests under
``tests/bot/snapshots/`` pin. A builder returns a dict ready to splat into the Web API call
(``client.chat_postMessage(channel=…, **message)``): ``text`` (the notification and accessibility
fallback Slack asks for) and ``blocks``.

Action ids (what :mod:`bot.listeners.actions` listens to) and the modal's callback id are constants here,
so that the renderer and the listeners cannot disagree.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from opsconsole.core.audit.records import AuditEntry
from opsconsole.core.change.approvals import Decision, RequestStatus
from opsconsole.core.change.records import ChangeRequest
from opsconsole.core.fleet.report import RegionSummary, Totals
from opsconsole.core.runs.records import Job

Message = dict[str, Any]
Block = dict[str, Any]

APPROVE = "request_approve"
REJECT = "request_reject"
RUN = "request_run"
CANCEL = "job_cancel"
KEEP_AWAKE = "shutdown_keep_awake"
SKIP_TONIGHT = "shutdown_skip_tonight"
#: A finding notice's button: file its suggested action through the approval pipeline.
FILE_SUGGESTED = "finding_file_suggested"
REJECT_MODAL = "request_reject_modal"
REASON_BLOCK = "reason"
REASON_INPUT = "reason_input"

HEALTH_EMOJI = {
    "ok": ":large_green_circle:",
    "degraded": ":large_yellow_circle:",
    "down": ":red_circle:",
    "unknown": ":white_circle:",
}
SEVERITY_EMOJI = {
    "critical": ":rotating_light:",
    "high": ":red_circle:",
    "medium": ":large_orange_circle:",
    "low": ":large_blue_circle:",
}
RISK_EMOJI = {"low": ":large_green_circle:", "medium": ":large_yellow_circle:", "high": ":red_circle:"}
STATUS_EMOJI = {
    RequestStatus.REQUESTED: ":hourglass_flowing_sand:",
    RequestStatus.APPROVED: ":white_check_mark:",
    RequestStatus.RUNNING: ":gear:",
    RequestStatus.SUCCEEDED: ":white_check_mark:",
    RequestStatus.FAILED: ":x:",
    RequestStatus.REJECTED: ":no_entry:",
    RequestStatus.EXPIRED: ":clock3:",
    RequestStatus.CANCELLED: ":heavy_minus_sign:",
    RequestStatus.INTERRUPTED: ":warning:",
}
#: Slack refuses a section text over 3,000 characters.
MAX_TEXT = 2900
#: Slack refuses a field over 2,000 characters (and more than 10 fields).
MAX_FIELD = 1900
#: Slack refuses a message of more than 50 blocks, a modal or Home tab of more than 100.
MAX_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
#: App Home shows Approve / Reject on this many waiting requests (two blocks each); the rest as lines.
HOME_BUTTONS = 10


@dataclass(frozen=True)
class RunProgress:
    """How far a request's run has got, as the bot last heard (task events or the job store)."""

    job_id: str
    status: str = "running"
    current_task: str | None = None
    ok: int = 0
    changed: int = 0
    failed: int = 0
    duration_s: float | None = None
    error: str | None = None


# -- small helpers ---------------------------------------------------------------------------------------


def _clip(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` cut to ``limit`` characters, saying so; a code block the cut opened is closed again."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 5] + "…"
    if cut.count("```") % 2:
        cut += "\n```"
    return cut


def clip(text: str, limit: int = MAX_TEXT) -> str:
    """Public :func:`_clip` (for the bot's other modules)."""
    return _clip(text, limit)


def escape(text: str) -> str:
    """``&``, ``<`` and ``>`` escaped for mrkdwn."""
    return _escape(text)


def _code(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` as a code block that is always closed, whatever its length."""
    body = text.replace("```", "` ``")
    body = body if len(body) <= limit - 8 else body[: limit - 9] + "…"
    return "```" + body + "```"


def people(names: Sequence[str], limit: int = MAX_FIELD) -> str:
    """``a, b, c +N more``: as many of ``names`` as fit in ``limit`` characters, saying how many did not."""
    if not names:
        return "nobody"
    out: list[str] = []
    used = 0
    for i, name in enumerate(names):
        left = len(names) - i
        if out and used + len(name) + 2 + len(f" +{left} more") > limit:
            return ", ".join(out) + f" +{left} more"
        out.append(name)
        used += len(name) + 2
    return ", ".join(out)


def sections(
    lines: Sequence[str], *, max_blocks: int, more: str = "", total: int | None = None
) -> list[Block]:
    """``lines`` packed into as few sections as fit (each under Slack's 3,000 characters), at most
    ``max_blocks`` blocks; when not every line fits, the last block says "showing N of M" and ``more``
    (where to see them all). ``total``: how many there are, when ``lines`` is already a cut."""
    total = len(lines) if total is None else total
    out: list[Block] = []
    chunk: list[str] = []
    size = 0
    shown = 0
    budget = max(1, max_blocks - 1)  # room for the "showing N of M" note
    for raw in lines:
        line = _clip(raw, MAX_TEXT - 10)
        if chunk and size + len(line) + 1 > MAX_TEXT:
            if len(out) + 1 >= budget:
                break
            out.append(_md("\n".join(chunk)))
            chunk, size = [], 0
        chunk.append(line)
        size += len(line) + 1
        shown += 1
    if chunk:
        out.append(_md("\n".join(chunk)))
    if shown < total:
        note = f"showing {shown} of {total}" + (f" — {more} for all" if more else "")
        out.append(_context(note))
    return out


def _md(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text) or " "}}


def _context(*texts: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(t)} for t in texts]}


def _header(text: str) -> Block:
    return {"type": "header", "text": {"type": "plain_text", "text": _clip(text, 150), "emoji": True}}


def _date(moment: datetime) -> str:
    """A date Slack shows in the reader's own time zone (with a UTC fallback)."""
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} {{time}}|{moment:%Y-%m-%d %H:%M UTC}>"


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def _params(params: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items() if v is not None)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# -- replies -----------------------------------------------------------------------------------------------


def usage_error(message: str, usage: str) -> Message:
    """The ephemeral reply to a malformed command: what was wrong, then the usage."""
    text = (
        f":warning: {_escape(message)}\nUsage: `{usage}`"
        if "\n" not in usage
        else (f":warning: {_escape(message)}\n```{usage}```")
    )
    return {"response_type": "ephemeral", "text": text}


def refusal(message: str) -> Message:
    """The ephemeral reply to something not allowed (a viewer asking for a change, a self-approval)."""
    return {"response_type": "ephemeral", "text": f":no_entry: {_escape(message)}"}


def notice_text(message: str) -> Message:
    return {"response_type": "ephemeral", "text": _escape(message)}


def help_message(
    usages: Sequence[str], *, intro: str = "", others: Sequence[str] = (), restricted: bool = False
) -> Message:
    """``/ops help``: the commands this person may use here (``usages``), then those they may not
    (``others``: changes, for someone without an operator role)."""
    blocks: list[Block] = [_header("opsconsole — /ops")]
    if intro:
        blocks.append(_md(intro))
    blocks.append(_md("*You may use*\n" + "\n".join(f"`{u}`" for u in usages)))
    if others:
        blocks.append(_md("*Needs an operator role*\n" + "\n".join(f"`{u}`" for u in others)))
    notes = ["Changes go through the approval queue: the same one the terminal console shows."]
    if restricted:
        notes.append("This channel allows only some commands (slack.yml → commands).")
    blocks.append(_context(*notes))
    return {"response_type": "ephemeral", "text": "opsconsole commands", "blocks": blocks}


# -- fleet ------------------------------------------------------------------------------------------------


def _region_line(s: RegionSummary, p95_target_ms: float) -> str:
    health = f"{HEALTH_EMOJI.get(s.health.value, ':white_circle:')} {s.health.value}"
    p95 = _fmt(s.p95_ms, ".0f", " ms")
    findings = (
        "no findings"
        if not s.findings
        else (
            f"{s.findings} finding{'s' if s.findings != 1 else ''}"
            + (f" (worst {s.worst_severity.value})" if s.worst_severity else "")
        )
    )
    return (
        f"{health} *{s.id}* {s.name} · tier {s.tier} · p95 {p95} / {p95_target_ms:.0f} ms"
        f" · pods {f'{s.pods_ready}/{s.pods_desired}' if s.pods_known else '?'} · {findings}"
    )


def status_message(
    summaries: Sequence[RegionSummary],
    totals: Totals,
    *,
    taken_at: datetime,
    partial: bool,
    region: str | None = None,
    max_blocks: int = MAX_BLOCKS,
) -> Message:
    """``/ops status``: fleet-wide figures against their targets, then one line per region (packed into
    sections, so that any fleet fits in ``max_blocks``; a cut says so)."""
    shown = [s for s in summaries if region is None or s.id == region]
    worst = {h: sum(1 for s in shown if s.health.value == h) for h in ("ok", "degraded", "down", "unknown")}
    availability = "—" if totals.availability is None else f"{totals.availability * 100:.3f}%"
    blocks: list[Block] = [
        _header(f"Fleet status{' — ' + region if region else ''}"),
        {
            "type": "section",
            "fields": [
                {
                    "type": "mrkdwn",
                    "text": f"*API p95*\n{_fmt(totals.api_p95_ms, '.0f', ' ms')} "
                    f"(target {totals.api_p95_target_ms:.0f} ms)",
                },
                {
                    "type": "mrkdwn",
                    "text": f"*Availability (1 h)*\n{availability} "
                    f"(target {totals.availability_target * 100:.2f}%)",
                },
                {"type": "mrkdwn", "text": f"*Traffic*\n{totals.rps:,.0f} rps"},
                {
                    "type": "mrkdwn",
                    "text": f"*Worst replica lag*\n{_fmt(totals.worst_replica_lag_s, '.1f', ' s')} "
                    f"(RPO {totals.rpo_target_s:.0f} s)",
                },
            ],
        },
        {"type": "divider"},
    ]
    blocks += sections(
        [_region_line(s, totals.api_p95_target_ms) for s in shown],
        max_blocks=max_blocks - len(blocks) - 1,
        more="`opsconsole fleet status`",
    )
    notes = [
        f"Read {_date(taken_at)}",
        f"{worst['ok']} ok · {worst['degraded']} degraded · {worst['down']} down"
        f" · {worst['unknown']} unknown",
    ]
    if partial:
        notes.append(":warning: partial: some sources are stale or failed")
    blocks.append(_context(*notes))
    text = (
        f"Fleet status: {worst['ok']} ok, {worst['degraded']} degraded, {worst['down']} down; "
        f"API p95 {_fmt(totals.api_p95_ms, '.0f', ' ms')}"
    )
    return {"response_type": "ephemeral", "text": text, "blocks": blocks}


def findings_message(findings: Sequence[Mapping[str, Any]], *, region: str | None = None) -> Message:
    """``/ops findings``: the core's finding documents, worst first (the caller orders them)."""
    title = f"Findings{' — ' + region if region else ''}"
    if not findings:
        return {
            "response_type": "ephemeral",
            "text": f"{title}: none",
            "blocks": [_header(title), _md(":white_check_mark: No findings.")],
        }
    lines = [
        f"{SEVERITY_EMOJI.get(str(f['severity']), '')} *{f['severity']}* {_escape(str(f['title']))}"
        f" — {f.get('region') or 'fleet'} · measured {f['measured']} vs {f['target']}"
        for f in findings
    ]
    blocks: list[Block] = [_header(title)]
    blocks += sections(lines, max_blocks=MAX_BLOCKS - 1, more="`opsconsole fleet findings`")
    return {"response_type": "ephemeral", "text": f"{title}: {len(findings)}", "blocks": blocks}


# -- requests ---------------------------------------------------------------------------------------------


def preview_diff(summary: Sequence[str]) -> str:
    """The preview's ``before → after`` lines as a unified-style diff."""
    out: list[str] = []
    for line in summary:
        if " → " in line:
            before, _, after = line.partition(" → ")
            subject, _, old = before.rpartition(" ") if ":" not in before else before.partition(": ")
            head = subject.rstrip(":")
            out.append(f"- {head}: {old}".rstrip())
            out.append(f"+ {head}: {after}".rstrip())
        else:
            out.append(f"  {line}")
    return "\n".join(out)


def request_status_line(request: ChangeRequest, progress: RunProgress | None) -> str:
    """What is happening to the request now, in one line."""
    emoji = STATUS_EMOJI.get(request.status, "")
    status = request.status
    if status is RequestStatus.REQUESTED:
        voted = ", ".join(request.approvers)
        return f"{emoji} Waiting for {request.approvals_missing} more approval(s)" + (
            f" — approved so far by {voted}" if voted else ""
        )
    if status is RequestStatus.APPROVED:
        # Approved and not started: the approval that completed it was cast with --no-run, or its start was
        # refused (targets busy). Nothing runs it by itself: say so, and who may (the Run button).
        return (
            f"{emoji} Approved by {', '.join(request.approvers) or '—'}: not started — an operator may "
            f"run it (*Run*, or `opsconsole approvals run {request.short_id}`)"
        )
    counts = ""
    if progress is not None:
        counts = f" · changed {progress.changed} · failed {progress.failed}"
    if status is RequestStatus.RUNNING:
        task = (
            f" — current task: _{_escape(progress.current_task)}_"
            if progress and progress.current_task
            else ""
        )
        return f"{emoji} Running{task}{counts}"
    if status in (RequestStatus.SUCCEEDED, RequestStatus.FAILED, RequestStatus.INTERRUPTED):
        took = f" in {progress.duration_s:.1f} s" if progress and progress.duration_s is not None else ""
        error = f"\n> {_escape(progress.error)}" if progress and progress.error else ""
        return f"{emoji} {status.value.capitalize()}{took}{counts}{error}"
    if status is RequestStatus.REJECTED:
        rejecter = next((v.person for v in reversed(request.votes) if v.decision is Decision.REJECT), "—")
        return f"{emoji} Rejected by {rejecter}: {_escape(request.reason or '')}"
    if status is RequestStatus.EXPIRED:
        return f"{emoji} Expired {_date(request.expires_at)} without enough approvals: nothing ran"
    return f"{emoji} {status.value.capitalize()}" + (f": {_escape(request.reason)}" if request.reason else "")


def request_message(
    request: ChangeRequest,
    *,
    may_approve: Sequence[str],
    progress: RunProgress | None = None,
    may_run: Sequence[str] = (),
    rto: str | None = None,
) -> Message:
    """The request's message in the approvals channel: what, how risky, the preview in words and as a
    diff, who asked, who may approve, the expiry, the state — Approve / Reject while it waits, and Run
    once it is approved but not started (``may_run``: the operators and above in its scope); ``rto``:
    a failover's RTO clock or verdict line under the state (:func:`bot.rtoclock.rto_line`)."""
    risk = request.risk
    blocks: list[Block] = [
        _header(f"{request.action} request — {risk} risk"),
        _md(
            f"*{request.action}* `{_params(request.params)}`\nRequested by *{request.requester}* "
            f"({request.face}) · request `{request.short_id}`"
            + (" · :rotating_light: *break glass*" if request.break_glass else "")
        ),
    ]
    if request.summary:
        blocks.append(_md("*Preview*\n" + "\n".join(f"• {_escape(line)}" for line in request.summary)))
        blocks.append(_md(_code(_escape(preview_diff(request.summary)))))
    reasons = "; ".join(request.risk_reasons) or "—"
    fields = [
        {
            "type": "mrkdwn",
            "text": _clip(f"*Risk*\n{RISK_EMOJI.get(risk, '')} {risk}: {_escape(reasons)}", MAX_FIELD),
        },
        {
            "type": "mrkdwn",
            "text": f"*Approvals*\n{len(request.approvers)} of {request.approvals_needed}"
            + (f" ({people(request.approvers, MAX_FIELD - 40)})" if request.approvers else ""),
        },
    ]
    if request.status is RequestStatus.REQUESTED:
        fields.append({"type": "mrkdwn", "text": "*May approve*\n" + people(may_approve)})
        fields.append({"type": "mrkdwn", "text": f"*Expires*\n{_date(request.expires_at)}"})
    if request.status is RequestStatus.APPROVED:
        fields.append({"type": "mrkdwn", "text": "*May run*\n" + people(may_run)})
    blocks.append({"type": "section", "fields": fields})
    if request.drift:
        lines = "\n".join(f"• {_escape(str(x))}" for x in request.drift.get("lines", []))
        blocks.append(_md(f":warning: *Changed since it was approved* (votes start over):\n{lines}"))
    blocks.append(_md(request_status_line(request, progress)))
    if rto:
        blocks.append(_md(rto))
    if request.status is RequestStatus.REQUESTED:
        approve: Block = {
            "type": "button",
            "action_id": APPROVE,
            "style": "primary",
            "value": request.id,
            "text": {"type": "plain_text", "text": "Approve"},
        }
        if risk == "high":
            approve["confirm"] = {
                "title": {"type": "plain_text", "text": "Approve this change?"},
                "text": {"type": "mrkdwn", "text": _clip(f"{request.action} {_params(request.params)}", 300)},
                "confirm": {"type": "plain_text", "text": "Approve"},
                "deny": {"type": "plain_text", "text": "Not yet"},
            }
        blocks.append(
            {
                "type": "actions",
                "block_id": f"request:{request.id}",
                "elements": [
                    approve,
                    {
                        "type": "button",
                        "action_id": REJECT,
                        "style": "danger",
                        "value": request.id,
                        "text": {"type": "plain_text", "text": "Reject"},
                    },
                ],
            }
        )
    if request.status is RequestStatus.APPROVED:
        run: Block = {
            "type": "button",
            "action_id": RUN,
            "style": "primary",
            "value": request.id,
            "text": {"type": "plain_text", "text": "Run"},
        }
        if risk == "high":
            run["confirm"] = {
                "title": {"type": "plain_text", "text": "Run this change now?"},
                "text": {"type": "mrkdwn", "text": _clip(f"{request.action} {_params(request.params)}", 300)},
                "confirm": {"type": "plain_text", "text": "Run"},
                "deny": {"type": "plain_text", "text": "Not yet"},
            }
        blocks.append({"type": "actions", "block_id": f"run:{request.id}", "elements": [run]})
    if request.status is RequestStatus.RUNNING and request.job_id:
        blocks.append(
            {
                "type": "actions",
                "block_id": f"cancel:{request.id}",
                "elements": [
                    {
                        "type": "button",
                        "action_id": CANCEL,
                        "style": "danger",
                        "value": request.job_id,
                        "text": {"type": "plain_text", "text": "Cancel run"},
                        "confirm": {
                            "title": {"type": "plain_text", "text": "Cancel this run?"},
                            "text": {
                                "type": "mrkdwn",
                                "text": _clip(
                                    f"{request.action} {_params(request.params)}: stops at the next task", 300
                                ),
                            },
                            "confirm": {"type": "plain_text", "text": "Cancel it"},
                            "deny": {"type": "plain_text", "text": "Let it run"},
                        },
                    }
                ],
            }
        )
    if request.job_id:
        blocks.append(_context(f"job `{request.job_id[:12]}` · `opsconsole jobs logs {request.job_id[:12]}`"))
    text = (
        f"{request.action} {_params(request.params)} by {request.requester}: {request.status.value}"
        f" ({risk} risk)"
    )
    return {"text": text, "blocks": blocks}


def filed_reply(
    request: ChangeRequest,
    *,
    channel: str | None,
    may_approve: Sequence[str],
    posted: bool = True,
    problem: str | None = None,
) -> Message:
    """To the requester, after filing: where the request waits and for whom — and, when the approval
    message could not be posted (``problem``: why, in words), that it could not and what fixes it."""
    where = f" in <#{channel}>" if channel else ""
    if problem:
        where = (
            f", but I could not post in <#{channel}>: {problem}. It stays queued (also in "
            f"`opsconsole approvals`) and I keep trying"
        )
    elif not posted:
        where = f"; posting it in <#{channel}>" if channel else ""
    if request.status is RequestStatus.REQUESTED:
        text = (
            f":inbox_tray: Filed request `{request.short_id}` ({request.action}, {request.risk} risk): "
            f"waiting for {request.approvals_missing} approval(s) from {people(may_approve, 1500)}"
            f"{where}. Expires {_date(request.expires_at)}."
        )
    else:
        text = (
            f":gear: Request `{request.short_id}` ({request.action}, {request.risk} risk) needs no "
            f"approval: it is {request.status.value}{where}."
        )
    return {"response_type": "ephemeral", "text": text}


def approvals_message(requests: Sequence[ChangeRequest], *, total: int | None = None) -> Message:
    """``/ops approvals``: every open request that fits, and how many did not."""
    if not requests:
        return {"response_type": "ephemeral", "text": "No open requests."}
    total = len(requests) if total is None else total
    lines = [
        f"{STATUS_EMOJI.get(r.status, '')} `{r.short_id}` *{r.action}* {_escape(_params(r.params))}"
        f" — {r.status.value}, "
        f"{r.risk} risk, {len(r.approvers)}/{r.approvals_needed} approvals, by {r.requester}"
        for r in requests
    ]
    return {
        "response_type": "ephemeral",
        "text": f"{total} open request(s)",
        "blocks": [
            _header("Open requests"),
            *sections(lines, max_blocks=MAX_BLOCKS - 1, more="`opsconsole approvals list`", total=total),
        ],
    }


def _job_line(job: Job) -> str:
    mode = " (preview)" if job.check_mode else ""
    params = _params({k: v for k, v in job.params.items() if not k.startswith("opsconsole_")})
    return (
        f"`{job.id[:12]}` {job.created_at:%Y-%m-%d %H:%M:%S} *{job.status.value}* "
        f"{job.action}{mode} {_escape(params)} — by {job.actor} ({job.face})"
    )


def jobs_message(jobs: Sequence[Job], *, total: int | None = None) -> Message:
    if not jobs:
        return {"response_type": "ephemeral", "text": "No jobs yet."}
    total = len(jobs) if total is None else total
    return {
        "response_type": "ephemeral",
        "text": f"{len(jobs)} recent job(s)",
        "blocks": [
            _header("Recent jobs"),
            *sections(
                [_job_line(j) for j in jobs],
                max_blocks=MAX_BLOCKS - 1,
                more="`opsconsole jobs list`",
                total=total,
            ),
        ],
    }


def job_message(job: Job) -> Message:
    totals = (job.stats or {}).get("totals", {})
    took = f" in {job.duration_s:.1f} s" if job.duration_s is not None else ""
    lines = [
        _job_line(job),
        f"Playbook `{job.playbook}` · {job.status.value}{took} · "
        f"changed {totals.get('changed', 0)} · failed {totals.get('failed', 0)}",
    ]
    if job.last_task:
        lines.append(f"Last task: _{_escape(job.last_task)}_")
    if job.error:
        lines.append(f"> {_escape(job.error)}")
    return {
        "response_type": "ephemeral",
        "text": f"job {job.id[:12]}: {job.status.value}",
        "blocks": [_header(f"Job {job.id[:12]}"), _md("\n".join(lines))],
    }


def audit_message(request_id: str, entries: Sequence[AuditEntry]) -> Message:
    if not entries:
        return {"response_type": "ephemeral", "text": f"No audit entries for request {request_id}."}
    lines = [
        f"`#{e.seq}` {e.at:%Y-%m-%d %H:%M:%S} *{e.kind}* by {e.actor} ({e.face})"
        + (f" — {_escape(json.dumps(dict(e.data), sort_keys=True, default=str))[:200]}" if e.data else "")
        for e in entries[-30:]
    ]
    blocks: list[Block] = [_header(f"Audit of request {request_id[:8]}")]
    blocks += sections(
        lines,
        max_blocks=MAX_BLOCKS - 2,
        more=f"`opsconsole audit show --request {request_id[:8]}`",
        total=len(entries),
    )
    blocks.append(_context("Hash-chained: `opsconsole audit verify` checks nothing was edited."))
    return {"response_type": "ephemeral", "text": f"{len(entries)} audit entries", "blocks": blocks}


def loading_modal() -> dict[str, Any]:
    """What ``views.open`` shows at once, before the store is read (the trigger id lives 3 s)."""
    return {
        "type": "modal",
        "callback_id": REJECT_MODAL + "_loading",
        "title": {"type": "plain_text", "text": "Reject request"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [_md(":hourglass_flowing_sand: Loading the request…")],
    }


def info_modal(title: str, message: str) -> dict[str, Any]:
    """A modal that only says something (why a request cannot be rejected)."""
    return {
        "type": "modal",
        "title": {"type": "plain_text", "text": _clip(title, 24)},
        "close": {"type": "plain_text", "text": "Close"},
        "blocks": [_md(f":no_entry: {_escape(message)}")],
    }


def reject_modal(request: ChangeRequest, *, private_metadata: str) -> dict[str, Any]:
    """The modal that asks for a rejection's reason (the requester sees it)."""
    return {
        "type": "modal",
        "callback_id": REJECT_MODAL,
        "private_metadata": private_metadata,
        "title": {"type": "plain_text", "text": "Reject request"},
        "submit": {"type": "plain_text", "text": "Reject"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            _md(f"*{request.action}* `{_clip(_params(request.params), 2500)}` by *{request.requester}*"),
            {
                "type": "input",
                "block_id": REASON_BLOCK,
                "label": {"type": "plain_text", "text": "Why?"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": REASON_INPUT,
                    "multiline": True,
                    "min_length": 3,
                    "max_length": 500,
                },
            },
        ],
    }


# -- notices and home -------------------------------------------------------------------------------------


def finding_notice(finding: Mapping[str, Any]) -> Message:
    sev = str(finding.get("severity"))
    action = finding.get("suggested_action") or {}
    lines = [
        f"{SEVERITY_EMOJI.get(sev, '')} *{sev.upper()}* {_escape(str(finding.get('title')))}",
        f"{finding.get('region') or 'fleet'} · `{finding.get('object')}` · measured {finding.get('measured')}"
        f" vs target {finding.get('target')}",
    ]
    if action.get("summary"):
        lines.append(f"Suggested: {_escape(str(action['summary']))}")
    body: list[dict[str, Any]] = [_md("\n".join(lines))]
    if action.get("action") and isinstance(action.get("params"), Mapping):
        value = json.dumps({"action": action["action"], "params": dict(action["params"]),
                            "finding": finding.get("id")}, sort_keys=True)
        if len(value) <= 2000:  # Slack's limit on a button's value
            body.append({
                "type": "actions",
                "block_id": f"finding:{finding.get('id')}"[:255],
                "elements": [{
                    "type": "button",
                    "action_id": FILE_SUGGESTED,
                    "value": value,
                    "text": {"type": "plain_text", "text": f"Request: {action['action']}"[:75]},
                    "style": "primary",
                }],
            })
    return {"text": f"{sev}: {finding.get('title')}", "blocks": body}


def resolved_notice(kind: str, data: Mapping[str, Any]) -> Message:
    what = data.get("title") or data.get("environment") or kind
    return {
        "text": f"Resolved: {what}",
        "blocks": [_md(f":white_check_mark: Resolved: {_escape(str(what))}")],
    }


def shutdown_warning(data: Mapping[str, Any], *, at: datetime) -> Message:
    env, region = str(data.get("environment")), data.get("region")
    where = f" in {region}" if region else ""
    clusters = ", ".join(str(c) for c in data.get("clusters") or []) or "its clusters"
    value = json.dumps({"environment": env, "region": region}, sort_keys=True)
    return {
        "text": f"{env}{where} goes to sleep at {at:%H:%M UTC}",
        "blocks": [
            _md(f":crescent_moon: *{env}*{where} goes to sleep {_date(at)} ({_escape(clusters)})."),
            {
                "type": "actions",
                "block_id": f"shutdown:{env}:{region or '*'}",
                "elements": [
                    {
                        "type": "button",
                        "action_id": KEEP_AWAKE,
                        "value": value,
                        "text": {"type": "plain_text", "text": "Keep awake 2h"},
                    },
                    {
                        "type": "button",
                        "action_id": SKIP_TONIGHT,
                        "value": value,
                        "text": {"type": "plain_text", "text": "Skip tonight"},
                    },
                ],
            },
        ],
    }


def home_view(
    summaries: Sequence[RegionSummary],
    totals: Totals,
    *,
    taken_at: datetime,
    waiting: Sequence[ChangeRequest],
    person: str,
) -> dict[str, Any]:
    """App Home: the requests waiting for this person's approval first (what they came for), then the
    fleet in brief; within Slack's 100 blocks whatever the fleet's size (a cut says so)."""
    blocks: list[Block] = [_header("Waiting for your approval")]
    for r in waiting[:HOME_BUTTONS]:
        blocks.append(
            _md(
                f"`{r.short_id}` *{r.action}* {_escape(_clip(_params(r.params), 300))} — {r.risk} risk, by "
                f"{r.requester}, {len(r.approvers)}/{r.approvals_needed}, expires {_date(r.expires_at)}"
            )
        )
        blocks.append(
            {
                "type": "actions",
                "block_id": f"home:{r.id}",
                "elements": [
                    {
                        "type": "button",
                        "action_id": APPROVE,
                        "style": "primary",
                        "value": r.id,
                        "text": {"type": "plain_text", "text": "Approve"},
                    },
                    {
                        "type": "button",
                        "action_id": REJECT,
                        "style": "danger",
                        "value": r.id,
                        "text": {"type": "plain_text", "text": "Reject"},
                    },
                ],
            }
        )
    waiting = waiting[HOME_BUTTONS:]
    if waiting:
        lines = [
            f"`{r.short_id}` *{r.action}* {_escape(_params(r.params))} — {r.risk} risk, by {r.requester}, "
            f"{len(r.approvers)}/{r.approvals_needed}, expires {_date(r.expires_at)}"
            for r in waiting
        ]
        blocks += sections(lines, max_blocks=10, more="`/ops approvals`")
    elif len(blocks) == 1:
        blocks.append(_md(f"Nothing waits for {person}."))
    blocks.append({"type": "divider"})
    blocks += status_message(
        summaries,
        totals,
        taken_at=taken_at,
        partial=totals.partial,
        max_blocks=MAX_VIEW_BLOCKS - len(blocks),
    )["blocks"]
    return {"type": "home", "blocks": blocks}


def env_status_message(statuses: Sequence[Mapping[str, Any]], *, environment: str) -> Message:
    """``/ops env <name> status``: per region, the state now, why, what comes next, overrides and holds.

    ``statuses``: :func:`bot.schedule.status_document` rows (datetimes, not strings).
    """
    if not statuses:
        return {"response_type": "ephemeral", "text": f"No schedule for {environment}."}
    lines = []
    for s in statuses:
        desired, scheduled, applied = s.get("desired"), s.get("scheduled"), s.get("applied")
        emoji = ":sunny:" if desired == "up" else ":crescent_moon:"
        line = f"{emoji} *{s.get('region') or 'all regions'}*: {desired} now"
        notes = [] if desired == scheduled else [f"scheduled {scheduled}"]
        notes.append(f"applied {applied or 'unknown'}")
        line += f" ({', '.join(notes)})"
        upcoming = list(s.get("next_transitions") or [])[:2]
        if upcoming:
            line += "\n    next: " + ", then ".join(f"{t['state']} {_date(t['at'])}" for t in upcoming)
        for o in s.get("overrides") or []:
            line += (
                f"\n    override: {str(o['kind']).replace('_', '-')} until {_date(o['until'])} by {o['by']}"
            )
        for hold in s.get("holds") or []:
            line += f"\n    :warning: hold: {_escape(str(hold))}"
        if s.get("warning_at") and desired == "up":
            line += f"\n    shutdown warning {_date(s['warning_at'])}"
        lines.append(line)
    up = sum(1 for s in statuses if s.get("desired") == "up")
    return {
        "response_type": "ephemeral",
        "text": f"{environment}: up in {up} of {len(statuses)} regions",
        "blocks": [
            _header(f"Environment {environment} — schedule"),
            *sections(lines, max_blocks=MAX_BLOCKS - 1, more=f"`opsconsole schedule show {environment}`"),
        ],
    }
