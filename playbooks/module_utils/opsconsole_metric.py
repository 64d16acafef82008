"""What the project's metric-reading modules answer: the newest data point of a window, the same way.

Why it exists: the failover playbooks gate a promotion on replica lag read from CloudWatch
(``opsconsole_cloudwatch_value``), Cloud Monitoring (``opsconsole_gcp_metric_value``) or Azure Monitor
(``opsconsole_azure_metric_value``). The tasks that read the result (``found``, ``value``, ``timestamp``,
``age_s``, ``datapoints``) must not care which cloud answered, so the three modules end through this one
function.
"""

from __future__ import annotations

import datetime


def exit_with_newest(module, points, now, what):
    """exit_json with the newest of ``points`` ((timestamp, value) pairs), or ``found=false`` when there
    is none (fail_json instead when the module's ``fail_on_missing`` is set)."""
    p = module.params
    if not points:
        if p["fail_on_missing"]:
            module.fail_json(msg=f"no data point of {what} in the last {p['window']} s")
        module.exit_json(changed=False, found=False, value=None, timestamp=None, age_s=None, datapoints=0)
    ts, value = max(points, key=lambda tv: tv[0])
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=datetime.timezone.utc)
    module.exit_json(
        changed=False,
        found=True,
        value=value,
        timestamp=ts.astimezone(datetime.timezone.utc).isoformat(),
        age_s=round(max(0.0, (now - ts).total_seconds()), 3),
        datapoints=len(points),
    )
