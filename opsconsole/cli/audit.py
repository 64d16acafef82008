"""``opsconsole audit …``: read the ops server's audit log and check that nobody tampered with it.

``audit verify`` has the server recompute the hash chain (exit 0 when intact, 1 when not, naming the
first bad entry) and prints the head's hash, which is worth posting outside the database (a ticket, a
channel) so that a later rewrite of the whole chain would show too. ``audit log`` shows entries oldest
first, filtered by time, request and kind, as a table or as JSON for scripts.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.markup import escape

from opsconsole.cli import render
from opsconsole.cli.context import cli_context, out
from opsconsole.core.errors import UsageError

audit_app = typer.Typer(help="The audit log: verify its hash chain, read its entries.", no_args_is_help=True)

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]

#: Units of a --since duration.
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DURATION = re.compile(r"(?:\d+[smhdw])+")
_SINCE_FORMS = ("an ISO-8601 time (2026-11-26T14:00Z; UTC when no offset) "
                "or a duration such as 30m, 2h, 7d, 1h30m")


def parse_since(value: str, now: datetime) -> datetime:
    """``--since``: an ISO-8601 instant (UTC when it has no offset) or a duration back from ``now``.

    Raises:
        UsageError: neither form; the message names the option and both forms.
    """
    text = value.strip()
    if _DURATION.fullmatch(text):
        delta = timedelta()
        try:
            for amount, unit in re.findall(r"(\d+)([smhdw])", text):
                delta += timedelta(**{_UNITS[unit]: int(amount)})
            return now - delta
        except OverflowError:
            raise UsageError(f"--since {value}: reaches back before the year 1; expected {_SINCE_FORMS}") \
                from None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--since {value}: expected {_SINCE_FORMS}") from None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


@audit_app.command("verify")
def audit_verify(ctx: typer.Context, as_json: AsJson = False) -> None:
    """Recompute the hash chain; exit 1 naming the first bad entry if anything was changed or removed."""
    with cli_context(ctx).open_client() as ops:
        result = ops.audit_verify()
    if as_json:
        print(json.dumps(render.verification_document(result), indent=2))
    elif result.ok:
        out.print(f"[green]audit log intact[/]: {result.checked} entries, head #{result.head_seq} "
                  f"{result.head_hash[:12]}; every request agrees with it", soft_wrap=True)
    elif result.chain.ok:
        out.print(f"[green]audit chain intact[/]: {result.checked} entries, head #{result.head_seq} "
                  f"{result.head_hash[:12]}", soft_wrap=True)
        out.print(f"[bold red]the store disagrees with the audit log[/] ({len(result.discrepancies)}):")
        for line in result.discrepancies:
            out.print(f"  {escape(line)}", soft_wrap=True)
    else:
        out.print(f"[bold red]audit log broken[/]: {escape(result.chain.problem)}", soft_wrap=True)
        entry, bad = result.entry, result.first_bad_seq
        if entry is not None and entry.seq == bad:
            out.print(f"  first bad entry: {escape(render.describe_entry(entry))}", soft_wrap=True)
        elif bad is not None:
            nearest = (f"; nearest surviving: {escape(render.describe_entry(entry))}"
                       if entry is not None else "")
            out.print(f"  first bad entry: #{bad} (gone){nearest}", soft_wrap=True)
        elif entry is not None:
            out.print(f"  last entry: {escape(render.describe_entry(entry))}", soft_wrap=True)
        out.print(f"  checked {result.checked} entries; head #{result.head_seq} {result.head_hash[:12]}")
    if not result.ok:
        raise typer.Exit(1)


@audit_app.command("log")
def audit_log(
    ctx: typer.Context,
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
    start = parse_since(since, datetime.now(UTC)) if since is not None else None
    from opsconsole.core.audit.records import AuditKind  # noqa: PLC0415 — keeps `--help` fast

    known = {kind.value for kind in AuditKind}
    unknown = [kind for kind in kinds or () if kind not in known]
    if unknown:
        raise UsageError(f"--kind {', '.join(unknown)}: not a kind of audit entry; the kinds are "
                         f"{', '.join(sorted(known))}")
    with cli_context(ctx).open_client() as ops:
        entries = ops.audit(since=start, request_id=request, kinds=tuple(kinds or ()), limit=limit)
    if as_json:
        print(json.dumps([entry.document() for entry in entries], indent=2, ensure_ascii=False))
        return
    if not entries:
        filtered = since is not None or request is not None or bool(kinds)
        out.print("No audit entries match." if filtered else "No audit entries yet.")
        return
    out.print(render.audit_table(entries))
    if len(entries) == limit:
        out.print(f"[dim](the last {limit} matching entries; --limit shows more)[/]")
