"""A source following the shared local cloud across restarts asks where it listens now: while no
``sandbox up`` runs it must keep the last endpoints found, not go back to the ones it started with."""

from __future__ import annotations

from collections.abc import Mapping

from opsconsole.sandbox.emulator import Endpoints
from opsconsole.wiring import endpoint_resolver


def _at(port: int) -> Endpoints:
    return Endpoints(urls={"aws": f"http://127.0.0.1:{port}"})


def test_the_last_endpoints_found_are_kept_while_none_are_known() -> None:
    running: dict[str, Mapping[str, Endpoints] | None] = {"now": {"aws": _at(1001)}}
    resolve = endpoint_resolver("aws", _at(1001), lambda: running["now"])
    assert resolve().urls["aws"].endswith(":1001")
    running["now"] = {"aws": _at(2002)}  # restarted on a new port
    assert resolve().urls["aws"].endswith(":2002")
    running["now"] = None  # stopped again: where it was last, not where it first was
    assert resolve().urls["aws"].endswith(":2002")
    running["now"] = {"k8s": _at(3003)}  # an endpoints file without this emulator
    assert resolve().urls["aws"].endswith(":2002")
    running["now"] = {"aws": _at(4004)}
    assert resolve().urls["aws"].endswith(":4004")


def test_before_anything_is_found_the_first_endpoints_are_used() -> None:
    resolve = endpoint_resolver("aws", _at(1001), lambda: None)
    assert resolve().urls["aws"].endswith(":1001")
