"""The command palette (ctrl+p): every screen, every region, and every action in plain words.

Typed sentences are parsed by :func:`parse_command`: "scale checkout in eu-west-1 to
12" and "failover eu-west-1 to eu-central-1" open the action's form filled in (so the preview and the risk
are always seen before a submit); "approve ID" / "reject ID reason" decide a request; "as bob" acts as a
member of the sandbox cast (only on the sandbox's own embedded server: see
:meth:`ConsoleHost.act_as`). In read-only mode the actions are not offered and are refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

from opsconsole.core.fleet.model import Environment

if TYPE_CHECKING:
    from opsconsole.core.api import Decided, OpsApi
    from opsconsole.tui.host import ConsoleHost


@dataclass(frozen=True)
class Intent:
    """What a typed command asks for: an action and its (partial) parameters, before any validation."""

    action: str  # scale | failover | failback | env | approve | reject | region | as
    params: Mapping[str, Any]


_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "scale",
        re.compile(
            r"^scale\s+(?P<service>[\w-]+)\s+in\s+(?P<region>[\w-]+)(?:\s+(?:cluster\s+)?(?P<cluster>[\w-]+-prod|"
            r"[\w-]+-(?:staging|dev)))?\s+to\s+(?P<replicas>\d+)$"
        ),
    ),
    ("failover", re.compile(r"^fail\s*over\s+(?P<region>[\w-]+)\s+to\s+(?P<to>[\w-]+)$")),
    ("failback", re.compile(r"^fail\s*back\s+(?P<region>[\w-]+)$")),
    (
        "env",
        re.compile(r"^(?P<state>stop|start)\s+(?P<environment>staging|dev)(?:\s+in\s+(?P<region>[\w-]+))?$"),
    ),
    ("approve", re.compile(r"^approve\s+(?P<request>[\w-]+)$")),
    ("reject", re.compile(r"^reject\s+(?P<request>[\w-]+)\s+(?P<reason>.+)$")),
    ("region", re.compile(r"^(?:region|show|open)\s+(?P<region>[\w-]+)$")),
    ("as", re.compile(r"^(?:act\s+)?as\s+(?P<person>[\w-]+)$")),
)


def parse_command(text: str) -> Intent | None:
    """``"scale checkout in eu-west-1 to 12"`` → ``Intent("scale", {...})``; ``None`` if it is not one."""
    words = " ".join(text.strip().lower().split())
    for action, pattern in _PATTERNS:
        match = pattern.match(words)
        if match:
            params = {k: v for k, v in match.groupdict().items() if v is not None}
            if "replicas" in params:
                params["replicas"] = int(params["replicas"])
            if action == "env":
                params["state"] = "stopped" if params["state"] == "stop" else "started"
            return Intent(action, params)
    return None


SCREENS = (
    ("overview", "Fleet overview"),
    ("findings", "Findings"),
    ("approvals", "Approvals queue"),
    ("jobs", "Jobs"),
    ("schedules", "Schedules"),
    ("audit", "Audit log"),
)
WRITE_INTENTS = {"scale", "failover", "failback", "env", "approve", "reject"}


def run_intent(app: ConsoleHost, intent: Intent) -> None:
    """Carry out a parsed command on ``app``."""
    params: dict[str, Any] = dict(intent.params)
    if intent.action in WRITE_INTENTS and not app.may_write(intent.action):
        return
    if intent.action == "region":
        app.open_region(params["region"])
    elif intent.action == "as":
        app.act_as(params["person"])
    elif intent.action in ("approve", "reject"):
        _decide(app, intent.action, params)
    else:
        if intent.action == "scale":
            params.setdefault("environment", "prod")
            _one_cluster(app, params)
        app.open_action(intent.action, params)


def _one_cluster(app: ConsoleHost, params: dict[str, Any]) -> None:
    """ "scale checkout in eu-west-1 to 12": the region's only cluster of that environment is named; with
    several, the form opens with Cluster empty and says which clusters the request would change."""
    view = app.view
    if view is None or params.get("cluster") or params.get("region") not in view.fleet.regions:
        return
    try:
        environment = Environment(str(params["environment"]))
    except ValueError:
        return
    clusters = view.fleet.clusters_in(str(params["region"]), environment)
    if len(clusters) == 1:
        params["cluster"] = clusters[0].name


def _decide(app: ConsoleHost, action: str, params: dict[str, Any]) -> None:
    request_id = params["request"]

    def decide(api: OpsApi) -> Decided:
        if action == "approve":
            return api.approve(request_id, run=True)
        return api.reject(request_id, reason=params["reason"])

    def decided(answer: Decided) -> None:
        request = answer.request
        app.remember(request, answer.may_still_vote)
        app.notify(f"request {request.short_id} is {request.status.value}")
        if answer.job is not None:
            app.notify(f"request {request.short_id} runs as job {answer.job.id[:12]}", title="running")
        app.action_refresh()

    app.call_api(decide, decided)


#: What the ``:`` command line knows: the word (and its aliases) → what it does.
COLON_SCREENS = {
    "fleet": "overview",
    "overview": "overview",
    "findings": "findings",
    "approvals": "approvals",
    "requests": "approvals",
    "jobs": "jobs",
    "schedules": "schedules",
    "audit": "audit",
}
COLON_TABS = ("workloads", "nodes", "databases", "caches", "traffic", "chart")
COLON_HELP = (
    ":fleet :findings :approvals :jobs :schedules :audit · :region ID · "
    ":workloads :nodes :databases :caches :traffic :chart (of the region in view) · "
    ":pods [CLUSTER [WORKLOAD]] · :marks · :mark a · :delmarks a · :freeze on REASON | off · "
    ":drill failover FROM TO · :help · :q"
)


def run_colon(app: ConsoleHost, line: str, region: str | None = None) -> bool:  # noqa: PLR0911
    """Run one ``:`` command (``nodes``, ``region eu-west-1``, ``q`` …); ``region`` is the region in view
    (for ``:nodes`` and the other tabs). Returns False (and says so) for what it does not know."""
    words = line.strip().lower().split()
    if not words:
        return True
    head, rest = words[0], words[1:]
    if head in ("q", "quit", "q!"):
        app.exit()
    elif head in COLON_SCREENS:
        app.action_go(COLON_SCREENS[head])
    elif head in ("region", "r") and rest:
        app.open_region(rest[0])
    elif head in COLON_TABS:
        where = rest[0] if rest else region
        if where is None:
            app.notify(
                f":{head} shows a region's {head}: open a region first, or type :{head} REGION",
                severity="warning",
            )
            return False
        app.open_region(where, tab=head)
    elif head in ("pods", "pod", "po"):
        return _colon_pods(app, rest, region)
    elif head in ("marks", "bookmarks", "mark", "k", "delmarks", "delm"):
        return _colon_marks(app, head, line.strip().split()[1:])
    elif head == "freeze":
        from opsconsole.tui.freeze import run_freeze  # noqa: PLC0415 - the emergency freeze

        return run_freeze(app, line.strip().split()[1:])
    elif head == "drill":
        from opsconsole.tui.drill import run_drill_command  # noqa: PLC0415 - a DR drill

        return run_drill_command(app, line.strip().split()[1:])
    elif head in ("help", "h", "?"):
        app.notify(COLON_HELP, title="command line", timeout=10)
    else:
        app.notify(
            f":{head} is not a command; try {COLON_HELP}",
            title="command line",
            severity="warning",
            timeout=10,
        )
        return False
    return True


def _colon_pods(app: ConsoleHost, rest: list[str], region: str | None) -> bool:
    """``:pods CLUSTER [WORKLOAD]``, or ``:pods`` alone: the pods of what the region screen has selected
    (a workload, a cluster or node group on the Nodes tab); elsewhere it asks which cluster."""
    view = app.view
    if rest:
        cluster, workload = rest[0], (rest[1] if len(rest) > 1 else None)
        known = view.fleet.clusters if view is not None else None
        if known is not None and cluster not in known:
            names = ", ".join(sorted(known)[:8]) + (" …" if len(known) > 8 else "")
            app.notify(f":pods {cluster}: no such cluster (clusters: {names})", severity="warning")
            return False
        where = known[cluster].region if known is not None else region
        app.open_pods(cluster, workload, where)
        return True
    here = getattr(getattr(app, "screen", None), "action_pods", None)
    if callable(here):  # the region screen: its selected workload, cluster or node group
        here()
        return True
    clusters = (sorted(c.name for c in view.fleet.clusters.values() if c.region == region)
                if view is not None and region is not None else [])
    choice = f" ({region}: {', '.join(clusters)})" if clusters else ""
    app.notify(f"which cluster? type :pods CLUSTER [WORKLOAD]{choice}", title=":pods", severity="warning",
               timeout=10)
    return False


def _colon_marks(app: ConsoleHost, head: str, rest: list[str]) -> bool:
    """``:marks`` (the list; a letter jumps), ``:mark a`` / ``:k a`` (bookmark what is selected as a),
    ``:delmarks a b`` (forget them): vim's words for :mod:`opsconsole.tui.bookmarks`."""
    if head in ("marks", "bookmarks"):
        app.marks.ask_jump()
        return True
    if head in ("mark", "k") and len(rest) == 1 and len(rest[0]) == 1:
        return app.marks.mark(rest[0])
    if head in ("delmarks", "delm") and rest:
        return all([app.marks.delete(letter) for word in rest for letter in word])
    app.notify(":marks lists the bookmarks; :mark a bookmarks what is selected; :delmarks a forgets one",
               title="command line", severity="warning", timeout=8)
    return False


class FleetCommands(Provider):
    @property
    def console(self) -> ConsoleHost:
        """The app, as the palette may use it (:class:`~opsconsole.tui.host.ConsoleHost`)."""
        return cast("ConsoleHost", self.app)

    def _static(self) -> list[tuple[str, Any, str]]:
        app = self.console
        items: list[tuple[str, Any, str]] = [
            (f"Go to {title}", partial(app.action_go, name), f"screen {name}") for name, title in SCREENS
        ]
        if app.view is not None:
            for region in app.view.fleet.regions.values():
                items.append(
                    (f"Region {region.id} ({region.name})", partial(app.open_region, region.id), "drill down")
                )
        for letter, mark in sorted(app.marks.marks.items()):
            items.append((f"Bookmark '{letter}: {mark.label}", partial(app.marks.jump, letter), "jump"))
        items.append(("Refresh now", app.action_refresh, "read every source"))
        from opsconsole.tui.freeze import run_freeze  # noqa: PLC0415 - the emergency freeze

        items.append(("Emergency freeze: status", partial(run_freeze, app, ["status"]),
                      "or type: freeze on REASON · freeze off (admins)"))
        if not app.writes_refused():
            items += [
                (
                    "Scale a workload…",
                    partial(app.open_action, "scale", {"environment": "prod"}),
                    "or type: scale checkout in eu-west-1 to 12",
                ),
                (
                    "Fail a region over…",
                    partial(app.open_action, "failover", {}),
                    "or type: failover eu-west-1 to eu-central-1",
                ),
                (
                    "DR drill: fail a region over and back…",
                    partial(app.notify, "type: drill failover FROM TO (here, or :drill failover FROM TO)",
                            title="drill"),
                    "drill failover FROM TO: failover, verify, failback, RTO verdict, report",
                ),
                (
                    "Fail a region back…",
                    partial(app.open_action, "failback", {}),
                    "or type: failback eu-west-1",
                ),
                (
                    "Stop / start an environment…",
                    partial(app.open_action, "env", {"state": "stopped"}),
                    "or type: stop staging in eu-west-1",
                ),
                (
                    "Change a cluster's nodes…",
                    partial(app.open_action, "nodes", {}),
                    "nodes: node group / node pool min, max, desired (opsconsole act nodes)",
                ),
                (
                    "Change a database's read replicas…",
                    partial(app.open_action, "replicas", {}),
                    "replicas: read replicas of a region's database (opsconsole act replicas --count)",
                ),
                (
                    "Promote / demote a database…",
                    partial(app.open_action, "database", {"change": "demote"}),
                    "database: promote or demote (opsconsole act replicas --promote / --demote)",
                ),
                (
                    "Change a region's Redis nodes…",
                    partial(app.open_action, "cache", {}),
                    "cache: Redis nodes (opsconsole act cache)",
                ),
            ]
        return items

    async def discover(self) -> Hits:
        for text, command, help_text in self._static():
            yield DiscoveryHit(text, command, help=help_text)

    async def search(self, query: str) -> Hits:
        intent = parse_command(query)
        app = self.console
        if query.strip().lower().split(" ", 1)[0] == "drill":  # a DR drill: asks first
            from opsconsole.tui.drill import run_drill_command  # noqa: PLC0415 - a DR drill

            yield Hit(1.0, f"Do: {query.strip()}", partial(run_drill_command, app, query.strip().split()[1:]),
                      text=query.strip(), help="drill failover FROM TO: failover, verify, failback; asks")
            return
        if query.strip().lower().split(" ", 1)[0] == "freeze":  # status for anyone; switching asks
            from opsconsole.tui.freeze import run_freeze  # noqa: PLC0415 - the emergency freeze

            words = query.strip().split()[1:]
            yield Hit(1.0, f"Do: {query.strip()}", partial(run_freeze, app, words), text=query.strip(),
                      help="freeze on REASON · freeze off · freeze (status): asks first; admins only")
            return
        if intent is not None:
            # A sentence that parses is what was meant: no fuzzy match is offered beside it ("as erin"
            # once ran "Region us-east-1", whose letters it contains).
            if app.writes_refused() and intent.action in WRITE_INTENTS:
                yield Hit(
                    1.0,
                    f"{query.strip()}: refused, this console is read-only (Enter says why)",
                    partial(app.may_write, intent.action),
                    text=query.strip(),
                )
                return
            yield Hit(
                1.0,
                f"Do: {query.strip()}",
                partial(run_intent, app, intent),
                text=query.strip(),
                help="opens the form with the preview and the risk"
                if intent.action in ("scale", "failover", "failback", "env")
                else None,
            )
            return
        matcher = self.matcher(query)
        found = False
        for text, command, help_text in self._static():
            score = matcher.match(text)
            if score > 0:
                found = True
                yield Hit(score, matcher.highlight(text), command, text=text, help=help_text)
        first = query.strip().split(" ", 1)[0]
        if not found and app.writes_refused() and first in ("scale", "fail", "failover", "stop", "start"):
            yield Hit(
                0.5,
                "changes are refused: this console is read-only (Enter says why)",
                partial(app.may_write, first),
                text=query.strip(),
            )
