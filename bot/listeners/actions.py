"""Button clicks: Approve / Reject / Run on a request's message, Keep awake / Skip tonight on a shutdown
warning.

The role is checked when the click arrives, with the clicking user from *this* payload, by the pipeline
(the requester's own Approve and a viewer's are refused there, and the refusal is audited); the person
is told why in an ephemeral reply. A click Slack delivers twice (a retry, a double click) counts once:
the outbox dedupes on action id + message ts + user. The approval that completes a request starts its
run here, at once; the pipeline's compare-and-set and lease make sure it runs once even when two
replicas or a terminal try at the same instant. A request approved elsewhere without a run (``approvals
approve --no-run``) shows a Run button, for operators and above in its scope.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from slack_bolt import Ack, App

from bot import blocks, metrics, schedule
from bot.runtime import BotRuntime, subject_of
from opsconsole.core.audit.records import AuditKind
from opsconsole.core.change.approvals import RequestStatus
from opsconsole.core.change.rbac import Identity, Permission
from opsconsole.core.change.requests import RequestRefused
from opsconsole.core.errors import OpsError
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
    action = (body.get("actions") or [{}])[0]
    _, ts = _where(body)
    user = (body.get("user") or {}).get("id")
    return f"click:{action.get('action_id')}:{ts}:{user}"


def _first_click(rt: BotRuntime, body: Mapping[str, Any]) -> bool:
    if rt.outbox.first_time(click_key(body)):
        return True
    metrics.DUPLICATES.labels("click").inc()
    return False


def register(app: App, rt: BotRuntime) -> None:
    @app.action(blocks.APPROVE)
    def approve(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        metrics.PAYLOADS.labels("approve").inc()
        rt.work(on_approve, rt, body)

    @app.action(blocks.REJECT)
    def reject(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        metrics.PAYLOADS.labels("reject").inc()
        # views.open must follow the click within 3 s (the trigger id expires): do it in this thread.
        on_reject_click(rt, body)

    @app.action(blocks.RUN)
    def run(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        metrics.PAYLOADS.labels("run").inc()
        rt.work(on_run, rt, body)

    @app.action(blocks.KEEP_AWAKE)
    def keep_awake(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        metrics.PAYLOADS.labels("keep_awake").inc()
        rt.work(on_shutdown_button, rt, body, OverrideKind.KEEP_AWAKE)

    @app.action(blocks.SKIP_TONIGHT)
    def skip_tonight(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        metrics.PAYLOADS.labels("skip_tonight").inc()
        rt.work(on_shutdown_button, rt, body, OverrideKind.SKIP_TONIGHT)


def on_approve(rt: BotRuntime, body: Mapping[str, Any]) -> None:
    if not _first_click(rt, body):
        return
    channel, _ = _where(body)
    user = str((body.get("user") or {}).get("id") or "")
    request_id = str((body.get("actions") or [{}])[0].get("value") or "")
    who = rt.identity(body)
    pipeline = rt.core.pipeline
    try:
        after = pipeline.approve(request_id, who, face="slack")
    except RequestRefused as error:
        rt.ephemeral(channel, user, blocks.refusal(f"Not approved: {error.message}"))
        rt.updater.touch(subject_of(request_id))
        return
    rt.updater.touch(subject_of(after.id))
    if after.status is RequestStatus.APPROVED:
        start_run(rt, after.id, who, channel, user)


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
    try:
        request = pipeline.requests.get(request_id)
    except OpsError as error:
        rt.ephemeral(channel, user, blocks.refusal(error.message))
        return
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


def on_reject_click(rt: BotRuntime, body: Mapping[str, Any]) -> None:
    channel, ts = _where(body)
    user = str((body.get("user") or {}).get("id") or "")
    request_id = str((body.get("actions") or [{}])[0].get("value") or "")
    try:
        request = rt.core.pipeline.requests.get(request_id)
    except OpsError as error:
        rt.ephemeral(channel, user, blocks.refusal(error.message))
        return
    who = rt.identity(body)
    if not who.may(Permission.APPROVE, request.scope):
        rt.ephemeral(
            channel,
            user,
            blocks.refusal(
                f"{who.person} is a {who.role_for(request.scope).value} for "
                f"{request.scope.describe()}: "
                "only approvers may reject this request"
            ),
        )
        return
    if request.status is not RequestStatus.REQUESTED:
        rt.ephemeral(
            channel, user, blocks.refusal(f"the request is {request.status.value}: nothing to reject")
        )
        return
    metadata = json.dumps({"request_id": request.id, "channel": channel, "ts": ts})
    try:
        rt.slack.call(
            "views.open",
            trigger_id=body.get("trigger_id"),
            view=blocks.reject_modal(request, private_metadata=metadata),
        )
    except Exception:
        log.warning("could not open the rejection modal", exc_info=True)


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
