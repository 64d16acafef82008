"""Modal submissions: the reason for a rejection.

An empty reason is answered in the ack (Slack shows the error under the field and keeps the modal open);
otherwise the modal closes at once and the rejection is filed after, deduplicated on the view's id. The
role is checked by the pipeline with the submitting user from this payload.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from slack_bolt import Ack, App

from bot import blocks, metrics, modals
from bot.identity import slack_ids
from bot.parse import Command
from bot.runtime import BotRuntime, subject_of
from opsconsole.core.change.rbac import Permission, Scope
from opsconsole.core.change.requests import RequestRefused
from opsconsole.core.errors import OpsError

log = logging.getLogger(__name__)


def reason_of(body: Mapping[str, Any]) -> str:
    values = ((body.get("view") or {}).get("state") or {}).get("values") or {}
    return str(
        ((values.get(blocks.REASON_BLOCK) or {}).get(blocks.REASON_INPUT) or {}).get("value") or ""
    ).strip()


def register(app: App, rt: BotRuntime) -> None:
    @app.view(blocks.REJECT_MODAL)
    def reject_submitted(ack: Ack, body: dict[str, Any]) -> None:
        metrics.PAYLOADS.labels("view_submission").inc()
        if not reason_of(body):
            ack(
                response_action="errors", errors={blocks.REASON_BLOCK: "Say why: the requester will read it."}
            )
            return
        ack()
        rt.work(on_reject_told, rt, body)

    @app.shortcut(modals.SHORTCUT)
    def request_change(ack: Ack, body: dict[str, Any]) -> None:
        """The global shortcut *Request a change*: the chooser, at once (the trigger id lives 3 s)."""
        ack()
        metrics.PAYLOADS.labels("shortcut").inc()
        _, user = slack_ids(body)
        meta = json.dumps({"channel": None, "user": user})
        try:
            rt.slack.call(
                "views.open", trigger_id=body.get("trigger_id"), view=modals.chooser(private_metadata=meta)
            )
        except Exception:
            log.warning("could not open the change chooser", exc_info=True)

    @app.action(modals.ACTION_SELECT)
    def chosen(ack: Ack, body: dict[str, Any]) -> None:
        """The kind of change picked in the chooser: the same modal becomes its form."""
        ack()
        view = body.get("view") or {}
        action = str(((body.get("actions") or [{}])[0].get("selected_option") or {}).get("value") or "")
        if action not in modals.ACTIONS:
            return
        form = modals.form(rt.core.fleet, action, private_metadata=str(view.get("private_metadata") or "{}"))
        rt.work(
            lambda: rt.slack.call("views.update", view_id=view.get("id"), hash=view.get("hash"), view=form)
        )

    @app.view(modals.FORM)
    def form_submitted(ack: Ack, body: dict[str, Any]) -> None:
        """*Preview*: errors under the fields, or a "planning…" view now and the preview after."""
        metrics.PAYLOADS.labels("view_submission").inc()
        view = body.get("view") or {}
        meta = json.loads(str(view.get("private_metadata") or "{}"))
        command, errors = modals.command_of(str(meta.get("action") or ""), modals.values_of(view))
        if command is None:
            ack(response_action="errors", errors=errors)
            return
        meta["command"] = {k: v for k, v in asdict(command).items() if v is not None}
        text = json.dumps(meta)
        ack(response_action="update", view=modals.planning(private_metadata=text))
        rt.work(show_preview, rt, body, command, text)

    @app.view(modals.PREVIEW)
    def preview_submitted(ack: Ack, body: dict[str, Any]) -> None:
        """*File it*: the modal closes; the request is filed as ``/ops`` would, and the answer told."""
        metrics.PAYLOADS.labels("view_submission").inc()
        ack()
        rt.work(file_from_preview, rt, body)


def show_preview(rt: BotRuntime, body: Mapping[str, Any], command: Command, meta: str) -> None:
    """Plan ``command`` on a fresh read and turn the "planning…" view into the preview."""
    from bot.listeners.commands import _planner  # noqa: PLC0415

    view_id = (body.get("view") or {}).get("id")
    who = rt.identity(body)
    try:
        if not who.may(Permission.REQUEST, Scope.of()):
            raise RequestRefused(f"{who.person} is a viewer: asking for changes needs an operator role")
        fresh = rt.view(max_age_s=0.0)
        plan = _planner(command)(rt.core.fleet, fresh.snapshot)
        verdict = rt.core.pipeline.assess(plan, fresh.snapshot)
        approvers = [
            p
            for p in rt.core.directory.eligible(Permission.APPROVE, verdict.approver_scope)
            if p != who.person
        ]
        shown = modals.preview(
            summary=plan.summary,
            risk=str(verdict.level.value if hasattr(verdict.level, "value") else verdict.level),
            reasons=verdict.reasons,
            approvals_needed=verdict.approvals_needed,
            approvers=rt.mentions(approvers),
            freeze=verdict.freeze,
            private_metadata=meta,
        )
    except OpsError as error:
        shown = modals.problem(error.message, private_metadata=meta)
    except Exception:
        log.exception("previewing %s failed", command.name)
        shown = modals.problem(
            "something went wrong on our side; the bot's log says what", private_metadata=meta
        )
    rt.slack.call("views.update", view_id=view_id, view=shown)


def file_from_preview(rt: BotRuntime, body: Mapping[str, Any]) -> None:
    """File the previewed command; tell the person where it waits (in the channel they came from, or
    by DM)."""
    from bot.listeners.commands import file_change  # noqa: PLC0415

    meta = json.loads(str((body.get("view") or {}).get("private_metadata") or "{}"))
    command = Command(**(meta.get("command") or {}))
    _, user = slack_ids(body)
    who = rt.identity(body)
    try:
        message = file_change(rt, who, command, body)
    except OpsError as error:
        message = blocks.refusal(f"Not filed: {error.message}")
    rt.ephemeral(meta.get("channel"), user, message)


def on_reject_told(rt: BotRuntime, body: Mapping[str, Any]) -> None:
    """:func:`on_reject`, with a store outage before the vote told to the person too."""
    try:
        on_reject(rt, body)
    except OpsError as error:
        meta = json.loads(str((body.get("view") or {}).get("private_metadata") or "{}"))
        user = str((body.get("user") or {}).get("id") or "")
        rt.ephemeral(
            meta.get("channel"), user, blocks.notice_text(f":x: Not rejected: {error.title}: {error.message}")
        )
        raise


def on_reject(rt: BotRuntime, body: Mapping[str, Any]) -> None:
    view = body.get("view") or {}
    if not rt.outbox.first_time(f"view:{view.get('id')}"):
        metrics.DUPLICATES.labels("view_submission").inc()
        return
    meta = json.loads(str(view.get("private_metadata") or "{}"))
    request_id = str(meta.get("request_id") or "")
    user = str((body.get("user") or {}).get("id") or "")
    who = rt.identity(body)
    try:
        rt.core.pipeline.reject(request_id, who, face="slack", reason=reason_of(body))
    except RequestRefused as error:
        # The modal is closed: the channel (or a DM) is where the person can still be told.
        rt.ephemeral(meta.get("channel"), user, blocks.refusal(f"Not rejected: {error.message}"))
    except OpsError as error:
        log.warning("rejecting %s failed: %s", request_id[:8], error.message)
        rt.ephemeral(
            meta.get("channel"), user, blocks.notice_text(f":x: Not rejected: {error.title}: {error.message}")
        )
    except Exception:
        log.exception("rejecting %s failed", request_id[:8])
        rt.ephemeral(
            meta.get("channel"),
            user,
            blocks.notice_text(":x: Not rejected: something went wrong on our side; the bot's log says what"),
        )
    rt.updater.touch(subject_of(request_id))
