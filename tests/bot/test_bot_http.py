"""`opsconsole bot` over real HTTP, on the sandbox with the in-process reader (no playbook runs), with a
local Slack Web API server: signatures, /ops replies, filing, click checks and dedupe, retries, 429s.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import slackpayloads as sp
from botprocess import BOT_TOKEN, BotProcess, bot_environment, running_bot
from conftest import approvals, request_message, send
from slackmock import SlackMock

from bot import blocks

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bot")


@pytest.fixture(scope="module")
def env(home: Path, slack: SlackMock) -> dict[str, str]:
    return bot_environment(
        home, slack.api_url, OPSCONSOLE_SANDBOX_READER="sim", OPSCONSOLE_BOT_UPDATE_INTERVAL_S="1"
    )


@pytest.fixture(scope="module")
def bot(home: Path, env: dict[str, str]) -> Iterator[BotProcess]:
    with running_bot(home, env) as process:
        yield process


def reply(slack: SlackMock, name: str) -> dict[str, object]:
    return slack.wait_for("response_url", lambda c: c.params["_path"].endswith(f"/{name}"))[0].params


def test_forged_signature_and_stale_timestamp_are_refused_and_file_nothing(
    bot: BotProcess, slack: SlackMock, home: Path, env: dict[str, str]
) -> None:
    failover = sp.slash("failover eu-west-1 eu-central-1", "U0ALICE", slack.response_url("forged"))
    assert send(bot, failover, secret="not-the-secret")[0] == 401
    stale = sp.slash("failover eu-west-1 eu-central-1", "U0ALICE", slack.response_url("stale"))
    assert send(bot, stale, timestamp=int(time.time()) - 6 * 60)[0] == 401
    time.sleep(1.0)
    assert approvals(home, env) == []
    assert not slack.of("chat.postMessage") and not slack.of("response_url")


def test_status_is_block_kit(bot: BotProcess, slack: SlackMock) -> None:
    started = time.monotonic()
    status, _ = send(bot, sp.slash("status", "U0VICTOR", slack.response_url("status")))
    assert status == 200 and time.monotonic() - started < 3.0
    message = reply(slack, "status")
    kinds = [b["type"] for b in message["blocks"]]  # type: ignore[index]
    assert kinds[0] == "header" and len(kinds) <= 50  # figures + the region lines, packed into sections
    assert json.dumps(message["blocks"], ensure_ascii=False).count("· tier ") >= 10  # one line per region
    assert message["response_type"] == "ephemeral"
    assert "eu-west-1" in json.dumps(message["blocks"]) and "p95" in json.dumps(message["blocks"])
    send(bot, sp.slash("status eu-west-1", "U0VICTOR", slack.response_url("status-region")))
    one = json.dumps(reply(slack, "status-region")["blocks"])
    assert "*eu-west-1*" in one and "*us-east-1*" not in one


def test_bad_input_and_viewers_get_an_ephemeral_reply_and_nothing_is_filed(
    bot: BotProcess, slack: SlackMock, home: Path, env: dict[str, str]
) -> None:
    status, body = send(
        bot, sp.slash("scale checkout lots --region eu-west-1", "U0ALICE", slack.response_url("x"))
    )
    assert status == 200 and "Usage" in body and "ephemeral" in body  # answered in the ack itself
    send(bot, sp.slash("scale nosuchservice 3 --region eu-west-1", "U0ALICE", slack.response_url("badwl")))
    bad = reply(slack, "badwl")
    assert (
        bad["response_type"] == "ephemeral"
        and "nosuchservice" in str(bad["text"])
        and "Usage" in str(bad["text"])
    )
    send(bot, sp.slash("failover eu-west-1 eu-central-1", "U0VICTOR", slack.response_url("viewer")))
    viewer = reply(slack, "viewer")
    assert viewer["response_type"] == "ephemeral" and "viewer" in str(viewer["text"])
    send(bot, sp.slash("frobnicate", "U0ALICE", slack.response_url("unknown")))
    time.sleep(1.0)
    assert approvals(home, env) == []
    assert not slack.of("chat.postMessage")


def test_a_risky_request_is_posted_with_buttons_and_checked_at_click_time(
    bot: BotProcess, slack: SlackMock, home: Path, env: dict[str, str]
) -> None:
    send(bot, sp.slash("failover eu-west-1 eu-central-1", "U0ALICE", slack.response_url("file")))
    filed = reply(slack, "file")
    assert "Filed request" in str(filed["text"]) and "<@U0BOB>, <@U0CAROL>" in str(filed["text"])
    listed = approvals(home, env)  # the same queue the terminal shows
    assert len(listed) == 1 and listed[0]["status"] == "requested" and listed[0]["face"] == "slack"
    rid = listed[0]["request_id"]
    posted = request_message(slack, rid)
    assert posted.params["channel"] == "C0SBXAPPROVALS"
    actions = [b for b in posted.params["blocks"] if b["type"] == "actions"]
    assert [e["action_id"] for e in actions[0]["elements"]] == [blocks.APPROVE, blocks.REJECT]
    ts = "1700000000.000001"  # any ts: the bot edits via its own reference, the payload's only dedupes
    ts = slack.of("chat.postMessage")[0].params.get("ts", ts)

    def click(user: str, action: str = blocks.APPROVE) -> tuple[int, str]:
        return send(
            bot,
            sp.block_action(
                action,
                rid,
                user,
                channel="C0SBXAPPROVALS",
                message_ts="1700000000.5",
                response_url=slack.response_url(f"click-{user}"),
            ),
        )

    assert click("U0ALICE")[0] == 200
    own = slack.wait_for("chat.postEphemeral", lambda c: c.params["user"] == "U0ALICE")[0]
    assert "you filed this request" in own.params["text"]
    click("U0VICTOR")
    viewer = slack.wait_for("chat.postEphemeral", lambda c: c.params["user"] == "U0VICTOR")[0]
    assert "viewer" in viewer.params["text"]
    click("U0BOB")
    click("U0BOB")  # the same click delivered again (a retry, a double click)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and approvals(home, env)[0]["needs"]["approvals"] != 1:
        time.sleep(0.2)
    time.sleep(1.0)
    request = approvals(home, env)[0]
    assert request["status"] == "requested" and request["needs"]["approvals"] == 1  # one vote, not two
    # Bob is told his vote counted, once (not "already approved" for the repeat).
    [counted] = slack.of("chat.postEphemeral", lambda c: c.params["user"] == "U0BOB")
    assert "Your approval counted (1 of 2)" in counted.params["text"]
    # The message follows the vote, in place.
    update = slack.wait_for(
        "chat.update", lambda c: "approved so far by bob" in json.dumps(c.params["blocks"])
    )
    assert update[0].params["channel"] == "C0SBXAPPROVALS"

    # Carol rejects through the modal; Slack answers the first chat.update 429: the bot waits and posts.
    assert click("U0CAROL", blocks.REJECT)[0] == 200
    slack.wait_for("views.open")  # at once, before the store is read; then filled in
    opened = slack.wait_for("views.update")[0]
    view = opened.params["view"]
    assert view["callback_id"] == blocks.REJECT_MODAL
    slack.rate_limit("chat.update", 2)
    values = {
        blocks.REASON_BLOCK: {
            blocks.REASON_INPUT: {"type": "plain_text_input", "value": "not during the sale"}
        }
    }
    status, _ = send(
        bot, sp.view_submission(blocks.REJECT_MODAL, "V0REJECT1", "U0CAROL", view["private_metadata"], values)
    )
    assert status == 200
    final = slack.wait_for(
        "chat.update", lambda c: "Rejected by carol" in json.dumps(c.params["blocks"]), timeout=30
    )[0]
    limited = [c for c in slack.calls if c.method == "chat.update" and c.status == 429]
    assert limited and final.at - limited[0].at >= 1.9  # Retry-After: 2 was honoured
    assert not [b for b in final.params["blocks"] if b["type"] == "actions"]  # buttons gone
    assert approvals(home, env)[0]["status"] == "rejected"


def test_a_retried_event_takes_effect_once(bot: BotProcess, slack: SlackMock) -> None:
    event = {
        "type": "app_home_opened",
        "user": "U0BOB",
        "channel": "D0BOB",
        "tab": "home",
        "event_ts": "1700000000.1",
    }
    payload = sp.event_callback(event, "Ev0HOME0001")
    assert send(bot, payload)[0] == 200
    assert (
        send(bot, payload, headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})[0]
        == 200
    )
    home = slack.wait_for("views.publish")[0]
    time.sleep(1.5)
    assert len(slack.of("views.publish")) == 1
    assert home.params["user_id"] == "U0BOB" and home.params["view"]["type"] == "home"
    assert "Waiting for your approval" in json.dumps(home.params["view"])


def test_health_metrics_and_no_token_in_the_log(bot: BotProcess) -> None:
    assert json.loads(bot.get("/healthz"))["ok"] is True
    metrics = bot.get("/metrics")
    assert "opsconsole_bot_http_seconds_count" in metrics and "opsconsole_bot_duplicates_total" in metrics
    assert BOT_TOKEN not in bot.output() and BOT_TOKEN[5:] not in metrics
    assert " INFO bot." in bot.output()  # the log is on by default (issue 15, defect 3)


def test_missing_or_refused_settings_are_one_message_and_exit_2(tmp_path: Path, slack: SlackMock) -> None:
    import subprocess  # noqa: PLC0415

    from botprocess import OPSCONSOLE  # noqa: PLC0415

    env = bot_environment(tmp_path, slack.api_url)
    del env["SLACK_SIGNING_SECRET"]
    result = subprocess.run(
        [OPSCONSOLE, "bot"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert (
        result.returncode == 2
        and "SLACK_SIGNING_SECRET" in result.stderr
        and "Traceback" not in result.stderr
    )
    env = bot_environment(tmp_path, "http://127.0.0.1:9/api/")  # nothing listens there
    result = subprocess.run(
        [OPSCONSOLE, "bot"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2 and "cannot reach the Slack Web API" in result.stderr, result.stderr
    assert BOT_TOKEN not in result.stderr + result.stdout
