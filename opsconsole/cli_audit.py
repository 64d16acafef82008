"""``opsconsole audit …``: read the audit log and check that nobody tampered with it.

``audit verify`` recomputes the hash chain (exit 0 when intact, 1 when not, naming the first bad entry)
and prints the head's hash, which is worth posting outside the database (a ticket, a channel) so that
a later rewrite of the whole chain would show too. ``audit log`` shows entries oldest first, filtered
by time, request and kind, as a table or as JSON for scripts. Both use the shared database
(``OPSCONSOLE_DB_URL``, else the SQLite file under ``$OPSCONSOLE_HOME``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from opsconsole.cli import app, err, out
from opsconsole.core.audit.log import AuditLog
from opsconsole.core.audit.records import AuditEntry, AuditKind, AuditVerification
from opsconsole.core.clock import SystemClock
from opsconsole.core.errors import UsageError
from opsconsole.core.store.db import Database

audit_app = typer.Typer(help="The audit log: verify its hash chain, read its entries.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]

#: Units of a --since duration.
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DURATION = re.compile(r"(?:\d+[smhdw])+")
_SINCE_FORMS = ("an ISO-8601 time (2026-11-26T14:00Z; UTC when no offset) "
                "or a duration such as 30m, 2h, 7d, 1h30m")
#: How much of an entry's data fits on its line of the table (``--json`` has all of it).
DATA_WIDTH = 90


@contextmanager
def _audit_log() -> Iterator[AuditLog]:
    database = Database()
    try:
        yield AuditLog(database)
    finally:
        database.close()


def parse_since(value: str, now: datetime) -> datetime:
    """``--since``: an ISO-8601 instant (UTC when it has no offset) or a duration back from ``now``.

    Raises:
        UsageError: neither form; the message names the option and both forms.
    """
    text = value.strip()
    if _DURATION.fullmatch(text):
        delta = timedelta()
        for amount, unit in re.findall(r"(\d+)([smhdw])", text):
            delta += timedelta(**{_UNITS[unit]: int(amount)})
        return now - delta
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--since {value}: expected {_SINCE_FORMS}") from None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _when(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _describe(entry: AuditEntry) -> str:
    about = f" request {entry.request_id}" if entry.request_id else ""
    about += f" job {entry.job_id}" if entry.job_id else ""
    return f"#{entry.seq} {_when(entry.at)} UTC {entry.kind} by {entry.actor} ({entry.face}){about}"


def _verification_document(result: AuditVerification) -> dict[str, Any]:
    return {
        "ok": result.ok, "checked": result.checked, "head_seq": result.head_seq,
        "head_hash": result.head_hash,
        "first_bad_seq": result.first_bad_seq, "problem": result.problem or None,
        "entry": result.entry.document() if result.entry is not None else None,
    }


@audit_app.command("verify")
def audit_verify(as_json: AsJson = False) -> None:
    """Recompute the hash chain; exit 1 naming the first bad entry if anything was changed or removed."""
    with _audit_log() as audit:
        result = audit.verify()
    if as_json:
        print(json.dumps(_verification_document(result), indent=2))
    elif result.ok:
        out.print(f"[green]audit log intact[/]: {result.checked} entries, head #{result.head_seq} "
                  f"{result.head_hash[:12]}", soft_wrap=True)
    else:
        out.print(f"[bold red]audit log broken[/]: {escape(result.problem)}", soft_wrap=True)
        entry, bad = result.entry, result.first_bad_seq
        if entry is not None and entry.seq == bad:
            out.print(f"  first bad entry: {escape(_describe(entry))}", soft_wrap=True)
        elif bad is not None:
            nearest = f"; nearest surviving: {escape(_describe(entry))}" if entry is not None else ""
            out.print(f"  first bad entry: #{bad} (gone){nearest}", soft_wrap=True)
        elif entry is not None:
            out.print(f"  last entry: {escape(_describe(entry))}", soft_wrap=True)
        out.print(f"  checked {result.checked} entries; head #{result.head_seq} {result.head_hash[:12]}")
    if not result.ok:
        raise typer.Exit(1)


@audit_app.command("log")
def audit_log(
    since: Annotated[
        str | None, typer.Option("--since", help="From this time on: ISO-8601, or a duration (2h, 30m, 7d).")
    ] = None,
    request: Annotated[
        str | None, typer.Option("--request", help="Only entries about this request id.")
    ] = None,
    kinds: Annotated[
        list[str] | None, typer.Option("--kind", help="Only this kind (repeat for several).")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, help="The most recent N matching entries.")
    ] = 100,
    as_json: AsJson = False,
) -> None:
    """Entries oldest first: time, kind, actor, face, request, data (--json: every field)."""
    start = parse_since(since, SystemClock().now()) if since is not None else None
    known = {kind.value for kind in AuditKind}
    for kind in kinds or ():
        if kind not in known:
            err.print(f"note: --kind {escape(kind)} is not a kind this version knows "
                      f"({', '.join(sorted(known))})")
    with _audit_log() as audit:
        entries = audit.entries(since=start, request_id=request, kinds=kinds or None, limit=limit)
    if as_json:
        print(json.dumps([entry.document() for entry in entries], indent=2, ensure_ascii=False))
        return
    if not entries:
        filtered = since is not None or request is not None or bool(kinds)
        out.print("No audit entries match." if filtered else "No audit entries yet.")
        return
    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    for column, justify in (("seq", "right"), ("time (UTC)", "left"), ("kind", "left"), ("actor", "left"),
                            ("face", "left"), ("request", "left"), ("data", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for entry in entries:
        data = json.dumps(entry.data, ensure_ascii=False, separators=(",", ":"))
        if len(data) > DATA_WIDTH:
            data = data[: DATA_WIDTH - 1] + "…"
        table.add_row(str(entry.seq), _when(entry.at), escape(str(entry.kind)), escape(entry.actor),
                      escape(entry.face), entry.request_id or "—", escape(data))
    out.print(table)
    if len(entries) == limit:
        out.print(f"[dim](the last {limit} matching entries; --limit shows more)[/]")
