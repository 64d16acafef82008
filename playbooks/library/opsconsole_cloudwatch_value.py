#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Read the latest value of one CloudWatch metric (opsconsole's own module).

Why this module exists: the failover gates read a metric's *value* (Route53 ``HealthCheckStatus``, RDS
``ReplicaLag``), and the amazon.aws collection has no module that does (``cloudwatch_metric_alarm_info``
reads alarms, not data points). It is read-only, so it never reports a change and runs unchanged in
check mode. Connection settings are amazon.aws's own (``region``, ``endpoint_url``, ``profile``,
credentials from the environment), so the same task runs against real AWS and the sandbox.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: opsconsole_cloudwatch_value
short_description: Read the latest data point of a CloudWatch metric
description:
  - Calls C(GetMetricData) for one metric over the last O(window) seconds and returns the newest data
    point's value and age.
  - Read-only; never reports a change; supports check mode.
  - The amazon.aws collection has no module that reads metric values, hence this one.
options:
  namespace:
    description: Metric namespace, for example C(AWS/RDS) or C(AWS/Route53).
    type: str
    required: true
  metric_name:
    description: Metric name, for example C(ReplicaLag) or C(HealthCheckStatus).
    type: str
    required: true
  dimensions:
    description: Dimension name to value.
    type: dict
    default: {}
  statistic:
    description: Statistic of each period (C(Average), C(Minimum), C(Maximum), C(Sum), C(SampleCount) or C(pNN)).
    type: str
    default: Average
  period:
    description: Period of each data point, in seconds.
    type: int
    default: 60
  window:
    description: How far back to look for a data point, in seconds.
    type: int
    default: 600
  fail_on_missing:
    description: Fail when the window holds no data point (otherwise return O(value=null)).
    type: bool
    default: false
author:
  - opsconsole
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Read the Route53 health check status of a region (published in us-east-1)
  opsconsole_cloudwatch_value:
    region: us-east-1
    namespace: AWS/Route53
    metric_name: HealthCheckStatus
    dimensions:
      HealthCheckId: 0c7f3d4e-1111-2222-3333-444455556666
    statistic: Minimum
  register: health

- name: Read the replica lag of an RDS instance
  opsconsole_cloudwatch_value:
    region: eu-central-1
    endpoint_url: http://127.0.0.1:4566
    namespace: AWS/RDS
    metric_name: ReplicaLag
    dimensions:
      DBInstanceIdentifier: pg-eu-central-1
    statistic: Maximum
    fail_on_missing: true
  register: lag
"""

RETURN = r"""
found:
  description: Whether a data point was found in the window.
  returned: always
  type: bool
value:
  description: The newest data point's value (null when none was found).
  returned: always
  type: float
  sample: 1.0
timestamp:
  description: The newest data point's time (ISO 8601), or null.
  returned: always
  type: str
  sample: "2026-11-26T12:04:00+00:00"
age_s:
  description: Seconds between the newest data point and now, or null.
  returned: always
  type: float
datapoints:
  description: How many data points the window held.
  returned: always
  type: int
"""

import datetime

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible.module_utils.opsconsole_metric import exit_with_newest
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            namespace=dict(type="str", required=True),
            metric_name=dict(type="str", required=True),
            dimensions=dict(type="dict", default={}),
            statistic=dict(type="str", default="Average"),
            period=dict(type="int", default=60),
            window=dict(type="int", default=600),
            fail_on_missing=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if p["period"] <= 0 or p["window"] <= 0:
        module.fail_json(msg="period and window must be positive numbers of seconds")
    client = module.client("cloudwatch", retry_decorator=AWSRetry.jittered_backoff(retries=5))
    now = datetime.datetime.now(datetime.timezone.utc)
    query = {
        "Id": "m0",
        "MetricStat": {
            "Metric": {
                "Namespace": p["namespace"],
                "MetricName": p["metric_name"],
                "Dimensions": [{"Name": k, "Value": str(v)} for k, v in sorted(p["dimensions"].items())],
            },
            "Period": p["period"],
            "Stat": p["statistic"],
        },
        "ReturnData": True,
    }
    what = f"{p['namespace']} {p['metric_name']} {p['dimensions']} ({p['statistic']})"
    try:
        answer = client.get_metric_data(
            aws_retry=True,
            MetricDataQueries=[query],
            StartTime=now - datetime.timedelta(seconds=p["window"]),
            # An end a period ahead: a data point stamped while this request travels (a publisher
            # replacing its gauge of the current minute) is not missed; nothing exists past now anyway.
            EndTime=now + datetime.timedelta(seconds=p["period"]),
            ScanBy="TimestampDescending",
        )
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
        module.fail_json_aws(e, msg=f"Failed to read {what}")
    results = answer.get("MetricDataResults") or [{}]
    points = [(ts, float(value)) for ts, value in zip(results[0].get("Timestamps", []),
                                                      results[0].get("Values", []))]
    exit_with_newest(module, points, now, what)

if __name__ == "__main__":
    main()
