"""The Load model dialog turns its fields into the ModelSpec the worker loads."""

from __future__ import annotations

from pathlib import Path

from gui.model_dialog import ModelDialog
from gui.records import ModelSpec


def test_model_dialog_specs(qtbot, tmp_path):
    dialog = ModelDialog(None, str(tmp_path))
    qtbot.addWidget(dialog)
    dialog.architecture.setCurrentText("resnet50")
    dialog.weights.edit.setText(str(tmp_path / "w.pth"))
    dialog.num_classes.setValue(3)
    assert dialog.spec() == ModelSpec("resnet50", tmp_path / "w.pth", None, 3, None)
    dialog.scripted.setChecked(True)
    assert not dialog.architecture.isEnabled() and dialog.script.isEnabled()
    dialog.script.edit.setText("  model.pt ")
    dialog.labels.edit.setText(str(tmp_path / "names.txt"))
    assert dialog.spec() == ModelSpec(torchscript=Path("model.pt"), num_classes=3, labels=tmp_path / "names.txt")
