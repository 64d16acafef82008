"""The event bus, the JobEvent record, and the translation of ansible-runner events and secrets into them."""

from __future__ import annotations

import dataclasses
import logging
import threading
from datetime import UTC, datetime

import pytest

from opsconsole.core.runs.events import EventBus, EventCapture, EventKind, JobEvent
from opsconsole.core.runs.jobs import JobStore
from opsconsole.core.runs.runner import Redactor, Runner, secret_values, summarize_stats, translate_event

AT = datetime(2025, 1, 15, 18, 0, tzinfo=UTC)


def event(kind: EventKind, seq: int = 1, **fields: object) -> JobEvent:
    return JobEvent(job_id="j1", seq=seq, at=AT, kind=kind, **fields)  # type: ignore[arg-type]


def test_subscribers_get_events_in_publish_order_until_they_unsubscribe() -> None:
    bus = EventBus()
    first, second = EventCapture(), EventCapture()
    unsubscribe = bus.subscribe(first)
    bus.subscribe(second)
    bus.publish(event(EventKind.TASK_START, 1))
    bus.publish(event(EventKind.OK, 2))
    unsubscribe()
    unsubscribe()  # harmless twice
    bus.publish(event(EventKind.STATS, 3))
    assert [e.seq for e in first.events] == [1, 2]
    assert [e.seq for e in second.events] == [1, 2, 3]
    assert bus.subscriber_count() == 1


def test_kinds_filter_what_a_subscriber_receives() -> None:
    bus = EventBus()
    statuses = EventCapture()
    bus.subscribe(statuses, kinds={EventKind.JOB_STATUS, "failed"})
    for seq, kind in enumerate([EventKind.TASK_START, EventKind.FAILED, EventKind.JOB_STATUS], start=1):
        bus.publish(event(kind, seq))
    bus.publish("an event without a kind")
    assert [e.kind for e in statuses.events] == [EventKind.FAILED, EventKind.JOB_STATUS]


def test_a_raising_subscriber_is_logged_and_never_breaks_the_publisher(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus()
    after = EventCapture()

    def broken(_event: object) -> None:
        raise RuntimeError("subscriber bug")

    bus.subscribe(broken)
    bus.subscribe(after)
    with caplog.at_level(logging.ERROR, logger="opsconsole.core.runs.events"):
        bus.publish(event(EventKind.OK))
    assert len(after.events) == 1
    assert any("subscriber" in r.getMessage() and r.exc_info for r in caplog.records)


def test_a_subscriber_may_unsubscribe_from_its_own_callback() -> None:
    bus = EventBus()
    seen: list[object] = []
    unsubscribe = bus.subscribe(lambda e: (seen.append(e), unsubscribe()))
    bus.publish(event(EventKind.OK, 1))
    bus.publish(event(EventKind.OK, 2))
    assert len(seen) == 1


def test_publish_and_subscribe_are_thread_safe() -> None:
    bus = EventBus()
    capture = EventCapture()
    bus.subscribe(capture)
    barrier = threading.Barrier(8)

    def publisher(n: int) -> None:
        barrier.wait()
        for i in range(200):
            bus.publish(event(EventKind.OK, n * 1000 + i))

    def churner() -> None:
        barrier.wait()
        for _ in range(200):
            bus.subscribe(lambda _e: None)()

    threads = [threading.Thread(target=publisher, args=(n,)) for n in range(6)]
    threads += [threading.Thread(target=churner) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(capture.events) == 6 * 200
    assert bus.subscriber_count() == 1


def test_job_events_are_frozen() -> None:
    e = event(EventKind.OK, message="x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.message = "y"  # type: ignore[misc]


RAW_OK = {
    "event": "runner_on_ok",
    "created": "2025-01-15T18:00:01.5+00:00",
    "event_data": {
        "play": "Scale", "task": "Scale checkout", "host": "localhost",
        "task_action": "kubernetes.core.k8s_scale", "duration": 0.4,
        "res": {"changed": True, "msg": "scaled", "_ansible_no_log": False,
                "diff": {"before": {"replicas": 12}, "after": {"replicas": 4}}},
    },
}


def test_translation_of_ansible_runner_events() -> None:
    ok = translate_event(RAW_OK)
    assert ok is not None
    assert (ok.kind, ok.host, ok.play, ok.task, ok.message, ok.changed) == (
        EventKind.CHANGED, "localhost", "Scale", "Scale checkout", "scaled", True)
    assert ok.data["result"]["diff"]["after"] == {"replicas": 4}
    assert "_ansible_no_log" not in ok.data["result"]

    start = translate_event({"event": "playbook_on_task_start", "event_data": {"task": "Scale checkout"}})
    assert start is not None and start.kind is EventKind.TASK_START and start.task == "Scale checkout"
    failed = translate_event({"event": "runner_on_failed", "event_data": {
        "task": "Gate", "host": "localhost", "ignore_errors": None,
        "res": {"msg": "B unhealthy", "failed": True}}})
    assert failed is not None and failed.kind is EventKind.FAILED and failed.message == "B unhealthy"
    assert failed.data["ignored"] is False
    for quiet in ("runner_on_start", "verbose", "runner_item_on_ok", "playbook_on_include"):
        assert translate_event({"event": quiet, "event_data": {}}) is None


def test_a_huge_module_result_is_summarised() -> None:
    resources = [{"name": f"pod-{i}", "spec": "x" * 200} for i in range(500)]
    raw = {"event": "runner_on_ok", "event_data": {"task": "List", "host": "localhost", "res": {
        "changed": False, "msg": "listed", "resources": resources}}}
    translated = translate_event(raw)
    assert translated is not None
    result = translated.data["result"]
    assert result["truncated"] is True and result["msg"] == "listed" and "resources" not in result


def test_stats_per_host_and_totals() -> None:
    stats = summarize_stats({"ok": {"a": 3, "b": 1}, "changed": {"a": 1}, "failures": {"b": 1}, "dark": {},
                             "skipped": {"a": 2}, "processed": {"a": 1, "b": 1, "c": 1}})
    assert stats["hosts"]["a"] == {"ok": 3, "changed": 1, "failed": 0, "skipped": 2, "unreachable": 0,
                                   "rescued": 0, "ignored": 0}
    assert stats["hosts"]["c"]["ok"] == 0
    assert stats["totals"]["ok"] == 4 and stats["totals"]["failed"] == 1


def test_secret_values_come_from_secret_looking_names_only() -> None:
    env = {"MY_TOKEN": "tok-123456", "AWS_SECRET_ACCESS_KEY": "abcd/efgh", "AWS_REGION": "eu-west-1",
           "DB_PASSWORD": "true", "API_KEY": "xy", "AWS_SESSION_TOKEN": "sess-token-1"}
    assert sorted(secret_values(env)) == ["abcd/efgh", "sess-token-1", "tok-123456"]


def test_redactor_covers_text_nested_data_and_json_escaped_forms(tmp_path) -> None:  # type: ignore[no-untyped-def]
    redactor = Redactor(['pa"ss\\word', "tok-123456"])
    assert redactor.text("token tok-123456 here") == "token *** here"
    assert redactor.data({"k": ["tok-123456", 3, {"tok-123456": 'x pa"ss\\word'}]}) == {
        "k": ["***", 3, {"***": "x ***"}]}
    artifact = tmp_path / "event.json"
    artifact.write_text('{"msg": "pa\\"ss\\\\word and tok-123456"}')
    assert redactor.file(artifact) is True
    assert artifact.read_text() == '{"msg": "*** and ***"}'
    assert redactor.file(artifact) is False
    assert not Redactor([]) and Redactor([]).text("as is") == "as is"


def test_a_secret_learned_after_the_runner_was_built_is_redacted_from_then_on(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A progressive start learns the sandbox's AWS credentials after the runner (and its log filter)
    was built: ``Runner.add_env`` gives them to the runs and to the redactor the log filter holds."""
    runner = Runner(JobStore(f"sqlite:///{tmp_path / 'ops.db'}"), EventBus(), project_dir=tmp_path,
                    inventory=tmp_path, home=tmp_path / "home", env={"AWS_REGION": "us-east-1"})
    try:
        assert runner.redactor.text("key AKIA-LATE-0001") == "key AKIA-LATE-0001"
        runner.add_env({"AWS_SECRET_ACCESS_KEY": "AKIA-LATE-0001", "AWS_REGION": "eu-west-1"})
        assert runner.env["AWS_SECRET_ACCESS_KEY"] == "AKIA-LATE-0001"
        assert runner.redactor.text("key AKIA-LATE-0001") == "key ***"
        assert runner.redactor.text("region eu-west-1") == "region eu-west-1"  # not a secret's name
        record = logging.LogRecord("opsconsole.core.runs.runner", logging.INFO, __file__, 1,
                                   "leaked AKIA-LATE-0001", None, None)
        assert runner._log_filter.filter(record) and record.getMessage() == "leaked ***"
    finally:
        runner.close()
