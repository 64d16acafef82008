"""The Textual console (``opsconsole`` in a terminal). See :mod:`opsconsole.tui.app`."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opsconsole.core.facade import OpsCore


def run(
    inventory: Path | None = None,
    *,
    acting_as: str | None = None,
    live: bool = False,
    read_only: bool = False,
) -> None:
    """Open the console on the sandbox (or the live fleet) until the user quits."""
    from opsconsole.tui.app import OpsConsoleApp  # noqa: PLC0415 - Textual loads only when the TUI opens
    from opsconsole.wiring import live_core, sandbox_core  # noqa: PLC0415

    def factory() -> AbstractContextManager[OpsCore]:
        return live_core(inventory) if live else sandbox_core(inventory)

    OpsConsoleApp(factory, acting_as=acting_as, read_only=read_only, live=live).run()
