"""Slack's documented Block Kit limits, checked the way Slack checks them, for the bot's tests and the
Slack stand-in (:mod:`slackmock` answers ``invalid_blocks`` / ``msg_too_long`` with these).

Each block is first parsed and validated with ``slack_sdk.models.blocks`` (header 150 chars, section text
3,000, button text 75, …); then the limits the SDK's models do not check are checked here, from
https://api.slack.com/reference/block-kit/blocks: 50 blocks per message, 100 per modal or Home tab, at
most 10 fields of 2,000 characters, a context of at most 10 elements, 25 elements per actions block, a
message ``text`` of at most 40,000 characters, a ``value`` of at most 2,000 characters, an unclosed code
fence (the renderer's own rule: Slack shows the rest of the message as code).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block

MAX_BLOCKS = {"message": 50, "modal": 100, "home": 100}


def problems(payload: Mapping[str, Any], surface: str = "message") -> list[str]:
    """What Slack would refuse in ``payload`` (a message: text + blocks; a view: type + blocks)."""
    found: list[str] = []
    blocks: Sequence[Mapping[str, Any]] = payload.get("blocks") or []
    limit = MAX_BLOCKS[surface]
    if len(blocks) > limit:
        found.append(f"{len(blocks)} blocks (a {surface} takes at most {limit})")
    text = payload.get("text")
    if isinstance(text, str) and len(text) > 40_000:
        found.append(f"text of {len(text)} characters (at most 40,000)")
    if surface != "message":
        title = ((payload.get("title") or {}).get("text")) or ""
        if len(title) > 24:
            found.append(f"view title of {len(title)} characters (at most 24)")
    for i, block in enumerate(blocks):
        where = f"block {i} ({block.get('type')})"
        try:
            parsed = Block.parse(dict(block))
            if parsed is None:
                found.append(f"{where}: unknown block type")
                continue
            parsed.validate_json()
        except SlackObjectFormationError as error:
            found.append(f"{where}: {error}")
        fields = block.get("fields") or []
        if len(fields) > 10:
            found.append(f"{where}: {len(fields)} fields (at most 10)")
        for field in fields:
            if len(str(field.get("text") or "")) > 2000:
                found.append(f"{where}: a field of {len(field['text'])} characters (at most 2,000)")
        if block.get("type") == "context" and len(block.get("elements") or []) > 10:
            found.append(f"{where}: {len(block['elements'])} context elements (at most 10)")
        if block.get("type") == "actions" and len(block.get("elements") or []) > 25:
            found.append(f"{where}: {len(block['elements'])} actions (at most 25)")
        for element in block.get("elements") or []:
            if len(str(element.get("value") or "")) > 2000:
                found.append(f"{where}: a button value over 2,000 characters")
        texts = [str((block.get("text") or {}).get("text") or "")]
        texts += [str(f.get("text") or "") for f in fields]
        texts += [
            str(e.get("text") or "") for e in block.get("elements") or [] if isinstance(e.get("text"), str)
        ]
        for t in texts:
            if t.count("```") % 2:
                found.append(f"{where}: an unclosed code block")
    return found


def assert_within_limits(payload: Mapping[str, Any], surface: str = "message") -> None:
    bad = problems(payload, surface)
    assert not bad, f"Slack would refuse this {surface}: " + "; ".join(bad)
