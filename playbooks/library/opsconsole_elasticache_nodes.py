#!/usr/bin/python
"""Ansible module: set the node count of an ElastiCache (Redis) replication group.

Why the project has its own: neither amazon.aws nor community.aws has a module that changes a replication
group's replica count (community.aws.elasticache manages standalone cache clusters). This one calls the
real API for it, IncreaseReplicaCount / DecreaseReplicaCount, with boto3.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: opsconsole_elasticache_nodes
short_description: Set the number of nodes of an ElastiCache Redis replication group (cluster mode disabled)
description:
  - Reads the replication group, then calls C(IncreaseReplicaCount) or C(DecreaseReplicaCount) with
    C(ApplyImmediately=true) so that the group has O(nodes) nodes (one primary and O(nodes) - 1 replicas).
  - Idempotent (no call when the group already has O(nodes) nodes); supports check mode and diff.
  - Credentials come from the environment (boto3's standard chain).
  - ElastiCache allows 0-5 replicas per shard, so 1-6 nodes; AWS refuses more and the module fails with its message.
options:
  replication_group_id:
    description: The replication group, e.g. C(redis-eu-west-1).
    type: str
    required: true
  nodes:
    description: The wanted number of nodes, primary included.
    type: int
    required: true
  region:
    description: The AWS region of the group.
    type: str
    required: true
  endpoint_url:
    description: An ElastiCache endpoint other than AWS's (the sandbox's moto).
    type: str
requirements: [boto3]
author: opsconsole
"""

EXAMPLES = r"""
- name: Six Redis nodes in eu-west-1
  opsconsole_elasticache_nodes:
    replication_group_id: redis-eu-west-1
    nodes: 6
    region: eu-west-1
"""

RETURN = r"""
before:
  description: Nodes before the change.
  type: int
  returned: always
after:
  description: Nodes after the change (or that the change would give, in check mode).
  type: int
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

try:
    import boto3  # noqa: E402
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: E402
except ImportError:  # pragma: no cover - reported by the module
    boto3 = None


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "replication_group_id": {"type": "str", "required": True},
            "nodes": {"type": "int", "required": True},
            "region": {"type": "str", "required": True},
            "endpoint_url": {"type": "str"},
        },
        supports_check_mode=True,
    )
    if boto3 is None:
        module.fail_json(msg="boto3 is required")
    p = module.params
    group_id, nodes = p["replication_group_id"], p["nodes"]
    if nodes < 1:
        module.fail_json(msg=f"nodes must be at least 1, got {nodes}")
    client = boto3.client("elasticache", region_name=p["region"], endpoint_url=p["endpoint_url"] or None)
    try:
        groups = client.describe_replication_groups(ReplicationGroupId=group_id)["ReplicationGroups"]
    except (BotoCoreError, ClientError) as exc:
        module.fail_json(msg=f"cannot read replication group {group_id}: {exc}")
    before = len(groups[0].get("MemberClusters", []))
    result = {
        "changed": before != nodes,
        "before": before,
        "after": nodes,
        "diff": {
            "before": f"{group_id}: {before} nodes\n",
            "after": f"{group_id}: {nodes} nodes\n",
            "before_header": group_id,
            "after_header": group_id,
        },
    }
    if before == nodes or module.check_mode:
        module.exit_json(**result)
    call = client.increase_replica_count if nodes > before else client.decrease_replica_count
    try:
        call(ReplicationGroupId=group_id, NewReplicaCount=nodes - 1, ApplyImmediately=True)
    except (BotoCoreError, ClientError) as exc:
        module.fail_json(msg=f"cannot set {group_id} to {nodes} nodes: {exc}", before=before)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
