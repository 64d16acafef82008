"""Shared fixtures: every test runs with its own OPSCONSOLE_HOME and the seed inventory."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsconsole.core.inventory import load_inventory
from opsconsole.core.model import Fleet

REPO = Path(__file__).resolve().parents[1]
SEED_INVENTORY = REPO / "inventory"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("OPSCONSOLE_HOME", str(home))
    monkeypatch.delenv("OPSCONSOLE_INVENTORY", raising=False)
    yield home


@pytest.fixture(scope="session")
def seed_fleet() -> Fleet:
    return load_inventory(SEED_INVENTORY)


@pytest.fixture
def inventory_copy(tmp_path: Path) -> Path:
    """A writable copy of the seed inventory, for tests that break it on purpose."""
    target = tmp_path / "inventory"
    shutil.copytree(SEED_INVENTORY, target)
    return target
