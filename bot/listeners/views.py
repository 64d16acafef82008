"""Modal submissions: the reason for a rejection.

An empty reason is answered in the ack (Slack shows the error under the field and keeps the modal open);
otherwise the modal closes at once and the rejection is filed after, deduplicated on the view's id. The
role is checked by the pipeline with the submitting user from this payload.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from slack_bolt import Ack, App

from bot import blocks, metrics
from bot.runtime import BotRuntime, subject_of
from opsconsole.core.change.requests import RequestRefused


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
        rt.work(on_reject, rt, body)


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
        rt.ephemeral(meta.get("channel"), user, blocks.refusal(f"Not rejected: {error.message}"))
    rt.updater.touch(subject_of(request_id))
