"""TUI tests run headless (Pilot) on the sim reader with a fake clock; refresh is driven by hand.

The suite has no async plugin (pytest-asyncio / anyio's), and one is not worth a dependency for this:
``async def`` tests in this folder are run here with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import inspect

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        names = pyfuncitem._fixtureinfo.argnames
        asyncio.run(pyfuncitem.obj(**{name: pyfuncitem.funcargs[name] for name in names}))
        return True
    return None
