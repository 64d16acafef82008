"""Bookmarks of regions, workloads and clusters in the console, vim style: ``m`` then a letter bookmarks
what is selected, ``'`` then a letter jumps back to it — after a restart too.

Why: an SRE watches the same few places (checkout in eu-west-1's EKS cluster, the region that pages most)
and should not walk the overview → region → tab → row path each time. Marks are per person: they are kept
in ``bookmarks.json`` under the opsconsole home (:func:`opsconsole.core.paths.opsconsole_home`), written
whole (a temporary file renamed over it). A file that cannot be read or parsed never stops the console:
it says so in a notification, starts with no bookmarks, and the bad file is kept aside as
``bookmarks.json.bad`` when a new bookmark is written.

What a bookmark names (:func:`target_of` reads it from the screen in view):

* on the overview, the focused region (card or compact row): jumps to that region;
* on a region screen, the selected row of the tab in view: a workload (Workloads tab), a cluster or a
  node group (Nodes tab), or the region on that tab (databases, caches, traffic, chart): jumps to the
  region's tab with that row selected;
* on a pods screen, that pod list (cluster, workload): jumps to it.

The keys (``m``, ``'``) are the app's bindings; they call :meth:`ConsoleBookmarks.ask_mark` and
:meth:`ConsoleBookmarks.ask_jump`. The ``:`` command line has ``:marks`` (the list), ``:mark a`` and
``:delmarks a`` (vim's words); the palette lists every bookmark as "Bookmark 'a: …".
"""

from __future__ import annotations

import json
import logging
import os
import string
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

from rich.markup import escape
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from opsconsole.core.errors import OpsError
from opsconsole.core.paths import opsconsole_home
from opsconsole.tui.widgets.table import FleetTable

if TYPE_CHECKING:
    from textual.app import App
    from textual.screen import Screen

    from opsconsole.tui.host import ConsoleHost

log = logging.getLogger(__name__)

FILE_NAME = "bookmarks.json"
#: The letters a bookmark may be called (vim's marks: a–z and A–Z).
LETTERS = frozenset(string.ascii_letters)
KINDS = ("region", "workload", "cluster", "nodegroup", "pods")
#: The region tab a bookmark of that kind opens.
_TAB_OF_KIND = {"workload": "workloads", "cluster": "nodes", "nodegroup": "nodes"}
#: How long a jump waits for the row it names to be shown (the fleet may still be loading).
SELECT_WAIT_S = 15.0
_SELECT_STEP_S = 0.05


@dataclass(frozen=True)
class Bookmark:
    """A place in the console: ``kind`` is region, workload, cluster, nodegroup or pods.

    ``key`` is the region-screen row (``workload/CLUSTER/SERVICE``, ``cluster/NAME``,
    ``nodegroup/CLUSTER/NAME``); ``tab`` the region tab (a region bookmarked on its Databases tab)."""

    kind: str
    region: str
    tab: str | None = None
    key: str | None = None
    cluster: str | None = None
    workload: str | None = None

    @property
    def label(self) -> str:
        """In words: "checkout in eks-euw1-prod (eu-west-1)", "region eu-west-1 › databases"."""
        parts = (self.key or "").split("/")
        if self.kind == "workload" and len(parts) == 3:
            return f"{parts[2]} in {parts[1]} ({self.region})"
        if self.kind == "cluster" and len(parts) == 2:
            return f"cluster {parts[1]} ({self.region})"
        if self.kind == "nodegroup" and len(parts) == 3:
            return f"node group {parts[2]} of {parts[1]} ({self.region})"
        if self.kind == "pods":
            return f"pods of {self.workload or 'every workload'} in {self.cluster} ({self.region or '?'})"
        return f"region {self.region}" + (f" › {self.tab}" if self.tab else "")

    def as_json(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, data: object) -> Bookmark:
        """A bookmark from its JSON form; ValueError names what is wrong."""
        if not isinstance(data, dict):
            raise ValueError("a bookmark is not an object")
        fields = {k: data.get(k) for k in ("kind", "region", "tab", "key", "cluster", "workload")}
        if any(v is not None and not isinstance(v, str) for v in fields.values()):
            raise ValueError("a bookmark field is not text")
        kind, region = fields["kind"], fields["region"]
        if kind not in KINDS:
            raise ValueError(f"unknown bookmark kind {kind!r}")
        if not isinstance(region, str) or (not region and kind != "pods"):
            raise ValueError("a bookmark has no region")
        if kind in _TAB_OF_KIND and not fields["key"]:
            raise ValueError(f"a {kind} bookmark has no key")
        if kind == "pods" and not fields["cluster"]:
            raise ValueError("a pods bookmark has no cluster")
        return cls(
            kind=kind,
            region=region,
            tab=fields["tab"],
            key=fields["key"],
            cluster=fields["cluster"],
            workload=fields["workload"],
        )


class BookmarkFileError(OpsError):
    """The bookmarks file cannot be read, parsed or written."""

    title = "bookmarks"


class BookmarkFile:
    """The bookmarks of this person (letter → :class:`Bookmark`), kept in a small JSON file.

    :meth:`load` never raises: a bad file leaves :attr:`problem` set (what to tell the person) and no
    bookmarks; :meth:`save` keeps a bad file aside (``.bad``) before writing over it."""

    VERSION = 1

    def __init__(self, path: Path) -> None:
        self.path = path
        self.marks: dict[str, Bookmark] = {}
        #: Why the file was not loaded (``None``: loaded, or there was none).
        self.problem: str | None = None

    def load(self) -> BookmarkFile:
        self.marks = {}
        self.problem = None
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return self
        except (OSError, UnicodeDecodeError) as exc:
            self.problem = f"cannot read {self.path}: {getattr(exc, 'strerror', None) or exc}"
            return self
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or not isinstance(data.get("bookmarks"), dict):
                raise ValueError('expected {"version": 1, "bookmarks": {"a": {...}}}')
            marks: dict[str, Bookmark] = {}
            for letter, entry in data["bookmarks"].items():
                if letter not in LETTERS:
                    raise ValueError(f"{letter!r} is not a letter")
                marks[letter] = Bookmark.from_json(entry)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            self.problem = f"{self.path} is not a bookmarks file ({exc})"
            return self
        self.marks = marks
        return self

    def save(self) -> str | None:
        """Write the bookmarks; returns where a bad file was kept aside (or ``None``). Raises
        :class:`BookmarkFileError` if it cannot write."""
        kept: str | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.problem is not None and self.path.exists():
                aside = self.path.with_name(self.path.name + ".bad")
                os.replace(self.path, aside)
                kept = str(aside)
            temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            body = {
                "version": self.VERSION,
                "bookmarks": {k: self.marks[k].as_json() for k in sorted(self.marks)},
            }
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(body, out, indent=2)
                out.write("\n")
            os.replace(temporary, self.path)
        except OSError as exc:
            raise BookmarkFileError(
                f"cannot write {self.path}: {exc.strerror or exc}; the bookmark holds until the console "
                "exits"
            ) from exc
        self.problem = None
        return kept


def bookmarks_path() -> Path:
    """``bookmarks.json`` under the opsconsole home (``OPSCONSOLE_HOME``)."""
    return opsconsole_home() / FILE_NAME


def target_of(screen: Screen[Any]) -> Bookmark | None:
    """What a bookmark made on ``screen`` names (see the module docstring); ``None``: nothing here."""
    name = getattr(screen, "screen_name", "")
    if name == "overview":
        focused_region = getattr(screen, "focused_region", None)
        region = focused_region() if callable(focused_region) else None
        return Bookmark("region", region) if region else None
    if name == "region":
        region = str(getattr(screen, "region_id", ""))
        tab = _active_tab(screen)
        key = _selected(screen, tab) if tab in ("workloads", "nodes") else None
        kind = (key or "").split("/", 1)[0]
        if key and kind in ("workload", "cluster", "nodegroup"):
            return Bookmark(kind, region, tab=tab, key=key)
        return Bookmark("region", region, tab=tab if tab and tab != "workloads" else None)
    if name == "pods":
        cluster = getattr(screen, "cluster", None)
        if not cluster or getattr(screen, "node", None) or getattr(screen, "node_group", None):
            return None
        return Bookmark(
            "pods", str(getattr(screen, "region_id", None) or ""), cluster=str(cluster),
            workload=getattr(screen, "workload", None),
        )
    return None


def _active_tab(screen: Screen[Any]) -> str | None:
    from textual.widgets import TabbedContent  # noqa: PLC0415 - only region screens have tabs

    tabs = screen.query("#tabs").results(TabbedContent)
    for content in tabs:
        return content.active.removeprefix("tab-") or None
    return None


def _selected(screen: Screen[Any], tab: str | None) -> str | None:
    for table in screen.query(f"#{tab}").results(FleetTable):
        return table.selected_key
    return None


class LetterPrompt(ModalScreen[str | None]):
    """One key: a letter (the bookmark's name) or Escape; the list of bookmarks above it.

    Any key that is not a letter closes it without doing anything (as in vim)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    LetterPrompt { align: left bottom; background: $background 0%; }
    LetterPrompt > Vertical {
        dock: bottom; margin-bottom: 1; width: 100%; height: auto; max-height: 70%;
        border: tall $accent; background: $surface; padding: 0 1;
    }
    """

    def __init__(self, question: str, marks: Mapping[str, Bookmark]) -> None:
        super().__init__()
        self.question = question
        self.marks = dict(marks)

    def compose(self) -> ComposeResult:
        lines = [f"  [b]'{letter}[/b]  {escape(self.marks[letter].label)}" for letter in sorted(self.marks)]
        body = "\n".join(lines) if lines else "  [dim]no bookmarks yet[/dim]"
        with Vertical(id="letter-prompt"):
            yield Static(body, id="letter-prompt-marks")
            yield Static(f"[b]{escape(self.question)}[/b]", id="letter-prompt-question")

    def on_key(self, event: events.Key) -> None:
        event.stop()
        event.prevent_default()
        if event.key == "escape":
            self.dismiss(None)
        elif event.character is not None and event.character in LETTERS:
            self.dismiss(event.character)
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConsoleBookmarks:
    """The console's bookmarks: what the ``m`` and ``'`` keys, ``:marks`` and the palette use.

    ``app`` is the console (a Textual app that is a :class:`ConsoleHost`); ``path`` defaults to
    :func:`bookmarks_path`, resolved at :meth:`load`."""

    def __init__(self, app: App[Any], path: Path | None = None) -> None:
        self._app = app
        self._path = path
        self._file: BookmarkFile | None = None

    @property
    def host(self) -> ConsoleHost:
        return cast("ConsoleHost", self._app)

    # -- the file --------------------------------------------------------------------------------------

    def load(self) -> None:
        """Read the file (at start); a bad one is a notification, never a crash."""
        try:
            path = self._path or bookmarks_path()
        except OpsError as exc:  # no usable home: bookmarks live only as long as this console
            self._file = BookmarkFile(Path(os.devnull))
            self._file.problem = str(exc)
            self.host.notify(f"bookmarks are off: {exc}", title="bookmarks", severity="warning", timeout=10)
            return
        self._file = BookmarkFile(path).load()
        if self._file.problem is not None:
            self.host.notify(
                f"{self._file.problem}. Starting with no bookmarks; the next one you set keeps this file "
                f"as {path.name}.bad.",
                title="bookmarks not loaded",
                severity="warning",
                timeout=15,
            )

    @property
    def file(self) -> BookmarkFile:
        if self._file is None:
            self.load()
        assert self._file is not None
        return self._file

    @property
    def marks(self) -> Mapping[str, Bookmark]:
        """Letter → bookmark."""
        return dict(self.file.marks)

    def _save(self) -> None:
        try:
            kept = self.file.save()
        except BookmarkFileError as exc:
            self.host.notify(str(exc), title=exc.title, severity="error", timeout=10)
            return
        if kept:
            self.host.notify(f"the unreadable bookmarks file was kept as {kept}", title="bookmarks")

    # -- what the keys and commands do -----------------------------------------------------------------

    def _busy(self) -> bool:
        # Not over a dialog, a form being filled in (its letters are typed), or another prompt.
        screen = self._app.screen
        return isinstance(screen, ModalScreen) or bool(getattr(screen, "holds_changes", False))

    def ask_mark(self) -> None:
        """``m``: ask for a letter, then bookmark what is selected under it."""
        if self._busy():
            return
        target = target_of(self._app.screen)
        if target is None:
            self.host.notify(
                "nothing to bookmark here: select a region (overview), a workload or a cluster (region "
                "screen), or open a pod list",
                title="bookmarks",
                severity="warning",
                timeout=5,
            )
            return

        def chosen(letter: str | None) -> None:
            if letter:
                self.mark(letter, target)

        question = f"bookmark {target.label} as: press a letter (a-z, A-Z) · escape cancels"
        self._app.push_screen(LetterPrompt(question, self.marks), chosen)

    def mark(self, letter: str, target: Bookmark | None = None) -> bool:
        """Bookmark ``target`` (what is selected when ``None``) as ``letter``."""
        if letter not in LETTERS:
            self.host.notify(f"{letter!r}: a bookmark is called by one letter (a-z, A-Z)", severity="warning")
            return False
        target = target or target_of(self._app.screen)
        if target is None:
            self.host.notify("nothing to bookmark here", title="bookmarks", severity="warning")
            return False
        before = self.file.marks.get(letter)
        self.file.marks[letter] = target
        self._save()
        replaced = f" (was {before.label})" if before is not None and before != target else ""
        self.host.notify(f"'{letter} → {target.label}{replaced}", title="bookmarked", timeout=4)
        return True

    def delete(self, letter: str) -> bool:
        """Forget the bookmark ``letter`` (``:delmarks a``)."""
        if self.file.marks.pop(letter, None) is None:
            self.host.notify(f"no bookmark '{letter}", title="bookmarks", severity="warning")
            return False
        self._save()
        self.host.notify(f"forgot bookmark '{letter}", title="bookmarks", timeout=3)
        return True

    def ask_jump(self) -> None:
        """``'`` (and ``:marks``): the list of bookmarks; a letter jumps to one."""
        if self._busy():
            return
        if not self.file.marks:
            self.host.notify(
                "no bookmarks yet: select a region, workload or cluster and press m then a letter",
                title="bookmarks",
                timeout=5,
            )
            return

        def chosen(letter: str | None) -> None:
            if letter:
                self.jump(letter)

        self._app.push_screen(LetterPrompt("jump to: press its letter · escape closes", self.marks), chosen)

    def jump(self, letter: str) -> bool:
        """Go to the bookmark ``letter``: the fleet screen under it, then the place it names."""
        target = self.file.marks.get(letter)
        if target is None:
            known = " ".join(f"'{k}" for k in sorted(self.file.marks)) or "none yet"
            self.host.notify(f"no bookmark '{letter} (bookmarks: {known})", title="bookmarks",
                             severity="warning")
            return False
        view = self.host.view
        if view is not None and target.region and target.region not in view.fleet.regions:
            self.host.notify(f"'{letter}: region {target.region} is not in the fleet any more",
                             title="bookmarks", severity="warning")
            return False
        self.host.action_go("overview")  # a jump replaces where you are: escape leads to the fleet
        if target.kind == "pods":
            assert target.cluster is not None
            self.host.open_pods(target.cluster, target.workload, target.region or None)
            return True
        tab = _TAB_OF_KIND.get(target.kind, target.tab)
        self.host.open_region(target.region, tab=tab)
        if target.key and tab:
            self._select_when_shown(self._app.screen, tab, target.key, letter, SELECT_WAIT_S)
        return True

    def _select_when_shown(self, screen: Screen[Any], tab: str, key: str, letter: str, left_s: float) -> None:
        # The region screen fills its tables once mounted and once the fleet has come: wait for the row.
        if screen not in self._app.screen_stack:
            return  # left meanwhile
        tables = list(screen.query(f"#{tab}").results(FleetTable)) if screen.is_mounted else []
        for table in tables:
            try:
                row = table.get_row_index(key)
            except KeyError:
                if table.row_count and self.host.view is not None and key not in _keys_of(self.host):
                    self.host.notify(f"'{letter}: {key} is not in the fleet any more", title="bookmarks",
                                     severity="warning")
                    return
                break
            table.move_cursor(row=row)
            table.focus()
            return
        if left_s <= 0:
            self.host.notify(f"'{letter}: {key} did not show up", title="bookmarks", severity="warning")
            return
        retry: Callable[[], None] = lambda: self._select_when_shown(  # noqa: E731
            screen, tab, key, letter, left_s - _SELECT_STEP_S
        )
        self._app.set_timer(_SELECT_STEP_S, retry)


def _keys_of(host: ConsoleHost) -> set[str]:
    view = host.view
    return set(view.snapshot.records) if view is not None else set()
