#!/usr/bin/python
"""Read the newest value of an Azure PostgreSQL flexible server's Azure Monitor metric (opsconsole's own).

Why this module exists: failover.yml's replica-lag gate (RPO) must read the replica lag of the database it
is about to promote, on every cloud. For Azure Database for PostgreSQL flexible server that is the
platform metric ``physical_replication_delay_in_seconds`` (aggregation Maximum), and azure.azcollection
has no module that reads metric values. This module calls the metrics batch API through the official
``azure-monitor-querymetrics`` ``MetricsClient``: with ``endpoint_url`` on a loopback address (the
opsconsole sandbox's local Azure Monitor) over plain http with a static sandbox token, otherwise
``https://<location>.metrics.monitor.azure.com`` (or the given https endpoint) with
``DefaultAzureCredential``. It is read-only: it never reports a change and runs unchanged in check mode.
Its answer has the shape of opsconsole_cloudwatch_value's (found, value, timestamp, age_s, datapoints).
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: opsconsole_azure_metric_value
short_description: Read the newest data point of an Azure PostgreSQL flexible server's platform metric
description:
  - Calls the Azure Monitor metrics batch API (C(metrics:getBatch)) for one metric of one flexible server
    over the last O(window) seconds at a one-minute grain and returns the newest point's value and age.
  - Read-only; never reports a change; supports check mode.
  - With O(endpoint_url) on a loopback address (the opsconsole sandbox) a static sandbox bearer token is sent
    over plain http; otherwise credentials come from C(DefaultAzureCredential) and the endpoint must be https.
options:
  subscription:
    description: The subscription id.
    type: str
    required: true
  resource_group:
    description: The server's resource group, for example C(rg-voltage-sa-east-1).
    type: str
    required: true
  server:
    description: The flexible server's name, for example C(pg-sa-east-1).
    type: str
    required: true
  location:
    description:
      - The server's Azure region, for example C(brazilsouth); names the regional metrics endpoint
        C(https://<location>.metrics.monitor.azure.com). Required without O(endpoint_url).
    type: str
    default: ""
  metric_name:
    description: The platform metric.
    type: str
    default: physical_replication_delay_in_seconds
  aggregation:
    description: The aggregation of each minute.
    type: str
    default: Maximum
    choices: [Average, Minimum, Maximum, Total, Count]
  window:
    description: How far back to look for a data point, in seconds.
    type: int
    default: 600
  endpoint_url:
    description: Base URL of the metrics endpoint (the opsconsole sandbox's local Azure Monitor). Empty or
      absent means the regional Azure endpoint of O(location).
    type: str
    default: ""
  timeout:
    description: Read timeout of the call, in seconds.
    type: float
    default: 20
  fail_on_missing:
    description: Fail when the window holds no data point (otherwise return O(value=null)).
    type: bool
    default: false
requirements:
  - azure-monitor-querymetrics
  - azure-identity (without a loopback O(endpoint_url))
author:
  - opsconsole
"""

EXAMPLES = r"""
- name: Read the replication delay of an Azure PostgreSQL read replica
  opsconsole_azure_metric_value:
    subscription: 00000000-0000-0000-0000-000000000000
    resource_group: rg-voltage-sa-east-1
    server: pg-sa-east-1
    location: brazilsouth
  register: lag

- name: The same against the opsconsole sandbox's local Azure Monitor
  opsconsole_azure_metric_value:
    subscription: 00000000-0000-4000-8000-00000000a2e0
    resource_group: rg-voltage-sa-east-1
    server: pg-sa-east-1
    endpoint_url: http://127.0.0.1:40125
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
  sample: 2.0
timestamp:
  description: The newest data point's time (ISO 8601, the start of its minute), or null.
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

import datetime  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.opsconsole_azure import SandboxCredential, is_loopback, require_https  # noqa: E402
from ansible.module_utils.opsconsole_metric import exit_with_newest  # noqa: E402

try:
    from azure.core.exceptions import AzureError, HttpResponseError
    from azure.monitor.querymetrics import MetricsClient

    HAS_SDK = True
except ImportError:  # reported by main()
    HAS_SDK = False

NAMESPACE = "Microsoft.DBforPostgreSQL/flexibleServers"


def _connection(module):
    """(endpoint, credential, per-call kwargs): the sandbox's loopback emulator or Azure with its defaults."""
    p = module.params
    endpoint = (p["endpoint_url"] or "").strip().rstrip("/")
    call = {"read_timeout": p["timeout"], "connection_timeout": min(10.0, p["timeout"])}
    if endpoint and is_loopback(endpoint):
        credential = SandboxCredential()
        call["enforce_https"] = False  # the local emulator only; never for a real endpoint
    else:
        if endpoint:
            require_https(module, endpoint)
        else:
            if not p["location"].strip():
                module.fail_json(msg="location (the server's Azure region, e.g. brazilsouth) is required "
                                     "without endpoint_url: it names the regional metrics endpoint")
            endpoint = f"https://{p['location'].strip()}.metrics.monitor.azure.com"
        try:
            from azure.identity import DefaultAzureCredential  # noqa: PLC0415
        except ImportError:
            module.fail_json(msg="reading Azure Monitor without a sandbox endpoint needs azure-identity")
        credential = DefaultAzureCredential()
    return endpoint, credential, call


def main():
    module = AnsibleModule(
        argument_spec=dict(
            subscription=dict(type="str", required=True),
            resource_group=dict(type="str", required=True),
            server=dict(type="str", required=True),
            location=dict(type="str", default=""),
            metric_name=dict(type="str", default="physical_replication_delay_in_seconds"),
            aggregation=dict(type="str", default="Maximum",
                             choices=["Average", "Minimum", "Maximum", "Total", "Count"]),
            window=dict(type="int", default=600),
            endpoint_url=dict(type="str", default=""),
            timeout=dict(type="float", default=20.0),
            fail_on_missing=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if not HAS_SDK:
        module.fail_json(msg="opsconsole_azure_metric_value needs the azure-monitor-querymetrics package on "
                             "the Python that runs the module")
    for name in ("subscription", "resource_group", "server"):
        if not p[name].strip():
            module.fail_json(msg=f"{name} must not be empty")
    if p["window"] < 60 or p["timeout"] <= 0:
        module.fail_json(msg="window must be at least 60 s (Azure metrics have a one-minute grain) and "
                             "timeout positive")
    endpoint, credential, call = _connection(module)
    resource_id = (f"/subscriptions/{p['subscription']}/resourceGroups/{p['resource_group']}"
                   f"/providers/{NAMESPACE}/{p['server']}")
    what = (f"{p['metric_name']} ({p['aggregation']}) of flexible server {p['server']} "
            f"in {p['resource_group']}")
    field = p["aggregation"].lower()
    now = datetime.datetime.now(datetime.UTC)
    try:
        client = MetricsClient(endpoint, credential, retry_total=3)
        results = client.query_resources(
            resource_ids=[resource_id],
            metric_namespace=NAMESPACE,
            metric_names=[p["metric_name"]],
            timespan=(now - datetime.timedelta(seconds=p["window"]), now + datetime.timedelta(seconds=60)),
            granularity=datetime.timedelta(minutes=1),
            aggregations=[p["aggregation"]],
            **call,
        )
    except HttpResponseError as e:
        code = getattr(getattr(e, "error", None), "code", None) or ""
        message = getattr(getattr(e, "error", None), "message", None) or e.message or str(e)
        module.fail_json(msg=f"Failed to read {what} from {endpoint}: HTTP {e.status_code} {code}: {message}",
                         status_code=e.status_code, error_code=code)
    except AzureError as e:
        module.fail_json(msg=f"Failed to read {what} from {endpoint}: {type(e).__name__}: {e}")
    points = []
    for result in results:
        for metric in result.metrics:
            if str(metric.name).lower() != p["metric_name"].lower():
                continue
            for series in metric.timeseries:
                for point in series.data:
                    value = getattr(point, field, None)
                    if value is not None and point.timestamp is not None:
                        points.append((point.timestamp, float(value)))
    exit_with_newest(module, points, now, what)


if __name__ == "__main__":
    main()
