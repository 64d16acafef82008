"""``/ops``: one slash command with subcommands (see :data:`bot.parse.USAGE`).

The text is parsed in the listener itself (pure, microseconds): a malformed command is answered in the
ack with the usage, and nothing else happens. Everything else acks empty at once and continues on the
bot's pool, answering through ``respond`` (the command's response_url) — ephemeral unless noted.
A request for a change is planned on a fresh fleet read and handed to the approval pipeline, which
checks the role in the request's scope (a viewer is refused there and nothing is filed), the risk and
the approvers; if it needs approval it is posted to the approvals channel of its regions.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from slack_bolt import Ack, App, Respond

from bot import blocks, metrics, modals, schedule
from bot.identity import slack_ids
from bot.parse import CHANGES, USAGE, Command, CommandError, missing, parse, parse_until
from bot.runtime import BotRuntime
from opsconsole.core.change.actions import (
    ActionPlan,
    plan_cache,
    plan_database,
    plan_environment,
    plan_failback,
    plan_failover,
    plan_nodes,
    plan_replicas,
    plan_scale,
)
from opsconsole.core.change.approvals import RequestStatus
from opsconsole.core.change.freeze import read_freeze, set_freeze
from opsconsole.core.change.gate import Act, Forbidden, authorize, fleet_scope
from opsconsole.core.change.rbac import Identity, Permission, Role, Scope
from opsconsole.core.change.requests import RequestRefused
from opsconsole.core.errors import OpsError, UsageError
from opsconsole.core.fleet.model import Environment
from opsconsole.core.fleet.report import finding_document, region_summaries, totals
from opsconsole.core.runs.records import Job
from opsconsole.core.schedule.engine import OverrideKind

log = logging.getLogger(__name__)

#: Audit kind of a refused switch (as the server's ``opsconsole.server.freeze.AUDIT_REFUSED``).
FREEZE_REFUSED = "freeze_refused"


def register(app: App, rt: BotRuntime) -> None:
    @app.command("/ops")
    def ops(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        metrics.PAYLOADS.labels("command").inc()
        text = str(body.get("text") or "")
        try:
            command = parse(text)
        except CommandError as error:
            if open_form(rt, body, text):  # a change with arguments missing: a form instead
                ack()
                return
            ack(**blocks.usage_error(error.message, error.usage))
            return
        channel = str(body.get("channel_id") or "") or None
        policy = rt.channels.commands
        if command.name == "help":
            ack(**help_for(rt, body, policy.allowed(channel)))
            return
        if not policy.allows(channel, command.name):
            here = ", ".join(sorted(policy.allowed(channel) or ())) or "help only"
            ack(
                **blocks.refusal(
                    f"/ops {command.name} is not used in this channel (slack.yml → commands); "
                    f"here: {here}. Try it in a channel that allows it, or in a DM with the bot."
                )
            )
            return
        ack()
        rt.work(run_command, rt, command, body, respond)


def _partial(words: list[str]) -> Command:
    """What a change command with arguments missing already says (to pre-fill its form)."""
    name, args = words[0].lower(), [w for w in words[1:] if not w.startswith("--")]
    if name == "failover":
        return Command(
            name, from_region=args[0] if args else None, to_region=args[1] if len(args) > 1 else None
        )
    if name == "scale":
        replicas = int(args[1]) if len(args) > 1 and args[1].isdigit() else None
        return Command(name, workload=args[0] if args else None, replicas=replicas)
    if name == "env":
        return Command(name, environment=args[0] if args else None)
    if name in ("nodes", "replicas", "cache"):
        return _partial_options(name, words[1:])
    return Command(name, region=args[0] if args else None)


def _partial_options(name: str, words: list[str]) -> Command:
    """What ``/ops nodes|replicas|cache`` gave as ``--key value`` (to pre-fill its form)."""
    given: dict[str, str] = {}
    for i, word in enumerate(words):
        if word.startswith("--"):
            key, eq, value = word[2:].partition("=")
            if not eq and i + 1 < len(words) and not words[i + 1].startswith("--"):
                value = words[i + 1]
            given[key] = value or "yes"

    def number(key: str) -> int | None:
        value = given.get(key, "")
        return int(value) if value.isdigit() else None

    if name == "nodes":
        return Command(name, cluster=given.get("cluster"), nodes_min=number("min"), nodes_max=number("max"),
                       nodes_desired=number("desired"))
    if name == "replicas":
        verb = "promote" if "promote" in given else "demote" if "demote" in given else None
        return Command(name, region=given.get("region"), count=number("count"), verb=verb,
                       source=given.get("source"))
    return Command(name, region=given.get("region"), count=number("nodes"))


#: Positional arguments each change command needs; fewer opens the form.
NEEDED = {"failover": 2, "failback": 1, "scale": 2, "env": 2}


def _is_value(words: list[str], i: int) -> bool:
    """``words[i]`` is the value of a preceding ``--option`` (``--region eu-west-1``)."""
    return i > 0 and words[i - 1].startswith("--") and "=" not in words[i - 1]


def open_form(rt: BotRuntime, body: Mapping[str, Any], text: str) -> bool:
    """``/ops failover`` (and scale, failback, env) with arguments missing: open the parameters form
    (:mod:`bot.modals`) now, in the ack's thread (the trigger id lives 3 s). False: not such a command."""
    words = text.split()
    if not words or words[0].lower() not in modals.ACTIONS or not body.get("trigger_id"):
        return False
    name = words[0].lower()
    positional = [
        w for i, w in enumerate(words[1:]) if not w.startswith("--") and not _is_value(words, i + 1)
    ]
    bounds = name == "scale" and any(w.split("=")[0] in ("--hpa-min", "--hpa-max") for w in words)
    if name in NEEDED and len(positional) >= (1 if bounds else NEEDED[name]):
        return False  # present but wrong (a bad number, verb…): the usage says what is expected
    if name not in NEEDED and not missing(name, words[1:]):
        return False
    try:
        given = _partial(words)
    except (ValueError, IndexError):
        given = None
    meta = json.dumps({"channel": body.get("channel_id"), "user": body.get("user_id")})
    try:
        rt.slack.call(
            "views.open",
            trigger_id=body.get("trigger_id"),
            view=modals.form(rt.core.fleet, name, private_metadata=meta, given=given),
        )
    except Exception:
        log.warning("could not open the %s form", name, exc_info=True)
        return False
    return True


def help_for(rt: BotRuntime, body: Mapping[str, Any], allowed: frozenset[str] | None) -> dict[str, Any]:
    """``/ops help``: what *this* person may do here (their role; this channel's commands)."""
    who = rt.identity(body)
    scope = Scope.of()
    role = who.role_for(scope).value
    may_change = who.may(Permission.REQUEST, scope) or any(
        g.role.at_least(Role.OPERATOR) for g in getattr(who, "grants", ())
    )
    yours: list[str] = []
    others: list[str] = []
    for name, usage in USAGE.items():
        if allowed is not None and name not in allowed and name != "help":
            continue
        changes = name in CHANGES or name == "env"
        (yours if may_change or not changes else others).append(usage)
    intro = f"You are *{who.person}* ({role}{'' if who.known else ', not in rbac.yml'})."
    if not may_change:
        intro += " Changes need an operator role (rbac.yml); you may read everything."
    return blocks.help_message(yours, intro=intro, others=others, restricted=allowed is not None)


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
        message = blocks.notice_text(
            ":x: something went wrong on our side; the bot's log (stderr of `opsconsole bot`) says what"
        )
    deliver(rt, body, respond, message)


def deliver(rt: BotRuntime, body: Mapping[str, Any], respond: Respond, message: dict[str, Any]) -> None:
    """Answer through the response_url, checking Slack took it; else ephemeral in the channel / a DM."""
    result: object
    try:
        result = respond(**message)
        status = getattr(result, "status_code", 200)
    except Exception as error:
        status, result = 0, error
    if status == 200:
        return
    log.warning("the reply to /ops was refused (%s: %s); sending it another way", status, result)
    _, user = slack_ids(body)
    channel = str(body.get("channel_id") or "") or None
    if not rt.ephemeral(channel, user, message):
        rt.ephemeral(channel, user, {"text": str(message.get("text") or "")})


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
                statuses=[RequestStatus.REQUESTED, RequestStatus.APPROVED, RequestStatus.RUNNING], limit=500
            )
        )
    if name == "jobs":
        return blocks.jobs_message(rt.jobs.list(limit=20))
    if name == "job":
        return blocks.job_message(_job(rt, str(command.ident)))
    if name == "audit":
        request = rt.core.pipeline.requests.get(str(command.ident))
        return blocks.audit_message(request.id, rt.core.pipeline.audit.entries(request_id=request.id))
    if name == "env" and command.verb == "status":
        env = str(command.environment)
        rows = schedule.status(rt.scheduler, env)
        return blocks.env_status_message([schedule.status_document(r) for r in rows], environment=env)
    if name == "freeze":
        return _freeze(rt, who, command)
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
    if name == "drill":
        return start_drill(rt, who, command, body)
    return file_change(rt, who, command, body)


def start_drill(rt: BotRuntime, who: Identity, command: Command, body: Mapping[str, Any]) -> dict[str, Any]:
    """``/ops drill failover R R2``: checked now (regions, the pair's residency), then run on the pool,
    its story in a thread of the channel (see :mod:`bot.drill`)."""
    from bot.drill import BotDrillOps, run_slack_drill  # noqa: PLC0415

    _region(rt, command.from_region, "drill")
    _region(rt, command.to_region, "drill")
    if command.from_region == command.to_region:
        raise CommandError(f"{command.from_region}: a region cannot fail over to itself", USAGE["drill"])
    _, user = slack_ids(body)
    BotDrillOps(rt, who).assess(
        "failover", {"from_region": command.from_region, "to_region": command.to_region})
    channel = str(body.get("channel_id") or "") or user
    rt.work(lambda: run_slack_drill(rt, who, from_region=str(command.from_region),
                                    to_region=str(command.to_region), channel=channel,
                                    requester=user or None))
    return blocks.notice_text(
        f":rotating_light: Drill started: failover {command.from_region} → {command.to_region}, verify, "
        f"failback. Each move is posted for approval; the story and the summary follow in a thread here."
    )


def _freeze(rt: BotRuntime, who: Identity, command: Command) -> dict[str, Any]:
    """``/ops freeze``: anyone reads it; an admin switches it (refusals audited, as on the server)."""
    core = rt.core
    pipeline = core.pipeline
    if command.verb == "status":
        frozen = read_freeze(core.database)
        if frozen is None:
            return blocks.notice_text("No emergency change freeze is on (policy.yml's windows still apply).")
        return blocks.notice_text(f":snowflake: {frozen.describe()}")
    on = command.verb == "on"
    try:
        authorize(Act.FREEZE, who, scope=fleet_scope(core.fleet))
    except Forbidden as refused:
        pipeline.audit.append(
            FREEZE_REFUSED, actor=who.person, face="slack", data={"on": on, "reason": refused.message}
        )
        raise
    frozen = set_freeze(
        core.database, pipeline.audit, on=on, reason=command.until, who=who.person, face="slack",
        now=pipeline.clock.now(),
    )
    if frozen is None:
        text = f":sunny: Emergency change freeze lifted by {who.person}."
    else:
        text = (f":snowflake: {frozen.describe()} — medium and high risk changes are refused until "
                "`/ops freeze off`.")
    message = blocks.notice_text(text)  # escaped: the reason is the admin's own words
    message["response_type"] = "in_channel"  # the whole channel learns that changes stop
    return message


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
            hpa_min=command.hpa_min,
            hpa_max=command.hpa_max,
            environment=env,
            cluster=command.cluster,
        )
    if command.name == "nodes":
        return lambda fleet, snap: plan_nodes(
            fleet, snap, cluster=str(command.cluster), nodes_min=command.nodes_min,
            nodes_max=command.nodes_max, nodes_desired=command.nodes_desired,
        )
    if command.name == "replicas" and command.verb in ("promote", "demote"):
        return lambda fleet, snap: plan_database(
            fleet, snap, region=str(command.region), change=str(command.verb), source_region=command.source
        )
    if command.name == "replicas":
        return lambda fleet, snap: plan_replicas(
            fleet, snap, region=str(command.region), read_replicas=int(command.count or 0)
        )
    if command.name == "cache":
        return lambda fleet, snap: plan_cache(
            fleet, snap, region=str(command.region), nodes=int(command.count or 0)
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


def file_change(rt: BotRuntime, who: Identity, command: Command, body: Mapping[str, Any]) -> dict[str, Any]:
    """Plan on a fresh read, file it with the pipeline, post it for approvers, tell the requester."""
    planner = _planner(command)
    view = rt.view(max_age_s=0.0)
    try:
        plan = planner(rt.core.fleet, view.snapshot)
    except UsageError as error:
        raise CommandError(error.message, USAGE[command.name]) from None
    submission = rt.core.pipeline.submit(plan, who, face="slack", snapshot=view.snapshot, wait=False)
    request = submission.request
    _, user = slack_ids(body)
    # Needing approval or already running: the channel follows it. A failed post stays pending.
    outcome = rt.post_request(request, requester=user or None)
    return blocks.filed_reply(
        request,
        channel=outcome.channel,
        may_approve=rt.mentions(rt.may_approve(request)),
        posted=outcome.posted,
        problem=outcome.explanation,
    )
