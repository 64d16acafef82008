#!/usr/bin/python
"""Ansible module: set the number of Cloud SQL read replicas of an instance.

Why the project has its own: google.cloud.gcp_sql_instance manages one instance at a time and cannot be
pointed at another endpoint than Google's, so it could not run against the local cloud, and "have N
replicas" is not one of its states. This one reads the instance's ``replicaNames`` with
google-api-python-client's ``sqladmin`` v1 (static discovery document), then inserts replicas named
``<instance>-r<K>`` (the lowest free K, ``masterInstanceName`` = the instance, its tier and region) or
deletes the highest-numbered ones, waiting for each operation.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: opsconsole_cloudsql_replicas
short_description: Set the number of read replicas of a Cloud SQL instance
description:
  - Counts the read replicas of O(instance) (its C(replicaNames)) and adds or removes replicas named
    C(<instance>-r<K>) until there are O(replicas). New replicas take the instance's region, database
    version and tier; removal deletes the highest K first (replicas with other names last).
  - Waits for each operation to be C(DONE). Idempotent; supports check mode and diff.
  - Credentials are Google's Application Default Credentials, or anonymous with O(endpoint_url).
options:
  project:
    description: The GCP project id.
    type: str
    required: true
  instance:
    description: The primary (or cascading) instance, e.g. C(pg-ap-south-1).
    type: str
    required: true
  replicas:
    description: The wanted number of read replicas (0 or more; Cloud SQL allows at most 10).
    type: int
    required: true
  endpoint_url:
    description: Base URL of a Cloud SQL Admin API other than Google's (the sandbox's emulator).
    type: str
  timeout:
    description: Seconds to wait for an operation to be done.
    type: int
    default: 1800
requirements: [google-api-python-client]
author: opsconsole
"""

EXAMPLES = r"""
- name: Two read replicas for ap-south-1's database
  opsconsole_cloudsql_replicas:
    project: voltage-prod
    instance: pg-ap-south-1
    replicas: 2
"""

RETURN = r"""
before:
  description: The replica names before the change.
  type: list
  returned: always
after:
  description: The replica names after the change (or that the change would give, in check mode).
  type: list
  returned: always
"""

import re  # noqa: E402
from typing import Any  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.opsconsole_cloudsql import (  # noqa: E402
    API_ERRORS,
    HAS_SQLADMIN,
    describe,
    sqladmin,
    wait,
)

MAX_REPLICAS = 10


def _order(instance: str, names: list[str]) -> list[str]:
    """Replica names, ours by K first, others after (removal takes from the end)."""

    def key(name: str) -> tuple[int, int, str]:
        m = re.fullmatch(rf"{re.escape(instance)}-r(\d+)", name)
        return (0, int(m.group(1)), "") if m else (1, 0, name)

    return sorted(names, key=key)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "project": {"type": "str", "required": True},
            "instance": {"type": "str", "required": True},
            "replicas": {"type": "int", "required": True},
            "endpoint_url": {"type": "str"},
            "timeout": {"type": "int", "default": 1800},
        },
        supports_check_mode=True,
    )
    if not HAS_SQLADMIN:
        module.fail_json(msg="google-api-python-client is required (pip install google-api-python-client)")
    p = module.params
    project, instance, want = p["project"], p["instance"], p["replicas"]
    if not 0 <= want <= MAX_REPLICAS:
        module.fail_json(
            msg=f"replicas={want} is outside 0-{MAX_REPLICAS} (Cloud SQL's read replicas per instance)"
        )
    try:
        sql = sqladmin(p["endpoint_url"])
        primary = sql.instances().get(project=project, instance=instance).execute()
    except API_ERRORS as exc:
        module.fail_json(msg=f"cannot read Cloud SQL instance {instance}: {describe(exc)}")
    if primary.get("instanceType") == "ON_PREMISES_INSTANCE":
        module.fail_json(
            msg=f"{instance} is a source representation instance: it cannot have Cloud SQL replicas"
        )
    before = _order(instance, list(primary.get("replicaNames") or []))
    adds: list[str] = []
    k = 1
    while len(before) + len(adds) < want:
        name = f"{instance}-r{k}"
        if name not in before:
            adds.append(name)
        k += 1
    removes = list(reversed(before[want:]))
    after = _order(instance, [n for n in before if n not in removes] + adds)
    result: dict[str, Any] = {
        "changed": bool(adds or removes),
        "before": before,
        "after": after,
        "diff": {
            "before": f"{instance}: {len(before)} read replicas\n" + "".join(f"  {n}\n" for n in before),
            "after": f"{instance}: {len(after)} read replicas\n" + "".join(f"  {n}\n" for n in after),
            "before_header": instance,
            "after_header": instance,
        },
    }
    if not result["changed"] or module.check_mode:
        module.exit_json(**result)
    settings = primary.get("settings") or {}
    try:
        for name in adds:
            body: dict[str, Any] = {
                "name": name,
                "masterInstanceName": instance,
                "region": primary.get("region"),
                "databaseVersion": primary.get("databaseVersion"),
                "settings": {"tier": settings.get("tier")} if settings.get("tier") else {},
            }
            wait(module, sql, project, sql.instances().insert(project=project, body=body).execute())
        for name in removes:
            wait(module, sql, project, sql.instances().delete(project=project, instance=name).execute())
    except API_ERRORS as exc:
        module.fail_json(msg=f"cannot set {instance} to {want} read replicas: {describe(exc)}", before=before)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
