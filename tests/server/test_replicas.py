"""Two ops server replicas on one PostgreSQL act as one: a token made on one works on the other, a
request filed on one is approved on the other, it runs once however many replicas are asked at the same
instant, and one scheduler leads."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from opsconsole import wiring
from opsconsole.core import wire
from opsconsole.core.facade import OpsCore
from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.schedule.engine import Scheduler
from opsconsole.providers.sim import SimSource
from opsconsole.server.app import create_app
from opsconsole.server.embedded import ServedApp
from opsconsole.server.main import server_runtime
from opsconsole.server.settings import ServerSettings
from opsconsole.testing.postgres import ThrowawayPostgres

from .conftest import CAST, REPO, Served

FAILOVER = {"action": "failover", "params": {"from_region": "eu-west-1", "to_region": "eu-central-1"}}


@pytest.fixture
def replicas(
    postgres_server: ThrowawayPostgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[Served]]:
    url = postgres_server.create_database(f"replicas_{tmp_path.name[-24:].replace('-', '_')}")
    monkeypatch.setenv("OPSCONSOLE_DB_URL", url)
    monkeypatch.setenv("OPSCONSOLE_SANDBOX_READER", "sim")
    fleet = load_inventory(REPO / "inventory")
    served: list[Served] = []
    with ExitStack() as stack:
        for name in ("a", "b"):
            home = tmp_path / name  # each replica its own host: its own home, the same database
            home.mkdir()
            world = wiring.world_store(fleet, home=home)
            runner = wiring.make_runner(fleet, home, {})
            core = stack.enter_context(OpsCore(fleet, [SimSource(world)], runner=runner, sandbox=True))
            stack.callback(lambda r=runner: [r.cancel(j.id) for j in r.store.list(limit=50)
                                             if not j.status.terminal])
            runtime = stack.enter_context(server_runtime(ServerSettings(refresh_s=0.5, home=home), core=core,
                                                         scheduler=False, slack=False))
            app = ServedApp(create_app(runtime), host="127.0.0.1", port=0)
            app.start()
            stack.callback(app.stop)
            served.append(Served(f"http://127.0.0.1:{app.port}", core, runtime, app))
        tokens = served[0].runtime.auth.tokens
        assert tokens is not None
        for person in CAST:  # made on replica a, used on both
            _, text = tokens.create(person, created_by="test")
            for replica in served:
                replica.tokens[person] = text
        yield served


def test_a_request_runs_once_however_many_replicas_are_asked(replicas: list[Served]) -> None:
    a, b = replicas
    with a.http("alice") as alice:
        request = wire.loads(alice.post("/api/v1/requests", json=FAILOVER).content).request
    with a.http("bob") as bob:
        assert bob.post(f"/api/v1/requests/{request.id}/approve", json={"run": False}).status_code == 200
    with b.http("carol") as carol:
        approved = carol.post(f"/api/v1/requests/{request.id}/approve", json={"run": False})
        decided = wire.loads(approved.content)
    assert decided.request.status.value == "approved"

    answers: list[int] = []
    barrier = threading.Barrier(4)

    def run(replica: Served, person: str) -> None:
        with replica.http(person) as http:
            barrier.wait()
            answers.append(http.post(f"/api/v1/requests/{request.id}/run").status_code)

    threads = [threading.Thread(target=run, args=(replica, person))
               for replica in (a, b) for person in ("alice", "erin")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(answers) == [201, 409, 409, 409]
    with b.http("bob") as bob:
        jobs = wire.loads(bob.get("/api/v1/jobs", params={"limit": 50}).content)
        runs = [j for j in jobs if not j.check_mode and j.action == "failover"]
        assert len(runs) == 1
        detail = wire.loads(bob.get(f"/api/v1/requests/{request.id}").content)
        assert detail.request.job_id == runs[0].id


def test_one_scheduler_leads_among_replicas(replicas: list[Served]) -> None:
    schedulers = [Scheduler(replica.core) for replica in replicas]
    leaders = [scheduler.is_leader() for scheduler in schedulers]
    assert sorted(leaders) == [False, True]
    leader = schedulers[leaders.index(True)]
    assert leader.is_leader() is True  # renewing keeps it
    assert schedulers[leaders.index(False)].is_leader() is False


def test_with_the_store_unreachable_nothing_runs_and_the_client_is_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ThrowawayPostgres() as own, ExitStack() as stack:  # its own server: this test stops it
        monkeypatch.setenv("OPSCONSOLE_DB_URL", own.create_database("outage"))
        monkeypatch.setenv("OPSCONSOLE_SANDBOX_READER", "sim")
        fleet = load_inventory(REPO / "inventory")
        runner = wiring.make_runner(fleet, tmp_path, {})
        core = stack.enter_context(OpsCore(fleet, [SimSource(wiring.world_store(fleet, home=tmp_path))],
                                           runner=runner, sandbox=True))
        runtime = stack.enter_context(server_runtime(ServerSettings(refresh_s=0.5, home=tmp_path), core=core,
                                                     scheduler=False, slack=False))
        app = ServedApp(create_app(runtime), host="127.0.0.1", port=0)
        app.start()
        stack.callback(app.stop)
        served = Served(f"http://127.0.0.1:{app.port}", core, runtime, app)
        tokens = runtime.auth.tokens
        assert tokens is not None
        for person in ("alice", "bob", "carol"):
            served.tokens[person] = tokens.create(person, created_by="test")[1]

        with served.http("alice") as alice:
            request = wire.loads(alice.post("/api/v1/requests", json=FAILOVER).content).request
        for approver in ("bob", "carol"):
            with served.http(approver) as http:
                assert http.post(f"/api/v1/requests/{request.id}/approve",
                                 json={"run": False}).status_code == 200
        with served.http("alice") as alice:
            own.halt()
            try:
                refused = alice.post(f"/api/v1/requests/{request.id}/run")
            finally:
                own.resume()
            assert refused.status_code >= 500, refused.text
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert "Traceback" not in refused.text
            assert runner.store.list(limit=10) == []
            answer = alice.get(f"/api/v1/requests/{request.id}")
            detail = wire.loads(answer.content)
            assert answer.status_code == 200, answer.text
        assert detail.request.status.value == "approved" and detail.request.job_id is None
        assert served.tokens["alice"] not in refused.text
