"""``/ops drill failover eu-west-1 eu-central-1`` (issue 14, "DR drills"), from Slack to the report: alice
files it, the bot runs the drill on its pool with her identity, each move (the failover, then the
failback) is posted to the approvals channel and approved with the buttons by bob and carol, the real
playbooks run against a local cloud started for the test, the failover's request message shows the RTO
clock and then the verdict, and the drill's thread ends with the summary (verdict, RTO, RPO, the report's
path), the report written under the home. In process (the real Bolt app and runtime, the Slack stand-in).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from inproc import INVENTORY, bot_on, click, dispatch_ack, slash, wait_until
from slackmock import Call, SlackMock

from bot import blocks
from opsconsole.core.change.approvals import RequestStatus
from opsconsole.wiring import sandbox_core

# Two real playbook runs and their approvals on a loaded 2-core machine: far past the default 120 s.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture
def slack() -> Iterator[SlackMock]:
    with SlackMock() as mock:
        yield mock


def test_a_drill_filed_in_slack_runs_through_the_approvals_and_posts_its_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slack: SlackMock
) -> None:
    monkeypatch.setenv("OPSCONSOLE_HOME", str(tmp_path))
    monkeypatch.delenv("OPSCONSOLE_SANDBOX_READER", raising=False)
    with sandbox_core(INVENTORY, home=tmp_path) as core, bot_on(core, slack.api_url) as (app, _rt):
        # the local cloud's emulators answer a few seconds after it starts: file on a complete view
        wait_until(lambda: not core.refresh().snapshot.partial, timeout=120, what="a complete fleet view")
        status, ack = dispatch_ack(app, slash("drill failover eu-west-1 eu-central-1", "U0ALICE",
                                               slack.response_url("drill"), channel="C0DRILLS"))
        assert status == 200 and "Usage" not in ack, ack
        reply = slack.wait_for("response_url", timeout=120)[0]
        assert "Drill started" in json.dumps(reply.params), reply.params

        def story() -> str:
            """The drill's thread so far (said when a wait fails: where the drill stands, and why)."""
            return "\n".join(str(c.params.get("text")) for c in slack.of(
                "chat.postMessage", lambda c: c.params.get("channel") == "C0DRILLS"))

        def approve(action: str) -> str:
            def waiting() -> list[str]:
                return [r.id for r in core.pipeline.requests.list(limit=20)
                        if r.action == action and r.status is RequestStatus.REQUESTED]
            try:
                [rid] = wait_until(waiting, timeout=240, what=f"the drill's {action} request")
            except AssertionError as missing:
                raise AssertionError(f"{missing}; the thread so far:\n{story()}") from None
            slack.wait_for("chat.postMessage", lambda c: rid in json.dumps(c.params.get("blocks")),
                           timeout=60)
            for user in ("U0BOB", "U0CAROL"):
                assert dispatch_ack(app, click(blocks.APPROVE, rid, user))[0] == 200
            return rid

        failover = approve("failover")
        approve("failback")

        def summary() -> list[Call]:
            return slack.of("chat.postMessage", lambda c: "*Report*" in str(c.params.get("text")))

        try:
            [done] = wait_until(summary, timeout=600, what="the drill's summary in its thread")
        except AssertionError as missing:
            raise AssertionError(f"{missing}; the thread so far:\n{story()}") from None
        text = str(done.params["text"])
        parent = slack.of("chat.postMessage", lambda c: "DR drill by *alice*" in str(c.params.get("text")))
        assert parent and done.params["channel"] == "C0DRILLS" and done.params.get("thread_ts"), done.params
        assert "*RTO* met: RTO " in text and "(critical tier)" in text, text
        assert "*RPO*" in text, text
        report = Path(text.split("*Report* `")[1].split("`", maxsplit=1)[0])
        assert report.is_file() and report.parent == tmp_path / "drills"
        assert report.with_suffix(".json").is_file()
        assert "RTO verdict: met" in report.read_text()

        # the failover's own message in the approvals channel: the clock while it ran, the verdict after
        def edits_of(rid: str) -> list[str]:
            """Every edit of ``rid``'s message (found by its buttons, then followed by its ts: a finished
            request's message has no buttons left)."""
            updates = slack.of("chat.update")
            ts = {c.params.get("ts") for c in updates if rid in json.dumps(c.params.get("blocks"))}
            return [json.dumps(c.params.get("blocks")) for c in updates if c.params.get("ts") in ts]

        final = wait_until(lambda: [e for e in edits_of(failover) if "RTO met" in e], timeout=60,
                           what="the verdict on the failover's message")
        assert "to spare" in final[-1]
        assert any(" / 15:00 (critical tier)" in e and "Running" in e for e in edits_of(failover)), \
            "the message never showed the running clock"
