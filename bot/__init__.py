"""The Slack face of opsconsole, on slack-bolt.

The bot is a face like the terminal: it asks the core (:class:`~opsconsole.core.facade.OpsCore`) for the
fleet's status and hands every change to the core's approval pipeline, so that a request filed in Slack
can be approved in the terminal and the other way round. Layout:

* :mod:`bot.settings` reads the environment (tokens, signing secret, Web API URL) and refuses bad values;
* :mod:`bot.app` builds the Bolt app and registers the listeners of :mod:`bot.listeners` by surface;
* :mod:`bot.runtime` holds what the listeners share (the core, the outbox, a work pool, the metrics);
* :mod:`bot.blocks` renders Block Kit from plain data (pure functions, snapshot-tested);
* :mod:`bot.progress` keeps each request's message up to date, coalesced and rate-limit aware;
* :mod:`bot.notices` delivers the core's notices (findings, shutdown warnings) to their channels;
* :mod:`bot.server` serves ``/slack/events``, ``/healthz`` and ``/metrics`` over HTTP.

``opsconsole bot`` (:mod:`opsconsole.cli_bot`) runs it.
"""
