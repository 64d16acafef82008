"""Helpers of the store's fault tests: the real ``opsconsole`` command in a home, and the file-system
faults (a read-only home, a full disk) made for real.

A read-only home is a read-only bind mount when the tests run as root (root writes through any chmod),
else ``chmod``. A full disk is a tiny tmpfs (root only; without it the test is skipped, saying so).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

OPSCONSOLE = str(Path(sys.executable).parent / "opsconsole")


def environment(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment without OPSCONSOLE_ settings, with ``home`` and ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("OPSCONSOLE_") and k not in ("COLUMNS", "LINES")}
    env["OPSCONSOLE_HOME"] = str(home)
    env["OPSCONSOLE_SANDBOX_READER"] = "sim"
    env.update(extra)
    return env


def run(home: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 180,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``opsconsole ARGS`` in ``home`` (sim reader unless ``env`` says otherwise); never a traceback."""
    result = subprocess.run([OPSCONSOLE, *args], capture_output=True, text=True, timeout=timeout,
                            env={**environment(home), **(env or {})}, cwd=cwd, check=False)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    return result


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def store_id_in(path: Path) -> str | None:
    """The store_id a SQLite store file carries (read with sqlite3, not opsconsole)."""
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT value FROM store_meta WHERE key = 'store_id'").fetchone()
    finally:
        conn.close()  # an open connection keeps the WAL files, which change what a later opener can do
    return None if row is None else str(row[0])


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True, check=False).returncode == 0


@contextmanager
def read_only(directory: Path) -> Iterator[str]:
    """``directory`` read-only for the block; yields how (``bind mount`` or ``chmod``)."""
    if os.geteuid() == 0:
        if not (_mount("--bind", str(directory), str(directory))
                and _mount("-o", "remount,bind,ro", str(directory))):
            subprocess.run(["umount", str(directory)], capture_output=True, check=False)
            pytest.skip("running as root but cannot bind-mount read-only here")
        try:
            yield "bind mount"
        finally:
            subprocess.run(["umount", str(directory)], check=True)
        return
    modes = {path: path.stat().st_mode for path in [directory, *directory.iterdir()]}
    for path in modes:
        path.chmod(0o500 if path.is_dir() else 0o400)
    try:
        yield "chmod"
    finally:
        for path, mode in modes.items():
            path.chmod(mode)


@contextmanager
def tiny_disk(directory: Path, size: str = "4m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``directory`` for the block (skips when it cannot be mounted)."""
    directory.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None or not _mount(
            "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)):
        pytest.skip("a full disk is simulated with a tiny tmpfs, which needs root to mount")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=True)


def fill(directory: Path) -> Path:
    """Fill the file system of ``directory`` (a tiny tmpfs) to the last byte; returns the filler file."""
    filler = directory / "filler"
    with filler.open("wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    return filler
