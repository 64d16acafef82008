#!/usr/bin/python
"""Ansible module: set a GKE node pool's autoscaling bounds (and, optionally, its size).

Why the project has its own: google.cloud.gcp_container_node_pool creates and replaces whole node pools
(a bounds change is a pool re-create there) and cannot be pointed at another endpoint than Google's, so it
could not run against the local cloud. This one calls the two narrow methods a bounds change needs,
``nodePools.setAutoscaling`` and ``nodePools.setSize``, with google-cloud-container's ClusterManagerClient
(REST transport), on Google or on the sandbox's emulator (``endpoint_url``, anonymous credentials).
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: opsconsole_gke_nodepool
short_description: Set the autoscaling bounds and size of a GKE node pool
description:
  - Reads the node pool, then calls C(setAutoscaling) when its autoscaling is off or its bounds differ from
    O(min_nodes)-O(max_nodes), and C(setSize) when O(node_count) is given and differs from the pool's
    node count (or, without O(node_count), when the node count is outside the new bounds: it is clamped).
  - Waits for each operation to be C(DONE). Idempotent; supports check mode and diff.
  - The node count read is the pool's C(initialNodeCount) (what the sandbox's emulator reports as the
    current count); bounds are the pool's per-zone C(minNodeCount)/C(maxNodeCount).
  - Credentials are Google's Application Default Credentials, or anonymous with O(endpoint_url).
options:
  project:
    description: The GCP project id.
    type: str
    required: true
  location:
    description: The cluster's location (region or zone), e.g. C(us-west1).
    type: str
    required: true
  cluster:
    description: The GKE cluster, e.g. C(gke-usw2-prod).
    type: str
    required: true
  node_pool:
    description: The node pool.
    type: str
    default: default-pool
  min_nodes:
    description: Autoscaling minimum (0 or more).
    type: int
    required: true
  max_nodes:
    description: Autoscaling maximum (at least 1 and at least O(min_nodes)).
    type: int
    required: true
  node_count:
    description: The wanted node count (within O(min_nodes)-O(max_nodes)); omitted keeps the count, clamped.
    type: int
  endpoint_url:
    description: Base URL of a container API other than Google's (the sandbox's emulator, http allowed).
    type: str
  timeout:
    description: Seconds to wait for an operation to be done.
    type: int
    default: 300
requirements: [google-cloud-container]
author: opsconsole
"""

EXAMPLES = r"""
- name: Let gke-usw2-prod grow to 50 nodes
  opsconsole_gke_nodepool:
    project: voltage-prod
    location: us-west1
    cluster: gke-usw2-prod
    min_nodes: 7
    max_nodes: 50
"""

RETURN = r"""
before:
  description: The pool before the change (min_nodes, max_nodes, node_count, autoscaling).
  type: dict
  returned: always
after:
  description: The pool after the change (or as the change would leave it, in check mode).
  type: dict
  returned: always
operations:
  description: The names of the operations started.
  type: list
  returned: always
"""

import time  # noqa: E402
from typing import Any  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

try:
    from google.api_core import exceptions as gexc
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.auth.exceptions import GoogleAuthError
    from google.cloud import container_v1
    from requests.exceptions import RequestException

    HAS_SDK = True
    API_ERRORS: tuple[type[Exception], ...] = (gexc.GoogleAPIError, GoogleAuthError, RequestException)
except ImportError:  # pragma: no cover - reported by the module
    HAS_SDK = False


def _client(endpoint_url: str | None) -> Any:
    if endpoint_url:
        return container_v1.ClusterManagerClient(
            credentials=AnonymousCredentials(),
            transport="rest",
            client_options=ClientOptions(api_endpoint=endpoint_url.rstrip("/")),
        )
    return container_v1.ClusterManagerClient(transport="rest")


def _state(pool: Any) -> dict[str, Any]:
    return {
        "min_nodes": int(pool.autoscaling.min_node_count),
        "max_nodes": int(pool.autoscaling.max_node_count),
        "node_count": int(pool.initial_node_count),
        "autoscaling": bool(pool.autoscaling.enabled),
    }


def _text(label: str, state: dict[str, Any]) -> str:
    return (
        f"{label}: autoscaling={'on' if state['autoscaling'] else 'off'} min={state['min_nodes']} "
        f"max={state['max_nodes']} nodes={state['node_count']}\n"
    )


def _wait(module: AnsibleModule, client: Any, parent: str, op: Any) -> None:
    deadline = time.monotonic() + module.params["timeout"]
    done = container_v1.Operation.Status.DONE
    while op.status != done:
        if time.monotonic() > deadline:
            module.fail_json(
                msg=f"operation {op.name} on {parent} is not done after {module.params['timeout']} s"
            )
        time.sleep(2)
        op = client.get_operation(name=f"{parent}/operations/{op.name}")
    if op.error and op.error.message:
        module.fail_json(msg=f"operation {op.name} failed: {op.error.message}")


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "project": {"type": "str", "required": True},
            "location": {"type": "str", "required": True},
            "cluster": {"type": "str", "required": True},
            "node_pool": {"type": "str", "default": "default-pool"},
            "min_nodes": {"type": "int", "required": True},
            "max_nodes": {"type": "int", "required": True},
            "node_count": {"type": "int"},
            "endpoint_url": {"type": "str"},
            "timeout": {"type": "int", "default": 300},
        },
        supports_check_mode=True,
    )
    if not HAS_SDK:
        module.fail_json(msg="google-cloud-container is required (pip install google-cloud-container)")
    p = module.params
    lo, hi, count = p["min_nodes"], p["max_nodes"], p["node_count"]
    if lo < 0 or hi < 1 or lo > hi:
        module.fail_json(
            msg=f"min_nodes={lo} max_nodes={hi}: need 0 <= min_nodes <= max_nodes and max_nodes >= 1"
        )
    if count is not None and not lo <= count <= hi:
        module.fail_json(msg=f"node_count={count} is outside min_nodes-max_nodes ({lo}-{hi})")
    parent = f"projects/{p['project']}/locations/{p['location']}"
    name = f"{parent}/clusters/{p['cluster']}/nodePools/{p['node_pool']}"
    label = f"{p['cluster']}/{p['node_pool']}"
    try:
        client = _client(p["endpoint_url"])
        before = _state(client.get_node_pool(name=name, timeout=60))
    except API_ERRORS as exc:
        module.fail_json(msg=f"cannot read node pool {name}: {exc}")
    want_count = count if count is not None else min(max(before["node_count"], lo), hi)
    after = {"min_nodes": lo, "max_nodes": hi, "node_count": want_count, "autoscaling": True}
    set_bounds = (before["autoscaling"], before["min_nodes"], before["max_nodes"]) != (True, lo, hi)
    set_size = want_count != before["node_count"]
    result: dict[str, Any] = {
        "changed": set_bounds or set_size,
        "before": before,
        "after": after,
        "operations": [],
        "diff": {
            "before": _text(label, before),
            "after": _text(label, after),
            "before_header": name,
            "after_header": name,
        },
    }
    if not result["changed"] or module.check_mode:
        module.exit_json(**result)
    try:
        if set_bounds:
            op = client.set_node_pool_autoscaling(
                request=container_v1.SetNodePoolAutoscalingRequest(
                    name=name,
                    autoscaling=container_v1.NodePoolAutoscaling(
                        enabled=True, min_node_count=lo, max_node_count=hi
                    ),
                ),
                timeout=60,
            )
            result["operations"].append(op.name)
            _wait(module, client, parent, op)
        if set_size:
            op = client.set_node_pool_size(
                request=container_v1.SetNodePoolSizeRequest(name=name, node_count=want_count), timeout=60
            )
            result["operations"].append(op.name)
            _wait(module, client, parent, op)
    except API_ERRORS as exc:
        module.fail_json(msg=f"cannot change node pool {name}: {exc}", before=before)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
