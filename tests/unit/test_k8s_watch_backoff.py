"""A Kubernetes watch thread backing off after a long outage (up to 15 s) must not wait it out once
another thread found the cluster's server on a new port (issues 13 and 16: the console recovers from a
restarted ``sandbox up`` by itself, and quickly)."""

from __future__ import annotations

import threading
import time
import weakref
from types import SimpleNamespace
from typing import Any

from opsconsole.providers.k8s import _watch_thread


class _Source:
    """Stands for a KubernetesSource: the first step fails with an hour's back-off, later steps
    succeed (and report at once)."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.stepped = threading.Event()
        self.closed = False

    def _running(self, ctx: Any, generation: int) -> bool:
        return not self.closed

    def _watch_step(self, ctx: Any, inf: Any, generation: int, state: dict[str, int]) -> float:
        self.steps.append(ctx.api_generation)
        state["api"] = ctx.api_generation
        if len(self.steps) > 1:
            self.stepped.set()
            self.closed = True
            return 0.0
        return 3600.0


def _run(source: _Source, ctx: Any) -> threading.Thread:
    thread = threading.Thread(target=_watch_thread, args=(weakref.ref(source), ctx, None, 0), daemon=True)
    thread.start()
    return thread


def test_a_rebuilt_client_ends_the_back_off_at_once() -> None:
    source, ctx = _Source(), SimpleNamespace(api_generation=0)
    thread = _run(source, ctx)
    deadline = time.monotonic() + 30
    while not source.steps and time.monotonic() < deadline:
        time.sleep(0.01)
    assert source.steps == [0]
    ctx.api_generation += 1  # another watch of the cluster re-resolved it on a new port
    assert source.stepped.wait(30), "the watch waited out its back-off after the server moved"
    assert source.steps == [0, 1]
    thread.join(30)
    assert not thread.is_alive()


def test_without_a_move_the_back_off_is_kept() -> None:
    source, ctx = _Source(), SimpleNamespace(api_generation=0)
    thread = _run(source, ctx)
    assert not source.stepped.wait(1.0)
    assert source.steps == [0]
    source.closed = True
    thread.join(30)
    assert not thread.is_alive()
