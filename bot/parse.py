"""``/ops`` text → a typed command, or a :class:`CommandError` saying what was wrong and the usage.

Parsing is pure and cheap, so a malformed command is answered in the ack itself; validating against
the fleet (is ``checkout`` a workload? is ``eu-west-9`` a region?) is the core's job, after the ack.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from datetime import datetime, timedelta

from opsconsole.core.errors import UsageError

USAGE: dict[str, str] = {
    "help": "/ops help",
    "status": "/ops status [region]",
    "findings": "/ops findings [region]",
    "scale": "/ops scale <workload> [<replicas>] [--hpa-min N] [--hpa-max N] --region R [--cluster C] "
             "[--env prod|staging|dev]",
    "nodes": "/ops nodes --cluster C [--min N] [--max N] [--desired N]",
    "replicas": "/ops replicas --region R (--count N | --promote | --demote [--source R2])",
    "cache": "/ops cache --region R --nodes N",
    "failover": "/ops failover <from-region> <to-region>",
    "failback": "/ops failback <region>",
    "drill": "/ops drill failover <from-region> <to-region>   (failover, verify, failback; a report)",
    "env": "/ops env <name> stop|start|status",
    "keep-awake": "/ops keep-awake <env> until <time>   (time: 18:30, 2h, 90m or 2025-01-31T18:30)",
    "approvals": "/ops approvals",
    "jobs": "/ops jobs",
    "job": "/ops job <id>",
    "audit": "/ops audit <request-id>",
    "freeze": "/ops freeze on <reason> | off | status   (on / off: admins)",
}


class CommandError(UsageError):
    """The text is not a valid ``/ops`` command; ``usage`` is the line to show with the message."""

    title = "usage"

    def __init__(self, message: str, usage: str) -> None:
        super().__init__(message)
        self.usage = usage


@dataclass(frozen=True)
class Command:
    """A parsed ``/ops`` command: its name and its arguments, by name."""

    name: str
    region: str | None = None
    workload: str | None = None
    replicas: int | None = None
    environment: str | None = None
    from_region: str | None = None
    to_region: str | None = None
    verb: str | None = None
    until: str | None = None
    ident: str | None = None
    cluster: str | None = None
    hpa_min: int | None = None
    hpa_max: int | None = None
    nodes_min: int | None = None
    nodes_max: int | None = None
    nodes_desired: int | None = None
    #: ``replicas --count`` (read replicas) and ``cache --nodes`` (Redis nodes).
    count: int | None = None
    #: ``replicas --demote --source``: the write primary to replicate from.
    source: str | None = None

    @property
    def changes_fleet(self) -> bool:
        return self.name in CHANGES or (self.name == "env" and self.verb != "status")


#: The commands that change the fleet (``env`` too, but for ``env … status``).
CHANGES = ("scale", "failover", "failback", "nodes", "replicas", "cache", "drill")


def _fail(name: str, message: str) -> CommandError:
    return CommandError(message, USAGE[name])


def _take_options(
    name: str, words: list[str], allowed: set[str], flags: frozenset[str] = frozenset()
) -> tuple[list[str], dict[str, str]]:
    """Positional words and ``--key value`` / ``--key=value`` options; ``flags`` take no value."""
    positional: list[str] = []
    options: dict[str, str] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("--"):
            key, eq, value = word[2:].partition("=")
            if key in flags and not eq:
                options[key] = "yes"
                i += 1
                continue
            if key not in allowed:
                raise _fail(name, f"unknown option --{key}")
            if not eq:
                if i + 1 >= len(words):
                    raise _fail(name, f"--{key} needs a value")
                value = words[i + 1]
                i += 1
            options[key] = value
        else:
            positional.append(word)
        i += 1
    return positional, options


def _arity(name: str, args: list[str], low: int, high: int) -> None:
    if len(args) < low:
        raise _fail(name, f"`{name}` needs {low} argument(s), got {len(args)}")
    if len(args) > high:
        raise _fail(name, f"`{name}` takes at most {high} argument(s): unexpected {' '.join(args[high:])!r}")


def parse(text: str) -> Command:
    """Parse the text after ``/ops``.

    Raises:
        CommandError: unknown subcommand, wrong arguments (the message says which, with the usage).
    """
    try:
        words = shlex.split(text or "")
    except ValueError as exc:
        raise CommandError(f"cannot read the command: {exc}", USAGE["help"]) from None
    if not words:
        return Command("help")
    name, args = words[0].lower(), words[1:]
    if name not in USAGE:
        raise CommandError(f"unknown command {name!r}; try /ops help", "\n".join(USAGE.values()))
    if name == "scale":
        return _scale(name, args)
    if name in ("nodes", "replicas", "cache"):
        return _capacity(name, args)
    if name == "env":
        _arity(name, args, 2, 2)
        verb = args[1].lower()
        if verb not in ("stop", "start", "status"):
            raise _fail(name, f"{verb!r}: expected stop, start or status")
        return Command(name, environment=args[0], verb=verb)
    if name == "keep-awake":
        if len(args) < 3 or args[1].lower() != "until":
            raise _fail(name, "expected an environment, the word `until` and a time")
        return Command(name, environment=args[0], until=" ".join(args[2:]))
    if name in ("status", "findings"):
        _arity(name, args, 0, 1)
        return Command(name, region=args[0] if args else None)
    if name == "failover":
        _arity(name, args, 2, 2)
        return Command(name, from_region=args[0], to_region=args[1])
    if name == "failback":
        _arity(name, args, 1, 1)
        return Command(name, region=args[0])
    if name == "drill":
        if not args or args[0].lower() != "failover":
            raise _fail(name, "which drill? the one there is: `drill failover <from-region> <to-region>`")
        _arity(name, args[1:], 2, 2)
        return Command(name, verb="failover", from_region=args[1], to_region=args[2])
    if name == "freeze":
        verb = args[0].lower() if args else "status"
        if verb not in ("on", "off", "status"):
            raise _fail(name, f"{args[0]!r}: expected on, off or status")
        if verb == "on" and len(args) < 2:
            raise _fail(name, "an emergency freeze needs a reason: /ops freeze on <reason>")
        if verb != "on":
            _arity(name, args, 0, 1)
        return Command(name, verb=verb, until=" ".join(args[1:]) if verb == "on" else None)
    if name in ("job", "audit"):
        _arity(name, args, 1, 1)
        return Command(name, ident=args[0])
    _arity(name, args, 0, 0)
    return Command(name)


def _scale(name: str, args: list[str]) -> Command:
    """``/ops scale <workload> <replicas>`` or ``/ops scale <workload> --hpa-min N --hpa-max N``."""
    args, options = _take_options(name, args, {"region", "env", "cluster", "hpa-min", "hpa-max"})
    hpa_min, hpa_max = _number(name, options, "hpa-min"), _number(name, options, "hpa-max")
    bounds = hpa_min is not None or hpa_max is not None
    _arity(name, args, 1 if bounds else 2, 1 if bounds else 2)
    replicas = None
    if not bounds:
        try:
            replicas = int(args[1])
        except ValueError:
            raise _fail(name, f"replicas: expected a whole number, found {args[1]!r}") from None
        if replicas < 0:
            raise _fail(name, f"replicas: expected 0 or more, found {replicas}")
    env = options.get("env", "prod")
    if env not in ("prod", "staging", "dev"):
        raise _fail(name, f"--env {env}: expected prod, staging or dev")
    return Command(
        name, workload=args[0], replicas=replicas, region=options.get("region"), environment=env,
        cluster=options.get("cluster"), hpa_min=hpa_min, hpa_max=hpa_max,
    )


def _number(name: str, options: dict[str, str], key: str) -> int | None:
    value = options.get(key)
    if value is None:
        return None
    if not value.strip().isdigit():
        raise _fail(name, f"--{key}: expected a whole number, found {value!r}")
    return int(value)


def missing(name: str, words: list[str]) -> bool:
    """Whether ``/ops nodes|replicas|cache`` lacks what it needs (then a form opens) rather than having
    something wrong (then the usage says what)."""
    opts = {w[2:].partition("=")[0] for w in words if w.startswith("--")}
    has_cluster = "cluster" in opts or any(not w.startswith("--") for w in words[:1])
    if name == "nodes":
        return not has_cluster or not opts & {"min", "max", "desired"}
    if name == "replicas":
        return "region" not in opts or not opts & {"count", "promote", "demote"}
    return "region" not in opts or "nodes" not in opts


def _capacity(name: str, args: list[str]) -> Command:
    """``/ops nodes``, ``/ops replicas`` and ``/ops cache``: the arguments of ``opsconsole act``."""
    if name == "nodes":
        positional, options = _take_options(name, args, {"cluster", "min", "max", "desired"})
        _arity(name, positional, 0, 1)
        cluster = options.get("cluster") or (positional[0] if positional else None)
        if not cluster:
            raise _fail(name, "which cluster? add --cluster C")
        numbers = {k: _number(name, options, k) for k in ("min", "max", "desired")}
        if all(v is None for v in numbers.values()):
            raise _fail(name, "nothing to change: give --min, --max or --desired")
        return Command(name, cluster=cluster, nodes_min=numbers["min"], nodes_max=numbers["max"],
                       nodes_desired=numbers["desired"])
    if name == "replicas":
        positional, options = _take_options(name, args, {"region", "count", "source"},
                                            frozenset({"promote", "demote"}))
        _arity(name, positional, 0, 0)
        if not options.get("region"):
            raise _fail(name, "which region? add --region R")
        chosen = [k for k in ("count", "promote", "demote") if k in options]
        if len(chosen) != 1:
            raise _fail(name, "give exactly one of --count N, --promote or --demote")
        if "source" in options and "demote" not in options:
            raise _fail(name, "--source goes with --demote (the primary to replicate from)")
        return Command(name, region=options["region"], count=_number(name, options, "count"),
                       verb=None if chosen[0] == "count" else chosen[0], source=options.get("source"))
    positional, options = _take_options(name, args, {"region", "nodes"})
    _arity(name, positional, 0, 0)
    if not options.get("region") or "nodes" not in options:
        raise _fail(name, "give --region R and --nodes N")
    return Command(name, region=options["region"], count=_number(name, options, "nodes"))


_RELATIVE = re.compile(r"^\+?(\d+(?:\.\d+)?)\s*(h|m|min|hours?|minutes?)$")
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})$")


def parse_until(text: str, now: datetime) -> datetime:
    """``18:30`` (next such time, in ``now``'s zone), ``2h`` / ``90m``, or an ISO date-time.

    Raises:
        CommandError: none of those.
    """
    value = text.strip().lower()
    if m := _RELATIVE.match(value):
        amount = float(m.group(1))
        return now + (timedelta(hours=amount) if m.group(2).startswith("h") else timedelta(minutes=amount))
    if m := _CLOCK.match(value):
        hour, minute = int(m.group(1)), int(m.group(2))
        if hour > 23 or minute > 59:
            raise _fail("keep-awake", f"{text!r}: not a time of day")
        moment = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
        return moment if moment > now else moment + timedelta(days=1)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise _fail("keep-awake", f"{text!r}: expected 18:30, 2h, 90m or an ISO date-time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=now.tzinfo)
    if moment <= now:
        raise _fail("keep-awake", f"{text!r} is in the past")
    return moment
