#!/usr/bin/python
"""Ansible module: set the autoscaler bounds (and optionally the node count) of an AKS agent pool.

Why the project has its own: ``azure.azcollection.azure_rm_aksagentpool`` cannot be pointed at the local
cloud (its ARM endpoint comes from a cloud environment profile and it needs a real Azure AD login), so the
sandbox could not run it. This module calls the same API through the official SDK
(``azure-mgmt-containerservice``, ``agent_pools.get`` / ``begin_create_or_update``) with an optional
``endpoint_url``: on the sandbox it talks to the local cloud's ARM emulator with a static sandbox token;
without it, to https://management.azure.com with ``DefaultAzureCredential``.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: opsconsole_aks_agentpool
short_description: Set min / max (and optionally count) of an AKS agent pool with autoscaling on
description:
  - Reads the agent pool, then C(PUT)s it back with C(enableAutoScaling=true), O(min_count), O(max_count)
    and a node count: O(count) when given, else the current count clamped into O(min_count)-O(max_count).
  - Idempotent (no call when the pool already has those values); supports check mode and diff.
  - With O(endpoint_url) on a loopback address (the opsconsole sandbox) a static sandbox bearer token is
    sent over plain http; otherwise credentials come from C(DefaultAzureCredential) (environment, managed
    identity, Azure CLI login...).
options:
  subscription:
    description: The subscription id.
    type: str
    required: true
  resource_group:
    description: The cluster's resource group, e.g. C(rg-voltage-us-west-2).
    type: str
    required: true
  cluster:
    description: The AKS cluster (managed cluster) name.
    type: str
    required: true
  pool:
    description: The agent pool name.
    type: str
    default: nodepool1
  min_count:
    description: The cluster autoscaler's minimum node count.
    type: int
    required: true
  max_count:
    description: The cluster autoscaler's maximum node count.
    type: int
    required: true
  count:
    description: The node count to set now (within O(min_count)-O(max_count)); the autoscaler moves it again.
    type: int
  endpoint_url:
    description: An ARM endpoint other than https://management.azure.com (the sandbox's local cloud).
    type: str
    default: ""
requirements: [azure-mgmt-containerservice, azure-identity]
author: opsconsole
"""

EXAMPLES = r"""
- name: AKS node pool of aks-usw2-prod between 8 and 40 nodes
  opsconsole_aks_agentpool:
    subscription: "{{ opsconsole_azure_subscription }}"
    resource_group: rg-voltage-us-west-2
    cluster: aks-usw2-prod
    min_count: 8
    max_count: 40
    endpoint_url: "{{ opsconsole_azure_endpoint_url | default('') }}"
"""

RETURN = r"""
before:
  description: The pool's C(min_count), C(max_count), C(count) and C(enable_auto_scaling) before the change.
  type: dict
  returned: always
after:
  description: The same after the change (in check mode, what the change would give).
  type: dict
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.opsconsole_azure import fail_azure, make_client  # noqa: E402

try:
    from azure.core.exceptions import HttpResponseError, ServiceRequestError
    from azure.mgmt.containerservice import ContainerServiceClient

    HAS_SDK = True
except ImportError:  # reported by main()
    HAS_SDK = False


def view(pool):
    return {
        "min_count": pool.min_count,
        "max_count": pool.max_count,
        "count": pool.count,
        "enable_auto_scaling": bool(pool.enable_auto_scaling),
    }


def main():
    module = AnsibleModule(
        argument_spec=dict(
            subscription=dict(type="str", required=True),
            resource_group=dict(type="str", required=True),
            cluster=dict(type="str", required=True),
            pool=dict(type="str", default="nodepool1"),
            min_count=dict(type="int", required=True),
            max_count=dict(type="int", required=True),
            count=dict(type="int"),
            endpoint_url=dict(type="str", default=""),
        ),
        supports_check_mode=True,
    )
    if not HAS_SDK:
        module.fail_json(msg="opsconsole_aks_agentpool needs the azure-mgmt-containerservice package")
    p = module.params
    lo, hi, count = p["min_count"], p["max_count"], p["count"]
    if lo < 0 or hi < 1 or lo > hi:
        module.fail_json(
            msg=f"min_count={lo} max_count={hi}: need 0 <= min_count <= max_count and max_count >= 1"
        )
    if count is not None and not lo <= count <= hi:
        module.fail_json(msg=f"count={count} is outside min_count-max_count {lo}-{hi}")
    where = f"agent pool {p['pool']} of AKS cluster {p['cluster']} (resource group {p['resource_group']})"
    client = make_client(module, ContainerServiceClient, p["subscription"], p["endpoint_url"])
    try:
        pool = client.agent_pools.get(p["resource_group"], p["cluster"], p["pool"])
    except (HttpResponseError, ServiceRequestError) as exc:
        fail_azure(module, exc, f"cannot read the {where}")
    before = view(pool)
    current = pool.count or 0
    after = {
        "min_count": lo,
        "max_count": hi,
        "count": count if count is not None else max(lo, min(hi, current)),
        "enable_auto_scaling": True,
    }
    if before == after:
        module.exit_json(changed=False, before=before, after=after)
    diff = {"before": before, "after": after, "before_header": where, "after_header": where}
    if module.check_mode:
        module.exit_json(changed=True, before=before, after=after, diff=diff)
    pool.enable_auto_scaling = True
    pool.min_count, pool.max_count, pool.count = lo, hi, after["count"]
    try:
        done = client.agent_pools.begin_create_or_update(
            p["resource_group"], p["cluster"], p["pool"], pool
        ).result()
    except (HttpResponseError, ServiceRequestError) as exc:
        fail_azure(module, exc, f"cannot update the {where}")
    module.exit_json(changed=True, before=before, after=view(done), diff=diff,
                     provisioning_state=done.provisioning_state)


if __name__ == "__main__":
    main()
