"""The core stays free of faces and SDKs (import-linter checks it too, in `make lint`).

This test reads the source, so it fails even where import-linter is not run, and names the line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "opsconsole" / "core"
#: The one exception: the run engine is the only importer of ansible-runner (never of ansible itself).
ALLOWED = {"runs/runner.py": ("ansible_runner",)}
FORBIDDEN = (
    "opsconsole.cli", "opsconsole.tui", "opsconsole.providers", "opsconsole.sandbox", "opsconsole.wiring",
    "bot", "typer", "rich", "textual", "slack_bolt", "slack_sdk",
    "boto3", "botocore", "google", "azure", "kubernetes", "ansible", "ansible_runner",
)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


@pytest.mark.parametrize("path", sorted(CORE.rglob("*.py")), ids=lambda p: p.relative_to(CORE).as_posix())
def test_core_module_imports_no_face_and_no_sdk(path: Path) -> None:
    name = path.relative_to(CORE).as_posix()
    bad = [
        f"{name}:{line} imports {module}"
        for line, module in imported_modules(path)
        if any(module == f or module.startswith(f + ".") for f in FORBIDDEN)
        and not any(module == a or module.startswith(a + ".") for a in ALLOWED.get(name, ()))
    ]
    assert not bad, "; ".join(bad)


def test_the_check_itself_catches_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import os\nfrom boto3.session import Session\n")
    assert (2, "boto3.session") in imported_modules(sample)


def test_the_walk_reaches_the_subpackages() -> None:
    names = {p.relative_to(CORE).as_posix() for p in CORE.rglob("*.py")}
    assert {"runs/runner.py", "change/pipeline.py", "fleet/findings.py", "schedule/engine.py"} <= names
