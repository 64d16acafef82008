"""Web API calls with Slack's rate limits honoured.

slack_sdk does not retry a 429 unless a RetryHandler is added, and its handler sleeps inside whichever
thread made the call without telling anyone. Here a 429 is counted, its ``Retry-After`` is waited out
(the caller's thread: the message updater's, which has nothing better to do) and the call is tried
again, a bounded number of times. The token is the client's and never appears in a log line.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse

from bot import metrics

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
#: A Retry-After longer than this is not waited out inline: the call fails and is tried again later.
MAX_WAIT_S = 120.0


def retry_after(error: SlackApiError) -> float | None:
    """The seconds a 429 asks to wait, or ``None`` if ``error`` is not a 429."""
    response = error.response
    if getattr(response, "status_code", None) != 429:
        return None
    headers = {str(k).lower(): v for k, v in (getattr(response, "headers", None) or {}).items()}
    value = headers.get("retry-after")
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        return max(0.0, float(value)) if value is not None else 1.0
    except ValueError:
        return 1.0


class SlackCalls:
    """``call("chat.update", channel=…, ts=…, text=…, blocks=…)``: one Web API call, 429s waited out."""

    def __init__(self, client: WebClient, *, sleep: Callable[[float], Any] | None = None) -> None:
        self.client = client
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait

    def stop(self) -> None:
        self._stop.set()

    def call(self, method: str, **kwargs: Any) -> SlackResponse:
        """Raises:
        SlackApiError: Slack said no (other than a 429), or still 429 after :data:`MAX_ATTEMPTS`.
        """
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                response = self.client.api_call(method, json=kwargs)
            except SlackApiError as error:
                wait = retry_after(error)
                if wait is None or attempt == MAX_ATTEMPTS or wait > MAX_WAIT_S:
                    metrics.SLACK_CALLS.labels(method, "error").inc()
                    log.warning("slack %s failed: %s", method, error.response.get("error"))
                    raise
                metrics.RATE_LIMITED.labels(method).inc()
                log.info("slack %s rate-limited: waiting %.1f s (Retry-After)", method, wait)
                self._sleep(wait)
                continue
            metrics.SLACK_CALLS.labels(method, "ok").inc()
            return response
        raise AssertionError("unreachable")  # pragma: no cover
