#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Make a standalone RDS instance a read replica of another again, by re-seeding it (opsconsole's own module).

Why this module exists: RDS has no in-place demotion. A replica promoted by a failover stays a
standalone instance until it is rebuilt: the only way back is to delete it and create it again as a
read replica of the (restored) primary with ``CreateDBInstanceReadReplica``. ``amazon.aws.rds_instance``
can do each half, but not as one idempotent step: it would not take the instance's own read replicas
along (RDS promotes a deleted source's replicas to standalone instances, leaving more write primaries
than before) and it cannot tell "already a replica of that source" from "a replica of another one".

What it does, in order: the instance's own read replicas (identifiers matching ``cascade_pattern``,
default ``^<id>-r[0-9]+$``) are deleted first, then the instance (with a final snapshot when
``final_snapshot_identifier`` is given: the writes it took since its promotion are otherwise lost), then
it is created again as a read replica of ``source_db_instance_identifier`` (cross-region by ARN, with the
same instance class, subnet group and Multi-AZ setting), and its read replicas are created again under
it (cascading replicas, as RDS for PostgreSQL allows). Idempotent: an instance that already replicates
from the source is left alone; one that replicates from another source is refused. Check mode reports
the re-seed it would do with a diff.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: opsconsole_rds_demote
short_description: Re-seed a standalone RDS instance as a read replica of another instance
description:
  - RDS cannot demote a standalone instance. This module deletes it (and its own read replicas) and
    creates it again as a read replica of O(source_db_instance_identifier), then re-creates its read
    replicas under it.
  - Does nothing when the instance already replicates from the source; fails when it replicates from
    another source.
  - Supports check mode and diff mode.
options:
  db_instance_identifier:
    description: The standalone instance to make a read replica again.
    type: str
    required: true
    aliases: [id]
  source_db_instance_identifier:
    description: The write primary it must replicate from (its identifier in O(source_region)).
    type: str
    required: true
  source_region:
    description: AWS region of the source; the instance's own region when omitted.
    type: str
  cascade_pattern:
    description:
      - Regular expression of the instance's own read replicas, re-created under it after the re-seed.
        Other instances listed as its replicas are left as they are and returned in RV(left_replicas).
      - Defaults to C(^<db_instance_identifier>-r[0-9]+$).
    type: str
  final_snapshot_identifier:
    description: Snapshot taken of the instance before it is deleted; no snapshot when omitted.
    type: str
  wait:
    description:
      - Wait for each deletion and creation to finish (minutes on AWS). Against the sandbox's moto every
        call is immediate, so the sandbox passes V(false).
    type: bool
    default: true
  wait_timeout:
    description: How long to wait for each step, in seconds.
    type: int
    default: 3600
author:
  - opsconsole
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Make Frankfurt a replica of Ireland again (failback)
  opsconsole_rds_demote:
    region: eu-central-1
    db_instance_identifier: pg-eu-central-1
    source_region: eu-west-1
    source_db_instance_identifier: pg-eu-west-1
    final_snapshot_identifier: pg-eu-central-1-before-reseed-20261126t0300
"""

RETURN = r"""
reseeded:
  description: Whether the instance was (in check mode, would be) deleted and created again as a replica.
  returned: always
  type: bool
source_arn:
  description: ARN of the source the instance replicates from after the call.
  returned: always
  type: str
cascade_replicas:
  description: The instance's own read replicas, re-created under it.
  returned: always
  type: list
  elements: str
left_replicas:
  description: Other instances listed as its replicas, left as they are (on AWS they become standalone
    when their source is deleted).
  returned: always
  type: list
  elements: str
instance:
  description: The instance as C(DescribeDBInstances) lists it after the call (snake_case keys).
  returned: always
  type: dict
"""

import re
import time

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible.module_utils.common.dict_transformations import camel_dict_to_snake_dict

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry

_ARN = re.compile(r"^arn:aws[a-z-]*:rds:([a-z0-9-]+):\d+:db:(.+)$")


def describe(module, client, ident, *, missing_ok=False):
    try:
        found = client.describe_db_instances(aws_retry=True, DBInstanceIdentifier=ident)["DBInstances"]
    except botocore.exceptions.ClientError as e:
        if e.response.get("Error", {}).get("Code") == "DBInstanceNotFound":
            if missing_ok:
                return None
            module.fail_json(msg=f"RDS instance {ident} does not exist")
        module.fail_json_aws(e, msg=f"Failed to describe RDS instance {ident}")
    except botocore.exceptions.BotoCoreError as e:
        module.fail_json_aws(e, msg=f"Failed to describe RDS instance {ident}")
    return found[0] if found else None


def name_of(ident):
    """The instance name of an identifier or ARN, and the ARN's region (None for a bare name)."""
    m = _ARN.match(ident or "")
    return (m.group(2), m.group(1)) if m else (ident, None)


def wait_until(module, what, check):
    if not module.params["wait"]:
        return
    deadline = time.monotonic() + module.params["wait_timeout"]
    while not check():
        if time.monotonic() > deadline:
            module.fail_json(msg=f"timed out after {module.params['wait_timeout']} s waiting for {what}")
        time.sleep(15)


def call(module, what, fn, **params):
    try:
        return fn(aws_retry=True, **params)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
        module.fail_json_aws(e, msg=f"Failed to {what}")


def delete(module, client, ident, snapshot=None):
    params = {"DBInstanceIdentifier": ident}
    if snapshot:
        params["FinalDBSnapshotIdentifier"] = snapshot
    else:
        params["SkipFinalSnapshot"] = True
    call(module, f"delete RDS instance {ident}", client.delete_db_instance, **params)
    wait_until(module, f"{ident} to be deleted", lambda: describe(module, client, ident, missing_ok=True) is None)


def available(module, client, ident):
    found = describe(module, client, ident, missing_ok=True)
    return found is not None and found.get("DBInstanceStatus") == "available"


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            db_instance_identifier=dict(type="str", required=True, aliases=["id"]),
            source_db_instance_identifier=dict(type="str", required=True),
            source_region=dict(type="str"),
            cascade_pattern=dict(type="str"),
            final_snapshot_identifier=dict(type="str"),
            wait=dict(type="bool", default=True),
            wait_timeout=dict(type="int", default=3600),
        ),
        supports_check_mode=True,
    )
    p = module.params
    ident = p["db_instance_identifier"]
    retry = AWSRetry.jittered_backoff(retries=5)
    client = module.client("rds", retry_decorator=retry)
    region = module.region
    source_region = p["source_region"] or region
    source_client = client if source_region == region else module.client(
        "rds", retry_decorator=retry, region=source_region)
    source_name = p["source_db_instance_identifier"]
    if source_name == ident and source_region == region:
        module.fail_json(msg=f"{ident} cannot replicate from itself")
    source = describe(module, source_client, source_name)
    source_arn = source["DBInstanceArn"]
    cross_region = source_region != region

    instance = describe(module, client, ident)
    current = instance.get("ReadReplicaSourceDBInstanceIdentifier")
    pattern = re.compile(p["cascade_pattern"] or rf"^{re.escape(ident)}-r[0-9]+$")
    listed = [name_of(r) for r in instance.get("ReadReplicaDBInstanceIdentifiers", [])]
    cascade = sorted((n for n, r in listed if (r is None or r == region) and pattern.match(n)),
                     key=lambda n: (len(n), n))
    left = sorted(n if r is None else f"{n} ({r})" for n, r in listed
                  if not ((r is None or r == region) and pattern.match(n)))
    if current:
        cur_name, cur_region = name_of(current)
        if cur_name == source_name and (cur_region or region) == source_region:
            module.exit_json(changed=False, reseeded=False, source_arn=source_arn, cascade_replicas=cascade,
                             left_replicas=left, instance=camel_dict_to_snake_dict(instance))
        module.fail_json(msg=f"{ident} is a read replica of {current}, not of {source_name} ({source_region}): "
                             "it is re-seeded only from a standalone instance; promote it first")
    before = {"db_instance_identifier": ident, "role": "standalone", "read_replica_source": None,
              "read_replicas": cascade}
    after = dict(before, role="read_replica", read_replica_source=source_arn)
    diff = {"before": before, "after": after}
    result = dict(reseeded=True, source_arn=source_arn, cascade_replicas=cascade, left_replicas=left, diff=diff)
    if left:
        module.warn(f"{ident} also lists {', '.join(left)} as read replicas: they are left as they are "
                    "(on AWS, deleting their source makes them standalone instances)")
    if module.check_mode:
        module.exit_json(changed=True, instance=camel_dict_to_snake_dict(instance), **result)

    classes = {n: describe(module, client, n)["DBInstanceClass"] for n in cascade}
    for name in sorted(cascade, key=lambda n: (len(n), n), reverse=True):
        delete(module, client, name)
    delete(module, client, ident, p["final_snapshot_identifier"])
    params = {
        "DBInstanceIdentifier": ident,
        "SourceDBInstanceIdentifier": source_arn if cross_region else source_name,
        "DBInstanceClass": instance["DBInstanceClass"],
        "MultiAZ": bool(instance.get("MultiAZ")),
    }
    subnet_group = (instance.get("DBSubnetGroup") or {}).get("DBSubnetGroupName")
    if cross_region:
        params["SourceRegion"] = source_region  # botocore signs the PreSignedUrl RDS needs
        if subnet_group:
            params["DBSubnetGroupName"] = subnet_group  # only allowed for a cross-region replica
    call(module, f"create {ident} as a read replica of {source_arn}", client.create_db_instance_read_replica,
         **params)
    wait_until(module, f"{ident} to be available", lambda: available(module, client, ident))
    for name in cascade:
        call(module, f"create {name} as a read replica of {ident}", client.create_db_instance_read_replica,
             DBInstanceIdentifier=name, SourceDBInstanceIdentifier=ident, DBInstanceClass=classes[name])
    for name in cascade:
        wait_until(module, f"{name} to be available", lambda name=name: available(module, client, name))
    module.exit_json(changed=True, instance=camel_dict_to_snake_dict(describe(module, client, ident)), **result)


if __name__ == "__main__":
    main()
