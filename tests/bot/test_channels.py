"""``slack.yml``: per-channel command limits and approver groups are read and checked (issue 15)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bot.channels import load_channels
from opsconsole.core.errors import UsageError

BASE = """
approvals: {default: C0APPROVALS}
notices: {default: C0NOTICES}
"""


def fleet(tmp_path: Path, extra: str) -> Any:
    (tmp_path / "slack.yml").write_text(BASE + extra, encoding="utf-8")
    return SimpleNamespace(source=tmp_path, regions={"eu-west-1": None})


def test_without_the_sections_every_command_works_everywhere(tmp_path: Path) -> None:
    channels = load_channels(fleet(tmp_path, ""), sandbox=False)
    assert channels.commands.allows("C0ANY", "failover") and channels.approver_groups is None


def test_channel_limits_and_groups(tmp_path: Path) -> None:
    extra = """
commands:
  default: all
  channels:
    C0OPSCHAT: [status, approvals]
approver_groups: {default: S0APPROVERS}
"""
    channels = load_channels(fleet(tmp_path, extra), sandbox=False)
    assert channels.commands.allows("C0OPSCHAT", "status") and not channels.commands.allows(
        "C0OPSCHAT", "scale"
    )
    assert channels.commands.allows("C0OPSCHAT", "help") and channels.commands.allows("C0OTHER", "scale")
    assert channels.approver_groups is not None and channels.approver_groups.default == "S0APPROVERS"


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ("commands: {channels: {C0X: [frobnicate]}}", "unknown command(s) frobnicate"),
        ("commands: {channels: {general: all}}", "expected a channel id"),
        ("approver_groups: {default: C0NOTAGROUP}", "user group id"),
    ],
)
def test_mistakes_name_the_key(tmp_path: Path, extra: str, says: str) -> None:
    with pytest.raises(UsageError) as error:
        load_channels(fleet(tmp_path, extra), sandbox=False)
    assert says in error.value.message
