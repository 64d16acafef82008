#!/usr/bin/python
"""Ansible module: set the number of read replicas of an Azure Database for PostgreSQL flexible server.

Why the project has its own: ``azure.azcollection`` has no module for flexible-server read replicas that
can be pointed at the local cloud (its ARM endpoint comes from a cloud environment profile and it needs a
real Azure AD login). This module calls the API through the official SDK
(``azure-mgmt-postgresqlflexibleservers``: ``servers.get``, ``replicas.list_by_server``,
``servers.begin_create_or_update`` with ``createMode: Replica``, ``servers.begin_delete``) with an optional
``endpoint_url``: on the sandbox the local cloud's ARM emulator with a static sandbox token; without it,
https://management.azure.com with ``DefaultAzureCredential``.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: opsconsole_azure_pg_replicas
short_description: Set the number of read replicas of an Azure PostgreSQL flexible server
description:
  - The module manages the read replicas named C(<server>-r<K>) (K = 1, 2, ...) in the server's resource
    group and location; other replicas of the server (e.g. another region's geo replica) are listed in
    C(others) and left alone.
  - Missing replicas are created with the lowest free K (C(createMode=Replica) from the server); extra ones
    are deleted, highest K first. Each operation is waited for.
  - Idempotent; supports check mode and diff.
  - Azure allows 5 read replicas per server; the service refuses more and the module fails with its message.
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
    description: The flexible server whose read replicas are set, e.g. C(pg-sa-east-1).
    type: str
    required: true
  replicas:
    description: The wanted number of C(<server>-r<K>) read replicas.
    type: int
    required: true
  endpoint_url:
    description: An ARM endpoint other than https://management.azure.com (the sandbox's local cloud).
    type: str
    default: ""
requirements: [azure-mgmt-postgresqlflexibleservers, azure-identity]
author: opsconsole
"""

EXAMPLES = r"""
- name: Two read replicas of pg-sa-east-1
  opsconsole_azure_pg_replicas:
    subscription: "{{ opsconsole_azure_subscription }}"
    resource_group: rg-voltage-sa-east-1
    server: pg-sa-east-1
    replicas: 2
    endpoint_url: "{{ opsconsole_azure_endpoint_url | default('') }}"
"""

RETURN = r"""
before:
  description: The C(<server>-r<K>) replicas before the change (names).
  type: list
  elements: str
  returned: always
after:
  description: The same after the change (in check mode, what the change would give).
  type: list
  elements: str
  returned: always
others:
  description: Other replicas of the server, not managed by this module.
  type: list
  elements: str
  returned: always
"""

import re  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.opsconsole_azure import fail_azure, make_client  # noqa: E402

try:
    from azure.core.exceptions import HttpResponseError, ServiceRequestError
    from azure.mgmt.postgresqlflexibleservers import PostgreSQLManagementClient

    HAS_SDK = True
except ImportError:  # reported by main()
    HAS_SDK = False


def replica_names(module, client, rg, server):
    try:
        listed = [r.name for r in client.replicas.list_by_server(rg, server)]
    except (HttpResponseError, ServiceRequestError) as exc:
        fail_azure(module, exc, f"cannot list the read replicas of {server} (resource group {rg})")
    pattern = re.compile(rf"{re.escape(server)}-r(\d+)", re.IGNORECASE)
    ours = sorted((int(m.group(1)), n) for n in listed if (m := pattern.fullmatch(n)))
    return [n for _, n in ours], sorted(n for n in listed if not pattern.fullmatch(n))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            subscription=dict(type="str", required=True),
            resource_group=dict(type="str", required=True),
            server=dict(type="str", required=True),
            replicas=dict(type="int", required=True),
            endpoint_url=dict(type="str", default=""),
        ),
        supports_check_mode=True,
    )
    if not HAS_SDK:
        module.fail_json(
            msg="opsconsole_azure_pg_replicas needs the azure-mgmt-postgresqlflexibleservers package"
        )
    p = module.params
    rg, name, want = p["resource_group"], p["server"], p["replicas"]
    if want < 0:
        module.fail_json(msg=f"replicas={want}: must be 0 or more")
    client = make_client(module, PostgreSQLManagementClient, p["subscription"], p["endpoint_url"])
    try:
        server = client.servers.get(rg, name)
    except (HttpResponseError, ServiceRequestError) as exc:
        fail_azure(module, exc, f"cannot read the flexible server {name} (resource group {rg})")
    ours, others = replica_names(module, client, rg, name)
    used = {int(n.rsplit("-r", 1)[1]) for n in ours}
    add, k = [], 1
    while len(ours) + len(add) < want:
        while k in used:
            k += 1
        used.add(k)
        add.append(f"{name}-r{k}")
    drop = ours[want:][::-1] if len(ours) > want else []
    planned = sorted([n for n in ours if n not in drop] + add, key=lambda n: int(n.rsplit("-r", 1)[1]))
    result = {"before": ours, "after": planned, "others": others}
    if not add and not drop:
        module.exit_json(changed=False, **result)
    where = f"read replicas of {name} ({rg})"
    diff = {"before": {"replicas": len(ours), "names": ours}, "after": {"replicas": want, "names": planned},
            "before_header": where, "after_header": where}
    if module.check_mode:
        module.exit_json(changed=True, diff=diff, **result)
    for replica in add:
        body = {"location": server.location,
                "properties": {"createMode": "Replica", "sourceServerResourceId": server.id}}
        try:
            client.servers.begin_create_or_update(rg, replica, body).result()
        except (HttpResponseError, ServiceRequestError) as exc:
            fail_azure(module, exc, f"cannot create the read replica {replica} of {name}")
    for replica in drop:
        try:
            client.servers.begin_delete(rg, replica).result()
        except (HttpResponseError, ServiceRequestError) as exc:
            fail_azure(module, exc, f"cannot delete the read replica {replica} of {name}")
    ours, others = replica_names(module, client, rg, name)
    module.exit_json(changed=True, diff=diff, before=result["before"], after=ours, others=others)


if __name__ == "__main__":
    main()
