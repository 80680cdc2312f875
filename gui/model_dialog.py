"""Load model…: a torchvision architecture with a local weights file, or a TorchScript file."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
)

from engine import DEFAULT_MODEL

from .path_field import PathField
from .records import ModelSpec

ARCHITECTURES = (
    DEFAULT_MODEL, "resnet18", "resnet34", "resnet50", "resnet101", "vgg11", "vgg16", "vgg19", "alexnet",
    "densenet121", "googlenet", "mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0", "convnext_tiny",
    "regnet_y_400mf", "shufflenet_v2_x1_0", "squeezenet1_1",
)  # fmt: skip
WEIGHT_FILTER = "PyTorch weights (*.pth *.pt *.bin);;All files (*)"


class ModelDialog(QDialog):
    """Collects a :class:`~gui.records.ModelSpec`; loading (and its errors) happen in the worker."""

    def __init__(self, parent=None, folder: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle("Load model")
        self.torchvision = QRadioButton("Architecture + weights file (state_dict, loaded safely)")
        self.torchvision.setChecked(True)
        self.scripted = QRadioButton("TorchScript file (the defense cannot filter it)")
        self.architecture = QComboBox()
        self.architecture.setEditable(True)
        self.architecture.addItems(ARCHITECTURES)
        self.weights = PathField(self, "Weights file", folder, WEIGHT_FILTER)
        self.script = PathField(self, "TorchScript file", folder, "TorchScript (*.pt *.pth *.ts);;All files (*)")
        self.labels = PathField(self, "Class names (one per line)", folder, "Text (*.txt);;All files (*)")
        self.num_classes = QSpinBox()
        self.num_classes.setRange(0, 100000)
        self.num_classes.setSpecialValueText("from the labels, else 1000")
        form = QFormLayout()
        form.addRow(self.torchvision)
        form.addRow("Architecture", self.architecture)
        form.addRow("Weights", self.weights)
        form.addRow(self.scripted)
        form.addRow("TorchScript", self.script)
        form.addRow("Classes", self.num_classes)
        form.addRow("Labels", self.labels)
        note = QLabel(
            "Full pickled models are not accepted here: they can run code. Save the model's "
            "state_dict, or export it as TorchScript, and load that."
        )
        note.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(note)
        layout.addWidget(buttons)
        self.torchvision.toggled.connect(self._sync)
        self._sync()

    def _sync(self) -> None:
        by_name = self.torchvision.isChecked()
        self.architecture.setEnabled(by_name)
        self.weights.setEnabled(by_name)
        self.script.setEnabled(not by_name)

    def spec(self) -> ModelSpec:
        labels = self.labels.path()
        count = self.num_classes.value() or None
        if self.scripted.isChecked():
            return ModelSpec(torchscript=self.script.path(), num_classes=count, labels=labels)
        return ModelSpec(self.architecture.currentText().strip(), self.weights.path(), None, count, labels)
