"""The audit log's pure parts: the canonical encoding that is hashed, the data it accepts, the chain check.

The golden hash below pins the encoding: changing it would make every log already written fail
``verify``, so a change must be deliberate (and come with a migration that re-chains, or a version).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from enum import IntEnum, StrEnum
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opsconsole.core.audit.log import AuditLog, ChainChecker, ChainProblem
from opsconsole.core.audit.records import (
    GENESIS_HASH,
    AuditEntry,
    AuditKind,
    canonical_bytes,
    entry_hash,
    plain_json,
)

AT = datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=UTC)
FIELDS: dict[str, Any] = {
    "seq": 7, "at": AT, "kind": AuditKind.APPROVED, "actor": "slack:T1:U2", "face": "slack",
    "request_id": "r1", "job_id": None, "data": {"b": [1, 2.5, "é"], "a": {"z": None, "y": True}},
    "prev_hash": "ab" * 32,
}


def test_the_canonical_encoding_is_sorted_compact_ascii_json_with_utc_microseconds() -> None:
    assert canonical_bytes(**FIELDS) == (
        b'{"actor":"slack:T1:U2","at":"2026-11-26T12:00:00.123456+00:00","data":{"a":{"y":true,"z":null},'
        b'"b":[1,2.5,"\\u00e9"]},"face":"slack","job_id":null,"kind":"approved","prev_hash":"'
        + b"ab" * 32 + b'","request_id":"r1","seq":7}'
    )
    # = sha256sum of the bytes above, computed outside Python
    assert entry_hash(**FIELDS) == "75580a43df3044f2edbe62478dc3b225557c40f52eb39774c28c9f7387b1bbfe"


def test_the_same_instant_in_another_zone_hashes_the_same() -> None:
    elsewhere = AT.astimezone(timezone(timedelta(hours=-5)))
    assert entry_hash(**{**FIELDS, "at": elsewhere}) == entry_hash(**FIELDS)
    assert entry_hash(**{**FIELDS, "at": AT.replace(microsecond=0)}) != entry_hash(**FIELDS)


@pytest.mark.parametrize("field, value", [
    ("seq", 8), ("at", AT + timedelta(microseconds=1)), ("kind", "rejected"), ("actor", "mallory"),
    ("face", "tui"), ("request_id", None), ("job_id", "j1"), ("data", {"b": [1, 2.5, "é"]}),
    ("prev_hash", "cd" * 32),
])
def test_every_field_is_covered_by_the_hash(field: str, value: Any) -> None:
    assert entry_hash(**{**FIELDS, field: value}) != entry_hash(**FIELDS)


class Colour(StrEnum):
    RED = "red"


class Level(IntEnum):
    HIGH = 3


def test_plain_json_turns_tuples_and_enums_into_what_a_json_column_hands_back() -> None:
    plain = plain_json({"t": (1, (2, 3)), "c": Colour.RED, "l": Level.HIGH, "f": 1.0, "n": -0.0})
    assert plain == {"t": [1, [2, 3]], "c": "red", "l": 3, "f": 1.0, "n": -0.0}
    assert type(plain["c"]) is str and type(plain["l"]) is int


@pytest.mark.parametrize("data, error, words", [
    ({"x": float("nan")}, ValueError, "data.x: nan is not a JSON number"),
    ({"x": [1, float("inf")]}, ValueError, "data.x[1]: inf"),
    ({"at": AT}, TypeError, "data.at: a datetime is not JSON; pass .isoformat()"),
    ({"s": {1, 2}}, TypeError, "data.s: a set is not JSON"),
    ({"b": b"x"}, TypeError, "data.b: a bytes is not JSON"),
    ({"p": {3: "x"}}, TypeError, "data.p: key 3 is a int; JSON keys are strings"),
])
def test_plain_json_refuses_what_would_not_read_back_identically(data: Any, error: type, words: str) -> None:
    with pytest.raises(error, match=words.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        plain_json(data)


def test_bad_fields_are_refused_before_the_database_is_touched() -> None:
    untouchable = SimpleNamespace(url="sqlite://", engine=None)  # any use of the engine would fail
    audit = AuditLog(untouchable)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="audit actor: 300 characters, at most 256"):
        audit.append(AuditKind.PREVIEW, actor="a" * 300, face="cli", data={})
    with pytest.raises(ValueError, match="audit kind: 49 characters"):
        audit.append("k" * 49, actor="alice", face="cli", data={})
    with pytest.raises(ValueError, match="must not be empty"):
        audit.append(AuditKind.PREVIEW, actor="", face="cli", data={})
    with pytest.raises(ValueError, match=r"data\.x"):
        audit.append(AuditKind.PREVIEW, actor="alice", face="cli", data={"x": float("nan")})


# -- the chain check, on chains built in memory ------------------------------------------------------


def chain(length: int) -> list[AuditEntry]:
    entries: list[AuditEntry] = []
    prev = GENESIS_HASH
    for seq in range(1, length + 1):
        entry = AuditEntry(seq=seq, at=AT + timedelta(seconds=seq), kind=AuditKind.RUN_STARTED, actor="alice",
                           face="cli", request_id=None, job_id=None, data={"n": seq}, prev_hash=prev, hash="")
        entry = replace(entry, hash=entry.content_hash())
        entries.append(entry)
        prev = entry.hash
    return entries


def check(entries: list[AuditEntry], head_seq: int, head_hash: str) -> ChainProblem | None:
    checker = ChainChecker()
    for entry in entries:
        problem = checker.feed(entry)
        if problem is not None:
            return problem
    return checker.finish(head_seq, head_hash)


def rehashed(entry: AuditEntry, **changes: Any) -> AuditEntry:
    changed = replace(entry, **changes)
    return replace(changed, hash=changed.content_hash())


def test_an_intact_chain_has_no_problem() -> None:
    entries = chain(5)
    assert check(entries, 5, entries[-1].hash) is None
    assert check([], 0, GENESIS_HASH) is None


def spliced(entries: list[AuditEntry], index: int, *new: AuditEntry, drop: int = 1) -> list[AuditEntry]:
    """``entries`` with ``drop`` of them from ``index`` on replaced by ``new``."""
    return [*entries[:index], *new, *entries[index + drop:]]


TAMPERINGS: dict[str, Callable[[list[AuditEntry], int], list[AuditEntry]]] = {
    "edited": lambda e, i: spliced(e, i, replace(e[i], data={"n": -1})),
    "edited and rehashed": lambda e, i: spliced(e, i, rehashed(e[i], actor="mallory")),
    "removed": spliced,  # without replacements: entry i is dropped
    "swapped": lambda e, i: spliced(e, i, replace(e[i + 1], seq=e[i].seq), replace(e[i], seq=e[i + 1].seq),
                                    drop=2),
    "forged in place": lambda e, i: spliced(e, i, rehashed(e[i], data={"x": 1})),
    "forged with a bad link": lambda e, i: spliced(e, i, rehashed(e[i], prev_hash="f" * 64)),
}


@given(length=st.integers(3, 12), data=st.data(), how=st.sampled_from(sorted(TAMPERINGS)))
def test_any_single_tampering_is_found_at_the_entry_tampered_with(length: int, data: st.DataObject,
                                                                  how: str) -> None:
    entries = chain(length)
    index = data.draw(st.integers(0, length - 2))  # not the last: its successor is what catches a rehash
    problem = check(TAMPERINGS[how](entries, index), length, entries[-1].hash)
    assert problem is not None
    assert problem.first_bad_seq == index + 1, problem.text


def test_a_rewritten_last_entry_is_caught_by_the_head() -> None:
    entries = chain(4)
    tampered = spliced(entries, 3, rehashed(entries[3], data={"n": 0}))
    problem = check(tampered, 4, entries[3].hash)
    assert problem is not None and problem.first_bad_seq == 4
    assert "entry 4 was changed after it was written and its hash recomputed" in problem.text


def test_an_entry_rewritten_and_rehashed_is_named_not_its_successor() -> None:
    entries = chain(6)
    tampered = spliced(entries, 2, rehashed(entries[2], actor="mallory"))
    problem = check(tampered, 6, entries[-1].hash)
    assert problem is not None and problem.first_bad_seq == 3
    assert problem.text == ("entry 3 was changed after it was written and its hash recomputed "
                            "(entry 4's prev_hash still holds the original hash)")


def test_several_missing_entries_are_named_as_a_range() -> None:
    entries = chain(8)
    problem = check(spliced(entries, 2, drop=3), 8, entries[-1].hash)
    assert problem is not None and problem.first_bad_seq == 3
    assert problem.text == "entries 3–5 are missing (seq jumps 2 → 6)"
