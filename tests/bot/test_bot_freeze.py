"""`/ops freeze` over real HTTP: an admin stops medium and high risk changes from Slack, everyone can read
it, an operator cannot switch it (refusal audited), and a filing from Slack honours a freeze switched from
the terminal: the freeze lives in the store, not in the face that switched it."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import slackpayloads as sp
from botprocess import OPSCONSOLE, BotProcess, bot_environment, running_bot
from conftest import approvals, send
from slackmock import SlackMock

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bot-freeze")


@pytest.fixture(scope="module")
def env(home: Path, slack: SlackMock) -> dict[str, str]:
    return bot_environment(home, slack.api_url, OPSCONSOLE_SANDBOX_READER="sim")


@pytest.fixture(scope="module")
def bot(home: Path, env: dict[str, str]) -> Iterator[BotProcess]:
    with running_bot(home, env) as process:
        yield process


def reply(slack: SlackMock, name: str) -> dict[str, object]:
    return slack.wait_for("response_url", lambda c: c.params["_path"].endswith(f"/{name}"))[0].params


def audit_kinds(env: dict[str, str]) -> list[str]:
    result = subprocess.run([OPSCONSOLE, "audit", "log", "--json", "--limit", "200"], capture_output=True,
                            text=True, env=env, timeout=60, check=True)
    return [entry["kind"] for entry in json.loads(result.stdout)]


def test_admins_switch_the_freeze_from_slack_and_filings_honour_it(
    bot: BotProcess, slack: SlackMock, env: dict[str, str], home: Path
) -> None:
    send(bot, sp.slash("freeze on <!channel> bad deploy", "U0ALICE", slack.response_url("operator")))
    refused = reply(slack, "operator")
    assert refused["response_type"] == "ephemeral" and "admin" in str(refused["text"])
    assert "freeze_refused" in audit_kinds(env)

    send(bot, sp.slash("freeze on <!channel> bad deploy", "U0ERIN", slack.response_url("on")))
    switched = reply(slack, "on")
    assert switched["response_type"] == "in_channel"
    assert "by erin" in str(switched["text"]) and "&lt;!channel&gt;" in str(switched["text"])

    send(bot, sp.slash("freeze", "U0VICTOR", slack.response_url("status")))
    assert "bad deploy" in str(reply(slack, "status")["text"])

    send(bot, sp.slash("failover eu-west-1 eu-central-1", "U0ALICE", slack.response_url("file")))
    filed = reply(slack, "file")
    assert "emergency freeze" in str(filed["text"]) and filed["response_type"] == "ephemeral"
    assert approvals(home, env) == []

    send(bot, sp.slash("freeze off", "U0ERIN", slack.response_url("off")))
    assert "lifted by erin" in str(reply(slack, "off")["text"])
    send(bot, sp.slash("failover eu-west-1 eu-central-1", "U0ALICE", slack.response_url("again")))
    assert "Filed request" in str(reply(slack, "again")["text"])
    kinds = audit_kinds(env)
    assert "freeze_on" in kinds and "freeze_off" in kinds


def test_a_freeze_switched_in_the_terminal_stops_a_slack_filing(
    bot: BotProcess, slack: SlackMock, env: dict[str, str]
) -> None:
    subprocess.run([OPSCONSOLE, "--as", "erin", "freeze", "on", "--reason", "db migration"],
                   capture_output=True, text=True, env=env, timeout=120, check=True)
    try:
        send(bot, sp.slash("failover us-east-1 us-west-2", "U0ALICE", slack.response_url("terminal")))
        text = str(reply(slack, "terminal")["text"])
        assert "db migration" in text, text
    finally:
        subprocess.run([OPSCONSOLE, "--as", "erin", "freeze", "off"], capture_output=True, text=True,
                       env=env, timeout=120, check=True)


@pytest.mark.parametrize(("text", "message"), [("freeze on", "needs a reason"), ("freeze maybe", "on, off")])
def test_bad_freeze_commands_are_answered_with_the_usage(
    bot: BotProcess, slack: SlackMock, text: str, message: str
) -> None:
    status, body = send(bot, sp.slash(text, "U0ERIN", slack.response_url("bad")))
    assert status == 200 and message in body and "/ops freeze on" in body
