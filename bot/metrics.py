"""Prometheus metrics of the bot, on a registry of its own (served at ``/metrics``).

What an operator of the bot wants to see: how fast Slack gets its ack (Slack gives up after 3 s), how
many payloads of each kind arrive and how many are replays, and how the bot fares against Slack's rate
limits.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

ACK_SECONDS = Histogram(
    "opsconsole_bot_http_seconds",
    "Time to answer a request on /slack/events (the ack Slack waits for).",
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 3.0, 10.0),
)
PAYLOADS = Counter(
    "opsconsole_bot_payloads_total", "Slack payloads handled, by kind.", ["kind"], registry=REGISTRY
)
DUPLICATES = Counter(
    "opsconsole_bot_duplicates_total",
    "Retried or replayed payloads ignored, by kind.",
    ["kind"],
    registry=REGISTRY,
)
SLACK_CALLS = Counter(
    "opsconsole_bot_slack_calls_total",
    "Web API calls made, by method and outcome.",
    ["method", "outcome"],
    registry=REGISTRY,
)
RATE_LIMITED = Counter(
    "opsconsole_bot_rate_limited_total",
    "Web API calls answered 429, by method.",
    ["method"],
    registry=REGISTRY,
)
