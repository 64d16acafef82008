"""Messages that carry the server's answers from worker threads back to the UI thread.

Every call to the ops server runs in a worker (it is a request over HTTP, or a call into the embedded
server); its answer comes back as one of these, posted with the thread-safe ``post_message``, and is
handled on the UI thread. Events of the server's stream arrive the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Any

from textual.message import Message
from textual.message_pump import MessagePump

from opsconsole.core.api import Caller, OpsApi, StreamEvent
from opsconsole.core.change.records import ChangeRequest
from opsconsole.core.fleet.view import FleetView
from opsconsole.core.runs.records import Job


class ApiReady(Message):
    """The API is open and the server said who we are (at start, or after acting as someone else)."""

    def __init__(self, api: OpsApi, caller: Caller, stack: ExitStack | None = None) -> None:
        super().__init__()
        self.api = api
        self.caller = caller
        #: What to close when this API is replaced (``None``: the app's own, closed at exit).
        self.stack = stack


class ApiFailed(Message):
    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self.title = title
        self.text = text


class FleetRefreshed(Message):
    """One refresh: the fleet view, the approval queue and the recent jobs (as every face sees them)."""

    def __init__(
        self,
        view: FleetView,
        requests: Sequence[ChangeRequest],
        jobs: Sequence[Job],
        took_s: float,
        generation: int,
        seq: int = 0,
    ) -> None:
        super().__init__()
        self.view = view
        self.requests = requests
        self.jobs = jobs
        self.took_s = took_s
        self.generation = generation
        #: Which refresh this answers (a forced refresh supersedes one still hanging).
        self.seq = seq


class RefreshFailed(Message):
    def __init__(self, text: str, seq: int = 0) -> None:
        super().__init__()
        self.text = text
        self.seq = seq


class ServerEvent(Message):
    """One event of the server's stream (``job`` or ``request``), from the API open as ``generation``."""

    def __init__(self, event: StreamEvent, generation: int) -> None:
        super().__init__()
        self.event = event
        self.generation = generation


class ApiAnswer(Message):
    """The answer (or the error) of one :meth:`OpsConsoleApp.call_api`, with what to do with it on the UI
    thread; dropped when ``owner`` (the screen that asked) is gone by then."""

    def __init__(
        self,
        result: Any,
        error: BaseException | None,
        done: Callable[[Any], None] | None,
        failed: Callable[[BaseException], None] | None,
        owner: MessagePump | None,
    ) -> None:
        super().__init__()
        self.result = result
        self.error = error
        self.done = done
        self.failed = failed
        self.owner = owner
