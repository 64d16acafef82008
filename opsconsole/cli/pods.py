"""``opsconsole pods | logs | events | describe``: a cluster's pods, a pod's log, its events, its description.

Why this module exists: the first questions about a bad deploy are kubectl's (which pods crash, what did
the container print before it died, what does the kubelet say) and an SRE should not need cluster
credentials of their own to ask them: the ops server reads the cluster for everyone, viewers included.
Each command is one read of ``/api/v1/clusters/{cluster}/pods…`` through the client.

Use::

    opsconsole pods eks-use1-prod --workload checkout
    opsconsole logs eks-use1-prod checkout-82c3ed39-4lnjt --previous --tail 50
    opsconsole events eks-use1-prod checkout-82c3ed39-4lnjt
    opsconsole describe eks-use1-prod checkout-82c3ed39-4lnjt

``--namespace`` defaults to the namespace the pod is found in. On the sandbox the pods come from the
local cloud's Kubernetes API: the in-process reader (``OPSCONSOLE_SANDBOX_READER=sim``) has none, and the
server says so (exit 1).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from opsconsole.cli.context import cli_context, out
from opsconsole.core.errors import UsageError
from opsconsole.core.fleet.pods import kube_age

if TYPE_CHECKING:
    from opsconsole.core.api import OpsApi
    from opsconsole.core.fleet.pods import EventInfo, PodInfo

__all__ = ["register"]

Cluster = Annotated[str, typer.Argument(help="The cluster, e.g. eks-use1-prod.")]
Pod = Annotated[str, typer.Argument(help="The pod's name (opsconsole pods CLUSTER lists them).")]
Namespace = Annotated[
    str | None, typer.Option("--namespace", "-n", help="The pod's namespace (default: where it is found).")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "__dataclass_fields__"):
        return {k: _plain(getattr(value, k)) for k in value.__dataclass_fields__}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _namespace_of(ops: OpsApi, cluster: str, pod: str, namespace: str | None) -> str:
    if namespace:
        return namespace
    for info in ops.pods(cluster):
        if info.name == pod:
            return info.namespace
    raise UsageError(f"no pod {pod!r} in cluster {cluster}; list them with `opsconsole pods {cluster}`")


def pods_table(pods: list[PodInfo]) -> Table:
    table = Table(box=None, pad_edge=False)
    columns = ("NAME", "WORKLOAD", "READY", "STATUS", "RESTARTS", "AGE", "NODE", "NODE GROUP", "LAST EXIT")
    for column in columns:
        table.add_column(column, no_wrap=column in ("NAME", "NODE"))
    for p in pods:
        style = "red" if p.unhealthy else ""
        table.add_row(p.name, p.workload, p.ready_text, f"[{style}]{p.status}[/]" if style else p.status,
                      str(p.restarts), kube_age(p.age_s), p.node or "<none>", p.node_group or "", p.last_exit)
    return table


def events_table(events: list[EventInfo]) -> Table:
    table = Table(box=None, pad_edge=False)
    for column in ("LAST SEEN", "TYPE", "REASON", "COUNT", "FROM", "MESSAGE"):
        table.add_column(column)
    for e in events:
        seen = e.last_seen.strftime("%Y-%m-%d %H:%M:%S") if e.last_seen else ""
        kind = f"[yellow]{e.type}[/]" if e.type == "Warning" else e.type
        table.add_row(seen, kind, e.reason, str(e.count), e.source, escape(e.message))
    return table


def pods_command(
    ctx: typer.Context,
    cluster: Cluster,
    workload: Annotated[
        str | None, typer.Option("--workload", "-w", help="Only this workload's pods.")
    ] = None,
    namespace: Annotated[str | None, typer.Option("--namespace", "-n", help="Another namespace.")] = None,
    as_json: AsJson = False,
) -> None:
    """A cluster's pods: ready, status (CrashLoopBackOff...), restarts, age, node and node group."""
    with cli_context(ctx).open_client() as ops:
        pods = ops.pods(cluster, workload=workload, namespace=namespace)
    if as_json:
        print(json.dumps([_plain(p) for p in pods], indent=2))
        return
    if not pods:
        out.print(f"No pods in {cluster}" + (f" for workload {workload}." if workload else "."))
        return
    out.print(pods_table(pods))
    bad = [p for p in pods if p.unhealthy]
    if bad:
        out.print(f"\n{len(bad)} pod(s) not ready. Logs: opsconsole logs {cluster} {bad[0].name} --previous")


def logs_command(
    ctx: typer.Context,
    cluster: Cluster,
    pod: Pod,
    namespace: Namespace = None,
    previous: Annotated[
        bool, typer.Option("--previous", "-p", help="The last terminated container (the one that crashed).")
    ] = False,
    tail: Annotated[int, typer.Option("--tail", min=0, max=10_000, help="Last N lines (0: all).")] = 200,
    container: Annotated[str | None, typer.Option("--container", "-c", help="The container.")] = None,
) -> None:
    """A pod's container log (its last lines)."""
    with cli_context(ctx).open_client() as ops:
        ns = _namespace_of(ops, cluster, pod, namespace)
        log = ops.pod_log(cluster, ns, pod, previous=previous, tail=tail, container=container)
    print(log.text, end="" if log.text.endswith("\n") or not log.text else "\n")


def events_command(ctx: typer.Context, cluster: Cluster, pod: Pod, namespace: Namespace = None,
                   as_json: AsJson = False) -> None:
    """The events about a pod (BackOff, Unhealthy, Scheduled...), oldest first."""
    with cli_context(ctx).open_client() as ops:
        ns = _namespace_of(ops, cluster, pod, namespace)
        events = ops.pod_events(cluster, ns, pod)
    if as_json:
        print(json.dumps([_plain(e) for e in events], indent=2))
        return
    if not events:
        out.print(f"No events about {pod}.")
        return
    out.print(events_table(events))


def describe_command(ctx: typer.Context, cluster: Cluster, pod: Pod, namespace: Namespace = None,
                     as_json: AsJson = False) -> None:
    """A pod described: where it runs (node, node group, region), containers, states, probes, events."""
    with cli_context(ctx).open_client() as ops:
        ns = _namespace_of(ops, cluster, pod, namespace)
        described = ops.describe_pod(cluster, ns, pod)
    if as_json:
        print(json.dumps(_plain(described), indent=2))
        return
    p, d = described.pod, described.details
    lines = [
        f"[bold]{p.name}[/]  ({p.namespace})  {p.status}  ready {p.ready_text}  restarts {p.restarts}",
        f"Path:       region {p.region} → cluster {p.cluster} → node group {p.node_group or '-'} → "
        f"node {p.node or '-'}",
        f"Controlled by: {d.get('controlled_by', '')}   IP: {d.get('ip', '')}   QoS: {d.get('qos', '')}",
        "Conditions: " + ", ".join(f"{k}={v}" for k, v in (d.get("conditions") or {}).items()),
    ]
    for c in d.get("containers") or ():
        lines += [
            f"Container {c['name']}: {c['image']}",
            f"  State:      {c['state']}",
            f"  Last state: {c['last_state'] or '-'}",
            f"  Ready: {c['ready']}  Restarts: {c['restarts']}  Requests: {c['requests']}",
            f"  Readiness: {c['readiness'] or '-'}   Liveness: {c['liveness'] or '-'}",
        ]
    for line in lines:
        out.print(line)
    if described.events:
        out.print("Events:")
        out.print(events_table(list(described.events)))


def register(app: typer.Typer) -> None:
    """Add ``pods``, ``logs``, ``events`` and ``describe`` to the CLI."""
    app.command("pods")(pods_command)
    app.command("logs")(logs_command)
    app.command("events")(events_command)
    app.command("describe")(describe_command)
