#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Promote an RDS read replica to a standalone (write) instance (opsconsole's own module).

Why this module exists: ``amazon.aws.rds_instance`` with ``read_replica: false`` promotes only when
``DescribeDBInstances`` lists ``StatusInfos`` for the instance. The real RDS does; moto (the sandbox's
AWS) never does, so there the module reports ``changed: false`` and calls nothing (measured: the replica
keeps its ``ReadReplicaSourceDBInstanceIdentifier`` and no ``PromoteReadReplica`` call is made). This
module decides from ``ReadReplicaSourceDBInstanceIdentifier`` instead, which both answer, and calls
``PromoteReadReplica`` itself. It is idempotent (a standalone instance is left alone), check-mode aware
(reports the change it would make, with a diff) and can wait until RDS reports the instance
standalone and available.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: opsconsole_rds_promote
short_description: Promote an RDS read replica to a standalone instance
description:
  - Calls C(PromoteReadReplica) when the instance still has a replication source
    (C(ReadReplicaSourceDBInstanceIdentifier)); does nothing when it has none.
  - Exists because M(amazon.aws.rds_instance) promotes only when C(StatusInfos) is listed, which the
    sandbox's moto never lists (the module is then a silent no-op there).
  - Supports check mode and diff mode.
options:
  db_instance_identifier:
    description: The instance to promote.
    type: str
    required: true
    aliases: [id]
  backup_retention_period:
    description: Backup retention (days) of the promoted instance; RDS keeps its own default when omitted.
    type: int
  wait:
    description:
      - Wait until RDS lists the instance as C(available) without a replication source.
      - Promotion takes minutes on AWS. Against moto the source stays listed until the sandbox's local
        cloud syncs, so the sandbox passes V(false) and verifies separately.
    type: bool
    default: true
  wait_timeout:
    description: How long to wait, in seconds.
    type: int
    default: 1200
author:
  - opsconsole
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Promote the Frankfurt replica
  opsconsole_rds_promote:
    region: eu-central-1
    db_instance_identifier: pg-eu-central-1
    wait: true
  register: promoted
"""

RETURN = r"""
promoted:
  description: Whether C(PromoteReadReplica) was called (or, in check mode, would be).
  returned: always
  type: bool
source_before:
  description: The replication source the instance had before (null if it had none).
  returned: always
  type: str
  sample: arn:aws:rds:eu-west-1:123456789012:db:pg-eu-west-1
instance:
  description: The instance as C(DescribeDBInstances) lists it after the call (snake_case keys).
  returned: always
  type: dict
"""

import time

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible.module_utils.common.dict_transformations import camel_dict_to_snake_dict

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry


def describe(module, client, ident):
    try:
        found = client.describe_db_instances(aws_retry=True, DBInstanceIdentifier=ident)["DBInstances"]
    except botocore.exceptions.ClientError as e:
        if e.response.get("Error", {}).get("Code") == "DBInstanceNotFound":
            module.fail_json(msg=f"RDS instance {ident} does not exist")
        module.fail_json_aws(e, msg=f"Failed to describe RDS instance {ident}")
    except botocore.exceptions.BotoCoreError as e:
        module.fail_json_aws(e, msg=f"Failed to describe RDS instance {ident}")
    return found[0]


def role_view(instance):
    source = instance.get("ReadReplicaSourceDBInstanceIdentifier")
    return {
        "db_instance_identifier": instance["DBInstanceIdentifier"],
        "role": "read_replica" if source else "standalone",
        "read_replica_source": source,
    }


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            db_instance_identifier=dict(type="str", required=True, aliases=["id"]),
            backup_retention_period=dict(type="int"),
            wait=dict(type="bool", default=True),
            wait_timeout=dict(type="int", default=1200),
        ),
        supports_check_mode=True,
    )
    ident = module.params["db_instance_identifier"]
    client = module.client("rds", retry_decorator=AWSRetry.jittered_backoff(retries=5))
    instance = describe(module, client, ident)
    source = instance.get("ReadReplicaSourceDBInstanceIdentifier")
    before = role_view(instance)
    if not source:
        module.exit_json(changed=False, promoted=False, source_before=None,
                         instance=camel_dict_to_snake_dict(instance))
    after = dict(before, role="standalone", read_replica_source=None)
    diff = {"before": before, "after": after}
    if module.check_mode:
        module.exit_json(changed=True, promoted=True, source_before=source, diff=diff,
                         instance=camel_dict_to_snake_dict(instance))
    params = {"DBInstanceIdentifier": ident}
    if module.params["backup_retention_period"] is not None:
        params["BackupRetentionPeriod"] = module.params["backup_retention_period"]
    try:
        client.promote_read_replica(aws_retry=True, **params)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
        module.fail_json_aws(e, msg=f"Failed to promote RDS read replica {ident} (source {source})")
    if module.params["wait"]:
        deadline = time.monotonic() + module.params["wait_timeout"]
        while True:
            instance = describe(module, client, ident)
            if not instance.get("ReadReplicaSourceDBInstanceIdentifier") and \
                    instance.get("DBInstanceStatus") == "available":
                break
            if time.monotonic() > deadline:
                module.fail_json(
                    msg=f"{ident}: promotion requested, but after {module.params['wait_timeout']} s "
                        f"RDS still lists status {instance.get('DBInstanceStatus')!r} and source "
                        f"{instance.get('ReadReplicaSourceDBInstanceIdentifier')!r}",
                    promoted=True, source_before=source,
                )
            time.sleep(10)
    else:
        instance = describe(module, client, ident)
    module.exit_json(changed=True, promoted=True, source_before=source, diff=diff,
                     instance=camel_dict_to_snake_dict(instance))


if __name__ == "__main__":
    main()
