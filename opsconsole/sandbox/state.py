"""Persistence of the sandbox world under the user's home directory, shared safely between processes.

Why this module exists: the CLI, the TUI, the bot and the local API emulators are separate processes that
must all see *one* sandbox world, moving on with the wall clock (optionally faster), and surviving
restarts. :class:`WorldStore` keeps the world in ``<home>/sandbox/world.json`` and serialises access
with an exclusive ``fcntl`` lock on ``<home>/sandbox/world.lock``.

How to use it::

    store = WorldStore(home, fleet, SystemClock(), speed=60.0)   # one sim minute per wall second
    with store.open() as world:        # locked, loaded (or created), advanced to sim-now
        world.trigger_incident("region_outage", "eu-west-1")
    # saved atomically on a normal exit; an exception inside the block saves nothing
    records = store.read()             # lock, load, advance, save, observe
    store.reset()                      # forget the world; the next open starts afresh

Sim time: a new world starts at the wall clock's now. The file stores two anchors and a speed, and
``sim_now = anchor_sim + (wall_now - anchor_wall) * speed``. A store opened with a different speed
re-anchors at the current sim time, so sim time never jumps when the speed changes. If the wall clock
goes back, sim time waits (never moves backwards). The seed of an existing world wins over the store's
``seed`` argument: change it with a reset.

A state file that is unreadable, corrupt, from another layout version, or built for a different fleet
(the inventory's regions, clusters or services changed) raises
:class:`~opsconsole.core.errors.SandboxError` telling the user to run ``opsconsole sandbox reset``; it is
never silently discarded (it may hold a drill someone is in the middle of).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from opsconsole.core.clock import Clock, monotonic
from opsconsole.core.errors import SandboxError, UsageError
from opsconsole.core.fleet.model import Fleet, FleetRecord
from opsconsole.sandbox.world import World

__all__ = ["FILE_FORMAT", "RESET_HINT", "WorldStore"]

FILE_FORMAT = "opsconsole-sandbox-world"
RESET_HINT = "run `opsconsole sandbox reset` to start a fresh sandbox world"
_ONE_US = timedelta(microseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class WorldStore:
    """The sandbox world of one home directory.

    Args:
        home: opsconsole's state directory; the store uses ``home/sandbox/``.
        fleet: the fleet the world simulates (a saved world for another fleet is refused).
        clock: the wall clock (a fake one in tests).
        seed: the seed of a *new* world.
        speed: sim seconds per wall second (> 0).
        lock_timeout_s: how long :meth:`open` waits for another process's lock before giving up.
    """

    def __init__(
        self,
        home: Path,
        fleet: Fleet,
        clock: Clock,
        *,
        seed: int = 42,
        speed: float = 1.0,
        lock_timeout_s: float = 10.0,
    ) -> None:
        if not (isinstance(speed, int | float) and math.isfinite(speed) and speed > 0):
            raise UsageError(f"sandbox speed must be a positive number, got {speed!r}")
        self.home = Path(home)
        self.fleet = fleet
        self.clock = clock
        self.seed = seed
        self.speed = float(speed)
        self.lock_timeout_s = lock_timeout_s
        self.directory = self.home / "sandbox"
        self.path = self.directory / "world.json"
        self.lock_path = self.directory / "world.lock"

    @property
    def exists(self) -> bool:
        """Whether a saved world exists (without locking or reading it)."""
        return self.path.exists()

    @contextlib.contextmanager
    def open(self) -> Iterator[World]:
        """Lock, load (or create) the world, advance it to sim-now, yield it, save it on normal exit.

        Raises:
            SandboxError: the lock could not be taken in time, or the state file is unreadable,
                corrupt or for another fleet (the message says to run ``opsconsole sandbox reset``).
        """
        with self._locked():
            wall_now = self._wall_now()
            data = self._load_file()
            if data is None:
                world = World(self.fleet, seed=self.seed, start=wall_now)
                anchor_wall, anchor_sim = wall_now, world.now
            else:
                world, anchor_wall, anchor_sim, speed = self._decode(data)
                if speed != self.speed:  # re-anchor so that sim time does not jump
                    anchor_sim = max(world.now, anchor_sim + (wall_now - anchor_wall) * speed)
                    anchor_wall = wall_now
            sim_now = anchor_sim + (wall_now - anchor_wall) * self.speed
            if sim_now > world.now:
                world.advance(sim_now)
            yield world
            self._save(world, anchor_wall, anchor_sim)

    def read(self) -> list[FleetRecord]:
        """Every record of the world at sim-now (locks, loads, advances and saves)."""
        with self.open() as world:
            return world.observe()

    def reset(self) -> bool:
        """Delete the saved world (under the lock). Returns whether there was one."""
        with self._locked():
            try:
                self.path.unlink()
            except FileNotFoundError:
                return False
            except OSError as exc:
                raise SandboxError(f"cannot delete the sandbox world {self.path}: {exc}") from None
            return True

    # -- internals --------------------------------------------------------------------------------

    def _wall_now(self) -> datetime:
        now = self.clock.now()
        if now.tzinfo is None:
            raise SandboxError("the clock returned a naive datetime; it must be timezone-aware (UTC)")
        return now

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            handle: IO[bytes] = open(self.lock_path, "ab")  # noqa: SIM115 - held for the block
        except OSError as exc:
            raise SandboxError(f"cannot open the sandbox lock {self.lock_path}: {exc}") from None
        try:
            deadline = monotonic() + self.lock_timeout_s
            while True:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if monotonic() >= deadline:
                        raise SandboxError(
                            f"the sandbox world is busy: another process has held {self.lock_path} "
                            f"for more than {self.lock_timeout_s:g} s"
                        ) from None
                    time.sleep(0.01)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        finally:
            handle.close()

    def _load_file(self) -> dict[str, Any] | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise SandboxError(f"cannot read the sandbox world {self.path}: {exc}; {RESET_HINT}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SandboxError(
                f"the sandbox world {self.path} is corrupt (invalid JSON: {exc}); {RESET_HINT}"
            ) from None
        if not isinstance(data, dict) or data.get("format") != FILE_FORMAT:
            raise SandboxError(f"{self.path} is not an opsconsole sandbox world; {RESET_HINT}")
        return data

    def _decode(self, data: dict[str, Any]) -> tuple[World, datetime, datetime, float]:
        try:
            world = World.from_dict(self.fleet, data["world"])
            anchor_wall = _from_us(int(data["anchor_wall_us"]))
            anchor_sim = _from_us(int(data["anchor_sim_us"]))
            speed = float(data["speed"])
        except SandboxError as exc:
            raise SandboxError(
                f"cannot use the sandbox world {self.path}: {exc.message}; {RESET_HINT}"
            ) from None
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise SandboxError(
                f"the sandbox world {self.path} is corrupt ({type(exc).__name__}: {exc}); {RESET_HINT}"
            ) from None
        if not (math.isfinite(speed) and speed > 0):
            raise SandboxError(f"the sandbox world {self.path} has a bad speed {speed!r}; {RESET_HINT}")
        return world, anchor_wall, anchor_sim, speed

    def _save(self, world: World, anchor_wall: datetime, anchor_sim: datetime) -> None:
        payload = {
            "format": FILE_FORMAT,
            "anchor_wall_us": _to_us(anchor_wall),
            "anchor_sim_us": _to_us(anchor_sim),
            "speed": self.speed,
            "world": world.to_dict(),
        }
        try:
            text = json.dumps(payload, allow_nan=False, separators=(",", ":"))
        except ValueError as exc:  # a non-finite number: a bug, never write it
            raise SandboxError(f"cannot save the sandbox world: {exc}") from None
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise SandboxError(f"cannot save the sandbox world {self.path}: {exc}") from None


def _to_us(at: datetime) -> int:
    return (at - _EPOCH) // _ONE_US


def _from_us(us: int) -> datetime:
    return _EPOCH + us * _ONE_US
