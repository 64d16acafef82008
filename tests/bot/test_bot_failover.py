"""The issue's done-when, over real HTTP against a local Slack API server and the shared local cloud
(`opsconsole sandbox up`): alice asks for a prod failover, her own approval is refused, bob and carol
approve with the buttons, the real failover playbook runs once, and the message follows the run to the
end — at most one edit per 5 s, with a 429 waited out — while the terminal's queue shows the same request.
A request approved in the terminal with ``--no-run`` shows a [Run] button: a viewer's click is refused, two
operators clicking at once start one run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import slackpayloads as sp
from botprocess import OPSCONSOLE, BotProcess, bot_environment, running_bot
from conftest import approvals, request_message, send
from slackmock import SlackMock

from bot import blocks

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from cli_process import sandbox_up

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("botdrill")
    with sandbox_up(home):
        yield home


@pytest.fixture(scope="module")
def env(home: Path, slack: SlackMock) -> dict[str, str]:
    return bot_environment(home, slack.api_url)  # the real adapters, the default 5 s edit interval


@pytest.fixture(scope="module")
def bot(home: Path, env: dict[str, str]) -> Iterator[BotProcess]:
    with running_bot(home, env) as process:
        yield process


def test_two_approvers_run_the_failover_once_and_the_message_follows_it(
    bot: BotProcess, slack: SlackMock, home: Path, env: dict[str, str]
) -> None:
    send(bot, sp.slash("failover eu-west-1 eu-central-1", "U0ALICE", slack.response_url("file")))
    rid = slack.wait_for("response_url", timeout=60) and approvals(home, env)[0]["request_id"]
    posted = request_message(slack, rid)
    channel = posted.params["channel"]

    def click(user: str) -> None:
        assert (
            send(
                bot,
                sp.block_action(
                    blocks.APPROVE,
                    rid,
                    user,
                    channel=channel,
                    message_ts="1700000000.9",
                    response_url=slack.response_url(user),
                ),
            )[0]
            == 200
        )

    click("U0ALICE")
    assert "you filed this request" in slack.wait_for("chat.postEphemeral")[0].params["text"]
    click("U0BOB")
    slack.rate_limit("chat.update", 3)  # Slack pushes back once while the run reports
    click("U0CAROL")

    def says(text: str):
        return lambda c: c.params.get("ts") and text in json.dumps(c.params.get("blocks"))

    final = slack.wait_for("chat.update", says("Succeeded"), timeout=240)[0]
    assert "changed" in json.dumps(final.params["blocks"])
    assert not [b for b in final.params["blocks"] if b["type"] == "actions"]
    updates = [
        c for c in slack.calls if c.method == "chat.update" and c.params.get("ts") == final.params["ts"]
    ]
    shown = [c for c in updates if c.status == 200]
    assert any("Running" in json.dumps(c.params["blocks"]) for c in shown), "no progress was shown"
    gaps = [b.at - a.at for a, b in pairwise(shown)]
    assert all(gap >= 4.8 for gap in gaps), gaps  # coalesced: at most one edit per 5 s
    limited = [c for c in updates if c.status == 429]
    assert limited and any(c.at - limited[0].at >= 2.9 for c in shown)  # waited out Retry-After: 3

    done = approvals(home, env)
    assert [(r["request_id"], r["status"]) for r in done] == [(rid, "succeeded")]
    jobs = json.loads(
        subprocess.run(
            [OPSCONSOLE, "jobs", "list", "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=True,
        ).stdout
    )
    runs = [j for j in jobs if j["action"] == "failover" and not j["check_mode"]]
    assert len(runs) == 1 and runs[0]["status"] == "succeeded" and runs[0]["face"] == "slack"
    time.sleep(0.1)


def test_a_request_approved_elsewhere_without_a_run_gets_a_run_button_that_runs_it_once(
    bot: BotProcess, slack: SlackMock, home: Path, env: dict[str, str]
) -> None:
    send(bot, sp.slash("scale checkout 3 --region us-east-1", "U0ALICE", slack.response_url("noRun")))
    slack.wait_for("response_url", lambda c: c.params["_path"].endswith("/noRun"), timeout=60)
    [waiting] = [r for r in approvals(home, env) if r["status"] == "requested"]
    rid = waiting["request_id"]
    channel = request_message(slack, rid).params["channel"]

    def show() -> dict[str, Any]:
        result = subprocess.run(
            [OPSCONSOLE, "approvals", "show", rid, "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=True,
        )
        return dict(json.loads(result.stdout))

    # Approved in the terminal, only voting: nothing starts it, and the message says so, with [Run].
    while (request := show())["status"] == "requested":
        person = request["may_still_vote"][0]
        subprocess.run(
            [OPSCONSOLE, "--as", person, "approvals", "approve", rid, "--no-run"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=True,
        )
    assert request["status"] == "approved"
    shown = slack.wait_for(
        "chat.update",
        lambda c: (
            rid in json.dumps(c.params.get("blocks")) and blocks.RUN in json.dumps(c.params.get("blocks"))
        ),
        timeout=30,
    )[0]
    assert "not started" in json.dumps(shown.params["blocks"]) and "alice" in json.dumps(
        shown.params["blocks"]
    )

    def click(user: str) -> None:
        action = sp.block_action(
            blocks.RUN,
            rid,
            user,
            channel=channel,
            message_ts="1700000200.1",
            response_url=slack.response_url(f"run-{user}"),
        )
        assert send(bot, action)[0] == 200

    click("U0VICTOR")  # a viewer: told why, nothing runs
    told = slack.wait_for("chat.postEphemeral", lambda c: c.params["user"] == "U0VICTOR", timeout=30)[0]
    assert "viewer" in told.params["text"] and "Not started" in told.params["text"]
    assert show()["status"] == "approved"

    # Two eligible people click at the same instant: one run.
    threads = [threading.Thread(target=click, args=(user,)) for user in ("U0ALICE", "U0CAROL")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    final = slack.wait_for(
        "chat.update",
        lambda c: c.params.get("ts") == shown.params["ts"] and "Succeeded" in json.dumps(c.params["blocks"]),
        timeout=90,
    )[0]
    assert not [b for b in final.params["blocks"] if b["type"] == "actions"]
    assert show()["status"] == "succeeded"
    jobs = json.loads(
        subprocess.run(
            [OPSCONSOLE, "jobs", "list", "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=True,
        ).stdout
    )
    runs = [
        j
        for j in jobs
        if j["action"] == "scale" and not j["check_mode"] and j["params"].get("region") == "us-east-1"
    ]
    assert len(runs) == 1 and runs[0]["status"] == "succeeded" and runs[0]["face"] == "slack"
    refused = slack.of(
        "chat.postEphemeral",
        lambda c: (
            c.params["user"] in ("U0ALICE", "U0CAROL")
            and ("did not start" in c.params["text"] or "nothing to run" in c.params["text"])
        ),
    )
    assert len(refused) <= 1  # the slower of the two clicks is told it already started
