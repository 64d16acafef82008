"""Two `opsconsole bot` processes on one PostgreSQL behave as one: a request is posted once, the same
click delivered to both replicas is one vote, an event retried to the other replica takes effect once,
and a vote cast in the terminal is shown by the bots (polled from the store)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import slackpayloads as sp
from botprocess import OPSCONSOLE, bot_environment, running_bot
from conftest import approvals, request_message, send
from slackmock import SlackMock

from bot import blocks
from opsconsole.testing.postgres import ThrowawayPostgres

pytestmark = pytest.mark.slow


def test_two_replicas_on_postgresql_act_once(
    tmp_path: Path, slack: SlackMock, postgres_server: ThrowawayPostgres
) -> None:
    env = bot_environment(
        tmp_path,
        slack.api_url,
        OPSCONSOLE_SANDBOX_READER="sim",
        OPSCONSOLE_BOT_UPDATE_INTERVAL_S="1",
        OPSCONSOLE_DB_URL=postgres_server.create_database("botreplicas"),
    )
    with running_bot(tmp_path, env, name="a") as a, running_bot(tmp_path, env, name="b") as b:
        send(a, sp.slash("failover eu-west-1 eu-central-1", "U0ALICE", slack.response_url("file")))
        slack.wait_for("response_url")
        rid = approvals(tmp_path, env)[0]["request_id"]
        request_message(slack, rid)
        click = sp.block_action(
            blocks.APPROVE,
            rid,
            "U0BOB",
            channel="C0SBXAPPROVALS",
            message_ts="1700000000.7",
            response_url=slack.response_url("bob"),
        )
        assert send(a, click)[0] == 200 and send(b, click)[0] == 200  # delivered to both replicas
        event = sp.event_callback({"type": "app_home_opened", "user": "U0CAROL", "tab": "home"}, "Ev0REPL01")
        send(a, event)
        send(b, event, headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
        # A vote in the terminal: the bots see it in the store and re-render the message.
        subprocess.run(
            [OPSCONSOLE, "--as", "erin", "approvals", "approve", rid, "--no-run"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        slack.wait_for(
            "chat.update", lambda c: "Approved by bob, erin" in json.dumps(c.params["blocks"]), timeout=30
        )
        time.sleep(2.0)
        posts = [
            c
            for c in slack.of("chat.postMessage")
            if rid in json.dumps(c.params.get("blocks")) and c.params["channel"] == "C0SBXAPPROVALS"
        ]
        assert len(posts) == 1, "both replicas posted the request"
        request = approvals(tmp_path, env)[0]
        assert request["status"] == "approved"
        votes = json.loads(
            subprocess.run(
                [OPSCONSOLE, "approvals", "show", rid, "--json"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout
        )["votes"]
        assert sorted(v["person"] for v in votes) == ["bob", "erin"]  # bob's double delivery: one vote
        # The retried event took effect once (the other replica counted it a duplicate); a second publish
        # may follow bob's vote (App Home is re-published when a request changes while it is open).
        duplicates = sum(
            float(line.rsplit(" ", 1)[1])
            for bot in (a, b)
            for line in bot.get("/metrics").splitlines()
            if line.startswith('opsconsole_bot_duplicates_total{kind="event"}')
        )
        assert duplicates == 1 and len(slack.of("views.publish")) <= 2
        told = slack.of("chat.postEphemeral", lambda c: c.params["user"] == "U0BOB")
        assert len(told) == 1 and "counted" in told[0].params["text"]  # one vote, told once
