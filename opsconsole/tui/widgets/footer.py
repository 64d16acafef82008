"""The console's footer: one line that always keeps help, the screen keys and quit, whatever the width.

Textual's ``Footer`` lays the keys out in binding-chain order (the focused table's keys first) and cuts
the line at the terminal's edge, so at 80×24 it lost ``?``, ``2``–``4`` and ``q`` (issue 16, defect 5).
This footer writes the essentials first at the right-hand end (``? help  1-6 screens  : cmd  ^p palette
q quit``) and fills what is left, left to right, with the keys of the focused widget and the screen;
keys that do not fit are left out (``?`` lists them all). The digits are written once as a range.
"""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.screen import Screen
from textual.widget import Widget

#: The app's keys that are always shown, in this order, and how they are written.
ESSENTIALS = ("question_mark", "digits", "colon", "ctrl+p", "q")
_DIGITS = tuple("123456")


class ConsoleFooter(Widget):
    """One line of keys; see the module docstring."""

    DEFAULT_CSS = """
    ConsoleFooter {
        dock: bottom;
        height: 1;
        background: $footer-background;
        color: $footer-foreground;
    }
    """

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, _screen: Screen[object]) -> None:
        self.refresh()

    def _key(self, binding: Binding) -> str:
        return self.app.get_key_display(binding)

    def parts(self) -> tuple[list[tuple[str, str, bool]], list[tuple[str, str, bool]]]:
        """(contextual keys, essential keys) as (key, description, enabled)."""
        active = self.screen.active_bindings
        essentials: dict[str, tuple[str, str, bool]] = {}
        context: list[tuple[int, str, str, bool]] = []
        seen_actions: set[str] = set()
        digits = [k for k in _DIGITS if k in active]
        if digits:
            essentials["digits"] = (f"{digits[0]}-{digits[-1]}", "screens", True)
        for key, (node, binding, enabled, _tooltip) in active.items():
            if key in _DIGITS:
                continue
            if key in ESSENTIALS:
                description = {"question_mark": "help", "q": "quit", "ctrl+p": "palette", "colon": "cmd"}
                essentials[key] = (self._key(binding), description.get(key, binding.description), enabled)
                continue
            if not binding.show or not binding.description or binding.action in seen_actions:
                continue
            seen_actions.add(binding.action)
            # The screen's own keys (scale, approve…) first, then back / filter, then the table's.
            rank = 2 if node is not self.screen else 1 if binding.action in ("back", "filter") else 0
            context.append((rank, self._key(binding), binding.description, enabled))
        context.sort(key=lambda part: part[0])
        ordered = [essentials[k] for k in ESSENTIALS if k in essentials]
        return [part[1:] for part in context], ordered

    def render(self) -> Text:
        context, essentials = self.parts()
        width = self.size.width
        narrow = width < 100  # the essentials shrink to their keys (help and quit keep their word)
        right = Text()
        for key, description, enabled in essentials:
            right.append(f" {key}", style="bold" if enabled else "dim")
            if not narrow or description in ("help", "quit"):
                right.append(f" {description}", style="" if enabled else "dim")
            right.append(" ")
        left = Text()
        room = width - right.cell_len - 1
        for key, description, enabled in context:
            piece = len(key) + len(description) + 3
            if left.cell_len + piece > room:
                continue
            left.append(f" {key}", style="bold" if enabled else "dim")
            left.append(f" {description} ", style="" if enabled else "dim")
        gap = max(1, width - left.cell_len - right.cell_len)
        return Text.assemble(left, " " * gap, right)
