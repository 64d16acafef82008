"""The ops server in-process, on a private Unix socket: how ``make run`` opens the console in one command.

Why it exists: the faces speak to the ops server over HTTP and nothing else, so that the code a user
runs at home is the code that runs against the team's server. Without a team server, ``opsconsole``
starts this embedded server: the same FastAPI application (:func:`opsconsole.server.app.create_app`)
served by uvicorn on a Unix socket in a fresh 0700 temporary directory, with one in-memory session
token for one person — the ``--as`` cast member, else the OS user as rbac.yml maps them (an unknown
user is a viewer). With ``live=True`` it reads the real fleet and refuses every change (a team server
is the only authority for live changes).

``progressive=True`` (the console): on the sandbox's own local cloud the Kubernetes emulator starts
first and the cloud emulators once the first view is out, so the console shows data in about a second;
the clouds' sources say "starting" meanwhile (see :mod:`opsconsole.sandbox.starting`). Without it
every answer about the fleet waits for the whole fleet.

``on_demand=True`` (a one-shot CLI command): the fleet is not read, its adapters not built and an
ephemeral local cloud not started until a request needs the fleet (see
:mod:`opsconsole.core.fleet.deferred`): ``opsconsole jobs list`` answers from the store in about a
second instead of reading 31 clusters and four clouds it never shows.

Use::

    with EmbeddedServer.start(inventory=None, live=False, acting_as="alice", home=None) as server:
        client = server.client()          # an OpsApi (RemoteClient over the socket)
        client.whoami().person            # "alice"
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import Any

import uvicorn

from opsconsole.core.api import Caller
from opsconsole.core.change.rbac import Identity
from opsconsole.core.errors import OpsError, UsageError
from opsconsole.core.facade import OpsCore
from opsconsole.core.paths import opsconsole_home, world_home
from opsconsole.core.store.db import Database, StoreUnavailable
from opsconsole.server.app import Runtime, create_app
from opsconsole.server.auth import Authenticator
from opsconsole.server.cache import CoreEvents, FleetCache, Hub
from opsconsole.server.service import caller_for

log = logging.getLogger(__name__)

#: The base URL a client uses for the embedded server (the host is ignored on a Unix socket).
BASE_URL = "http://opsconsole"
#: How long to wait for uvicorn to listen.
START_TIMEOUT_S = 30.0


class ServedApp:
    """A uvicorn server running an ASGI app in a background thread (Unix socket or TCP)."""

    def __init__(self, app: Any, *, uds: str | None = None, host: str = "127.0.0.1", port: int = 0,
                 ssl_certfile: str | None = None, ssl_keyfile: str | None = None) -> None:
        config = uvicorn.Config(
            app, uds=uds, host=host, port=port, log_level="warning", lifespan="on",
            timeout_graceful_shutdown=2, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile,
        )
        self.server = uvicorn.Server(config)
        self.uds = uds
        self._thread = threading.Thread(target=self.server.run, name="opsconsole-server", daemon=True)

    @property
    def port(self) -> int:
        """The TCP port bound (after :meth:`start`)."""
        for server in getattr(self.server, "servers", []):
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        raise OpsError("the server is not listening on TCP")

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive():
                raise OpsError("the ops server failed to start (see its log)", title="server failed")
            if time.monotonic() > deadline:
                self.stop()
                raise OpsError(f"the ops server did not start within {timeout_s:.0f} s",
                               title="server failed")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=15)


class EmbeddedServer:
    """A running embedded server (see the module docstring); made by :meth:`start`."""

    def __init__(self, *, core: OpsCore, runtime: Runtime, socket_path: str, token: str,
                 identity: Identity, store_problem: OpsError | None = None) -> None:
        self.core = core
        #: Why the store could not be opened (``None``: it was): the server then reads the fleet only
        #: (approvals, jobs, audit and changes answer 503 naming the problem).
        self.store_problem = store_problem
        self.runtime = runtime
        #: The Unix socket the server listens on (in a 0700 directory of its own).
        self.socket_path = socket_path
        #: The session token of the one person this server serves (in memory only).
        self.token = token
        self.identity = identity

    @property
    def caller(self) -> Caller:
        return caller_for(self.identity, credential="embedded", sandbox=self.core.sandbox,
                          may_change=self.runtime.may_change)

    def client(self, *, face: str = "api") -> Any:
        """An :class:`~opsconsole.core.api.OpsApi` over the socket:
        ``opsconsole.client.remote.RemoteClient(BASE_URL, token, uds=socket_path, face=face)``."""
        from opsconsole.client.remote import RemoteClient  # noqa: PLC0415 - the client is another package

        return RemoteClient(BASE_URL, self.token, uds=self.socket_path, face=face)

    def client_for(self, person: str, *, face: str = "api") -> Any:
        """A client acting as another member of the sandbox cast (the console's "as bob"), over the same
        socket with a session token of its own.

        Raises:
            UsageError: this server is not the sandbox's, or ``person`` is not in the cast.
        """
        from opsconsole.client.remote import RemoteClient  # noqa: PLC0415 - the client is another package

        return RemoteClient(BASE_URL, self.mint_for(person), uds=self.socket_path, face=face)

    def mint_for(self, person: str) -> str:
        """A session token for ``person`` of the sandbox cast (see :meth:`client_for`).

        Raises:
            UsageError: this server is not the sandbox's, or ``person`` is not in the cast.
        """
        if not self.core.sandbox:
            raise UsageError("acting as someone else is for the sandbox only")
        return self.runtime.auth.mint_session(self.core.directory.cast_member(person))

    @classmethod
    def start(
        cls,
        inventory: Path | None = None,
        live: bool = False,
        acting_as: str | None = None,
        home: Path | None = None,
        *,
        refresh_s: float = 2.0,
        progressive: bool = False,
        on_demand: bool = False,
    ) -> AbstractContextManager[EmbeddedServer]:
        """Build the core, serve the app on a private Unix socket, and mint the session token.

        ``progressive``, ``on_demand``: see the module docstring (``progressive`` wins when both are
        given: the console reads the fleet at once).

        Raises:
            UsageError: ``acting_as`` on a live fleet or not in the sandbox cast; a bad inventory.
            OpsError: the server could not start.
        """
        return _embedded(cls, inventory, live, acting_as, home, refresh_s, progressive,
                         on_demand and not progressive)


@contextmanager
def _embedded(
    cls: type[EmbeddedServer], inventory: Path | None, live: bool, acting_as: str | None,
    home: Path | None, refresh_s: float, progressive: bool = False, on_demand: bool = False,
) -> Iterator[EmbeddedServer]:
    from opsconsole import wiring  # noqa: PLC0415 - the composition root imports the server's callers

    with ExitStack() as stack:
        store_problem = _store_problem(live, home)
        core: OpsCore | None = None
        if store_problem is None:
            try:
                core_cm = (wiring.live_core(inventory, on_demand=on_demand) if live
                           else wiring.sandbox_core(inventory, home=home, progressive=progressive,
                                                    on_demand=on_demand))
                core = stack.enter_context(core_cm)
            except StoreUnavailable as exc:  # it went away between the probe and the runner's open
                store_problem = exc
        if core is None:
            log.warning("the store is unavailable (%s): serving the fleet read-only", store_problem)
            fleet_only = _fleet_only_core(inventory, live, home, store_problem, on_demand=on_demand)
            core = stack.enter_context(fleet_only)
        directory = core.directory
        identity = directory.cast_member(acting_as) if acting_as else directory.os_user(os_account())
        hub = Hub()
        stack.callback(hub.close)
        cache = FleetCache(core, hub, refresh_s=refresh_s, clock=core.clock, progressive=progressive,
                           on_demand=on_demand)
        if progressive:
            # The clouds' emulators of a progressive start begin once a client has the first view and a
            # moment to draw it: their start (seconds of CPU) must not slow the first screen down.
            sources = core.fleet_sources
            cache.on_first_served = lambda _view: _release_later(sources)
        # The first refresh (reading every source) runs while the app is built and uvicorn starts (on
        # demand: when a request first needs the fleet).
        cache.start()
        stack.callback(cache.stop)
        if store_problem is None:
            events = CoreEvents(core, hub, clock=core.clock)
            stack.callback(events.close)
        auth = Authenticator(lambda: core.directory)
        token = auth.mint_session(identity)
        # Without a store there is no scheduler to build (it keeps its state there): /schedules answers
        # the store's problem, and every other route can still be served.
        scheduler = _StoreDown(store_problem) if store_problem is not None else None
        runtime = Runtime(core=core, cache=cache, hub=hub, auth=auth, may_change=not live,
                          scheduler=scheduler)
        app = create_app(runtime)
        directory_path = tempfile.mkdtemp(prefix="opsconsole-")  # mode 0700
        stack.callback(shutil.rmtree, directory_path, True)
        os.chmod(directory_path, 0o700)
        socket_path = os.path.join(directory_path, "api.sock")
        served = ServedApp(app, uds=socket_path)
        served.start()
        stack.callback(served.stop)
        stack.callback(hub.close)  # end open streams first, so uvicorn's shutdown does not wait for them
        os.chmod(socket_path, 0o600)
        log.debug("embedded ops server on %s for %s", socket_path, identity.person)
        yield cls(core=core, runtime=runtime, socket_path=socket_path, token=token, identity=identity,
                  store_problem=store_problem)


#: How long after the first view went to a client the clouds' emulators start (a progressive start).
RELEASE_AFTER_S = 0.25


def _release_later(sources: tuple[Any, ...]) -> None:
    from opsconsole.sandbox.starting import release_starting  # noqa: PLC0415 - the sandbox, when used

    timer = threading.Timer(RELEASE_AFTER_S, release_starting, args=(sources,))
    timer.daemon = True
    timer.start()


class _StoreDown:
    """Stands for a part that needs the store while it is unavailable: any use raises why."""

    def __init__(self, problem: StoreUnavailable) -> None:
        self._problem = problem

    def __getattr__(self, name: str) -> Any:
        raise StoreUnavailable(self._problem.message, title=self._problem.title)


def _store_problem(live: bool, home: Path | None) -> StoreUnavailable | None:
    """Open (and close) the store the core will use: ``None`` when it can be used, else why not.

    Reading the fleet does not need the store: when it is down, missing or replaced, the embedded server
    still serves the fleet (:func:`_fleet_only_core`) and says why everything else is unavailable. A
    database URL that does not parse is a usage error and is raised (never a reason to carry on).
    """
    world = "live" if live else "sandbox"
    configured = os.environ.get("OPSCONSOLE_DB_URL", "").strip()
    location: str | Path = configured or (world_home("live") if live else (home or opsconsole_home()))
    try:
        Database(location).close()
    except StoreUnavailable as exc:
        log.debug("the %s store is unavailable: %s", world, exc)
        return exc
    return None


@contextmanager
def _fleet_only_core(inventory: Path | None, live: bool, home: Path | None,
                     problem: StoreUnavailable | None, *, on_demand: bool = False) -> Iterator[OpsCore]:
    """A core that reads the fleet and nothing else (no runner, no store): the same sources as
    :func:`opsconsole.wiring.sandbox_core` / :func:`~opsconsole.wiring.live_core` would read, with the
    same per-source deadline (a one-shot command's when ``on_demand``: it reads once, cold)."""
    from opsconsole import wiring  # noqa: PLC0415 - the composition root
    from opsconsole.core.fleet.inventory import load_inventory  # noqa: PLC0415

    fleet = load_inventory(inventory)
    deadline_s = wiring.read_deadline_s(live=live, on_demand=on_demand)
    if live:
        sources = wiring.live_sources(fleet, timeout_s=deadline_s * 0.8)
        with OpsCore(fleet, sources, deadline_s=deadline_s, sandbox=False, store_problem=problem) as core:
            yield core
        return
    home = home or opsconsole_home()
    world = wiring.world_store(fleet, home=home)
    if wiring.sandbox_reader() == "sim":
        from opsconsole.providers.sim import SimSource  # noqa: PLC0415

        with OpsCore(fleet, [SimSource(world)], deadline_s=deadline_s, sandbox=True,
                     store_problem=problem) as core:
            yield core
        return
    from opsconsole.sandbox.localcloud import running_or_ephemeral  # noqa: PLC0415

    with running_or_ephemeral(home, world, lambda: wiring.sandbox_emulators(fleet)) as (endpoints, cloud):
        sources = wiring.sandbox_sources(fleet, home, endpoints, cloud, timeout_s=deadline_s * 0.8)
        with OpsCore(fleet, sources, deadline_s=deadline_s, sandbox=True, store_problem=problem) as core:
            yield core


def os_account() -> str:
    """The account this process runs as, from its uid: never ``LOGNAME`` / ``USER``, which anyone can set
    (``getpass.getuser()`` trusts them first). On the sandbox each cast member is also the OS user of
    their name, so ``LOGNAME=bob`` must not make anyone bob."""
    import pwd  # noqa: PLC0415 - POSIX only, like the rest of the embedded server

    return pwd.getpwuid(os.getuid()).pw_name
