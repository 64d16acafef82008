"""Check-mode previews rendered as diffs: what approvers see."""

from __future__ import annotations

from datetime import UTC, datetime

from opsconsole.core.change.preview import diff_lines, preview_document, render_diff
from opsconsole.core.runs.events import EventKind, JobEvent
from opsconsole.core.runs.records import Job, JobStatus

AT = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)


def test_structured_before_after_becomes_a_unified_diff() -> None:
    lines = diff_lines({"before": {"spec": {"maxReplicas": 60}}, "after": {"spec": {"maxReplicas": 70}},
                        "before_header": "hpa/search"})
    assert lines[0] == "--- hpa/search" and lines[1] == "+++ after"
    assert '-    "maxReplicas": 60' in lines and '+    "maxReplicas": 70' in lines


def test_prepared_text_lists_and_no_change() -> None:
    assert diff_lines([{"prepared": "a\nb"}, {"before": "x", "after": "x"}]) == ["a", "b"]
    assert diff_lines("not a diff") == []


def test_a_preview_document_keeps_changed_tasks_only() -> None:
    job = Job(id="j1", action="scale", params={}, playbook="scale.yml", check_mode=True,
              status=JobStatus.SUCCEEDED, actor="alice", face="tui", created_at=AT,
              stats={"totals": {"changed": 1, "failed": 0}})
    events = [
        JobEvent("j1", 1, AT, EventKind.OK, host="localhost", task="Read", data={"result": {}}),
        JobEvent("j1", 2, AT, EventKind.CHANGED, host="localhost", task="Set HPA", changed=True,
                 data={"result": {"diff": {"before": "max: 60\n", "after": "max: 70\n"}}}),
    ]
    doc = preview_document(job, events)
    assert doc["changed"] == 1 and [t["task"] for t in doc["tasks"]] == ["Set HPA"]
    assert render_diff(doc) == ["# Set HPA (localhost)", "--- before", "+++ after", "@@ -1 +1 @@", "-max: 60",
                                "+max: 70"]
