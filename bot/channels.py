"""Where the bot posts: ``inventory/slack.yml`` → a channel for a set of regions.

Approvals go to the people who may approve them, and those are scoped by region and geography in
rbac.yml, so channels are too: a request touching only EMEA regions goes to the EMEA approvals
channel; one spanning geographies goes to the default. Notices (findings, shutdown warnings) go to the
channel of their region the same way. On the sandbox the ``sandbox`` section's channels win, so that a
rehearsal never pings the real on-call channels.

Channel ids (``C…``), not names: names change, ids do not, and ``chat.postMessage`` wants an id.

Optionally, ``commands`` limits which ``/ops`` commands may be used where (StackStorm's per-channel
aliases): ``default`` (``all`` or a list) and ``channels`` (channel id → ``all`` or a list); ``help``
is allowed everywhere. Without the section every command works in every channel. ``approver_groups``
(same shape as ``approvals``, with user group ids ``S…``) adds a group mention to a request's card.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from opsconsole.core.errors import UsageError
from opsconsole.core.fleet.model import Fleet

SLACK_FILE = "slack.yml"
_CHANNEL = re.compile(r"^[CGD][A-Z0-9]{2,}$")
_GROUP = re.compile(r"^S[A-Z0-9]{2,}$")


@dataclass(frozen=True)
class ChannelMap:
    """Channels by region, by geography, and a default."""

    default: str
    geographies: Mapping[str, str] = field(default_factory=dict)
    regions: Mapping[str, str] = field(default_factory=dict)

    def for_regions(self, fleet: Fleet, regions: Iterable[str]) -> str:
        """The one channel for all of ``regions``: theirs if they share one, else their geography's,
        else the default."""
        wanted = sorted(set(regions))
        if not wanted:
            return self.default
        by_region = {self.regions.get(r) for r in wanted}
        if len(by_region) == 1 and None not in by_region:
            return str(next(iter(by_region)))
        geographies = {fleet.regions[r].geography.value for r in wanted if r in fleet.regions}
        if len(geographies) == 1:
            return self.geographies.get(next(iter(geographies)), self.default)
        return self.default


@dataclass(frozen=True)
class CommandPolicy:
    """Which ``/ops`` commands each channel allows (``None``: all)."""

    default: frozenset[str] | None = None
    channels: Mapping[str, frozenset[str] | None] = field(default_factory=dict)

    def allowed(self, channel: str | None) -> frozenset[str] | None:
        if channel and channel in self.channels:
            return self.channels[channel]
        return self.default

    def allows(self, channel: str | None, command: str) -> bool:
        allowed = self.allowed(channel)
        return command == "help" or allowed is None or command in allowed


@dataclass(frozen=True)
class Channels:
    approvals: ChannelMap
    notices: ChannelMap
    commands: CommandPolicy = field(default_factory=CommandPolicy)
    #: Slack user groups (``S…``) to mention on a request's card, by region / geography / default.
    approver_groups: ChannelMap | None = None


def _commands(data: Any, where: str, known: Iterable[str]) -> CommandPolicy:
    if data is None:
        return CommandPolicy()
    names = set(known)
    if not isinstance(data, Mapping):
        raise UsageError(f"{where}: expected a mapping with default and channels")

    def one(value: Any, at: str) -> frozenset[str] | None:
        if value is None or value == "all":
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise UsageError(f"{at}: expected `all` or a list of commands such as [status, approvals]")
        unknown = sorted(set(value) - names)
        if unknown:
            raise UsageError(
                f"{at}: unknown command(s) {', '.join(unknown)}; expected: {', '.join(sorted(names))}"
            )
        return frozenset(value)

    channels = data.get("channels") or {}
    if not isinstance(channels, Mapping):
        raise UsageError(f"{where}.channels: expected a mapping of channel id → commands")
    out: dict[str, frozenset[str] | None] = {}
    for channel, value in channels.items():
        if not isinstance(channel, str) or not _CHANNEL.match(channel):
            raise UsageError(f"{where}.channels.{channel}: expected a channel id such as C0123ABCD")
        out[channel] = one(value, f"{where}.channels.{channel}")
    return CommandPolicy(one(data.get("default", "all"), f"{where}.default"), out)


def _map(data: Any, where: str, fleet: Fleet, *, ids: re.Pattern[str] = _CHANNEL) -> ChannelMap:
    if not isinstance(data, Mapping):
        raise UsageError(f"{where}: expected a mapping with default, geographies, regions")
    default = data.get("default")
    example = "a channel id such as C0123ABCD" if ids is _CHANNEL else "a user group id such as S0123ABCD"
    if not isinstance(default, str) or not ids.match(default):
        raise UsageError(f"{where}.default: expected {example}, found {default!r}")
    out: dict[str, dict[str, str]] = {"geographies": {}, "regions": {}}
    for key, known in (("geographies", {"americas", "emea", "apac"}), ("regions", set(fleet.regions))):
        section = data.get(key) or {}
        if not isinstance(section, Mapping):
            raise UsageError(f"{where}.{key}: expected a mapping of name → channel id")
        for name, channel in section.items():
            if name not in known:
                raise UsageError(
                    f"{where}.{key}.{name}: unknown; expected one of: {', '.join(sorted(known))}"
                )
            if not isinstance(channel, str) or not ids.match(channel):
                raise UsageError(f"{where}.{key}.{name}: expected {example}, found {channel!r}")
            out[key][str(name)] = channel
    return ChannelMap(default, out["geographies"], out["regions"])


def load_channels(fleet: Fleet, *, sandbox: bool) -> Channels:
    """Read ``slack.yml`` next to ``hosts.yml``.

    Raises:
        UsageError: missing file or a malformed entry (the message names the key path).
    """
    path = fleet.source / SLACK_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise UsageError(f"{path}: missing; the bot needs it to know where to post approvals") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, Mapping):
        raise UsageError(f"{path}: expected a mapping")
    section: Mapping[str, Any] = data
    prefix = str(path)
    if sandbox and isinstance(data.get("sandbox"), Mapping):
        section = {**data, **data["sandbox"]}
        prefix = f"{path}: sandbox"
    from bot.parse import USAGE  # noqa: PLC0415 - the command names

    return Channels(
        approvals=_map(section.get("approvals"), f"{prefix}.approvals", fleet),
        notices=_map(section.get("notices"), f"{prefix}.notices", fleet),
        commands=_commands(section.get("commands"), f"{prefix}.commands", USAGE),
        approver_groups=(
            _map(section["approver_groups"], f"{prefix}.approver_groups", fleet, ids=_GROUP)
            if section.get("approver_groups")
            else None
        ),
    )
