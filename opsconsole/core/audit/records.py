"""The audit log's entries and their hash chain as plain records: no database, so a client can hold them.

:mod:`opsconsole.core.audit.log` keeps them in the store and verifies the chain; this module says what an
entry is, how it is encoded canonically and hashed (:func:`canonical_bytes`, :func:`entry_hash`), and what
a verification found.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from opsconsole.core.clock import utc

#: The ``prev_hash`` of entry 1.
GENESIS_HASH = "0" * 64


class AuditKind(StrEnum):
    """What an entry records. The column is a plain string: kinds can be added without a migration."""

    REQUEST_FILED = "request_filed"
    REQUEST_REFUSED = "request_refused"
    PREVIEW = "preview"
    VOTE_APPROVE = "vote_approve"
    VOTE_REJECT = "vote_reject"
    VOTE_REFUSED = "vote_refused"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    DRIFT_DETECTED = "drift_detected"
    LEASE_REFUSED = "lease_refused"
    RUN_STARTED = "run_started"
    RUN_FINISHED = "run_finished"
    BREAK_GLASS = "break_glass"
    OVERRIDE_SET = "override_set"
    OVERRIDE_EXPIRED = "override_expired"
    SCHEDULE_ACTION = "schedule_action"
    JOB_CANCELLED = "job_cancelled"
    #: A run was refused because the request's status or votes disagree with the audit log.
    APPROVAL_DISCREPANCY = "approval_discrepancy"


@dataclass(frozen=True)
class AuditEntry:
    """One entry as stored. ``data`` is plain JSON; treat it as read-only (the hash covers it)."""

    seq: int
    at: datetime
    kind: str  # an AuditKind when it is one this version knows
    actor: str
    face: str
    request_id: str | None
    job_id: str | None
    data: Mapping[str, Any]
    prev_hash: str
    hash: str
    #: HMAC-SHA256 (hex) of ``hash`` under the audit key; ``None`` for entries written without a key.
    mac: str | None = None

    def content_hash(self) -> str:
        """The hash this entry's content and ``prev_hash`` give: equal to ``hash`` unless it was edited."""
        return entry_hash(
            seq=self.seq, at=self.at, kind=self.kind, actor=self.actor, face=self.face,
            request_id=self.request_id, job_id=self.job_id, data=self.data, prev_hash=self.prev_hash,
        )

    def document(self) -> dict[str, Any]:
        """Every field as JSON-ready values (``at`` in ISO-8601 UTC), for ``--json`` output."""
        return {
            "seq": self.seq, "at": _iso(self.at), "kind": str(self.kind), "actor": self.actor,
            "face": self.face, "request_id": self.request_id, "job_id": self.job_id,
            "data": self.data, "prev_hash": self.prev_hash, "hash": self.hash,
        }


@dataclass(frozen=True)
class AuditVerification:
    """The outcome of :meth:`AuditLog.verify`.

    ``checked`` counts the entries read. ``head_seq`` / ``head_hash`` are the head's (0 and the genesis
    hash before the first append). When ``ok`` is false, ``problem`` says what is wrong in words,
    ``first_bad_seq`` names the first entry concerned (one that may no longer exist, when it was
    removed), and ``entry`` is the stored entry to look at: the first bad one or, when that one is
    gone, its nearest surviving neighbour (``None`` if there is none).
    """

    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str = ""
    entry: AuditEntry | None = None
    #: Whether entries' MACs were checked (a key was given), and from which seq entries carry one.
    keyed: bool = False
    mac_since: int | None = None
    #: The published head checked against the chain (``None`` when there was none to check).
    published_seq: int | None = None


@dataclass(frozen=True)
class PublishedHead:
    """The chain's head as last published outside the database (the head file): ``seq``, ``hash``,
    its ``mac`` (when keyed) and the entry's time ``at`` (ISO-8601)."""

    seq: int
    hash: str
    mac: str | None
    at: str


@dataclass(frozen=True)
class StoreVerification:
    """The outcome of :func:`opsconsole.core.audit.log.verify_store`: the chain and the requests.

    ``discrepancies`` names each request whose status or votes the audit log does not back (a vote with
    no audited vote entry, an approved request without enough audited approvals…), one line each,
    starting with ``request <id>:``.
    """

    chain: AuditVerification
    discrepancies: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.chain.ok and not self.discrepancies

    # The chain's figures, so that a face can show either kind of verification the same way.

    @property
    def checked(self) -> int:
        return self.chain.checked

    @property
    def head_seq(self) -> int:
        return self.chain.head_seq

    @property
    def head_hash(self) -> str:
        return self.chain.head_hash

    @property
    def first_bad_seq(self) -> int | None:
        return self.chain.first_bad_seq

    @property
    def entry(self) -> AuditEntry | None:
        return self.chain.entry

    @property
    def problem(self) -> str:
        """What is wrong, in words: the chain's problem first, else the requests' discrepancies."""
        return self.chain.problem if not self.chain.ok else "; ".join(self.discrepancies)


# -- the canonical encoding and the hash (pure) -------------------------------------------------------


def _iso(at: datetime) -> str:
    value = utc(at)
    assert value is not None
    return value.isoformat(timespec="microseconds")


def canonical_bytes(
    *,
    seq: int,
    at: datetime,
    kind: str,
    actor: str,
    face: str,
    request_id: str | None,
    job_id: str | None,
    data: Mapping[str, Any],
    prev_hash: str,
) -> bytes:
    """The exact bytes an entry's hash is taken of (see the module docstring).

    Raises:
        TypeError, ValueError: ``data`` is not plain JSON (see :func:`plain_json`).
    """
    document = {
        "seq": seq, "at": _iso(at), "kind": str(kind), "actor": actor, "face": face,
        "request_id": request_id, "job_id": job_id, "data": plain_json(data), "prev_hash": prev_hash,
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return text.encode("ascii")


def entry_hash(
    *,
    seq: int,
    at: datetime,
    kind: str,
    actor: str,
    face: str,
    request_id: str | None,
    job_id: str | None,
    data: Mapping[str, Any],
    prev_hash: str,
) -> str:
    """The SHA-256 (hex) of :func:`canonical_bytes`."""
    return hashlib.sha256(canonical_bytes(
        seq=seq, at=at, kind=kind, actor=actor, face=face, request_id=request_id, job_id=job_id,
        data=data, prev_hash=prev_hash,
    )).hexdigest()


def entry_mac(key: bytes, entry_hash_hex: str) -> str:
    """The MAC of an entry: HMAC-SHA256 (hex) of its hash (hex, as ASCII) under ``key``."""
    return hmac.new(key, entry_hash_hex.encode("ascii"), hashlib.sha256).hexdigest()


def mac_matches(key: bytes, entry_hash_hex: str, mac: str | None) -> bool:
    """Whether ``mac`` is the MAC of ``entry_hash_hex`` under ``key`` (constant-time)."""
    return mac is not None and hmac.compare_digest(entry_mac(key, entry_hash_hex), mac)


def plain_json(value: Any, path: str = "data") -> Any:
    """``value`` as plain JSON: dicts with str keys, lists, str, int, finite float, bool, None.

    Tuples become lists and str / int / float subclasses (enums) their plain values, so what is hashed is
    exactly what either back end's JSON column hands back. Anything else is refused rather than
    converted: an audit record should say what the caller meant, not what a default encoder guessed.

    Raises:
        TypeError: a value or key of a type JSON does not have (names its path, e.g. ``data.params.at``).
        ValueError: a NaN or infinite float (JSON has none).
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{path}: {value!r} is not a JSON number")
        return float(value)
    if isinstance(value, Mapping):
        plain: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{path}: key {key!r} is a {type(key).__name__}; JSON keys are strings")
            plain[str.__str__(key)] = plain_json(item, f"{path}.{key}")
        return plain
    if isinstance(value, list | tuple):
        return [plain_json(item, f"{path}[{index}]") for index, item in enumerate(value)]
    hint = "; pass .isoformat()" if isinstance(value, datetime) else ""
    raise TypeError(f"{path}: a {type(value).__name__} is not JSON{hint}")


# -- checking a chain (pure) ---------------------------------------------------------------------------
