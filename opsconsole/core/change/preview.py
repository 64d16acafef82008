"""A check-mode run, as the approvers should see it: which tasks would change what, as a diff.

A preview is the plan's playbook run with ``--check --diff`` (nothing changes). Ansible reports each
task's would-be change as a ``diff`` in its result: a dict (or a list of dicts) with ``before`` /
``after`` (text, or structures such as a Kubernetes object or a record set) and optional headers, or a
``prepared`` text. :func:`preview_document` turns a finished preview job and its events into one plain
document every face renders the same way — the TUI before submit, the Slack approval message, ``approvals
show`` — and that the pipeline stores with the request (``ChangeRequest.preview``).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opsconsole.core.runs.events import EventKind, JobEvent
from opsconsole.core.runs.records import Job

#: A preview document keeps at most this many diff lines per task (the rest is counted, not shown).
MAX_LINES_PER_TASK = 60


def _text(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return value.splitlines()
    return json.dumps(value, indent=2, sort_keys=True, default=str).splitlines()


def diff_lines(diff: Any) -> list[str]:
    """Ansible's ``diff`` of one task result as unified-diff lines (``---``/``+++`` headers, ``-``/``+``)."""
    parts: Iterable[Any] = diff if isinstance(diff, list) else [diff]
    lines: list[str] = []
    for part in parts:
        if not isinstance(part, Mapping):
            continue
        if part.get("prepared"):
            lines.extend(str(part["prepared"]).splitlines())
            continue
        before, after = _text(part.get("before")), _text(part.get("after"))
        if before == after:
            continue
        lines.extend(difflib.unified_diff(
            before, after, fromfile=str(part.get("before_header") or "before"),
            tofile=str(part.get("after_header") or "after"), lineterm="", n=1,
        ))
    return lines


def preview_document(job: Job, events: Sequence[JobEvent]) -> dict[str, Any]:
    """The preview of a finished check-mode ``job``: per changed task, its diff; plus the totals."""
    tasks: list[dict[str, Any]] = []
    for event in events:
        if event.kind is not EventKind.CHANGED:
            continue
        result = event.data.get("result") if isinstance(event.data, Mapping) else None
        lines = diff_lines(result.get("diff")) if isinstance(result, Mapping) else []
        tasks.append({
            "task": event.task or "", "host": event.host or "",
            "diff": lines[:MAX_LINES_PER_TASK], "more_lines": max(0, len(lines) - MAX_LINES_PER_TASK),
        })
    totals = (job.stats or {}).get("totals", {}) if job.stats else {}
    return {
        "job_id": job.id, "status": job.status.value, "check_mode": job.check_mode,
        "changed": int(totals.get("changed", 0) or 0), "failed": int(totals.get("failed", 0) or 0),
        "tasks": tasks, "error": job.error,
    }


def render_diff(preview: Mapping[str, Any], *, limit: int = 40) -> list[str]:
    """A preview document's diffs as plain lines, task by task, at most ``limit`` lines."""
    out: list[str] = []
    for task in preview.get("tasks") or ():
        out.append(f"# {task.get('task')}" + (f" ({task.get('host')})" if task.get("host") else ""))
        out.extend(task.get("diff") or ["(changed; no diff reported)"])
        if task.get("more_lines"):
            out.append(f"… {task['more_lines']} more line(s)")
    if len(out) > limit:
        out = [*out[: limit - 1], f"… {len(out) - limit + 1} more line(s)"]
    return out
