"""Messages that carry the core's answers from worker threads back to the UI thread.

Every core call runs in a worker (the core does blocking I/O: SDK calls, SQL, playbook runs); its answer
comes back as one of these, posted with the thread-safe ``post_message``, and is handled on the UI thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from textual.message import Message

from opsconsole.core.change.records import ChangeRequest
from opsconsole.core.facade import OpsCore
from opsconsole.core.fleet.view import FleetView
from opsconsole.core.runs.records import Job


class CoreReady(Message):
    def __init__(self, core: OpsCore) -> None:
        super().__init__()
        self.core = core


class CoreFailed(Message):
    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self.title = title
        self.text = text


class FleetRefreshed(Message):
    """One refresh: the fleet view, the approval queue and the recent jobs (as every face sees them)."""

    def __init__(
        self, view: FleetView, requests: Sequence[ChangeRequest], jobs: Sequence[Job], took_s: float
    ) -> None:
        super().__init__()
        self.view = view
        self.requests = requests
        self.jobs = jobs
        self.took_s = took_s


class RefreshFailed(Message):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class BusEvent(Message):
    """A :class:`JobEvent` or a ``RequestChanged`` from the core's bus (published on a worker thread)."""

    def __init__(self, event: object) -> None:
        super().__init__()
        self.event = event


class CoreDone(Message):
    """The answer of one :meth:`OpsConsoleApp.call_core`, with what to do with it on the UI thread."""

    def __init__(self, result: Any, done: Callable[[Any], None] | None) -> None:
        super().__init__()
        self.result = result
        self.done = done
