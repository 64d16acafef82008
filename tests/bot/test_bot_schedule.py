"""The bot on the real scheduler, over real HTTP, two replicas on one PostgreSQL: ``/ops env staging status``
answers the schedule state; ``/ops keep-awake`` sets an override for an operator (seen by ``opsconsole
schedule show``) and refuses a viewer (nothing set); a shutdown warning raised in the store the way the
scheduler raises it is posted once, to its region's channel, with [Keep awake 2h] / [Skip tonight], and
the button sets the override (audited) and updates the message.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import slackpayloads as sp
from botprocess import OPSCONSOLE, BotProcess, bot_environment, running_bot
from conftest import send
from slackmock import SlackMock

from bot import blocks
from opsconsole.core.clock import SystemClock
from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.schedule.engine import NOTICE_KIND, load_schedules, notice_key
from opsconsole.core.store.db import Database
from opsconsole.core.store.outbox import Outbox
from opsconsole.testing.postgres import ThrowawayPostgres

pytestmark = pytest.mark.slow

INVENTORY = Path(__file__).resolve().parents[2] / "inventory"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("botschedule")


@pytest.fixture(scope="module")
def env(home: Path, slack: SlackMock, postgres_server: ThrowawayPostgres) -> dict[str, str]:
    return bot_environment(
        home,
        slack.api_url,
        OPSCONSOLE_SANDBOX_READER="sim",
        OPSCONSOLE_BOT_NOTICE_S="0.5",
        OPSCONSOLE_DB_URL=postgres_server.create_database("botschedule"),
    )


@pytest.fixture(scope="module")
def bots(home: Path, env: dict[str, str]) -> Iterator[tuple[BotProcess, BotProcess]]:
    with running_bot(home, env, name="a") as a, running_bot(home, env, name="b") as b:
        yield a, b


def cli(env: dict[str, str], *args: str) -> Any:
    result = subprocess.run(
        [OPSCONSOLE, *args], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    return json.loads(result.stdout)


def reply(slack: SlackMock, name: str) -> dict[str, Any]:
    return slack.wait_for("response_url", lambda c: c.params["_path"].endswith(f"/{name}"))[0].params


def overrides(env: dict[str, str]) -> list[dict[str, Any]]:
    rows = cli(env, "schedule", "show", "staging", "--json")
    return sorted({o["id"]: o for r in rows for o in r["overrides"]}.values(), key=lambda o: o["until"])


def test_env_status_answers_the_schedule_state(
    bots: tuple[BotProcess, BotProcess], slack: SlackMock, env: dict[str, str]
) -> None:
    send(bots[0], sp.slash("env staging status", "U0VICTOR", slack.response_url("envstatus")))
    message = reply(slack, "envstatus")
    text = json.dumps(message["blocks"])
    shown = cli(env, "schedule", "show", "staging", "--json")
    assert message["response_type"] == "ephemeral" and "staging" in str(message["text"])
    for row in shown:  # every region of the schedule, with its state now and its next transition
        assert f"*{row['region']}*: {row['desired']} now" in text
        assert f"next: {row['next_transitions'][0]['state']} <!date^" in text
    assert "{'at'" not in text and "None" not in text
    send(bots[0], sp.slash("env nosuchenv status", "U0VICTOR", slack.response_url("envbad")))
    bad = reply(slack, "envbad")
    assert "nosuchenv" in str(bad["text"]) and "staging" in str(bad["text"])


def test_keep_awake_sets_an_override_for_an_operator_and_refuses_a_viewer(
    bots: tuple[BotProcess, BotProcess], slack: SlackMock, env: dict[str, str]
) -> None:
    at = (SystemClock().now() + timedelta(hours=3)).strftime("%H:%M")
    send(bots[0], sp.slash(f"keep-awake staging until {at}", "U0VICTOR", slack.response_url("kav")))
    refused = reply(slack, "kav")
    assert "viewer" in str(refused["text"]) and refused["response_type"] == "ephemeral"
    assert overrides(env) == []

    send(bots[0], sp.slash(f"keep-awake staging until {at}", "U0ALICE", slack.response_url("kaa")))
    done = reply(slack, "kaa")
    assert "stays awake until" in str(done["text"]) and "alice" in str(done["text"])
    [override] = overrides(env)
    assert override["kind"] == "keep_awake" and override["by"] == "alice" and override["region"] is None
    assert override["until"][11:16] == at  # the time alice gave (UTC, the bot's clock zone)
    audit = cli(env, "audit", "log", "--json")
    assert any(
        e["kind"] == "request_refused" and e["actor"] == "victor" and e["face"] == "slack" for e in audit
    )
    assert any(e["kind"] == "override_set" and e["actor"] == "alice" and e["face"] == "slack" for e in audit)


def test_a_shutdown_warning_is_posted_once_and_keep_awake_sets_the_override(
    bots: tuple[BotProcess, BotProcess], slack: SlackMock, env: dict[str, str]
) -> None:
    fleet = load_inventory(INVENTORY)
    [unit] = load_schedules(fleet.source, fleet).of("staging", "eu-west-1")
    at = (SystemClock().now() + timedelta(minutes=20)).replace(second=0, microsecond=0)
    key = notice_key(unit, at)
    database = Database(env["OPSCONSOLE_DB_URL"])
    try:
        raised = Outbox(database).raise_notice(
            key,
            kind=NOTICE_KIND,
            subject=unit.environment,
            data={
                "environment": unit.environment,
                "region": unit.region,
                "at": at.isoformat(),
                "lead_s": 1200,
                "clusters": list(unit.clusters),
            },
        )
    finally:
        database.engine.dispose()
    assert raised

    def warning(call: Any) -> bool:
        return blocks.KEEP_AWAKE in json.dumps(call.params.get("blocks"))

    posted = slack.wait_for("chat.postMessage", warning, timeout=20)[0]
    assert posted.params["channel"] == "C0SBXEMEA"  # eu-west-1's geography on the sandbox
    [actions] = [b for b in posted.params["blocks"] if b["type"] == "actions"]
    assert [e["action_id"] for e in actions["elements"]] == [blocks.KEEP_AWAKE, blocks.SKIP_TONIGHT]
    assert "eu-west-1" in posted.params["text"] and f"{at:%H:%M}" in posted.params["text"]
    time.sleep(2.0)  # both replicas deliver every 0.5 s: neither posts it again
    assert len(slack.of("chat.postMessage", warning)) == 1

    value = actions["elements"][0]["value"]
    click = sp.block_action(
        blocks.KEEP_AWAKE,
        value,
        "U0ALICE",
        channel="C0SBXEMEA",
        message_ts="1700000100.000001",
        response_url=slack.response_url("keep"),
        blocks=posted.params["blocks"],
    )
    assert send(bots[1], click)[0] == 200 and send(bots[0], click)[0] == 200  # to both replicas
    update = slack.wait_for("chat.update", lambda c: c.params["ts"] == "1700000100.000001", timeout=20)[0]
    assert "kept awake until" in update.params["text"] and "alice" in update.params["text"]
    assert not [b for b in update.params["blocks"] if b["type"] == "actions"]  # buttons gone
    time.sleep(1.0)
    mine = [o for o in overrides(env) if o["region"] == "eu-west-1"]
    assert len(mine) == 1 and mine[0]["kind"] == "keep_awake" and mine[0]["by"] == "alice"  # one, not two
    audit = cli(env, "audit", "log", "--json")
    sets = [e for e in audit if e["kind"] == "override_set" and e["data"].get("region") == "eu-west-1"]
    assert len(sets) == 1 and sets[0]["actor"] == "alice" and sets[0]["face"] == "slack"

    # A viewer's click on the same warning is refused and sets nothing.
    viewer = sp.block_action(
        blocks.SKIP_TONIGHT,
        value,
        "U0VICTOR",
        channel="C0SBXEMEA",
        message_ts="1700000100.000001",
        response_url=slack.response_url("skipv"),
        blocks=posted.params["blocks"],
    )
    send(bots[0], viewer)
    told = slack.wait_for("chat.postEphemeral", lambda c: c.params["user"] == "U0VICTOR", timeout=20)[0]
    assert "viewer" in told.params["text"] and "Nothing was set" in told.params["text"]
    assert len([o for o in overrides(env) if o["region"] == "eu-west-1"]) == 1
