"""The model and its device: load the built-in model or one from files, move it between devices, and say
in the status bar what is loaded where."""

from __future__ import annotations

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QComboBox, QLabel

from ..method_panel import MethodPanel
from ..model_dialog import ModelDialog
from ..records import ModelInfo, ModelSpec
from ..settings import last_folder
from ..worker import Worker, available_devices
from ..workspace import Workspace
from . import Host


class ModelController(QObject):
    """Owns the device chooser (``combo``) and the model label; the workspace gets each loaded model."""

    def __init__(self, workspace: Workspace, worker: Worker, host: Host, method: MethodPanel) -> None:
        super().__init__(host)  # a child of the window: it goes when the window goes
        self.workspace, self.worker, self.host, self.method = workspace, worker, host, method
        self.label = QLabel("Loading model…")
        self.combo = QComboBox()
        self.combo.setToolTip("Where the model runs")
        for device, name in available_devices():
            self.combo.addItem(name, device)
        stored = host.settings.value("device")
        index = self.combo.findData(stored) if stored else -1
        self._select_device(index if index >= 0 else int(self.combo.count() > 1))  # else the first GPU
        worker.model_loaded.connect(self._on_loaded)
        worker.model_failed.connect(self._on_failed)
        self.combo.currentIndexChanged.connect(self._on_device_chosen)

    @property
    def device(self) -> str:
        return self.combo.currentData()

    def start(self, builtin: bool) -> None:
        """Load the built-in model (``builtin``) or move the worker's ready model to the chosen device."""
        if builtin:
            self.worker.submit_load_model(ModelSpec(), self.device)
        else:
            self.worker.submit_set_device(self.device)

    def load_dialog(self) -> None:
        dialog = ModelDialog(self.host, last_folder(self.host.settings, "models"))
        dialog.accepted.connect(lambda: self.load(dialog.spec()))
        dialog.open()

    def load(self, spec: ModelSpec) -> None:
        self.label.setText(f"Loading {spec.describe()}…")
        self.worker.submit_load_model(spec, self.device)

    def _on_loaded(self, info: ModelInfo) -> None:
        self.label.setText(f"{info.name} on {info.device}")
        self.label.setToolTip(f"weights SHA-256: {info.weights_sha256 or '—'}")
        if info.scripted:
            self.method.defense.setChecked(False)
            self.host.show_status("TorchScript model: the defense cannot filter it and is off.", 8000)
        self.workspace.set_model(info)

    def _on_failed(self, message: str) -> None:
        info = self.workspace.model_info
        self.label.setText(f"{info.name} on {info.device}" if info else "No model")
        if info is not None:  # the model stays where it was: show that device again
            self._select_device(self.combo.findData(info.device))
        self.host.show_error("Could not use the model", message)

    def _select_device(self, index: int) -> None:
        self.combo.blockSignals(True)
        self.combo.setCurrentIndex(max(0, index))
        self.combo.blockSignals(False)

    def _on_device_chosen(self) -> None:
        self.host.settings.setValue("device", self.device)
        if self.workspace.model_info is not None:
            self.worker.submit_set_device(self.device)
