"""Button clicks: Approve / Reject / Run on a request's message, Keep awake / Skip tonight on a shutdown
warning.

The role is checked when the click arrives, with the clicking user from *this* payload, by the pipeline
(the requester's own Approve and a viewer's are refused there, and the refusal is audited); the person
is told why in an ephemeral reply, and told when the click counted ("your approval counted (1 of 2)").

Dedupe, in the shared outbox: a payload Slack delivers twice (a retry, a replay to another replica) is
dropped on action id + ``action_ts`` + team + user; a second Approve of the same person on the same *plan*
(a double click) is dropped on request id + plan hash + team + user — so after drift ("votes start over":
a new plan hash) the same people's clicks count again. The vote key is taken only for a click that can
count (an approver who has not voted on this plan): a refused click uses up nothing, and the team id keeps
another workspace's user with the same id from using up the real user's key. [Run] is not deduplicated
beyond the delivery: the pipeline's compare-and-set starts one run, and a [Run] after a refused start
counts. Whatever fails after the ack (the store down, an unknown request id) is told to the clicker.

The approval that completes a request starts its
run here, at once; the pipeline's compare-and-set and lease make sure it runs once even when two
replicas or a terminal try at the same instant. A request approved elsewhere without a run (``approvals
approve --no-run``) shows a Run button, for operators and above in its scope.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from slack_bolt import Ack, App

from bot import blocks, metrics, schedule
from bot.identity import slack_ids
from bot.runtime import BotRuntime, subject_of
from opsconsole.core.audit.records import AuditKind
from opsconsole.core.change.actions import ActionName, replan
from opsconsole.core.change.approvals import RequestStatus
from opsconsole.core.change.rbac import Identity, Permission
from opsconsole.core.change.records import ChangeRequest
from opsconsole.core.change.requests import RequestNotFound, RequestRefused
from opsconsole.core.errors import OpsError, UsageError
from opsconsole.core.schedule.engine import DEFAULT_KEEP_AWAKE, OverrideKind

log = logging.getLogger(__name__)

#: What [Keep awake 2h] asks for (the scheduler's own default keep-awake, so that both faces agree).
KEEP_AWAKE_FOR = DEFAULT_KEEP_AWAKE


def _where(body: Mapping[str, Any]) -> tuple[str | None, str]:
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
    message_ts = (
        (body.get("container") or {}).get("message_ts") or (body.get("message") or {}).get("ts") or ""
    )
    return (str(channel) if channel else None), str(message_ts)


def click_key(body: Mapping[str, Any]) -> str:
    """One delivery of one click: Slack's retries and replays carry the same ``action_ts``."""
    action = (body.get("actions") or [{}])[0]
    _, ts = _where(body)
    team, user = slack_ids(body)
    return f"click:{action.get('action_id')}:{action.get('action_ts') or ts}:{team}:{user}"


def vote_key(body: Mapping[str, Any], request: ChangeRequest) -> str:
    """One person's vote on one plan of a request (a new plan after drift is a new key)."""
    team, user = slack_ids(body)
    drift = str((request.drift or {}).get("at") or "")  # a plan that drifted back is voted on anew
    return f"vote:{request.id}:{request.plan_hash}:{drift}:{team}:{user}"


def _first_click(rt: BotRuntime, body: Mapping[str, Any]) -> bool:
    if rt.outbox.first_time(click_key(body)):
        return True
    metrics.DUPLICATES.labels("click").inc()
    return False


def _told(rt: BotRuntime, body: Mapping[str, Any], fn: Callable[[], None], what: str) -> None:
    """Run ``fn``; whatever goes wrong is told to the person who clicked (and logged), never lost."""
    channel, _ = _where(body)
    user = str((body.get("user") or {}).get("id") or "")
    try:
        fn()
    except RequestNotFound as error:
        rt.tell(body, channel, user, blocks.refusal(f"{what}: {error.message}"))
    except OpsError as error:
        log.warning("%s failed: %s: %s", what, error.title, error.message)
        rt.tell(body, channel, user, blocks.notice_text(f":x: {what}: {error.title}: {error.message}"))
    except Exception:
        log.exception("%s failed", what)
        rt.tell(
            body,
            channel,
            user,
            blocks.notice_text(
                f":x: {what}: something went wrong on our side; the bot's log (stderr of `opsconsole "
                "bot`) says what"
            ),
        )


def register(app: App, rt: BotRuntime) -> None:
    @app.action(blocks.APPROVE)
    def approve(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        metrics.PAYLOADS.labels("approve").inc()
        rt.work(_told, rt, body, lambda: on_approve(rt, body), "Not approved")

    @app.action(blocks.REJECT)
    def reject(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        metrics.PAYLOADS.labels("reject").inc()
        # views.open must follow the click within 3 s (the trigger id expires): open it in this thread,
        # before anything reads the store, and fill it in after (views.update).
        view = open_reject_modal(rt, body)
        rt.work(_told, rt, body, lambda: on_reject_click(rt, body, view), "Not rejected")

    @app.action(blocks.RUN)
    def run(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        metrics.PAYLOADS.labels("run").inc()
        rt.work(_told, rt, body, lambda: on_run(rt, body), "Not started")

    @app.action(blocks.CANCEL)
    def cancel(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        metrics.PAYLOADS.labels("cancel").inc()
        rt.work(_told, rt, body, lambda: on_cancel(rt, body), "Not cancelled")

    @app.action(blocks.KEEP_AWAKE)
    def keep_awake(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        metrics.PAYLOADS.labels("keep_awake").inc()
        rt.work(_told, rt, body, lambda: on_shutdown_button(rt, body, OverrideKind.KEEP_AWAKE), "Not set")

    @app.action(blocks.FILE_SUGGESTED)
    def file_suggested(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        metrics.PAYLOADS.labels("file_suggested").inc()
        rt.work(_told, rt, body, lambda: on_file_suggested(rt, body), "Not filed")

    @app.action(blocks.SKIP_TONIGHT)
    def skip_tonight(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        metrics.PAYLOADS.labels("skip_tonight").inc()
        rt.work(_told, rt, body, lambda: on_shutdown_button(rt, body, OverrideKind.SKIP_TONIGHT), "Not set")


#: What a finding notice's button may file: the actions a finding suggests (never an environment stop).
SUGGESTIBLE = frozenset(a.value for a in ActionName) - {ActionName.ENV_STOP.value, ActionName.ENV_START.value}


def on_file_suggested(rt: BotRuntime, body: Mapping[str, Any]) -> None:
    """[Request: …] on a finding notice: plan the suggested action on a fresh read, as the clicking
    person, and file it through the approval pipeline exactly as ``/ops`` would (a low-risk one starts,
    the others are posted for their approvers); the person is told where it waits, or why not."""
    if not _first_click(rt, body):
        return
    channel, _ = _where(body)
    user = str((body.get("user") or {}).get("id") or "")
    try:
        data = json.loads(str((body.get("actions") or [{}])[0].get("value") or "{}"))
    except ValueError:
        data = {}
    action, params = str(data.get("action") or ""), data.get("params")
    if action not in SUGGESTIBLE or not isinstance(params, Mapping):
        rt.ephemeral(channel, user, blocks.refusal("Not filed: this button carries no action the bot knows"))
        return
    who = rt.identity(body)
    fresh = rt.view(max_age_s=0.0)
    try:
        plan = replan(rt.core.fleet, fresh.snapshot, action, params)
    except (KeyError, TypeError):
        rt.ephemeral(channel, user, blocks.refusal(f"Not filed: the suggested {action} lacks a parameter"))
        return
    except UsageError as error:
        rt.ephemeral(channel, user, blocks.refusal(f"Not filed: {error.message} (the fleet may have moved "
                                                   "since the notice; `/ops findings` shows it now)"))
        return
    try:
        submission = rt.core.pipeline.submit(plan, who, face="slack", snapshot=fresh.snapshot, wait=False)
    except RequestRefused as error:
        rt.ephemeral(channel, user, blocks.refusal(f"Not filed: {error.message}"))
        return
    request = submission.request
    outcome = rt.post_request(request, requester=user or None)
    rt.ephemeral(channel, user, blocks.filed_reply(
        request,
        channel=outcome.channel,
        may_approve=rt.mentions(rt.may_approve(request)),
        posted=outcome.posted,
        problem=outcome.explanation,
    ))


def on_approve(rt: BotRuntime, body: Mapping[str, Any]) -> None:
    if not _first_click(rt, body):
        return
    channel, _ = _where(body)
    user = str((body.get("user") or {}).get("id") or "")
    request_id = str((body.get("actions") or [{}])[0].get("value") or "")
    who = rt.identity(body)
    pipeline = rt.core.pipeline
    request = pipeline.requests.get(request_id)
    would_count = (
        request.status is RequestStatus.REQUESTED
        and who.person != request.requester
        and who.may(Permission.APPROVE, request.scope)
    )
    voted = any(v.person == who.person and v.plan_hash == request.plan_hash for v in request.votes)
    if would_count and (voted or not rt.outbox.first_time(vote_key(body, request))):
        metrics.DUPLICATES.labels("click").inc()  # a double click: the first one counted
        return
    try:
        after = pipeline.approve(request_id, who, face="slack")
    except RequestRefused as error:
        rt.ephemeral(channel, user, blocks.refusal(f"Not approved: {error.message}"))
        rt.updater.touch(subject_of(request_id))
        return
    rt.updater.touch(subject_of(after.id))
    counted = f"{len(after.approvers)} of {after.approvals_needed}"
    if after.status is RequestStatus.APPROVED:
        rt.ephemeral(
            channel,
            user,
            blocks.notice_text(f":white_check_mark: Your approval counted ({counted}): starting it"),
        )
        start_run(rt, after.id, who, channel, user)
    else:
        rt.ephemeral(
            channel,
            user,
            blocks.notice_text(
                f":white_check_mark: Your approval counted ({counted}): waiting for "
                f"{after.approvals_missing} more"
            ),
        )


def start_run(
    rt: BotRuntime,
    request_id: str,
    who: Identity,
    channel: str | None,
    user: str,
    *,
    refused: str = "Approved, but it did not start",
) -> None:
    """Start an approved request's run in this process (as ``opsconsole approvals approve`` does): the
    pipeline re-plans, checks the plan hash and takes the lease; of several replicas or faces trying at the
    same instant its compare-and-set lets one start and refuses the others."""
    try:
        rt.core.pipeline.execute(request_id, who, face="slack", wait=False)
    except OpsError as error:
        rt.ephemeral(channel, user, blocks.refusal(f"{refused}: {error.message}"))
    rt.updater.touch(subject_of(request_id))


def on_run(rt: BotRuntime, body: Mapping[str, Any]) -> None:
    """[Run] on an approved request nobody started (approved with ``--no-run``, or its start refused):
    operators and above in the request's scope may start it; anyone else is told why (and it is audited)."""
    if not _first_click(rt, body):
        return
    channel, _ = _where(body)
    user = str((body.get("user") or {}).get("id") or "")
    request_id = str((body.get("actions") or [{}])[0].get("value") or "")
    pipeline = rt.core.pipeline
    request = pipeline.requests.get(request_id)
    who = rt.identity(body)
    scope = request.scope
    if not who.may(Permission.REQUEST, scope):
        reason = (
            f"{who.person} is a {who.role_for(scope).value} for {scope.describe()}: "
            "running a change needs an operator role there"
        )
        pipeline.audit.append(
            AuditKind.REQUEST_REFUSED,
            actor=who.person,
            face="slack",
            request_id=request.id,
            data={"action": "run", "reason": reason, "principal": who.principal},
        )
        rt.ephemeral(channel, user, blocks.refusal(f"Not started: {reason}"))
        return
    if request.status is not RequestStatus.APPROVED:
        rt.ephemeral(channel, user, blocks.refusal(f"the request is {request.status.value}: nothing to run"))
        rt.updater.touch(subject_of(request.id))
        return
    start_run(rt, request.id, who, channel, user, refused="Not started")


def on_cancel(rt: BotRuntime, body: Mapping[str, Any]) -> None:
    """[Cancel run] on a running request: the pipeline decides (an operator in its scope, or its
    requester) and audits; the card follows the job to ``cancelled``."""
    if not _first_click(rt, body):
        return
    channel, _ = _where(body)
    user = str((body.get("user") or {}).get("id") or "")
    job_id = str((body.get("actions") or [{}])[0].get("value") or "")
    who = rt.identity(body)
    try:
        job = rt.core.pipeline.cancel_job(job_id, who, face="slack")
    except RequestRefused as error:
        rt.ephemeral(channel, user, blocks.refusal(f"Not cancelled: {error.message}"))
        return
    rt.ephemeral(channel, user, blocks.notice_text(f":octagonal_sign: Cancelling job {job.id[:12]}."))


def open_reject_modal(rt: BotRuntime, body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """``views.open`` at once with a "loading" modal (the trigger id lives 3 s; nothing slow first).
    Returns the opened view (its id and hash, for :func:`on_reject_click`), or ``None``."""
    try:
        response = rt.slack.call("views.open", trigger_id=body.get("trigger_id"), view=blocks.loading_modal())
    except Exception:
        log.warning("could not open the rejection modal", exc_info=True)
        return None
    view = response.get("view")
    return view if isinstance(view, Mapping) else None


def on_reject_click(rt: BotRuntime, body: Mapping[str, Any], view: Mapping[str, Any] | None) -> None:
    """After the modal opened: read the request and the role, then turn the modal into the reason form
    (or into the reason it cannot be rejected). No modal (it failed to open): say so in the channel."""
    channel, ts = _where(body)
    user = str((body.get("user") or {}).get("id") or "")
    request_id = str((body.get("actions") or [{}])[0].get("value") or "")

    def show(modal: dict[str, Any], fallback: dict[str, Any]) -> None:
        if view is not None and view.get("id"):
            try:
                rt.slack.call("views.update", view_id=view["id"], hash=view.get("hash"), view=modal)
                return
            except Exception:
                log.warning("could not update the rejection modal", exc_info=True)
        rt.ephemeral(channel, user, fallback)

    try:
        request = rt.core.pipeline.requests.get(request_id)
    except OpsError as error:
        show(blocks.info_modal("Cannot reject", error.message), blocks.refusal(error.message))
        return
    who = rt.identity(body)
    refused: str | None = None
    if not who.may(Permission.APPROVE, request.scope):
        refused = (
            f"{who.person} is a {who.role_for(request.scope).value} for {request.scope.describe()}: "
            "only approvers may reject this request"
        )
    elif request.status is not RequestStatus.REQUESTED:
        refused = f"the request is {request.status.value}: nothing to reject"
    if refused is not None:
        show(blocks.info_modal("Cannot reject", refused), blocks.refusal(refused))
        return
    metadata = json.dumps({"request_id": request.id, "channel": channel, "ts": ts})
    show(
        blocks.reject_modal(request, private_metadata=metadata),
        blocks.refusal("the rejection form did not open (Slack allows 3 s): click Reject again"),
    )


def on_shutdown_button(rt: BotRuntime, body: Mapping[str, Any], kind: OverrideKind) -> None:
    """[Keep awake 2h] / [Skip tonight]: an override through the scheduler (role checked, audited; the
    warning it cancels is resolved there), then the warning loses its buttons and says who did what."""
    if not _first_click(rt, body):
        return
    channel, ts = _where(body)
    user = str((body.get("user") or {}).get("id") or "")
    try:
        value = json.loads(str((body.get("actions") or [{}])[0].get("value") or "{}"))
        environment, region = str(value["environment"]), value.get("region")
    except (ValueError, KeyError, TypeError):
        rt.ephemeral(channel, user, blocks.refusal("this button carries no environment: nothing was set"))
        return
    who = rt.identity(body)
    until = rt.core.clock.now() + KEEP_AWAKE_FOR if kind is OverrideKind.KEEP_AWAKE else None
    try:
        made = schedule.override(
            rt.scheduler,
            who,
            kind,
            environment,
            until=until,
            region=region,
            reason=f"Slack button by {who.person}",
        )
    except OpsError as error:
        rt.ephemeral(channel, user, blocks.refusal(f"Nothing was set: {error.message}"))
        return
    where = f" in {region}" if region else ""
    done = (
        f":sunny: {environment}{where} kept awake until {made.until:%H:%M} UTC by {who.person}"
        if kind is OverrideKind.KEEP_AWAKE
        else f":zzz: {environment}{where} skips tonight's shutdown (until {made.until:%Y-%m-%d %H:%M} UTC)"
        f" by {who.person}"
    )
    original = [b for b in (body.get("message") or {}).get("blocks") or [] if b.get("type") != "actions"]
    if channel and ts:
        try:
            rt.slack.call(
                "chat.update",
                channel=channel,
                ts=ts,
                text=done,
                blocks=[*original, {"type": "context", "elements": [{"type": "mrkdwn", "text": done}]}],
            )
        except Exception:
            log.warning("could not update the shutdown warning", exc_info=True)
