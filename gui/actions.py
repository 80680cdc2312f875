"""Every command of the main window, declared once: text, shortcuts, tip, when it is enabled and where it
appears (menus, toolbar). The window supplies the slots; :class:`Actions` builds the ``QAction`` objects
and enables them from a :class:`UiState`, in groups, as labelme does."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDialog, QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

Rule = Literal[
    "always", "needs_image", "needs_result", "needs_two_results", "job_running", "idle", "can_undo", "has_export"
]
_keys = QKeySequence.StandardKey
Key = str | QKeySequence.StandardKey


@dataclass(frozen=True)
class ActionSpec:
    """One command. ``shortcuts``: key strings (``"Ctrl+R"``) or standard keys, the first one shown in
    tooltips; ``when``: the :class:`UiState` rule that enables it."""

    name: str
    text: str
    shortcuts: tuple[Key, ...] = ()
    tip: str = ""
    when: Rule = "always"


@dataclass(frozen=True)
class UiState:
    """What the enablement rules look at."""

    has_image: bool = False
    has_result: bool = False
    two_results: bool = False
    job_running: bool = False
    can_undo: bool = False
    has_export: bool = False

    def allows(self, rule: Rule) -> bool:
        return {
            "always": True,
            "needs_image": self.has_image,
            "needs_result": self.has_result,
            "needs_two_results": self.two_results,
            "job_running": self.job_running,
            "idle": not self.job_running,
            "can_undo": self.can_undo,
            "has_export": self.has_export,
        }[rule]


RUN_TIP = "Queue an explanation of the target class for the current image"

# fmt: off
ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec("open", "&Open image…", (_keys.Open,)),
    ActionSpec("open_session", "Open &session…"),
    ActionSpec("save_session", "&Save session", (_keys.Save,)),
    ActionSpec("save_session_as", "Save session &as…", ("Ctrl+Shift+S",)),
    ActionSpec("export_result", "&Export result…", ("Ctrl+E",), when="needs_result"),
    ActionSpec("export_report", "Export &report (HTML/PDF)…", ("Ctrl+Shift+E",), when="needs_result"),
    ActionSpec("open_export_folder", "Open the export &folder", (),
               "Show the files of the last export in the file manager", "has_export"),
    ActionSpec("batch", "&Batch…", ("Ctrl+B",), "Explain every image of a folder"),
    ActionSpec("open_batch_results", "Open batch res&ults…", (),
               "Dataset review: the strategies the model uses per class across a batch, suspicious ones flagged"),
    ActionSpec("load_model", "Load &model…", when="idle"),
    ActionSpec("builtin_model", "Use the &built-in model", when="idle"),
    ActionSpec("quit", "&Quit", (_keys.Quit,)),
    ActionSpec("run", "&Run", ("Ctrl+R", "F5"), RUN_TIP, "needs_image"),
    ActionSpec("cancel", "&Cancel job", ("Esc",),
               "Stop the running job after its current step; its partial result is kept", "job_running"),
    ActionSpec("cancel_all", "Cancel &all jobs", ("Shift+Esc",),
               "Stop the running job and drop the queued ones", "job_running"),
    ActionSpec("compare", "Co&mpare selected results", ("Ctrl+M",),
               "Show two selected results side by side (Ctrl+click two rows of Results)", "needs_two_results"),
    ActionSpec("delete_result", "&Delete result", (_keys.Delete,),
               "Remove the selected result from this image (Undo brings it back)", "needs_result"),
    ActionSpec("undo_delete", "&Undo delete", (_keys.Undo,), when="can_undo"),
    ActionSpec("zoom_in", "Zoom &in", (_keys.ZoomIn, "+", "=")),
    ActionSpec("zoom_out", "Zoom &out", (_keys.ZoomOut, "-")),
    ActionSpec("fit", "&Fit", ("Ctrl+0",)),
    ActionSpec("actual", "&1:1", ("Ctrl+1",)),
    ActionSpec("next", "&Next image", ("PgDown",), when="needs_image"),
    ActionSpec("previous", "&Previous image", ("PgUp",), when="needs_image"),
    ActionSpec("shortcuts", "&Keyboard shortcuts", (_keys.HelpContents,)),
    ActionSpec("about", "&About"),
)
# fmt: on

#: Menus, top to bottom: action names, ``"-"`` for a separator and ``"@name"`` for a place the window
#: fills itself (a submenu or the docks' toggles).
MENUS: dict[str, tuple[str, ...]] = {
    "&File": (
        "open", "@samples", "@recent", "-", "open_session", "save_session", "save_session_as", "-",
        "export_result", "export_report", "open_export_folder", "batch", "open_batch_results", "-",
        "load_model", "builtin_model", "-", "quit",
    ),
    "&View": ("zoom_in", "zoom_out", "fit", "actual", "next", "previous", "-", "@docks"),
    "&Run": ("run", "cancel", "cancel_all", "compare", "delete_result", "undo_delete"),
    "&Help": ("shortcuts", "about"),
}  # fmt: skip
TOOLBAR = ("open", "run", "cancel", "zoom_in", "zoom_out", "fit", "actual", "compare")
#: The Results table's context menu.
RESULTS_MENU = ("compare", "delete_result", "undo_delete")


class Actions:
    """The window's ``QAction`` objects, by name, built from :data:`ACTIONS` with ``slots`` (one callable
    per name) and added to ``owner`` so their shortcuts work everywhere in it."""

    def __init__(self, owner: QWidget, slots: Mapping[str, Callable[[], object]]) -> None:
        missing = {spec.name for spec in ACTIONS} - set(slots)
        if missing:
            raise ValueError(f"no slot for the action(s) {', '.join(sorted(missing))}")
        self.specs = {spec.name: spec for spec in ACTIONS}
        self._actions: dict[str, QAction] = {}
        for spec in ACTIONS:
            act = QAction(spec.text, owner)
            act.setShortcuts([QKeySequence(key) for key in spec.shortcuts])
            act.setToolTip(tooltip(spec.tip or spec.text, act))
            act.setStatusTip(spec.tip or plain(spec.text))
            act.triggered.connect(lambda _=False, slot=slots[spec.name]: slot())
            owner.addAction(act)
            self._actions[spec.name] = act

    def __getitem__(self, name: str) -> QAction:
        return self._actions[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._actions)

    def values(self) -> Iterator[QAction]:
        return iter(self._actions.values())

    def update(self, state: UiState) -> None:
        """Enable each action by its rule."""
        for name, act in self._actions.items():
            act.setEnabled(state.allows(self.specs[name].when))

    def fill_menus(self, menu_bar, places: Mapping[str, Callable[[object], None]]) -> None:
        """Build :data:`MENUS` in ``menu_bar``; ``places[name](menu)`` fills each ``"@name"``."""
        for title, entries in MENUS.items():
            menu = menu_bar.addMenu(title)
            for entry in entries:
                if entry == "-":
                    menu.addSeparator()
                elif entry.startswith("@"):
                    places[entry[1:]](menu)
                else:
                    menu.addAction(self[entry])

    def shortcut_rows(self) -> list[tuple[str, str]]:
        """``(command, keys)`` for every action that has a shortcut, in declaration order."""
        native = QKeySequence.SequenceFormat.NativeText
        return [
            (plain(act.text()), ", ".join(key.toString(native) for key in act.shortcuts()))
            for act in self.values()
            if act.shortcuts()
        ]


def shortcuts_dialog(parent: QWidget, rows: list[tuple[str, str]]) -> QDialog:
    """Help → Keyboard shortcuts: a table of ``rows`` (command, keys); shown, deleted on close."""
    dialog = QDialog(parent)
    dialog.setWindowTitle("Keyboard shortcuts")
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    table = QTableWidget(len(rows), 2)
    table.setHorizontalHeaderLabels(["Command", "Keys"])
    table.verticalHeader().setVisible(False)
    table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
    for row, (command, keys) in enumerate(rows):
        table.setItem(row, 0, QTableWidgetItem(command))
        table.setItem(row, 1, QTableWidgetItem(keys))
    table.resizeColumnsToContents()
    table.horizontalHeader().setStretchLastSection(True)
    close = QPushButton("Close")
    close.clicked.connect(dialog.close)
    layout = QVBoxLayout(dialog)
    layout.addWidget(table)
    layout.addWidget(close, 0, Qt.AlignmentFlag.AlignRight)
    dialog.resize(460, 560)
    dialog.show()
    return dialog


def plain(text: str) -> str:
    """A menu text without its ``&`` mnemonics and trailing ellipsis (``"&Open image…"`` -> ``"Open image"``)."""
    return text.replace("&&", "\0").replace("&", "").replace("\0", "&").rstrip("…")


def tooltip(text: str, act: QAction) -> str:
    """The tooltip a toolbar shows: plain words and the first shortcut, e.g. ``"Zoom in (Ctrl++)"``."""
    keys = act.shortcuts()
    shortcut = keys[0].toString(QKeySequence.SequenceFormat.NativeText) if keys else ""
    return f"{plain(text)} ({shortcut})" if shortcut else plain(text)
