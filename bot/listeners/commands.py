"""``/ops``: one slash command with subcommands (see :data:`bot.parse.USAGE`).

The text is parsed in the listener itself (pure, microseconds): a malformed command is answered in the
ack with the usage, and nothing else happens. Everything else acks empty at once and continues on the
bot's pool, answering through ``respond`` (the command's response_url) — ephemeral unless noted.
A request for a change is planned on a fresh fleet read and handed to the approval pipeline, which
checks the role in the request's scope (a viewer is refused there and nothing is filed), the risk and
the approvers; if it needs approval it is posted to the approvals channel of its regions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from slack_bolt import Ack, App, Respond

from bot import blocks, metrics, schedule
from bot.parse import USAGE, Command, CommandError, parse, parse_until
from bot.runtime import BotRuntime
from opsconsole.core.change.actions import (
    ActionPlan,
    plan_environment,
    plan_failback,
    plan_failover,
    plan_scale,
)
from opsconsole.core.change.approvals import RequestStatus
from opsconsole.core.change.rbac import Identity, Permission, Scope
from opsconsole.core.change.requests import RequestRefused
from opsconsole.core.errors import OpsError, UsageError
from opsconsole.core.fleet.model import Environment
from opsconsole.core.fleet.report import finding_document, region_summaries, totals
from opsconsole.core.runs.records import Job
from opsconsole.core.schedule.engine import OverrideKind

log = logging.getLogger(__name__)


def register(app: App, rt: BotRuntime) -> None:
    @app.command("/ops")
    def ops(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        metrics.PAYLOADS.labels("command").inc()
        try:
            command = parse(str(body.get("text") or ""))
        except CommandError as error:
            ack(**blocks.usage_error(error.message, error.usage))
            return
        if command.name == "help":
            ack(**blocks.help_message(list(USAGE.values())))
            return
        ack()
        rt.work(run_command, rt, command, body, respond)


def run_command(rt: BotRuntime, command: Command, body: Mapping[str, Any], respond: Respond) -> None:
    """After the ack: dedupe the trigger, then answer."""
    trigger = str(body.get("trigger_id") or "")
    if trigger and not rt.outbox.first_time(f"command:{trigger}"):
        metrics.DUPLICATES.labels("command").inc()
        return
    try:
        message = answer(rt, command, body)
    except CommandError as error:
        message = blocks.usage_error(error.message, error.usage)
    except RequestRefused as error:
        message = blocks.refusal(error.message)
    except UsageError as error:
        message = blocks.usage_error(error.message, USAGE.get(command.name, USAGE["help"]))
    except OpsError as error:
        message = blocks.notice_text(f":x: {error.title}: {error.message}")
    except Exception:
        log.exception("/ops %s failed", command.name)
        message = blocks.notice_text(":x: something went wrong on our side; the bot's log says what")
    respond(**message)


def _region(rt: BotRuntime, region: str | None, name: str) -> None:
    if region is not None and region not in rt.core.fleet.regions:
        known = ", ".join(sorted(rt.core.fleet.regions))
        raise CommandError(f"{region}: unknown region; expected one of: {known}", USAGE[name])


def answer(rt: BotRuntime, command: Command, body: Mapping[str, Any]) -> dict[str, Any]:
    name = command.name
    who = rt.identity(body)
    if command.changes_fleet and not who.may(Permission.REQUEST, Scope.of()):
        # The pipeline would refuse too (and audit it); this answers before reading the fleet.
        raise RequestRefused(
            f"{who.person} is a viewer: asking for changes needs an operator role "
            "(rbac.yml); nothing was filed"
        )
    if name == "status":
        _region(rt, command.region, name)
        view = rt.view()
        return blocks.status_message(
            region_summaries(view),
            totals(view),
            taken_at=view.snapshot.taken_at,
            partial=view.snapshot.partial,
            region=command.region,
        )
    if name == "findings":
        _region(rt, command.region, name)
        view = rt.view()
        found = sorted(
            (f for f in view.findings if command.region is None or f.region == command.region),
            key=lambda f: (-f.severity.rank, f.id),
        )
        return blocks.findings_message([finding_document(f) for f in found], region=command.region)
    if name == "approvals":
        pipeline = rt.core.pipeline
        pipeline.expire_due()
        return blocks.approvals_message(
            pipeline.requests.list(
                statuses=[RequestStatus.REQUESTED, RequestStatus.APPROVED, RequestStatus.RUNNING], limit=50
            )
        )
    if name == "jobs":
        return blocks.jobs_message(rt.jobs.list(limit=15))
    if name == "job":
        return blocks.job_message(_job(rt, str(command.ident)))
    if name == "audit":
        request = rt.core.pipeline.requests.get(str(command.ident))
        return blocks.audit_message(request.id, rt.core.pipeline.audit.entries(request_id=request.id))
    if name == "env" and command.verb == "status":
        env = str(command.environment)
        rows = schedule.status(rt.scheduler, env)
        return blocks.env_status_message([schedule.status_document(r) for r in rows], environment=env)
    if name == "keep-awake":
        env = str(command.environment)
        until = parse_until(str(command.until), rt.core.clock.now())
        made = schedule.override(
            rt.scheduler, who, OverrideKind.KEEP_AWAKE, env, until=until, reason="/ops keep-awake"
        )
        return blocks.notice_text(
            f":sunny: {env} stays awake until {made.until:%Y-%m-%d %H:%M} UTC "
            f"(override {made.id[:8]}, by {who.person})."
        )
    return file_change(rt, who, command)


def _job(rt: BotRuntime, ident: str) -> Job:
    job = rt.jobs.get(ident)
    if job is not None:
        return job
    matches = [j for j in rt.jobs.list(limit=500) if j.id.startswith(ident)]
    if len(matches) != 1:
        raise CommandError(
            f"job {ident}: " + ("no such job" if not matches else f"ambiguous prefix ({len(matches)} jobs)"),
            USAGE["job"],
        )
    return matches[0]


def _planner(command: Command) -> Callable[[Any, Any], ActionPlan]:
    if command.name == "scale":
        if command.region is None:
            raise CommandError(
                "which region? add --region R (a scale changes one region at a time)", USAGE["scale"]
            )
        env = Environment(command.environment or "prod")
        return lambda fleet, snap: plan_scale(
            fleet,
            snap,
            service=str(command.workload),
            region=str(command.region),
            replicas=command.replicas,
            environment=env,
        )
    if command.name == "failover":
        return lambda fleet, snap: plan_failover(
            fleet, snap, from_region=str(command.from_region), to_region=str(command.to_region)
        )
    if command.name == "failback":
        return lambda fleet, snap: plan_failback(fleet, snap, region=str(command.region))
    state = "stopped" if command.verb == "stop" else "started"
    return lambda fleet, snap: plan_environment(
        fleet, snap, environment=str(command.environment), state=state
    )


def file_change(rt: BotRuntime, who: Identity, command: Command) -> dict[str, Any]:
    """Plan on a fresh read, file it with the pipeline, post it for approvers, tell the requester."""
    planner = _planner(command)
    view = rt.view(max_age_s=0.0)
    try:
        plan = planner(rt.core.fleet, view.snapshot)
    except UsageError as error:
        raise CommandError(error.message, USAGE[command.name]) from None
    submission = rt.core.pipeline.submit(plan, who, face="slack", snapshot=view.snapshot, wait=False)
    request = submission.request
    channel = rt.post_request(request)  # needing approval or already running: the channel follows it
    return blocks.filed_reply(request, channel=channel, may_approve=rt.may_approve(request))
