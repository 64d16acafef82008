"""A throwaway PostgreSQL cluster from the machine's own binaries, for tests and benchmarks.

The store runs on SQLite by default and on PostgreSQL for teams; both back ends must pass the same
tests, so the tests need a real PostgreSQL without Docker or a system service. This starts one the
way pytest-postgresql does (``initdb`` into a temporary directory, ``pg_ctl start`` on a free port of
127.0.0.1, a Unix socket in the same directory), tuned for speed over durability (``fsync=off``), and
removes it on :meth:`ThrowawayPostgres.stop`.

PostgreSQL refuses to run as root; when the caller is root (CI containers often are) the server runs
as the ``postgres`` system user (or ``nobody``) through ``setpriv``, and the data directory is handed
to that user.

Use::

    with ThrowawayPostgres() as pg:
        url = pg.url("opsconsole")   # postgresql+psycopg://opsconsole@127.0.0.1:PORT/opsconsole
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from opsconsole.testing.ports import free_port

#: Where Debian's postgresql-NN packages put the server binaries; the newest found wins.
BIN_GLOB = "/usr/lib/postgresql/*/bin"
START_TIMEOUT_S = 30.0


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def find_bindir() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``: ``$OPSCONSOLE_PG_BINDIR``, PATH, or Debian's."""
    configured = os.environ.get("OPSCONSOLE_PG_BINDIR")
    if configured:
        return Path(configured)
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).resolve().parent  # a symlink into Debian's directory: its siblings are there
    found = sorted(Path("/").glob(BIN_GLOB.lstrip("/")), key=lambda p: _major(p.parent.name))
    for candidate in reversed(found):
        if (candidate / "initdb").exists():
            return candidate
    raise PostgresUnavailable(
        "no PostgreSQL server binaries: install Debian's postgresql package (initdb, pg_ctl) "
        "or set OPSCONSOLE_PG_BINDIR"
    )


def _major(name: str) -> int:
    return int(name) if name.isdigit() else 0


class ThrowawayPostgres:
    """One PostgreSQL server on 127.0.0.1, its data in a temporary directory, gone after :meth:`stop`."""

    def __init__(self, *, user: str = "opsconsole") -> None:
        self.user = user
        self.bindir = find_bindir()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="opsconsole-pg-"))
        self.datadir = self.root / "data"
        self._run_as: list[str] = []
        self._started = False

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Self:
        if os.geteuid() == 0:
            owner = self._unprivileged_user()
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self._run_as = ["setpriv", f"--reuid={owner.pw_uid}", f"--regid={owner.pw_gid}", "--clear-groups"]
        self._pg("initdb", "-D", str(self.datadir), "-U", self.user, "--auth=trust", "-E", "UTF8",
                 "--no-instructions", "--no-sync")
        self._pg_start()
        return self

    def _pg_start(self) -> None:
        options = (f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c synchronous_commit=off "
                   f"-c full_page_writes=off -c max_connections=200")
        self._pg("pg_ctl", "-D", str(self.datadir), "-o", options, "-l", str(self.root / "server.log"),
                 "-w", "-t", str(int(START_TIMEOUT_S)), "start")
        self._started = True

    def halt(self) -> None:
        """Stop the server, closing every connection, but keep its data (an outage); :meth:`resume`
        brings it back. A fast, not an immediate, stop: with fsync and synchronous commit off (for speed)
        a crash would lose the last commits, which a real outage of a durable server does not."""
        self._pg("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "stop")
        self._started = False

    def resume(self) -> None:
        """Start the server again on the same port and data after :meth:`halt`."""
        self._pg_start()

    def stop(self) -> None:
        if self._started:
            try:
                self._pg("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "stop")
            finally:
                self._started = False
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- databases ---------------------------------------------------------------------------------

    def create_database(self, name: str) -> str:
        """Create database ``name`` and return its SQLAlchemy URL."""
        import psycopg  # noqa: PLC0415 - only the PostgreSQL paths need the driver

        with psycopg.connect(host="127.0.0.1", port=self.port, user=self.user, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join((self.root / "server.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # -- helpers -----------------------------------------------------------------------------------

    @staticmethod
    def _unprivileged_user() -> pwd.struct_passwd:
        for name in ("postgres", "nobody"):
            try:
                return pwd.getpwnam(name)
            except KeyError:
                continue
        raise PostgresUnavailable("running as root and neither a postgres nor a nobody user exists")

    def _pg(self, program: str, *args: str) -> None:
        started = time.monotonic()
        proc = subprocess.run(
            [*self._run_as, str(self.bindir / program), *args],
            capture_output=True, text=True, check=False, timeout=START_TIMEOUT_S + 10,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "TZ": "UTC"},
            cwd=self.root,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"{program} failed (rc {proc.returncode}, {time.monotonic() - started:.1f} s): "
                f"{(proc.stderr or proc.stdout).strip()}\n{self.log_tail()}"
            )
