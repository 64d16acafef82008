#!/usr/bin/python
"""Ansible module: make an Azure Database for PostgreSQL flexible server a standalone primary or a replica.

Why the project has its own: failover promotes a region's read replica, failback makes it a replica of the
old primary again, and ``azure.azcollection`` has no module for either that can be pointed at the local
cloud. This module calls the API through the official SDK (``azure-mgmt-postgresqlflexibleservers``) with an
optional ``endpoint_url``: on the sandbox the local cloud's ARM emulator with a static sandbox token;
without it, https://management.azure.com with ``DefaultAzureCredential``.

* ``role: primary`` promotes a read replica: ``PATCH`` with ``replica: {promoteMode: Standalone,
  promoteOption: Planned|Forced}`` (the promote of API versions 2023-06-01 and later).
* ``role: replica`` (failback): Azure has **no in-place demote** of a server to a replica. The module deletes
  the server and creates it again with ``createMode: Replica`` from ``source``: a full re-seed from the
  source; the writes the server took since its promotion are lost unless saved first (backups of a
  deleted flexible server stay restorable for its retention period). Its own read replicas are not
  touched (re-create them with opsconsole_azure_pg_replicas if Azure dropped them).
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: opsconsole_azure_pg_role
short_description: Promote an Azure PostgreSQL flexible server replica, or re-create a server as a replica
description:
  - O(role=primary) promotes a read replica to a standalone server (no change if it is not a replica).
  - O(role=replica) makes the server a read replica of O(source) (no change if it already is one of it):
    Azure cannot demote in place, so the server is deleted and created again with C(createMode=Replica)
    (a re-seed from the source; its data since the promotion is discarded).
  - Idempotent; supports check mode and diff.
  - With O(endpoint_url) on a loopback address (the opsconsole sandbox) a static sandbox bearer token is
    sent over plain http; otherwise credentials come from C(DefaultAzureCredential).
options:
  subscription:
    description: The subscription id.
    type: str
    required: true
  resource_group:
    description: The server's resource group, e.g. C(rg-voltage-sa-east-1).
    type: str
    required: true
  server:
    description: The flexible server, e.g. C(pg-sa-east-1).
    type: str
    required: true
  role:
    description: The role the server must have.
    type: str
    required: true
    choices: [primary, replica]
  source:
    description:
      - For O(role=replica), the primary to replicate from, as an ARM resource id
        (C(/subscriptions/.../resourceGroups/.../providers/Microsoft.DBforPostgreSQL/flexibleServers/NAME)).
    type: str
  promote_option:
    description:
      - For O(role=primary), C(planned) (waits for the replica to catch up) or C(forced) (at once, DR).
    type: str
    choices: [planned, forced]
    default: planned
  location:
    description: For O(role=replica), the location to create the server in when it does not exist (any more).
    type: str
  endpoint_url:
    description: An ARM endpoint other than https://management.azure.com (the sandbox's local cloud).
    type: str
    default: ""
requirements: [azure-mgmt-postgresqlflexibleservers, azure-identity]
author: opsconsole
"""

EXAMPLES = r"""
- name: Promote pg-sa-east-1 (failover)
  opsconsole_azure_pg_role:
    subscription: "{{ opsconsole_azure_subscription }}"
    resource_group: rg-voltage-sa-east-1
    server: pg-sa-east-1
    role: primary
    promote_option: forced

- name: Make pg-sa-east-1 a replica of pg-us-east-1 again (failback)
  opsconsole_azure_pg_role:
    subscription: "{{ opsconsole_azure_subscription }}"
    resource_group: rg-voltage-sa-east-1
    server: pg-sa-east-1
    role: replica
    source: >-
      /subscriptions/SUB/resourceGroups/rg-voltage-us-east-1/providers/Microsoft.DBforPostgreSQL/flexibleServers/pg-us-east-1
"""

RETURN = r"""
before:
  description: The server's C(role) (primary / replica / absent) and C(source) before the change.
  type: dict
  returned: always
after:
  description: The same after the change (in check mode, what the change would give).
  type: dict
  returned: always
recreated:
  description: Whether the server was deleted and created again as a replica (O(role=replica)).
  type: bool
  returned: always
"""

import re  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.opsconsole_azure import fail_azure, make_client  # noqa: E402

try:
    from azure.core.exceptions import HttpResponseError, ResourceNotFoundError, ServiceRequestError
    from azure.mgmt.postgresqlflexibleservers import PostgreSQLManagementClient

    HAS_SDK = True
except ImportError:  # reported by main()
    HAS_SDK = False


REPLICA_ROLES = ("asyncreplica", "geoasyncreplica")
SERVER_ID = re.compile(
    r"/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.DBforPostgreSQL/flexibleServers/[^/]+",
    re.IGNORECASE,
)


def view(server):
    if server is None:
        return {"role": "absent", "source": None}
    props = server.properties
    role = getattr(props, "replication_role", None) or "None"
    role = str(getattr(role, "value", role))  # the SDK gives an enum member for a known value
    if role.lower() in REPLICA_ROLES:
        return {"role": "replica", "source": props.source_server_resource_id}
    return {"role": "primary", "source": None}


def read(module, client, rg, name, missing_ok):
    try:
        return client.servers.get(rg, name)
    except ResourceNotFoundError:
        if missing_ok:
            return None
        module.fail_json(msg=f"flexible server {name} not found in resource group {rg}")
    except (HttpResponseError, ServiceRequestError) as exc:
        fail_azure(module, exc, f"cannot read the flexible server {name} (resource group {rg})")
    return None


def promote(module, client, rg, name, promote_option, where):
    option = "Forced" if promote_option == "forced" else "Planned"
    patch = {"properties": {"replica": {"promoteMode": "Standalone", "promoteOption": option}}}
    try:
        client.servers.begin_update(rg, name, patch).result()
    except (HttpResponseError, ServiceRequestError) as exc:
        fail_azure(module, exc, f"cannot promote the {where}")


def recreate(module, client, rg, name, server, source, location, where):
    """Azure's way to a replica: delete the server (if it exists) and create it with createMode Replica."""
    location = server.location if server is not None else location
    if not location:
        module.fail_json(msg=f"{where} does not exist: give location to create it as a replica")
    body = {"location": location, "properties": {"createMode": "Replica", "sourceServerResourceId": source}}
    if server is not None and server.sku is not None:
        body["sku"] = {"name": server.sku.name, "tier": server.sku.tier}
    if server is not None:
        try:
            client.servers.begin_delete(rg, name).result()
        except (HttpResponseError, ServiceRequestError) as exc:
            fail_azure(module, exc, f"cannot delete the {where} to re-create it as a replica")
    try:
        client.servers.begin_create_or_update(rg, name, body).result()
    except (HttpResponseError, ServiceRequestError) as exc:
        deleted = " (the server was deleted: run again to create it)" if server is not None else ""
        fail_azure(module, exc, f"cannot create the {where} as a replica of {source}{deleted}")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            subscription=dict(type="str", required=True),
            resource_group=dict(type="str", required=True),
            server=dict(type="str", required=True),
            role=dict(type="str", required=True, choices=["primary", "replica"]),
            source=dict(type="str"),
            promote_option=dict(type="str", default="planned", choices=["planned", "forced"]),
            location=dict(type="str"),
            endpoint_url=dict(type="str", default=""),
        ),
        required_if=[("role", "replica", ["source"])],
        supports_check_mode=True,
    )
    if not HAS_SDK:
        module.fail_json(
            msg="opsconsole_azure_pg_role needs the azure-mgmt-postgresqlflexibleservers package"
        )
    p = module.params
    rg, name, role = p["resource_group"], p["server"], p["role"]
    source = (p["source"] or "").strip()
    if role == "replica" and not SERVER_ID.fullmatch(source):
        module.fail_json(msg=f"source={source!r} must be the ARM id of a flexible server "
                             "(/subscriptions/SUB/resourceGroups/RG/providers/Microsoft.DBforPostgreSQL/"
                             "flexibleServers/NAME)")
    client = make_client(module, PostgreSQLManagementClient, p["subscription"], p["endpoint_url"])
    server = read(module, client, rg, name, missing_ok=role == "replica")
    before = view(server)
    where = f"flexible server {name} ({rg})"
    if role == "primary":
        after = {"role": "primary", "source": None}
    else:
        after = {"role": "replica", "source": source}
        if before["role"] == "replica" and (before["source"] or "").lower() == source.lower():
            after = before
    if before == after:
        module.exit_json(changed=False, before=before, after=after, recreated=False)
    recreated = role == "replica" and server is not None
    diff = {"before": before, "after": after, "before_header": where, "after_header": where}
    if module.check_mode:
        module.exit_json(changed=True, before=before, after=after, recreated=recreated, diff=diff)
    if role == "primary":
        promote(module, client, rg, name, p["promote_option"], where)
    else:
        recreate(module, client, rg, name, server, source, p["location"], where)
    done = view(read(module, client, rg, name, missing_ok=False))
    module.exit_json(changed=True, before=before, after=done, recreated=recreated, diff=diff)


if __name__ == "__main__":
    main()
