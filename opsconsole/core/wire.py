"""The core's records on the wire: frozen dataclasses, enums, times and paths as JSON, and back.

Why it exists: the ops server sends the faces what they show (a
:class:`~opsconsole.core.fleet.view.FleetView`, change requests, jobs, audit entries) and the faces
render the same records they rendered when they held the core themselves. Encoding is
self-describing, so decoding needs no type hints: a dataclass is
``{"$t": "module:Class", field: value…}``, an enum ``{"$e": "module:Class", "v": value}``, a time
``{"$dt": iso}``, a tuple ``{"$tu": [...]}``, a frozenset ``{"$fs": [...]}``, a dict whose keys are
not all strings ``{"$d": [[k, v], …]}``, a path ``{"$p": "…"}``. Plain JSON values pass through.

Only classes of the core's own record modules (:data:`RECORD_MODULES`) are ever built from the wire:
a payload naming anything else is refused, so a hostile server cannot make a client construct
arbitrary objects. Fields a newer server added are dropped with no error (an older client keeps
working); a field the class requires and the payload lacks is an error.

Use::

    text = dumps(view)            # on the server
    view = loads(text)            # on the client: the same FleetView
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from datetime import date, datetime
from enum import Enum
from pathlib import PurePath
from typing import Any

from opsconsole.core.errors import OpsError

#: The modules whose dataclasses and enums may be built from the wire.
RECORD_MODULES = frozenset({
    "opsconsole.core.fleet.model",
    "opsconsole.core.fleet.engine",
    "opsconsole.core.fleet.findings",
    "opsconsole.core.fleet.view",
    "opsconsole.core.fleet.pods",
    "opsconsole.core.change.actions",
    "opsconsole.core.change.approvals",
    "opsconsole.core.change.records",
    "opsconsole.core.change.risk",
    "opsconsole.core.change.rbac",
    "opsconsole.core.runs.records",
    "opsconsole.core.runs.events",
    "opsconsole.core.audit.records",
    "opsconsole.core.schedule.engine",
    "opsconsole.core.schedule.records",
    "opsconsole.core.wire",
    "opsconsole.core.api",
})


class WireError(OpsError):
    """A payload that is not a record this version knows how to build."""

    title = "unreadable answer"


def _name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def encode(value: Any) -> Any:
    """``value`` as plain JSON-ready data (see the module docstring for the tags)."""
    if isinstance(value, Enum):  # before the plain values: a StrEnum is a str too
        return {"$e": _name(type(value)), "v": value.value}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    if isinstance(value, PurePath):
        return {"$p": str(value)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {"$t": _name(type(value))}
        for f in dataclasses.fields(value):
            out[f.name] = encode(getattr(value, f.name))
        return out
    if isinstance(value, tuple):
        return {"$tu": [encode(v) for v in value]}
    if isinstance(value, frozenset | set):
        return {"$fs": [encode(v) for v in sorted(value, key=repr)]}
    if isinstance(value, dict) or hasattr(value, "items"):
        items = list(value.items())
        if all(type(k) is str for k, _ in items):
            return {k: encode(v) for k, v in items}
        return {"$d": [[encode(k), encode(v)] for k, v in items]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    raise WireError(f"cannot put a {type(value).__name__} on the wire")


_CLASSES: dict[str, type] = {}


def _class(name: str) -> type:
    cls = _CLASSES.get(name)
    if cls is not None:
        return cls
    module_name, _, qualname = name.partition(":")
    if module_name not in RECORD_MODULES or not qualname or "." in qualname:
        raise WireError(f"{name!r} is not a record this client builds")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise WireError(f"{name!r}: no such module here (client older than the server?)") from None
    found = getattr(module, qualname, None)
    if not isinstance(found, type) or not (dataclasses.is_dataclass(found) or issubclass(found, Enum)):
        raise WireError(f"{name!r} is not a record this client builds")
    _CLASSES[name] = found
    return found


def decode(data: Any) -> Any:
    """The records :func:`encode` made, rebuilt.

    Raises:
        WireError: a tag names a class outside :data:`RECORD_MODULES`, or a record lacks a field.
    """
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict):
        return data
    if "$t" in data:
        cls = _class(data["$t"])
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs = {k: decode(v) for k, v in data.items() if k in fields and fields[k].init}
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise WireError(f"{data['$t']}: {exc}") from None
    if "$e" in data:
        enum_cls = _class(data["$e"])
        try:
            return enum_cls(data["v"])
        except ValueError:
            raise WireError(f"{data['$e']}: unknown value {data['v']!r}") from None
    if "$dt" in data:
        return datetime.fromisoformat(data["$dt"])
    if "$date" in data:
        return date.fromisoformat(data["$date"])
    if "$p" in data:
        from pathlib import Path  # noqa: PLC0415 - only paths coming back need it

        return Path(data["$p"])
    if "$tu" in data:
        return tuple(decode(v) for v in data["$tu"])
    if "$fs" in data:
        return frozenset(decode(v) for v in data["$fs"])
    if "$d" in data:
        return {decode(k): decode(v) for k, v in data["$d"]}
    return {k: decode(v) for k, v in data.items()}


def dumps(value: Any) -> str:
    return json.dumps(encode(value), separators=(",", ":"))


def loads(text: str | bytes) -> Any:
    try:
        return decode(json.loads(text))
    except json.JSONDecodeError as exc:
        raise WireError(f"not JSON: {exc}") from None
