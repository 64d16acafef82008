#!/usr/bin/python
"""Ansible module: make a Cloud SQL instance a standalone primary, or a read replica of a source again.

Why the project has its own: no google.cloud module promotes or demotes a Cloud SQL instance, and none can
be pointed at the local cloud. This one calls the real methods with google-api-python-client's
``sqladmin`` v1 (static discovery document):

* ``role: primary`` → ``instances.promoteReplica`` (a failover);
* ``role: replica`` → ``instances.demote`` with ``demoteContext.sourceRepresentativeInstanceName``: the API's
  way to make a standalone instance a read replica of an *external* server again (a failback whose source
  is on another cloud). The source is a source representation instance (``ON_PREMISES_INSTANCE``); with
  ``source_host`` the module creates it when missing. Cloud SQL has no method to make a standalone instance
  a replica of another Cloud SQL instance: that needs a new replica, and the module says so.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: opsconsole_cloudsql_role
short_description: Promote a Cloud SQL read replica, or demote a standalone instance to a replica
description:
  - O(role=primary) calls C(promoteReplica) on a read replica; nothing to do on a standalone instance.
  - O(role=replica) calls C(demote) (C(demoteContext.sourceRepresentativeInstanceName=source)) on a standalone
    instance; nothing to do on a replica of O(source). A replica of another source fails (promote it first).
  - Waits for each operation to be C(DONE). Idempotent; supports check mode and diff.
  - Credentials are Google's Application Default Credentials, or anonymous with O(endpoint_url).
options:
  project:
    description: The GCP project id.
    type: str
    required: true
  instance:
    description: The instance, e.g. C(pg-ap-south-1).
    type: str
    required: true
  role:
    description: The wanted role.
    type: str
    required: true
    choices: [primary, replica]
  source:
    description: With O(role=replica), the source representation instance of the external primary, e.g.
      C(src-pg-ap-southeast-1).
    type: str
  source_host:
    description: With O(role=replica), C(host:port) of the external primary; the source representation
      instance is created with it when it does not exist.
    type: str
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
- name: Fail over ap-south-1's database
  opsconsole_cloudsql_role:
    project: voltage-prod
    instance: pg-ap-south-1
    role: primary

- name: Make it a replica of ap-southeast-1 (on AWS) again
  opsconsole_cloudsql_role:
    project: voltage-prod
    instance: pg-ap-south-1
    role: replica
    source: src-pg-ap-southeast-1
    source_host: pg-ap-southeast-1.aws.voltage.internal:5432
"""

RETURN = r"""
before:
  description: The role before (primary, or replica of C(source)).
  type: dict
  returned: always
after:
  description: The role after (or that the change would give, in check mode).
  type: dict
  returned: always
"""

from typing import Any  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.opsconsole_cloudsql import (  # noqa: E402
    API_ERRORS,
    HAS_SQLADMIN,
    HttpError,
    describe,
    sqladmin,
    wait,
)



def _role(inst: dict[str, Any]) -> dict[str, Any]:
    if inst.get("instanceType") == "READ_REPLICA_INSTANCE":
        return {"role": "replica", "source": inst.get("masterInstanceName")}
    return {"role": "primary", "source": None}


def _text(instance: str, role: dict[str, Any]) -> str:
    if role["role"] == "primary":
        return f"{instance}: standalone primary\n"
    return f"{instance}: read replica of {role['source']}\n"


def _needs_source(module: AnsibleModule, sql: Any, project: str, source: str) -> bool:
    """Whether the source representation instance must be created first (fails on a wrong source)."""
    try:
        src = sql.instances().get(project=project, instance=source).execute()
    except HttpError as exc:
        if exc.status_code != 404:
            module.fail_json(msg=f"cannot read source instance {source}: {describe(exc)}")
        if not module.params["source_host"]:
            module.fail_json(
                msg=f"source instance {source} does not exist: give source_host (host:port of "
                "the external primary) to create it"
            )
        return True
    except API_ERRORS as exc:
        module.fail_json(msg=f"cannot read source instance {source}: {describe(exc)}")
    if src.get("instanceType") != "ON_PREMISES_INSTANCE":
        module.fail_json(
            msg=f"{source} is a {src.get('instanceType')}: Cloud SQL demotes an instance only to a "
            "replica of an external server (a source representation instance, "
            "ON_PREMISES_INSTANCE); re-create the replica of a Cloud SQL primary instead"
        )
    return False


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "project": {"type": "str", "required": True},
            "instance": {"type": "str", "required": True},
            "role": {"type": "str", "required": True, "choices": ["primary", "replica"]},
            "source": {"type": "str"},
            "source_host": {"type": "str"},
            "endpoint_url": {"type": "str"},
            "timeout": {"type": "int", "default": 1800},
        },
        required_if=[("role", "replica", ("source",))],
        supports_check_mode=True,
    )
    if not HAS_SQLADMIN:
        module.fail_json(msg="google-api-python-client is required (pip install google-api-python-client)")
    p = module.params
    project, instance, source = p["project"], p["instance"], p["source"]
    if source == instance:
        module.fail_json(msg=f"source={source}: an instance cannot replicate from itself")
    try:
        sql = sqladmin(p["endpoint_url"])
        inst = sql.instances().get(project=project, instance=instance).execute()
    except API_ERRORS as exc:
        module.fail_json(msg=f"cannot read Cloud SQL instance {instance}: {describe(exc)}")
    kind = inst.get("instanceType")
    if kind not in ("CLOUD_SQL_INSTANCE", "READ_REPLICA_INSTANCE"):
        module.fail_json(msg=f"{instance} is a {kind}, not a Cloud SQL primary or read replica")
    before = _role(inst)
    after = (
        {"role": "primary", "source": None}
        if p["role"] == "primary"
        else {"role": "replica", "source": source}
    )
    if p["role"] == "replica" and before["role"] == "replica" and before["source"] != source:
        module.fail_json(
            msg=f"{instance} is a read replica of {before['source']}, not of {source}: promote it "
            "first (role=primary), then demote it to a replica of the new source"
        )
    create_source = p["role"] == "replica" and before != after and _needs_source(module, sql, project, source)
    result: dict[str, Any] = {
        "changed": before != after,
        "before": before,
        "after": after,
        "diff": {
            "before": _text(instance, before),
            "after": _text(instance, after),
            "before_header": instance,
            "after_header": instance,
        },
    }
    if not result["changed"] or module.check_mode:
        module.exit_json(**result)
    try:
        if p["role"] == "primary":
            wait(
                module,
                sql,
                project,
                sql.instances().promoteReplica(project=project, instance=instance).execute(),
            )
        else:
            if create_source:
                body = {
                    "name": source,
                    "instanceType": "ON_PREMISES_INSTANCE",
                    "region": inst.get("region"),
                    "databaseVersion": inst.get("databaseVersion"),
                    "onPremisesConfiguration": {"hostPort": p["source_host"]},
                }
                wait(module, sql, project, sql.instances().insert(project=project, body=body).execute())
            request = {"demoteContext": {"sourceRepresentativeInstanceName": source}}
            wait(
                module,
                sql,
                project,
                sql.instances().demote(project=project, instance=instance, body=request).execute(),
            )
    except API_ERRORS as exc:
        module.fail_json(msg=f"cannot make {instance} a {p['role']}: {describe(exc)}", before=before)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
