"""The console's screens: the fleet (:mod:`.fleet`), changes, approvals and jobs (:mod:`.change`),
schedules and audit (:mod:`.records`), small dialogs (:mod:`.dialogs`), all built on
:class:`.base.ConsoleScreen`.

Which screen a name opens (the keys 1–6, ``go`` in the command palette) is the app's table,
``OpsConsoleApp.NAMED_SCREENS`` in :mod:`opsconsole.tui.app`; a screen reaches the app back only through
:class:`opsconsole.tui.host.ConsoleHost`, so nothing here imports the app.
"""
