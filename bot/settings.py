"""The bot's settings, from the environment, checked once at start.

Slack hands an app three secrets: the bot token (``xoxb-…``, every Web API call), the signing secret
(HTTP mode: proves a request came from Slack) and an app-level token (``xapp-…``, Socket Mode). They come
from the environment only, never from a file in the repository, and never reach a log: the dataclass
hides them from ``repr`` and every message about a bad value names the variable, not its content.

Tuning knobs (all optional) live here too so that tests and replicas configure the bot the same way.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlparse

from opsconsole.core.errors import UsageError


class BotConfigError(UsageError):
    """A setting is missing or malformed: the bot does not start (exit 2)."""

    title = "bot settings"


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    text = env.get(name)
    if text is None or text == "":
        return default
    try:
        value = float(text)
    except ValueError:
        raise BotConfigError(f"{name}: expected a number, found {text!r}") from None
    if not low <= value <= high:
        raise BotConfigError(f"{name}: expected a number from {low:g} to {high:g}, found {text!r}")
    return value


@dataclass(frozen=True)
class BotSettings:
    """What the bot needs to talk to Slack; secrets are kept out of ``repr``."""

    bot_token: str = field(repr=False)
    signing_secret: str | None = field(default=None, repr=False)
    app_token: str | None = field(default=None, repr=False)
    #: The Web API base URL (ends with ``/``); ``None`` talks to Slack.
    api_url: str | None = None
    #: At most one ``chat.update`` per message per this many seconds.
    update_interval_s: float = 5.0
    #: How often the store is polled for requests moved by other processes (and expiries).
    poll_s: float = 2.0
    #: How often the fleet is read for findings and notices are delivered.
    notice_s: float = 30.0
    #: The first retry delay of a failed approval post (doubling, at most 5 minutes).
    retry_s: float = 5.0
    #: The largest request body /slack/events accepts (Slack's payloads are a few kB).
    max_body: int = 1_000_000

    @property
    def socket_mode(self) -> bool:
        return self.app_token is not None

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> BotSettings:
        """Read ``SLACK_BOT_TOKEN`` (always), ``SLACK_APP_TOKEN`` (Socket Mode) or ``SLACK_SIGNING_SECRET``
        (HTTP), ``SLACK_API_URL`` (optional) and the ``OPSCONSOLE_BOT_*`` knobs.

        Raises:
            BotConfigError: a setting is missing or malformed (the message names it, never its value).
        """
        env = os.environ if env is None else env
        bot_token = env.get("SLACK_BOT_TOKEN", "").strip()
        if not bot_token:
            raise BotConfigError(
                "SLACK_BOT_TOKEN is not set: copy the Bot User OAuth Token (xoxb-…) from the app's "
                "OAuth & Permissions page"
            )
        if not bot_token.startswith("xoxb-"):
            raise BotConfigError("SLACK_BOT_TOKEN: expected a bot token starting with xoxb-")
        app_token = env.get("SLACK_APP_TOKEN", "").strip() or None
        if app_token is not None and not app_token.startswith("xapp-"):
            raise BotConfigError("SLACK_APP_TOKEN: expected an app-level token starting with xapp-")
        secret = env.get("SLACK_SIGNING_SECRET", "").strip() or None
        if app_token is None and secret is None:
            raise BotConfigError(
                "SLACK_SIGNING_SECRET is not set: HTTP mode verifies every request with it (Basic "
                "Information → Signing Secret); or set SLACK_APP_TOKEN for Socket Mode"
            )
        api_url = env.get("SLACK_API_URL", "").strip() or None
        if api_url is not None:
            parsed = urlparse(api_url)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise BotConfigError(
                    "SLACK_API_URL: expected an http(s) URL such as https://slack.com/api/, "
                    f"found {api_url!r}"
                )
            api_url = api_url.rstrip("/") + "/"
        return cls(
            bot_token=bot_token,
            signing_secret=secret,
            app_token=app_token,
            api_url=api_url,
            update_interval_s=_number(env, "OPSCONSOLE_BOT_UPDATE_INTERVAL_S", 5.0, 0.0, 600.0),
            poll_s=_number(env, "OPSCONSOLE_BOT_POLL_S", 2.0, 0.1, 600.0),
            notice_s=_number(env, "OPSCONSOLE_BOT_NOTICE_S", 30.0, 0.5, 86_400.0),
            retry_s=_number(env, "OPSCONSOLE_BOT_RETRY_S", 5.0, 0.1, 3600.0),
            max_body=int(_number(env, "OPSCONSOLE_BOT_MAX_BODY", 1_000_000, 1024, 100_000_000)),
        )
