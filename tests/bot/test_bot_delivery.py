"""Issue 15, in process (a real core on SQLite, the real Bolt app, the Slack stand-in that refuses what
Slack refuses): approval posts are never lost (defect 1), re-clicks after drift count (2), failures after
the ack reach the person (3), dead messages stop being edited (5), the Reject modal opens before a slow
store is read (6); and the approvers are called (DM cards, a reminder), the thread tells the requester.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from botprocess import BOT_TOKEN
from inproc import APPROVALS, bot_on, click, core_on, dispatch, dispatch_ack, settings, slash, wait_until
from slackmock import Call, SlackMock

from bot import blocks, logs
from bot.app import web_client
from bot.progress import FACE, MessageUpdater
from bot.slackcalls import SlackCalls
from opsconsole.core.audit.records import AuditKind
from opsconsole.core.change.approvals import Drift, RequestStatus
from opsconsole.core.facade import OpsCore
from opsconsole.core.store.db import StoreUnavailable
from opsconsole.core.store.outbox import Outbox


@pytest.fixture
def slack() -> Iterator[SlackMock]:
    with SlackMock() as mock:
        yield mock


@pytest.fixture
def core(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[OpsCore]:
    monkeypatch.setenv("OPSCONSOLE_HOME", str(tmp_path))
    monkeypatch.setenv("OPSCONSOLE_SANDBOX_READER", "sim")
    with core_on(tmp_path) as core:
        yield core


def about(request_id: str):
    """The request's card in the approvals channel (not the DM cards)."""
    return lambda c: c.params.get("channel") == APPROVALS and request_id in json.dumps(c.params.get("blocks"))


def to(user: str):
    return lambda c: c.params.get("user") == user or c.params.get("channel") == user


def file_failover(app: object, slack: SlackMock, name: str) -> dict[str, object]:
    assert dispatch(app, slash("failover eu-west-1 eu-central-1", "U0ALICE", slack.response_url(name))) == 200  # type: ignore[arg-type]
    return slack.wait_for("response_url", lambda c: c.params["_path"].endswith(f"/{name}"))[0].params


# -- defect 1 ----------------------------------------------------------------------------------------


def test_a_post_refused_for_not_being_in_the_channel_is_told_kept_and_posted_after_invite_and_restart(
    core: OpsCore, slack: SlackMock
) -> None:
    slack.leave(APPROVALS)
    with bot_on(core, slack.api_url, retry_s=60.0) as (app, _rt):
        reply = file_failover(app, slack, "file")
        text = str(reply["text"])
        assert "could not post" in text and "/invite @opsconsole" in text, text
        rid = core.pipeline.requests.list(limit=5)[0].id
        assert not slack.of("chat.postMessage", about(rid))
    # The bot restarts; meanwhile someone invited it.
    slack.invite(APPROVALS)
    with bot_on(core, slack.api_url):
        posted = slack.wait_for("chat.postMessage", about(rid))
        assert len(posted) == 1 and posted[0].params["channel"] == APPROVALS
        told = slack.wait_for("chat.postMessage", lambda c: c.params.get("channel") == "U0ALICE")[0]
        assert "now posted" in told.params["text"]
    ref = Outbox(core.database).message_ref(f"request:{rid}", FACE)
    assert ref is not None and ref.ts == posted[0].params.get("ts", ref.ts)


@pytest.mark.parametrize("failure", ["invalid_blocks", "ratelimited", "network"])
def test_a_failed_first_post_is_retried_with_backoff_while_running(
    core: OpsCore, slack: SlackMock, failure: str
) -> None:
    with bot_on(core, slack.api_url) as (app, rt):
        if failure == "ratelimited":  # still 429 after the call's own retries
            slack.rate_limit("chat.postMessage", *([0.01] * 5))
        elif failure == "network":
            rt.slack.client.base_url = "http://127.0.0.1:9/api/"  # nothing listens there
        else:
            slack.fail("chat.postMessage", failure)
        reply = file_failover(app, slack, f"file-{failure}")
        assert "could not post" in str(reply["text"])
        rid = core.pipeline.requests.list(limit=5)[0].id
        rt.slack.client.base_url = slack.api_url
        posted = slack.wait_for("chat.postMessage", about(rid), timeout=30)
        time.sleep(1.0)
        assert len(slack.of("chat.postMessage", about(rid))) == 1 == len(posted)


def test_joining_the_channel_retries_at_once(core: OpsCore, slack: SlackMock) -> None:
    slack.leave(APPROVALS)
    with bot_on(core, slack.api_url, retry_s=600.0) as (app, _rt):
        file_failover(app, slack, "file-join")
        rid = core.pipeline.requests.list(limit=5)[0].id
        slack.invite(APPROVALS)
        event = {
            "type": "member_joined_channel",
            "user": "U0OPSBOT",
            "channel": APPROVALS,
            "team": "T0SANDBOX",
        }
        body = json.dumps(
            {"type": "event_callback", "team_id": "T0SANDBOX", "event": event, "event_id": "Ev0JOIN1"}
        )
        assert dispatch(app, body, "application/json") == 200
        slack.wait_for("chat.postMessage", about(rid), timeout=15)


# -- defect 2 ----------------------------------------------------------------------------------------


def drift(core: OpsCore, rid: str) -> None:
    """What the pipeline does when the plan changed before the run: votes start over on a new hash."""
    after = core.pipeline.requests.transition(
        rid,
        lambda _r: Drift("h-drifted", datetime.now(UTC)),
        actor="erin",
        face="cli",
        audit_kind=AuditKind.DRIFT_DETECTED,
        refused_kind=None,
        updates=lambda _b, _a: {
            "drift": {"lines": ["replica lag 2 s → 40 s"], "at": datetime.now(UTC).isoformat()}
        },
    )
    assert after.status is RequestStatus.REQUESTED and not after.approvers


def test_after_drift_the_same_clicks_count_again_and_refusals_use_up_nothing(
    core: OpsCore, slack: SlackMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with bot_on(core, slack.api_url) as (app, rt):
        file_failover(app, slack, "file-drift")
        rid = core.pipeline.requests.list(limit=5)[0].id
        runs: list[str] = []
        monkeypatch.setattr(
            rt.core.pipeline, "execute", lambda request_id, *_a, **_k: runs.append(request_id)
        )

        def approve(user: str, team: str = "T0SANDBOX") -> None:
            assert dispatch(app, click(blocks.APPROVE, rid, user, team=team)) == 200

        approve("U0BOB", team="T0OTHERWS")  # same user id, another workspace: a viewer, refused
        wait_until(lambda: slack.of("chat.postEphemeral", to("U0BOB")), what="the refusal")
        approve("U0BOB")
        approve("U0BOB")  # a double click on the same plan: one vote
        counted = wait_until(
            lambda: slack.of("chat.postEphemeral", lambda c: "counted (1 of 2)" in c.params["text"]),
            what="bob's vote",
        )
        time.sleep(0.5)
        assert len(counted) == 1
        assert core.pipeline.requests.get(rid).approvers == ("bob",)
        core.pipeline.approve(rid, core.directory.person("carol"), face="cli")  # approved, not run
        drift(core, rid)
        approve("U0BOB")  # the same button on the same message, after drift ("votes start over")
        wait_until(lambda: core.pipeline.requests.get(rid).approvers == ("bob",), what="bob's new vote")
        approve("U0CAROL")
        wait_until(lambda: runs == [rid], what="approval after drift starts the run")
        votes = core.pipeline.requests.get(rid).votes
        assert {v.person for v in votes if v.plan_hash == "h-drifted"} == {"bob", "carol"}


def test_run_after_a_refused_start_counts(
    core: OpsCore, slack: SlackMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with bot_on(core, slack.api_url) as (app, rt):
        file_failover(app, slack, "file-run")
        rid = core.pipeline.requests.list(limit=5)[0].id
        tries: list[str] = []

        def execute(request_id: str, *_a: object, **_k: object) -> None:
            tries.append(request_id)
            if len(tries) == 1:
                from opsconsole.core.change.requests import RequestRefused  # noqa: PLC0415

                raise RequestRefused("targets busy: another run holds eu-west-1")

        for user in ("erin", "bob"):
            core.pipeline.approve(rid, core.directory.person(user), face="cli")
        assert core.pipeline.requests.get(rid).status is RequestStatus.APPROVED
        monkeypatch.setattr(rt.core.pipeline, "execute", execute)
        dispatch(app, click(blocks.RUN, rid, "U0ALICE", message_ts="1700000000.000099"))
        wait_until(lambda: slack.of("chat.postEphemeral", lambda c: "targets busy" in c.params["text"]))
        dispatch(app, click(blocks.RUN, rid, "U0ALICE", message_ts="1700000000.000099"))
        wait_until(lambda: len(tries) == 2, what="the second Run click to count")


# -- defect 3 ----------------------------------------------------------------------------------------


def test_errors_after_the_ack_reach_the_person(
    core: OpsCore, slack: SlackMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with bot_on(core, slack.api_url) as (app, rt):
        dispatch(app, click(blocks.APPROVE, "f" * 32, "U0BOB"))  # an unknown request id
        told = wait_until(lambda: slack.of("chat.postEphemeral", to("U0BOB")), what="unknown id told")
        assert "Not approved" in told[0].params["text"]

        def down(*_a: object, **_k: object) -> bool:
            raise StoreUnavailable("database is locked")

        monkeypatch.setattr(rt.outbox, "first_time", down)
        dispatch(app, click(blocks.APPROVE, "e" * 32, "U0CAROL"))
        told = wait_until(lambda: slack.of("chat.postEphemeral", to("U0CAROL")), what="outage told")
        assert "store unreachable" in told[0].params["text"]
        monkeypatch.undo()

        # A reply Slack refuses at the response_url (expired) is sent another way.
        slack.fail("response_url", "expired_url")
        dispatch(app, slash("status", "U0VICTOR", slack.response_url("expired")))
        wait_until(lambda: slack.of("chat.postEphemeral", to("U0VICTOR")), what="status via postEphemeral")

        # A rejection whose modal already closed, then the store fails: told in the channel.
        meta = json.dumps({"request_id": "d" * 32, "channel": APPROVALS, "ts": "1.2"})
        from slackpayloads import view_submission  # noqa: PLC0415

        values = {blocks.REASON_BLOCK: {blocks.REASON_INPUT: {"type": "plain_text_input", "value": "no"}}}
        body, _ = view_submission(blocks.REJECT_MODAL, "V0CLOSED", "U0ERIN", meta, values)
        dispatch(app, body)
        told = wait_until(lambda: slack.of("chat.postEphemeral", to("U0ERIN")), what="reject told")
        assert "Not rejected" in told[0].params["text"]


def test_the_log_is_on_by_default_and_never_shows_a_token(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPSCONSOLE_LOG", raising=False)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    root.handlers = [logging.NullHandler()]
    root.setLevel(logging.CRITICAL)  # what `opsconsole` sets up without OPSCONSOLE_LOG
    monkeypatch.setattr(sys, "stderr", sys.stderr)
    try:
        logs.configure()
        logging.getLogger("bot.test").info("posting with %s failed", BOT_TOKEN)
        try:
            raise RuntimeError(f"auth {BOT_TOKEN}")
        except RuntimeError:
            logging.getLogger("bot.test").exception("boom")
    finally:
        root.handlers, _ = saved
        root.setLevel(saved[1])
    err = capsys.readouterr().err
    assert "INFO bot.test: posting with xoxb-… failed" in err
    assert BOT_TOKEN not in err and BOT_TOKEN[5:] not in err


# -- defect 5 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("error", ["message_not_found", "channel_not_found", "is_archived", "invalid_blocks"])
def test_a_dead_message_is_not_edited_again(core: OpsCore, slack: SlackMock, error: str) -> None:
    outbox = Outbox(core.database, clock=core.clock)
    outbox.remember_message("request:dead", FACE, channel=APPROVALS, ts="1700000000.424242")
    n = iter(range(1000))
    updater = MessageUpdater(
        lambda _s: {"text": f"state {next(n)}", "blocks": []},
        SlackCalls(web_client(settings(slack.api_url))),
        outbox,
        interval_s=0.05,
    )
    slack.fail("chat.update", error, times=1000)
    updater.start()
    try:
        for _ in range(10):
            updater.touch("request:dead")
            time.sleep(0.1)
        wait_until(lambda: updater.pending() == 0, what="nothing left to edit")
    finally:
        updater.stop()
    refused: list[Call] = slack.refused("chat.update")
    assert len(refused) == 1, [c.params for c in refused]
    assert outbox.message_ref("request:dead", FACE).data.get("dead") == error  # type: ignore[union-attr]


# -- defect 6 ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_reject_modal_opens_at_once_with_a_6_s_store(
    core: OpsCore, slack: SlackMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with bot_on(core, slack.api_url) as (app, rt):
        file_failover(app, slack, "file-reject")
        rid = core.pipeline.requests.list(limit=5)[0].id
        store = rt.core.pipeline.requests
        real_get = store.get

        def slow_get(request_id: str) -> object:
            time.sleep(6.0)
            return real_get(request_id)

        monkeypatch.setattr(store, "get", slow_get)
        clicked = time.monotonic()
        assert dispatch(app, click(blocks.REJECT, rid, "U0CAROL")) == 200
        opened = slack.wait_for("views.open", timeout=10)[0]
        assert opened.at - clicked < 3.0  # the trigger id is still valid
        updated = slack.wait_for("views.update", timeout=30)[0]
        assert updated.params["view"]["callback_id"] == blocks.REJECT_MODAL
        assert updated.params["view_id"].startswith("V")


# -- first-class: approvers called, the thread tells the story -----------------------------------------


def test_approvers_get_a_dm_card_a_reminder_and_the_requester_hears_the_decision(
    core: OpsCore, slack: SlackMock
) -> None:
    with bot_on(core, slack.api_url) as (app, rt):
        file_failover(app, slack, "file-dm")
        request = core.pipeline.requests.list(limit=5)[0]
        rid = request.id
        card = slack.wait_for("chat.postMessage", about(rid))[0]
        assert "<@U0BOB>" in json.dumps(card.params["blocks"])  # "may approve" as mentions
        dms = slack.wait_for(
            "chat.postMessage",
            lambda c: (
                str(c.params.get("channel", "")).startswith("U0")
                and rid in json.dumps(c.params.get("blocks"))
            ),
            count=3,
        )
        assert {c.params["channel"] for c in dms} == {"U0BOB", "U0CAROL", "U0ERIN"}
        assert all(blocks.APPROVE in json.dumps(c.params["blocks"]) for c in dms)

        from bot.threads import ThreadNotes  # noqa: PLC0415

        late = ThreadNotes(
            rt, now=lambda: request.expires_at - (request.expires_at - request.created_at) / 10
        )
        assert late.remind(request) and not late.remind(request)  # once
        reminder = slack.wait_for("chat.postMessage", lambda c: "expires" in str(c.params.get("text")))[0]
        assert reminder.params["thread_ts"] == card.params.get("ts", reminder.params["thread_ts"])
        assert "<@U0CAROL>" in reminder.params["text"]

        core.pipeline.reject(rid, core.directory.person("carol"), face="cli", reason="not during the sale")
        told = slack.wait_for("chat.postMessage", lambda c: "rejected" in str(c.params.get("text")))[0]
        assert told.params.get("thread_ts") and "<@U0ALICE>" in told.params["text"]
        assert "/ops failover eu-west-1 eu-central-1" in told.params["text"]  # how to file it again


def test_help_lists_what_you_may_do_and_channels_limit_commands(core: OpsCore, slack: SlackMock) -> None:
    from bot.channels import CommandPolicy  # noqa: PLC0415

    with bot_on(core, slack.api_url) as (app, rt):
        _, viewer = dispatch_ack(app, slash("help", "U0VICTOR", slack.response_url("h1")))
        assert "viewer" in viewer and "Needs an operator role" in viewer
        _, operator = dispatch_ack(app, slash("help", "U0ALICE", slack.response_url("h2")))
        assert (
            "alice" in operator and "Needs an operator role" not in operator and "/ops failover" in operator
        )
        rt.channels = replace(
            rt.channels, commands=CommandPolicy(None, {"C0OPSCHAT": frozenset({"status", "approvals"})})
        )
        status, refused = dispatch_ack(app, slash("failover eu-west-1 eu-central-1", "U0ALICE", "http://x/"))
        assert status == 200 and "not used in this channel" in refused and "approvals, status" in refused
        _, here = dispatch_ack(app, slash("help", "U0ALICE", slack.response_url("h3")))
        assert "/ops status" in here and "/ops failover" not in here
        assert core.pipeline.requests.list(limit=5) == []


def test_cancel_on_a_running_card_goes_through_the_pipeline(
    core: OpsCore, slack: SlackMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opsconsole.core.change.requests import RequestRefused  # noqa: PLC0415

    asked: list[tuple[str, str]] = []

    def cancel_job(job_id: str, who: object, *, face: str) -> object:
        asked.append((job_id, who.person))  # type: ignore[attr-defined]
        if who.person == "victor":  # type: ignore[attr-defined]
            raise RequestRefused("victor is a viewer: cancelling needs an operator role")
        return type("J", (), {"id": job_id})()

    with bot_on(core, slack.api_url) as (app, _rt):
        monkeypatch.setattr(core.pipeline, "cancel_job", cancel_job)
        dispatch(app, click(blocks.CANCEL, "job0123456789abc", "U0VICTOR"))
        refused = wait_until(lambda: slack.of("chat.postEphemeral", to("U0VICTOR")))
        assert "Not cancelled" in refused[0].params["text"]
        dispatch(app, click(blocks.CANCEL, "job0123456789abc", "U0ALICE"))
        told = wait_until(lambda: slack.of("chat.postEphemeral", to("U0ALICE")))
        assert "Cancelling job job012345678" in told[0].params["text"]
        assert asked == [("job0123456789abc", "victor"), ("job0123456789abc", "alice")]


def test_a_run_longer_than_its_usual_p95_is_noticed_in_the_thread(core: OpsCore, slack: SlackMock) -> None:
    from datetime import timedelta  # noqa: PLC0415

    from bot.threads import ThreadNotes, p95  # noqa: PLC0415

    assert p95([1.0, 2.0, 3.0]) is None and p95([float(i) for i in range(1, 21)]) == 19.0
    with bot_on(core, slack.api_url) as (app, rt):
        file_failover(app, slack, "file-overrun")
        request = core.pipeline.requests.list(limit=5)[0]
        slack.wait_for("chat.postMessage", about(request.id))
        running = replace(request, status=RequestStatus.RUNNING, job_id="job0123456789ab")
        now = datetime.now(UTC)
        notes = ThreadNotes(rt, now=lambda: now)
        assert not notes.overrun(running, now - timedelta(seconds=30), usual_s=60.0)
        assert notes.overrun(running, now - timedelta(seconds=90), usual_s=60.0)
        assert not notes.overrun(running, now - timedelta(seconds=120), usual_s=60.0)  # once
        note = slack.wait_for("chat.postMessage", lambda c: "longer than usual" in str(c.params.get("text")))
        assert note[0].params["thread_ts"] and "<@U0ALICE>" in note[0].params["text"]


def test_a_failover_run_reports_in_the_thread_with_the_rto_clock(core: OpsCore, slack: SlackMock) -> None:
    from bot.blocks import RunProgress  # noqa: PLC0415

    with bot_on(core, slack.api_url) as (app, rt):
        file_failover(app, slack, "file-rto")
        request = core.pipeline.requests.list(limit=5)[0]
        card = slack.wait_for("chat.postMessage", about(request.id))[0]
        assert rt.notes.rto_s == 15 * 60  # the critical tier's RTO
        running = replace(request, status=RequestStatus.RUNNING, job_id="job0123456789ab")
        rt.notes.on_change(running)
        done = replace(request, status=RequestStatus.FAILED, job_id="job0123456789ab")
        rt.notes.on_change(
            done, RunProgress("job0123456789ab", status="failed", duration_s=1200.0, error="DNS")
        )
        notes = slack.wait_for("chat.postMessage", lambda c: c.params.get("thread_ts"), count=2)
        assert all(n.params["thread_ts"] == card.params.get("ts", n.params["thread_ts"]) for n in notes)
        assert "RTO clock started (target 15 min)" in notes[0].params["text"]
        assert "1200 s of the 15 min RTO: *over* it" in notes[1].params["text"]
        assert notes[1].params["reply_broadcast"] is True and "<@U0ALICE>" in notes[1].params["text"]


def test_the_card_mentions_the_approver_group_of_slack_yml(core: OpsCore, slack: SlackMock) -> None:
    from bot.channels import ChannelMap  # noqa: PLC0415

    with bot_on(core, slack.api_url) as (app, rt):
        rt.channels = replace(rt.channels, approver_groups=ChannelMap("S0OPSAPPROVERS"))
        file_failover(app, slack, "file-group")
        rid = core.pipeline.requests.list(limit=5)[0].id
        card = slack.wait_for("chat.postMessage", about(rid))[0]
        assert "<!subteam^S0OPSAPPROVERS>, <@U0BOB>" in json.dumps(card.params["blocks"])
