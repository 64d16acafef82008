"""The composition root: which sources feed the core, decided in one place.

The core knows nothing about where fleet state comes from; faces know nothing about how to build the
core. This module connects them. On the sandbox, the fleet is read through the four real adapters
(boto3, kubernetes, google-cloud-monitoring, azure-monitor-query) from the local cloud's emulators,
exactly as production would be; ``OPSCONSOLE_SANDBOX_READER=sim`` reads the world in-process instead.

Sandbox settings come from the environment so that every command sees the same world:

* ``OPSCONSOLE_SANDBOX_SEED`` (default 42): the world's random seed;
* ``OPSCONSOLE_SANDBOX_SPEED`` (default 1): simulated seconds per wall-clock second.

The cloud sources poll on the cadences of the inventory's ``opsconsole_clouds`` (see
:func:`~opsconsole.core.fleet.inventory.source_cadences`); each gets a ``resolve_endpoints`` callable that
re-reads where the local cloud listens (``$OPSCONSOLE_HOME/sandbox/endpoints.json`` of a shared
``sandbox up``, or the ephemeral cloud's own), so a restarted local cloud is found again without a console
restart; and every source is ``touch()``-ed when a run ends, so what a playbook changed is read at once.
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from opsconsole.core.clock import Clock, SystemClock
from opsconsole.core.errors import OpsError, SourceError, UsageError
from opsconsole.core.facade import Connection, OpsCore
from opsconsole.core.fleet.deferred import DeferredSource
from opsconsole.core.fleet.engine import FleetSource, SourceReading
from opsconsole.core.fleet.inventory import SourceCadence, load_inventory, source_cadences
from opsconsole.core.fleet.model import Fleet
from opsconsole.core.paths import opsconsole_home, world_home
from opsconsole.core.runs.events import EventBus
from opsconsole.core.runs.jobs import JobStore
from opsconsole.core.runs.records import Job
from opsconsole.core.runs.runner import Runner, cancel_runs_at_exit
from opsconsole.providers.sim import SimSource
from opsconsole.sandbox.emulator import Emulator, Endpoints
from opsconsole.sandbox.localcloud import (
    DEFAULT_SYNC_S,
    LocalCloud,
    read_running,
    running_or_ephemeral,
    started_now,
)
from opsconsole.sandbox.starting import LazyMapping, StartingSource
from opsconsole.sandbox.state import WorldStore


@dataclass(frozen=True)
class SandboxSettings:
    seed: int = 42
    speed: float = 1.0

    @classmethod
    def from_environment(cls) -> SandboxSettings:
        seed_text = os.environ.get("OPSCONSOLE_SANDBOX_SEED", "42")
        speed_text = os.environ.get("OPSCONSOLE_SANDBOX_SPEED", "1")
        try:
            seed = int(seed_text)
        except ValueError:
            raise UsageError(f"OPSCONSOLE_SANDBOX_SEED: expected an integer, found {seed_text!r}") from None
        try:
            speed = float(speed_text)
        except ValueError:
            speed = -1.0
        if not 0 < speed <= 10_000:
            raise UsageError(
                f"OPSCONSOLE_SANDBOX_SPEED: expected a number > 0 and <= 10000, found {speed_text!r}"
            )
        return cls(seed=seed, speed=speed)


def world_store(
    fleet: Fleet,
    *,
    home: Path | None = None,
    clock: Clock | None = None,
    settings: SandboxSettings | None = None,
) -> WorldStore:
    """The persistent sandbox world under ``OPSCONSOLE_HOME``."""
    settings = settings or SandboxSettings.from_environment()
    return WorldStore(
        home or opsconsole_home(), fleet, clock or SystemClock(), seed=settings.seed, speed=settings.speed
    )


def sandbox_emulators(fleet: Fleet) -> list[Emulator]:
    """The local cloud's API emulators, one per adapter (imported here: they pull in moto and grpc)."""
    from opsconsole.sandbox.aws import AwsCloud  # noqa: PLC0415
    from opsconsole.sandbox.azure_admin import AzureAdminEmulator  # noqa: PLC0415
    from opsconsole.sandbox.azure_monitor import AzureMonitorEmulator  # noqa: PLC0415
    from opsconsole.sandbox.gcp_admin import GcpAdminEmulator  # noqa: PLC0415
    from opsconsole.sandbox.gcp_monitoring import GcpMonitoringEmulator  # noqa: PLC0415
    from opsconsole.sandbox.kube import KubeApiEmulator  # noqa: PLC0415

    # The four the adapters read, then the management APIs only the playbooks' GCP / Azure modules call.
    return [
        KubeApiEmulator(fleet), AwsCloud(fleet), GcpMonitoringEmulator(fleet), AzureMonitorEmulator(fleet),
        GcpAdminEmulator(fleet), AzureAdminEmulator(fleet),
    ]


def management_extravars(endpoints: Mapping[str, Endpoints]) -> dict[str, str]:
    """Where the playbooks' GCP and Azure modules find the local cloud's management APIs (GKE node pools,
    Cloud SQL, AKS agent pools, Azure PostgreSQL); empty when a local cloud from an older opsconsole runs
    without them (the modules then say they found no credentials for the real clouds)."""
    gcp = endpoints.get("gcp_admin")
    azure = endpoints.get("azure_admin")
    # failover.yml's replica-lag gate reads Cloud SQL / Azure PostgreSQL lag from the monitoring APIs.
    gcp_monitoring = endpoints.get("gcp")
    azure_monitor = endpoints.get("azure")
    return {
        "opsconsole_gcp_endpoint_url": gcp.urls.get("gcp_admin", "") if gcp else "",
        "opsconsole_gcp_project": gcp.settings.get("project", "") if gcp else "",
        "opsconsole_azure_endpoint_url": azure.urls.get("azure_admin", "") if azure else "",
        "opsconsole_azure_subscription": azure.settings.get("subscription", "") if azure else "",
        "opsconsole_gcp_monitoring_endpoint": gcp_monitoring.urls.get("gcp", "") if gcp_monitoring else "",
        "opsconsole_azure_monitor_endpoint_url": (
            azure_monitor.urls.get("azure_metrics", "") if azure_monitor else ""
        ),
    }


def first_emulators(fleet: Fleet) -> list[Emulator]:
    """What a progressive start serves first: the Kubernetes emulator (our own code, quick to start)."""
    from opsconsole.sandbox.kube import KubeApiEmulator  # noqa: PLC0415

    return [KubeApiEmulator(fleet)]


#: Endpoints of the local cloud, re-read on demand (None: not known now).
EndpointsResolver = Callable[[], Mapping[str, Endpoints] | None]


def adapter_sources(
    fleet: Fleet,
    endpoints: Mapping[str, Endpoints],
    *,
    timeout_s: float,
    cadences: Mapping[str, SourceCadence] | None = None,
    resolve: EndpointsResolver | None = None,
    clock: Callable[[], float] | None = None,
    deferred: bool = False,
) -> list[FleetSource]:
    """The four real adapters, pointed at the local cloud's endpoints.

    ``cadences``: per cloud (``aws``, ``gcp``, ``azure``); absent: every refresh (no caching).
    ``resolve``: re-reads the local cloud's endpoints (a restarted one listens on new ports).
    ``clock``: wall seconds for the cadences (benchmarks pass a simulated one).
    An emulator still starting (a progressive start) gets a
    :class:`~opsconsole.sandbox.starting.StartingSource` that builds its adapter when it is up.
    ``deferred`` (a one-shot command): every adapter is a
    :class:`~opsconsole.core.fleet.deferred.DeferredSource`, built (and its emulator started) only when
    the fleet is first read.
    """
    every = SourceCadence(0.0, 0.0)
    aws, gcp, azure = ((cadences or {}).get(c, every) for c in ("aws", "gcp", "azure"))

    def resolver(name: str) -> Callable[[], Endpoints] | None:
        return None if resolve is None else endpoint_resolver(name, endpoints[name], resolve)

    def make_k8s() -> FleetSource:
        from opsconsole.providers.k8s import KubernetesSource  # noqa: PLC0415

        k8s_kwargs: dict[str, object] = {"timeout_s": timeout_s}
        if "resolve_endpoints" in inspect.signature(KubernetesSource.from_endpoints).parameters:
            k8s_kwargs["resolve_endpoints"] = resolver("k8s")
        return KubernetesSource.from_endpoints(fleet, endpoints["k8s"], **k8s_kwargs)  # type: ignore[arg-type]

    # Each cloud's SDK is imported when its adapter is built (after its emulator started, on a
    # progressive start: boto3 and grpc are off the path to the first data).
    def make_aws() -> FleetSource:
        from opsconsole.providers.aws import AwsSource  # noqa: PLC0415

        return AwsSource.from_endpoints(fleet, endpoints["aws"], timeout_s=timeout_s,
                                        metrics_cadence_s=aws.metrics_s, describe_cadence_s=aws.describe_s,
                                        clock=clock, resolve_endpoints=resolver("aws"))

    def make_gcp() -> FleetSource:
        from opsconsole.providers.gcp import GcpSource  # noqa: PLC0415

        return GcpSource.from_endpoints(fleet, endpoints["gcp"], timeout_s=timeout_s,
                                        metrics_cadence_s=gcp.metrics_s, clock=clock,
                                        resolve_endpoints=resolver("gcp"))

    def make_azure() -> FleetSource:
        from opsconsole.providers.azure import AzureSource  # noqa: PLC0415

        return AzureSource.from_endpoints(fleet, endpoints["azure"], timeout_s=timeout_s,
                                          metrics_cadence_s=azure.metrics_s, clock=clock,
                                          resolve_endpoints=resolver("azure"))

    def when_up(name: str, cadence_s: float, make: Callable[[], FleetSource]) -> FleetSource:
        if deferred:
            return DeferredSource(name, make, cadence_s=cadence_s)
        return make() if started_now(endpoints, name) else StartingSource(name, make, cadence_s=cadence_s)

    return [
        when_up("k8s", 0.0, make_k8s),
        when_up("aws", aws.metrics_s, make_aws),
        when_up("gcp", gcp.metrics_s, make_gcp),
        when_up("azure", azure.metrics_s, make_azure),
    ]


def endpoint_resolver(name: str, first: Endpoints, resolve: EndpointsResolver) -> Callable[[], Endpoints]:
    """One emulator's endpoints, re-read through ``resolve``; while it knows none (``sandbox up`` is
    stopped) the last ones found, not the first: a source that followed a restarted local cloud must not
    be sent back to the ports of one that died two restarts ago."""
    last = first

    def one() -> Endpoints:
        nonlocal last
        found = resolve()
        if found is not None and name in found:
            last = found[name]
        return last

    return one


def touch_sources(sources: Sequence[FleetSource]) -> None:
    """Tell every source that can hear it that something changed (a run ended): ask again at once."""
    for source in sources:
        touch = getattr(source, "touch", None)
        if callable(touch):
            try:
                touch()
            except Exception:  # a source's hook must never fail a run's end
                continue


def sandbox_reader() -> str:
    """``OPSCONSOLE_SANDBOX_READER``: ``cloud`` (default, the real adapters) or ``sim`` (in-process)."""
    reader = os.environ.get("OPSCONSOLE_SANDBOX_READER", "cloud")
    if reader not in ("cloud", "sim"):
        raise UsageError(f"OPSCONSOLE_SANDBOX_READER: expected cloud or sim, found {reader!r}")
    return reader


#: How long a one-shot command (``on_demand``) waits for each source's read. A console refreshes every
#: few seconds, so a source slower than its short deadline is shown stale and caught up at the next
#: refresh; a one-shot command reads once, cold (SDK clients built, connections opened, on the sandbox
#: the emulators just started), and prints what it got. On the sandbox the cold first read of AWS takes
#: 2.3 s quiet (bench/bench_cli.py, "one_shot_cold_reads"; 0.7 s warm) and took 5.6-6.8 s beside three
#: CPU burners (Kubernetes: 0.9 s, and 3.2-3.5 s), so with the console's 5 s a loaded CI machine's
#: `fleet status` printed AWS as "no answer within 5.0 s" and exited 1 on a healthy fleet. A cloud that
#: refuses or fails still answers at once; only one that hangs makes the command wait this long.
ONE_SHOT_DEADLINE_S = 15.0
#: How long a console (or the ops server) waits for each source's read, on the sandbox and live.
SANDBOX_DEADLINE_S = 5.0
LIVE_DEADLINE_S = 10.0


def read_deadline_s(*, live: bool, on_demand: bool = False) -> float:
    """The per-source read deadline of a core: a one-shot command's (``on_demand``), else a console's."""
    if on_demand:
        return ONE_SHOT_DEADLINE_S
    return LIVE_DEADLINE_S if live else SANDBOX_DEADLINE_S


def sandbox_sources(
    fleet: Fleet,
    home: Path,
    endpoints: Mapping[str, Endpoints],
    cloud: LocalCloud | None,
    *,
    timeout_s: float,
    deferred: bool = False,
) -> list[FleetSource]:
    """The four adapters on a sandbox's local cloud, as every sandbox core reads it: at the inventory's
    cadences, following the local cloud to new ports when it restarts (``cloud``: the ephemeral one of
    this process, else the shared ``sandbox up`` one, whose endpoints file is re-read)."""

    def resolve() -> Mapping[str, Endpoints] | None:
        # The ephemeral cloud's own endpoints, or what the shared `sandbox up` wrote last.
        return dict(cloud.endpoints) if cloud is not None else read_running(home)

    return adapter_sources(fleet, endpoints, timeout_s=timeout_s, cadences=source_cadences(fleet.source),
                           resolve=resolve, deferred=deferred)


@contextmanager
def sandbox_core(
    inventory: Path | None = None,
    *,
    home: Path | None = None,
    clock: Clock | None = None,
    deadline_s: float | None = None,
    reader: str | None = None,
    audit_key: bytes | None = None,
    audit_head_file: Path | None = None,
    progressive: bool = False,
    on_demand: bool = False,
) -> Iterator[OpsCore]:
    """An :class:`OpsCore` on the sandbox, for the length of the ``with`` block.

    ``audit_key`` / ``audit_head_file``: see :class:`OpsCore` (the ops server passes its own).
    ``progressive``: an ephemeral local cloud starts its Kubernetes emulator first and the others while
    the core already serves (their sources are "starting" until then; see
    :mod:`opsconsole.sandbox.starting`): the console's first data comes seconds sooner.
    ``on_demand`` (a one-shot command): the adapters are built, and an ephemeral local cloud's emulators
    started, only when the fleet is first read or a run first needs them (see
    :mod:`opsconsole.core.fleet.deferred`): ``jobs list`` reads the store and nothing else. Its reads
    get :data:`ONE_SHOT_DEADLINE_S` (``deadline_s`` when given; else :data:`SANDBOX_DEADLINE_S`).

    By default the fleet is read through the four real adapters from the local cloud: the one
    ``opsconsole sandbox up`` runs, or one started for this block. ``reader="sim"`` reads the world
    in-process instead (fast; for tests of the faces and scale benchmarks).
    """
    fleet = load_inventory(inventory)
    home = home or opsconsole_home()
    store = world_store(fleet, home=home, clock=clock)
    if deadline_s is None:
        deadline_s = read_deadline_s(live=False, on_demand=on_demand)
    if (reader or sandbox_reader()) == "sim":
        with OpsCore(fleet, [SimSource(store)], deadline_s=deadline_s, clock=clock, sandbox=True,
                     audit_key=audit_key, audit_head_file=audit_head_file) as core:
            yield core
        return
    # Each adapter's own time budget sits inside the engine's deadline, so a slow emulator is cut by
    # its adapter (and reported) before the engine abandons the read.
    timeout_s = deadline_s * 0.8
    def kubernetes_first() -> Sequence[Emulator]:
        return first_emulators(fleet)

    def nothing_first() -> Sequence[Emulator]:  # every emulator on the first demand for an endpoint
        return ()

    first = kubernetes_first if progressive else nothing_first if on_demand else None
    local_cloud = running_or_ephemeral(home, store, lambda: sandbox_emulators(fleet), first=first)
    with local_cloud as (endpoints, cloud):
        sources = sandbox_sources(fleet, home, endpoints, cloud, timeout_s=timeout_s,
                                  deferred=on_demand and not progressive)
        def extravars() -> dict[str, object]:
            aws = endpoints["aws"]  # a progressive start: waits for the AWS emulator
            runner.add_env(aws_env())  # before the run that needed these starts; redacted from now on
            return {
                "opsconsole_sandbox": True,
                "opsconsole_kubeconfig": endpoints["k8s"].settings["kubeconfig"],
                "opsconsole_aws_endpoint_url": aws.urls["aws"],
                "opsconsole_cloudwatch_endpoint_url": aws.urls.get("cloudwatch", ""),
                **management_extravars(endpoints),
            }

        def aws_env() -> dict[str, str]:
            aws = endpoints["aws"]
            return {
                "AWS_ACCESS_KEY_ID": aws.settings.get("aws_access_key_id", ""),
                "AWS_SECRET_ACCESS_KEY": aws.settings.get("aws_secret_access_key", ""),
                "AWS_SESSION_TOKEN": aws.settings.get("aws_session_token", ""),
                "AWS_REGION": "us-east-1",
                "AWS_DEFAULT_REGION": "us-east-1",
            }

        aws_up = started_now(endpoints, "aws")
        env = aws_env() if aws_up else {"AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"}
        runner = make_runner(fleet, home, env)
        connection = Connection(extravars() if aws_up else LazyMapping(extravars))

        def world_takes_it_in(_job: Job) -> None:
            if cloud is not None:
                cloud.sync()
            else:  # the shared local cloud syncs on its own clock: wait for its next cycle
                time.sleep(DEFAULT_SYNC_S + 0.5)
            touch_sources(sources)  # what the run changed is read at the next refresh, not a cadence later

        with OpsCore(fleet, sources, deadline_s=deadline_s, clock=clock, runner=runner,
                     connection=connection, after_run=world_takes_it_in, sandbox=True,
                     audit_key=audit_key, audit_head_file=audit_head_file) as core:
            yield core


#: The repository root: where playbooks/ lives (opsconsole is installed in development mode).
PROJECT_DIR = Path(__file__).resolve().parents[1]


def make_runner(fleet: Fleet, home: Path, env: Mapping[str, str]) -> Runner:
    """The run engine, with its job store under ``home``; jobs a dead console left running are marked
    interrupted first (nothing is re-run)."""
    # The team's database when OPSCONSOLE_DB_URL names one, else the home's SQLite file.
    store = JobStore(os.environ.get("OPSCONSOLE_DB_URL") or home)
    runner = Runner(
        store, EventBus(), project_dir=PROJECT_DIR, inventory=fleet.source / "hosts.yml", home=home, env=env,
    )
    runner.recover()
    # Ctrl-C, SIGTERM or a normal exit of the owning process cancels its runs and records them; kill -9
    # is left to each run's watchdog (see opsconsole.core.runs.supervise).
    cancel_runs_at_exit(runner)
    return runner


class UnconfiguredSource:
    """Stands for an adapter that could not be built (a setting missing from the inventory, no
    kubeconfig...): the engine reports it as a failed source and the other sources keep answering."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason

    def read(self) -> SourceReading:
        raise SourceError(self.reason, title=f"{self.name} not configured")


def live_sources(fleet: Fleet, *, timeout_s: float, deferred: bool = False) -> list[FleetSource]:
    """The four adapters pointed at the real clouds named in the inventory's ``opsconsole_clouds``
    (``deferred``: each built when the fleet is first read; see :func:`adapter_sources`)."""
    accounts = fleet.accounts
    where = f"{fleet.source / 'group_vars' / 'all.yml'}: opsconsole_clouds"
    cadences = source_cadences(fleet.source)

    def build(name: str, identity: str, make: Callable[[], FleetSource]) -> FleetSource:
        if deferred:
            cadence = cadences[name].metrics_s if name in cadences else 0.0
            return DeferredSource(name, lambda: built(name, identity, make), cadence_s=cadence)
        return built(name, identity, make)

    def built(name: str, identity: str, make: Callable[[], FleetSource]) -> FleetSource:
        try:
            return make()
        except OpsError as exc:
            return UnconfiguredSource(name, f"{name} ({identity}): {exc}")
        except Exception as exc:  # an SDK refusing to build a client (no credentials...) is a source error
            first_line = str(exc).splitlines()[0] if str(exc) else ""
            return UnconfiguredSource(name, f"{name} ({identity}): {type(exc).__name__}: {first_line}")

    def kubernetes() -> FleetSource:
        from opsconsole.providers.k8s import KubernetesSource  # noqa: PLC0415

        configured = accounts.kubeconfig or os.environ.get("KUBECONFIG", "~/.kube/config")
        kubeconfig = Path(os.path.expanduser(configured))
        if not kubeconfig.is_file():
            raise SourceError(f"no kubeconfig at {kubeconfig} (set {where}.kubernetes.kubeconfig)")
        contexts = accounts.kube_contexts or None
        return KubernetesSource(fleet, kubeconfig, contexts=contexts, timeout_s=timeout_s)

    def aws() -> FleetSource:
        from opsconsole.providers.aws import AwsSource  # noqa: PLC0415

        return AwsSource(
            fleet, profiles=accounts.aws_profiles, default_profile=accounts.aws_default_profile,
            timeout_s=timeout_s, metrics_cadence_s=cadences["aws"].metrics_s,
            describe_cadence_s=cadences["aws"].describe_s,
        )

    def gcp() -> FleetSource:
        from opsconsole.providers.gcp import GcpSource  # noqa: PLC0415

        if not accounts.gcp_project:
            raise SourceError(f"no GCP project: set {where}.gcp.project")
        return GcpSource(fleet, project=accounts.gcp_project, timeout_s=timeout_s,
                         metrics_cadence_s=cadences["gcp"].metrics_s)

    def azure() -> FleetSource:
        from opsconsole.providers.azure import AzureSource  # noqa: PLC0415

        if not accounts.azure_subscription_id or not accounts.azure_workspace_id:
            raise SourceError(f"no Azure subscription or workspace: set {where}.azure")
        return AzureSource(
            fleet,
            subscription_id=accounts.azure_subscription_id,
            workspace_id=accounts.azure_workspace_id,
            timeout_s=timeout_s,
            metrics_cadence_s=cadences["azure"].metrics_s,
        )

    return [
        build("k8s", f"kubeconfig {accounts.kubeconfig or 'default'}", kubernetes),
        build("aws", f"profile {accounts.aws_default_profile or 'default chain'}", aws),
        build("gcp", f"project {accounts.gcp_project}", gcp),
        build("azure", f"subscription {accounts.azure_subscription_id}", azure),
    ]


@contextmanager
def live_core(
    inventory: Path | None = None,
    *,
    clock: Clock | None = None,
    deadline_s: float | None = None,
    audit_key: bytes | None = None,
    audit_head_file: Path | None = None,
    on_demand: bool = False,
) -> Iterator[OpsCore]:
    """An :class:`OpsCore` reading the real clouds of the inventory (``opsconsole --live``).

    ``audit_key`` / ``audit_head_file``: see :class:`OpsCore` (the ops server passes its own).
    ``on_demand``: the adapters are built when the fleet is first read, and read within
    :data:`ONE_SHOT_DEADLINE_S` (see :func:`sandbox_core`); else within ``deadline_s`` (default
    :data:`LIVE_DEADLINE_S`).
    """
    if deadline_s is None:
        deadline_s = read_deadline_s(live=True, on_demand=on_demand)
    fleet = load_inventory(inventory)
    accounts = fleet.accounts
    connection = Connection({
        "opsconsole_sandbox": False,
        "opsconsole_kubeconfig": os.path.expanduser(accounts.kubeconfig or "~/.kube/config"),
    })
    # Ansible reads the clouds with the same identities as the adapters: the default AWS profile (a
    # region with another profile is the playbook's to select), the kubeconfig; nothing else leaks in.
    env = {k: v for k, v in os.environ.items() if k.startswith(("AWS_", "GOOGLE_", "AZURE_", "KUBECONFIG"))}
    if accounts.aws_default_profile:
        env.setdefault("AWS_PROFILE", accounts.aws_default_profile)
    home = world_home("live")  # never the sandbox's store (see core/paths.py)
    sources = live_sources(fleet, timeout_s=deadline_s * 0.8, deferred=on_demand)
    with OpsCore(fleet, sources, deadline_s=deadline_s,
                 clock=clock, runner=make_runner(fleet, home, env), connection=connection,
                 after_run=lambda _job: touch_sources(sources),
                 sandbox=False, audit_key=audit_key, audit_head_file=audit_head_file) as core:
        yield core
