#!/usr/bin/python
"""Read the newest value of one Cloud Monitoring metric of a Cloud SQL instance (opsconsole's own module).

Why this module exists: failover.yml's replica-lag gate (RPO) must read the replica lag of the database it
is about to promote, on every cloud. For Cloud SQL that is the metric
``cloudsql.googleapis.com/database/replication/replica_lag``, and the google.cloud collection has no module
that reads metric values. This module calls ``MetricService.ListTimeSeries`` through the official
``google-cloud-monitoring`` client (gRPC): with ``endpoint`` (the opsconsole sandbox's local Cloud
Monitoring emulator, ``host:port``) over an insecure channel without credentials, otherwise the real
``monitoring.googleapis.com`` with Application Default Credentials. It is read-only: it never reports a
change and runs unchanged in check mode. Its answer has the shape of opsconsole_cloudwatch_value's
(found, value, timestamp, age_s, datapoints), so one gate reads all three clouds.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: opsconsole_gcp_metric_value
short_description: Read the newest data point of a Cloud SQL instance's Cloud Monitoring metric
description:
  - Calls C(ListTimeSeries) for one metric of one Cloud SQL instance (resource C(cloudsql_database),
    C(database_id) C(<project>:<instance>)) over the last O(window) seconds and returns the newest point's
    value and age (the newest of all series, when the metric has several).
  - Read-only; never reports a change; supports check mode.
  - With O(endpoint) (a local emulator) the client talks gRPC over an insecure channel with no credentials;
    without it, C(monitoring.googleapis.com) with Application Default Credentials.
options:
  project:
    description: The project id that holds the instance and its metrics.
    type: str
    required: true
  instance:
    description: The Cloud SQL instance name, for example C(pg-ap-south-1).
    type: str
    required: true
  metric_type:
    description: The metric type.
    type: str
    default: cloudsql.googleapis.com/database/replication/replica_lag
  window:
    description: How far back to look for a data point, in seconds.
    type: int
    default: 600
  endpoint:
    description:
      - C(host:port) of a local Cloud Monitoring emulator (the opsconsole sandbox), reached without TLS or
        credentials. Empty or absent means the real service.
    type: str
    default: ""
  timeout:
    description: Deadline of the call, in seconds.
    type: float
    default: 20
  fail_on_missing:
    description: Fail when the window holds no data point (otherwise return O(value=null)).
    type: bool
    default: false
requirements:
  - google-cloud-monitoring
author:
  - opsconsole
"""

EXAMPLES = r"""
- name: Read the replica lag of a Cloud SQL read replica
  opsconsole_gcp_metric_value:
    project: voltage-prod
    instance: pg-ap-south-1
  register: lag

- name: The same against the opsconsole sandbox's local Cloud Monitoring
  opsconsole_gcp_metric_value:
    project: voltage-sandbox
    instance: pg-ap-south-1
    endpoint: 127.0.0.1:40123
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
  sample: 2.5
timestamp:
  description: The newest data point's end time (ISO 8601), or null.
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
from ansible.module_utils.opsconsole_metric import exit_with_newest  # noqa: E402

try:
    import grpc
    from google.api_core import exceptions as gexc
    from google.auth.exceptions import GoogleAuthError
    from google.cloud import monitoring_v3
    from google.cloud.monitoring_v3.services.metric_service.transports import MetricServiceGrpcTransport

    HAS_SDK = True
except ImportError:  # reported by main()
    HAS_SDK = False


def _client(endpoint):
    """The MetricServiceClient: a local emulator over an insecure channel, or Google with ADC."""
    if endpoint:
        channel = grpc.insecure_channel(endpoint)
        return monitoring_v3.MetricServiceClient(transport=MetricServiceGrpcTransport(channel=channel))
    return monitoring_v3.MetricServiceClient()


def _value(point):
    """A point's number, whatever its value type (DOUBLE, INT64 or a distribution's mean)."""
    kind = point.value._pb.WhichOneof("value")
    if kind == "double_value":
        return float(point.value.double_value)
    if kind == "int64_value":
        return float(point.value.int64_value)
    if kind == "bool_value":
        return 1.0 if point.value.bool_value else 0.0
    if kind == "distribution_value":
        return float(point.value.distribution_value.mean)
    return None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            project=dict(type="str", required=True),
            instance=dict(type="str", required=True),
            metric_type=dict(type="str", default="cloudsql.googleapis.com/database/replication/replica_lag"),
            window=dict(type="int", default=600),
            endpoint=dict(type="str", default=""),
            timeout=dict(type="float", default=20.0),
            fail_on_missing=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if not HAS_SDK:
        module.fail_json(msg="opsconsole_gcp_metric_value needs the google-cloud-monitoring package on the "
                             "Python that runs the module")
    for name in ("project", "instance"):
        if not p[name].strip():
            module.fail_json(msg=f"{name} must not be empty")
    if p["window"] <= 0 or p["timeout"] <= 0:
        module.fail_json(msg="window and timeout must be positive numbers of seconds")
    endpoint = (p["endpoint"] or "").strip()
    if "://" in endpoint:
        module.fail_json(msg=f"endpoint must be host:port (gRPC), not a URL: got {endpoint}")
    database_id = f"{p['project']}:{p['instance']}"
    what = f"{p['metric_type']} of Cloud SQL {database_id}"
    where = endpoint or "monitoring.googleapis.com"
    now = datetime.datetime.now(datetime.UTC)
    interval = monitoring_v3.TimeInterval(
        start_time=now - datetime.timedelta(seconds=p["window"]),
        # A little ahead: a point stamped while this request travels is not missed.
        end_time=now + datetime.timedelta(seconds=60),
    )
    flt = (f'metric.type = "{p["metric_type"]}" AND resource.type = "cloudsql_database" '
           f'AND resource.labels.database_id = "{database_id}"')
    try:
        client = _client(endpoint)
        pages = client.list_time_series(
            request={
                "name": f"projects/{p['project']}",
                "filter": flt,
                "interval": interval,
                "view": monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.FULL,
            },
            timeout=p["timeout"],
        )
        points = []
        for series in pages:
            for point in series.points:
                value = _value(point)
                if value is not None:
                    points.append((point.interval.end_time, value))
    except (gexc.GoogleAPIError, GoogleAuthError) as e:
        code = getattr(e, "code", None)
        status = getattr(code, "name", None) or str(code or type(e).__name__)
        detail = getattr(e, "message", None) or e
        module.fail_json(msg=f"Failed to read {what} from {where}: {status}: {detail}")
    except grpc.RpcError as e:  # pragma: no cover - api_core wraps these
        module.fail_json(msg=f"Failed to read {what} from {where}: {e}")
    exit_with_newest(module, points, now, what)


if __name__ == "__main__":
    main()
