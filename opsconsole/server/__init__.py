"""The ops server: the one authority the faces (TUI, CLI, Slack) talk to over HTTP ``/api/v1``.

:mod:`.service` implements :class:`~opsconsole.core.api.OpsApi` for an authenticated caller on an
:class:`~opsconsole.core.facade.OpsCore`; :mod:`.cache` keeps one fleet refresh loop and fans events out;
:mod:`.auth` turns credentials into people; :mod:`.app` is the FastAPI application; :mod:`.embedded` runs
it in-process on a private Unix socket for ``make run``; :mod:`.main` runs it as ``opsconsole server``.
"""
