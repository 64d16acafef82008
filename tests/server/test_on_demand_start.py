"""A one-shot command's embedded server (``on_demand``): the store answers without the fleet; the fleet,
asked for, is read whole through the four real adapters from a local cloud started only then.

Real parts: the embedded server on its Unix socket, the HTTP client, the local cloud's emulators and
the adapters (no `sandbox up`: the ephemeral local cloud of one command).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from opsconsole import wiring
from opsconsole.core.fleet.deferred import DeferredSource
from opsconsole.core.fleet.engine import SourceStatus
from opsconsole.core.fleet.inventory import load_inventory
from opsconsole.core.fleet.model import WorkloadState
from opsconsole.core.runs.records import JobStatus
from opsconsole.sandbox.emulator import scope_in
from opsconsole.sandbox.localcloud import LocalCloud, endpoints_path
from opsconsole.server.embedded import EmbeddedServer
from opsconsole.testing.ports import free_port
from opsconsole.wiring import ONE_SHOT_DEADLINE_S, sandbox_emulators, world_store


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_store_answers_without_the_fleet_and_the_fleet_comes_whole_when_asked(cloud_home: Path) -> None:
    with EmbeddedServer.start(acting_as="alice", home=cloud_home, on_demand=True) as server, \
            server.client(face="cli") as client:
        sources = server.core.fleet_sources
        assert [s.name for s in sources] == ["k8s", "aws", "gcp", "azure"]
        assert all(isinstance(s, DeferredSource) for s in sources)
        # What a `jobs list` / `approvals list` / `audit verify` asks: no adapter built, no emulator up.
        assert client.whoami().person == "alice"
        assert client.jobs() == [] and client.requests() == []
        assert client.audit_verify() is not None
        assert all(s.built_source is None for s in sources)
        # The local cloud never synced: the world was not even written.
        assert not world_store(server.core.fleet, home=cloud_home).path.exists()
        # The fleet, asked for: every source read, none "starting" (a one-shot command waits for all).
        view = client.fleet()
        status = {s.name: s.status for s in view.snapshot.sources}
        assert set(status) == {"k8s", "aws", "gcp", "azure"}
        assert SourceStatus.STARTING not in status.values()
        assert status["k8s"] is SourceStatus.OK, view.snapshot.sources
        assert all(s.built_source is not None for s in sources)
        assert {r.source for r in view.snapshot.records.values()} >= {"k8s"}
        # A preview runs a real playbook against the local cloud started on demand.
        workload = next(w for w in view.snapshot.of_type(WorkloadState)
                        if w.environment.value == "prod" and w.hpa_max - w.desired >= 1)
        job = client.preview("scale", {"region": workload.region, "service": workload.service,
                                       "cluster": workload.cluster, "replicas": workload.desired + 1})
        deadline, seen = time.monotonic() + 240, 0
        while not job.status.terminal:  # the server's long poll: each call waits for the run's next events
            assert time.monotonic() < deadline, f"the preview did not end: {job}"
            events = client.job_events(job.id, after_seq=seen, wait_s=5)
            seen = events[-1].seq if events else seen
            job = client.job(job.id)
        assert job.check_mode and job.status is JobStatus.SUCCEEDED, job


#: How long the faulted CloudWatch answer waits: past a console's 5 s deadline, well inside a one-shot's.
SLOW_ANSWER_S = 6.0


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_one_shot_command_waits_for_a_slow_cloud_a_console_would_show_as_not_answering(
    cloud_home: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A one-shot command reads once, so it waits longer for each source (``ONE_SHOT_DEADLINE_S``)
    than a console, which refreshes every few seconds and shows a slow source stale meanwhile. One
    CloudWatch answer (us-east-1's first) stalls 6 s: a console's 5 s deadline misses it, the one-shot
    command shows AWS answered, with its store up and with its store down (the store-outage core).
    The console's read comes last: the read it abandons may go on asking and take a later stall."""
    fleet = load_inventory(None)
    with LocalCloud(world_store(fleet, home=cloud_home), sandbox_emulators(fleet)) as cloud:  # `sandbox up`
        cloud.start()
        cloud.write_endpoints(endpoints_path(cloud_home))
        aws = next(e for e in cloud.emulators if e.name == "aws")

        def stall_us_east_1_once() -> None:
            aws.faults.inject("slow", count=1, match=scope_in("us-east-1"), seconds=SLOW_ANSWER_S)

        stall_us_east_1_once()
        with EmbeddedServer.start(acting_as="alice", home=cloud_home, on_demand=True) as server, \
                server.client(face="cli") as client:
            one_shot = {s.name: s for s in client.fleet().snapshot.sources}
        assert one_shot["aws"].status is SourceStatus.OK, one_shot["aws"]
        assert one_shot["aws"].duration_s is not None and one_shot["aws"].duration_s >= SLOW_ANSWER_S

        # With the store down the one-shot command is served by the store-outage core: the same wait.
        with monkeypatch.context() as patched:
            patched.setenv("OPSCONSOLE_DB_URL", f"postgresql://opsconsole@127.0.0.1:{free_port()}/gone")
            stall_us_east_1_once()
            with EmbeddedServer.start(acting_as="alice", home=cloud_home, on_demand=True) as server, \
                    server.client(face="cli") as client:
                assert server.store_problem is not None and server.store_problem.title == "store unreachable"
                outage = {s.name: s for s in client.fleet().snapshot.sources}
        assert outage["aws"].status is SourceStatus.OK, outage["aws"]
        assert outage["aws"].duration_s is not None and outage["aws"].duration_s >= SLOW_ANSWER_S

        # The same stall on a console's read.
        stall_us_east_1_once()
        with wiring.sandbox_core(home=cloud_home) as console_core:  # the console's deadline
            console = {s.name: s for s in console_core.refresh().snapshot.sources}
        assert console["aws"].status is not SourceStatus.OK, console["aws"]

        assert ONE_SHOT_DEADLINE_S > SLOW_ANSWER_S + 5  # room for a loaded machine
