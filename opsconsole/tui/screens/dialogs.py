"""Small modal dialogs: a confirmation whose default (focused) button is Cancel, a one-line prompt (the
reason of a rejection), and the help screen listing the keys that work where you are."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static


class ConfirmScreen(ModalScreen[bool]):
    """Ask before a destructive step. Cancel has the focus: Enter alone never confirms."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str, confirm: str = "Confirm", *, danger: bool = True) -> None:
        super().__init__(classes="dialog")
        self.question = question
        self.confirm_label = confirm
        self.danger = danger

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box"):
            yield Static(self.question, classes="dialog-text")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel", variant="primary")
                yield Button(self.confirm_label, id="confirm", variant="error" if self.danger else "success")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm")

    def action_cancel(self) -> None:
        self.dismiss(False)


class PromptScreen(ModalScreen[str | None]):
    """One line of text (e.g. why a request is rejected); Escape gives ``None``."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str, placeholder: str = "") -> None:
        super().__init__(classes="dialog")
        self.question = question
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box"):
            yield Label(self.question)
            yield Input(placeholder=self.placeholder, id="answer")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            self.notify("a reason is required", severity="warning")
            return
        self.dismiss(text)

    def action_cancel(self) -> None:
        self.dismiss(None)


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,question_mark,q", "close", "Close")]

    def __init__(self, bindings: Iterable[tuple[str, str]]) -> None:
        super().__init__(classes="dialog")
        self.lines = list(bindings)

    def compose(self) -> ComposeResult:
        keys = "\n".join(f"  {key:<14} {text}" for key, text in self.lines)
        with Vertical(classes="dialog-box help"):
            yield Static(
                "[b]Keys here[/b]\n" + keys + "\n\n[b]Everywhere[/b]\n"
                "  ctrl+p         command palette: 'scale checkout in eu-west-1 to 12',\n"
                "                 'failover eu-west-1 to eu-central-1', 'stop staging', 'approve ID',\n"
                "                 'reject ID reason', 'region us-east-1', 'as bob' (sandbox)\n"
                "  :              command line: :nodes :jobs :findings :region eu-west-1 :q\n"
                "  /              filter the table in view (shown under it; escape clears it)\n"
                "  o  O           sort by the next column (▼ ▲ in its header) / reverse\n"
                "  up down j k    move; pgup pgdn, g G first / last row; enter opens\n"
                "  [  ]           previous / next tab of a region (or tab to the tabs, then left right)\n"
                "  y              copy the selected id to the clipboard\n"
                "  m a   ' a      bookmark the selected region, workload or cluster as a / jump to it\n"
                "                 (' alone lists the bookmarks; :marks, :delmarks a)\n"
                "  ctrl+r         refresh now (also while reconnecting)\n"
                "  escape         back    1-6  fleet findings approvals jobs schedules audit    q  quit"
            )

    def action_close(self) -> None:
        self.dismiss(None)


class CommandLine(ModalScreen[str | None]):
    """The ``:`` command line (k9s style) at the bottom of the screen: Enter runs, Escape closes.

    The app runs what was typed (:func:`opsconsole.tui.commands.run_colon`)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    CommandLine { align: left bottom; background: $background 0%; }
    CommandLine > Input { dock: bottom; margin-bottom: 1; width: 100%; border: tall $accent; }
    """

    def compose(self) -> ComposeResult:
        yield Input(
            placeholder=":nodes :jobs :findings :region eu-west-1 :q — Enter runs, Escape closes",
            id="command-line",
        )

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip().lstrip(":"))

    def action_cancel(self) -> None:
        self.dismiss(None)


class DetailScreen(ModalScreen[None]):
    """One record in full (an audit entry: every field of its data, nothing cut); Escape or Enter
    closes, ``y`` copies its id."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,enter,q", "close", "Close"),
        Binding("y", "copy", "Copy id"),
    ]

    def __init__(self, title: str, body: str, copy_id: str) -> None:
        super().__init__(classes="dialog")
        self.heading = title
        self.body = body
        self.copy_id = copy_id

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box help", id="detail"):
            yield Static(
                f"[b]{escape(self.heading)}[/b]\n\n{escape(self.body)}\n\n"
                "[dim]escape closes · y copies the id[/dim]"
            )

    def action_close(self) -> None:
        self.dismiss(None)

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self.copy_id)
        self.notify(f"copied {self.copy_id}", title="clipboard", timeout=3)
