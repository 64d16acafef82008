"""Fixtures of the ops server tests: a real server (uvicorn on 127.0.0.1, port 0) over a sandbox core that
reads the simulated world in-process and runs playbooks with the real run engine, SQLite under tmp_path,
and personal tokens for the sandbox cast."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from opsconsole import wiring
from opsconsole.core.facade import OpsCore
from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.store.db import audit_table, requests_table
from opsconsole.providers.sim import SimSource
from opsconsole.server.app import Runtime, create_app
from opsconsole.server.embedded import ServedApp
from opsconsole.server.main import server_runtime
from opsconsole.server.settings import ServerSettings

REPO = Path(__file__).resolve().parents[2]
CAST = ("alice", "bob", "carol", "erin", "victor")


@dataclass
class Served:
    """A running server and what the tests need to talk to it."""

    url: str
    core: OpsCore
    runtime: Runtime
    served: ServedApp
    tokens: dict[str, str] = field(default_factory=dict)
    verify: Any = True

    def http(self, person: str | None = None, *, token: str | None = None, **headers: str) -> httpx.Client:
        all_headers = dict(headers)
        text = token if token is not None else (self.tokens[person] if person else None)
        if text is not None:
            all_headers["Authorization"] = f"Bearer {text}"
        return httpx.Client(base_url=self.url, headers=all_headers, timeout=30, verify=self.verify)

    def counts(self) -> tuple[int, int]:
        """Rows of change_requests and of the audit log."""
        with self.core.database.engine.connect() as conn:
            requests = conn.execute(select(func.count()).select_from(requests_table)).scalar_one()
            audit = conn.execute(select(func.count()).select_from(audit_table)).scalar_one()
        return int(requests), int(audit)


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSCONSOLE_SANDBOX_READER", "sim")
    monkeypatch.delenv("OPSCONSOLE_DB_URL", raising=False)


@pytest.fixture
def cloud_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``tmp_path`` as the home of an embedded server reading the local cloud through the real adapters
    (no ``sandbox up`` there: the server's own local cloud)."""
    monkeypatch.setenv("OPSCONSOLE_HOME", str(tmp_path))
    monkeypatch.setenv("OPSCONSOLE_SANDBOX_READER", "cloud")
    return tmp_path


@pytest.fixture
def core(sim: None, _isolated_home: Path) -> Iterator[OpsCore]:
    """A sandbox core on the simulated world, with the real run engine (playbooks may fail against the
    simulation: these tests look at what the server decides, not at what Ansible does)."""
    fleet = load_inventory(REPO / "inventory")
    home = _isolated_home
    world = wiring.world_store(fleet, home=home)
    runner = wiring.make_runner(fleet, home, {})
    with OpsCore(fleet, [SimSource(world)], deadline_s=5.0, runner=runner, sandbox=True) as made:
        yield made
    # Runs started by a test are stopped rather than left to outlive it.
    for job in runner.store.list(limit=100):
        if not job.status.terminal:
            runner.cancel(job.id)


ServeFactory = Callable[..., Served]


@pytest.fixture
def serve(core: OpsCore) -> Iterator[ServeFactory]:
    """``serve(**settings)``: start a server over ``core`` with those settings; tokens for the cast."""
    with ExitStack() as stack:

        def start(*, ssl_certfile: str | None = None, ssl_keyfile: str | None = None,
                  verify: Any = True, **settings: Any) -> Served:
            config = ServerSettings(refresh_s=settings.pop("refresh_s", 0.5), **settings)
            runtime = stack.enter_context(server_runtime(config, core=core, scheduler=False, slack=False))
            served = ServedApp(create_app(runtime), host="127.0.0.1", port=0, ssl_certfile=ssl_certfile,
                               ssl_keyfile=ssl_keyfile)
            served.start()
            stack.callback(served.stop)
            scheme = "https" if ssl_certfile else "http"
            result = Served(f"{scheme}://127.0.0.1:{served.port}", core, runtime, served, verify=verify)
            tokens = runtime.auth.tokens
            assert tokens is not None
            for person in CAST:
                _, text = tokens.create(person, created_by="test", label=f"{person}'s test token")
                result.tokens[person] = text
            return result

        yield start


@pytest.fixture
def server(serve: ServeFactory) -> Served:
    return serve()


@contextmanager
def env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
