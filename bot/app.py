"""Build the Bolt app from :class:`~bot.settings.BotSettings` and register the listeners.

HTTP mode verifies every request with the signing secret (Bolt answers 401 to a bad signature or a
timestamp more than 5 minutes off; it keeps no replay cache, so idempotency is the listeners' job).
Socket Mode needs no public URL: the app-level token opens a WebSocket to Slack. Either way the Web API
is reached through one :class:`~slack_sdk.WebClient`, pointed at ``SLACK_API_URL`` when it is set (a
local Slack API server in tests and rehearsals).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from urllib.error import URLError

from slack_bolt import App
from slack_bolt.error import BoltError
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot import logs
from bot.listeners import register_all
from bot.runtime import BotRuntime
from bot.settings import BotConfigError, BotSettings
from opsconsole.core.facade import OpsCore

#: Bolt's threads only run listeners up to their ack (the work goes to the runtime's pool), so a few dozen
#: serve bursts of clicks and commands without queueing an ack behind slow work.
LISTENER_THREADS = 32


def web_client(settings: BotSettings) -> WebClient:
    if settings.api_url:
        return WebClient(token=settings.bot_token, base_url=settings.api_url)
    return WebClient(token=settings.bot_token)


def build_app(settings: BotSettings, client: WebClient) -> App:
    """The Bolt app, without listeners (see :func:`build`).

    Raises:
        BotConfigError: Slack refused the bot token, or the Web API cannot be reached.
    """
    logs.configure()
    # slack_sdk's DEBUG log shows request bodies; keep it at INFO whatever the root level is.
    logging.getLogger("slack_sdk").setLevel(max(logging.INFO, logging.getLogger("slack_sdk").level))
    where = settings.api_url or "https://slack.com/api/"
    if settings.socket_mode:
        check_app_token(settings, client)
    try:
        return App(
            client=client,
            signing_secret=settings.signing_secret or "",
            request_verification_enabled=not settings.socket_mode,
            process_before_response=False,
            listener_executor=ThreadPoolExecutor(LISTENER_THREADS, thread_name_prefix="bolt"),
            name="opsconsole",
        )
    except SlackApiError as error:  # auth.test said no
        raise BotConfigError(f"SLACK_BOT_TOKEN: Slack refused it ({error.response.get('error')})") from None
    except BoltError as error:
        raise BotConfigError(f"SLACK_BOT_TOKEN: {str(error).splitlines()[0]}") from None
    except (URLError, OSError) as error:
        raise BotConfigError(f"cannot reach the Slack Web API at {where}: {error}") from None


def check_app_token(settings: BotSettings, client: WebClient) -> None:
    """Socket Mode: ask Slack for a connection URL with the app-level token before anything starts, so
    that a revoked or wrong token is one message and exit 2, not a traceback (the URL is not used).

    Raises:
        BotConfigError: Slack refused the token, or cannot be reached.
    """
    where = settings.api_url or "https://slack.com/api/"
    try:
        client.apps_connections_open(app_token=str(settings.app_token))
    except SlackApiError as error:
        code = error.response.get("error")
        raise BotConfigError(
            f"SLACK_APP_TOKEN: Slack refused it ({code}); make a new app-level token with the "
            "connections:write scope (Basic Information → App-Level Tokens)"
        ) from None
    except (URLError, OSError) as error:
        raise BotConfigError(f"cannot reach the Slack Web API at {where}: {error}") from None


def build(settings: BotSettings, core: OpsCore) -> tuple[App, BotRuntime]:
    """The app with every listener, and the runtime they share (not started)."""
    client = web_client(settings)
    app = build_app(settings, client)
    runtime = BotRuntime(settings, core, client)
    register_all(app, runtime)
    return app, runtime
