"""Shared fixtures: every test runs with its own OPSCONSOLE_HOME and the seed inventory."""

from __future__ import annotations

import itertools
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.fleet.model import Fleet
from opsconsole.testing.postgres import ThrowawayPostgres

# As the CLI does: grpc's C core writes INFO lines (a GOAWAY from a stopped emulator) straight to the
# process's stderr, past pytest's capture, into the middle of the progress dots.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

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


# -- the store's two back ends ------------------------------------------------------------------------
#
# Every test of something that persists (jobs, requests, votes, leases, audit) takes ``db_url`` and so
# runs twice: on SQLite (a file under the test's home) and on a real PostgreSQL (one throwaway server for
# the session, a fresh database per test). PostgreSQL is never skipped: without its binaries the tests
# fail, naming the Debian package to install.


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[ThrowawayPostgres]:
    with ThrowawayPostgres() as server:
        yield server


_database_counter = itertools.count(1)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database on each back end in turn."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    server: ThrowawayPostgres = request.getfixturevalue("postgres_server")
    return server.create_database(f"t{next(_database_counter)}_{uuid.uuid4().hex[:8]}")
