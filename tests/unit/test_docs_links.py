"""Every link in the README, CONTRIBUTING and docs/ resolves inside a clone of the repository.

A user reads these in a fresh clone (or on a forge that renders them): a link to a file that is not in
the repository — a sibling folder of the authors' machines, a moved module — is a dead end.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCUMENTS = sorted([REPO / "README.md", REPO / "CONTRIBUTING.md", REPO / "CHANGELOG.md",
                    *(REPO / "docs").glob("*.md")])
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
#: Paths written as code (`opsconsole/core/change/risk.py`) must exist too: readers follow them by hand.
CODE_PATH = re.compile(r"`((?:opsconsole|bot|playbooks|inventory|docs|tests|bench)/[\w./-]+)`")


def _targets(document: Path) -> list[str]:
    text = document.read_text(encoding="utf-8")
    return [t for t in LINK.findall(text) if not t.startswith(("http://", "https://", "mailto:", "#"))]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(document: Path) -> None:
    missing = [t for t in _targets(document) if not (document.parent / t.split("#")[0]).exists()]
    assert not missing, f"{document.name}: links to nothing: {missing}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_path_named_in_code_exists(document: Path) -> None:
    text = document.read_text(encoding="utf-8")
    named = {p.rstrip(".") for p in CODE_PATH.findall(text) if "*" not in p and "<" not in p}
    missing = sorted(p for p in named if not (REPO / p).exists())
    assert not missing, f"{document.name}: names paths that do not exist: {missing}"


def test_nothing_points_outside_the_repository() -> None:
    for document in DOCUMENTS:
        assert "../shared" not in document.read_text(encoding="utf-8"), document.name
