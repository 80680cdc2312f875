"""How to explain: game, defense, λ policy, steps, reference; advanced settings folded away."""

from __future__ import annotations

import math
from dataclasses import replace

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from engine import FGVisConfig
from engine.core.explanation import OPTIMIZERS, REFERENCES

GAME_CHOICES = ("preserve", "delete", "both")


class MethodPanel(QWidget):
    """Widgets <-> (games, defense, :class:`FGVisConfig`). ``settings()``/``apply_settings()`` give a
    flat dict for QSettings."""

    changed = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        defaults = FGVisConfig()
        self.game = QComboBox()
        self.game.addItems(GAME_CHOICES)
        self.game.setToolTip(
            "preserve: the smallest part of the image that keeps the decision;\n"
            "delete: the smallest part whose removal destroys it; both: one job each"
        )
        self.defense = QCheckBox("Defense against adversarial evidence")
        self.defense.setToolTip("Filter gradients behind every activation (the paper's method). Off only to compare.")
        self.auto_lambda = QCheckBox("automatic")
        self.lambda_value = QDoubleSpinBox()
        self.lambda_value.setRange(0.0, 100.0)
        self.lambda_value.setDecimals(3)
        self.lambda_value.setSingleStep(0.05)
        self.steps = QSpinBox()
        self.steps.setRange(1, 10000)
        self.reference = QComboBox()
        self.reference.addItems(REFERENCES)
        self.reference.setToolTip(
            "What removed pixels become: blur (a blurred copy, the default), zero (the paper's e = m·x) or black"
        )
        self.blur_sigma = QDoubleSpinBox()
        self.blur_sigma.setRange(0.1, 200.0)
        self.blur_sigma.setDecimals(2)
        self.blur_sigma.setSingleStep(1.0)
        self.blur_sigma.setSuffix(" px")
        self.blur_sigma.setToolTip(
            "How strongly the blur reference blurs, in pixels of the model input: larger removes more of the\n"
            "class (a result notes when the reference alone keeps much of the score)"
        )
        self.binarize = QCheckBox("Sharpen to a 0/1 mask")
        self.binarize.setToolTip(
            "After optimising, keep the smallest 0/1 mask of the strongest values that still meets the game's\n"
            "goal as a saved 8-bit picture (where none does, the soft mask stays)"
        )

        self.lr = QDoubleSpinBox()
        self.lr.setRange(0.0, 10.0)
        self.lr.setDecimals(4)
        self.lr.setSingleStep(0.005)
        self.lr.setSpecialValueText("default (0.05)")
        self.optimizer = QComboBox()
        self.optimizer.addItems(OPTIMIZERS)
        self.preserve_ratio = QDoubleSpinBox()
        self.preserve_ratio.setRange(0.05, 1.0)
        self.preserve_ratio.setSingleStep(0.05)
        self.delete_ratio = QDoubleSpinBox()
        self.delete_ratio.setRange(0.01, 0.95)
        self.delete_ratio.setSingleStep(0.05)
        self.patience = QSpinBox()
        self.patience.setRange(0, 10000)
        self.patience.setSpecialValueText("off")
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)

        lambda_row = QHBoxLayout()
        lambda_row.addWidget(self.auto_lambda)
        lambda_row.addWidget(self.lambda_value, 1)
        form = QFormLayout()
        form.addRow("Game", self.game)
        form.addRow(self.defense)
        form.addRow("λ (sparsity)", lambda_row)
        form.addRow("Steps", self.steps)
        form.addRow("Reference", self.reference)
        form.addRow("Blur sigma", self.blur_sigma)
        form.addRow(self.binarize)

        self.advanced_toggle = QToolButton()
        self.advanced_toggle.setText("Advanced")
        self.advanced_toggle.setCheckable(True)
        self.advanced_toggle.setArrowType(self.advanced_toggle.arrowType().RightArrow)
        self.advanced_toggle.setToolButtonStyle(self.advanced_toggle.toolButtonStyle().ToolButtonTextBesideIcon)
        self.advanced = QWidget()
        advanced_form = QFormLayout(self.advanced)
        advanced_form.setContentsMargins(0, 0, 0, 0)
        advanced_form.addRow("Learning rate", self.lr)
        advanced_form.addRow("Optimiser", self.optimizer)
        advanced_form.addRow("Preserve goal p(e)/p(x) ≥", self.preserve_ratio)
        advanced_form.addRow("Delete goal p(e)/p(x) ≤", self.delete_ratio)
        advanced_form.addRow("Early-stop patience", self.patience)
        advanced_form.addRow("Seed", self.seed)
        self.advanced.setVisible(False)
        self.reset_button = QPushButton("Reset to defaults")
        tips = {
            self.auto_lambda: "λ per image: it grows while the game's goal holds and shrinks when it does not\n"
            "(the default)",
            self.lambda_value: "Weight of the sparsity term: larger keeps (or deletes) fewer pixels, at the risk\n"
            "of missing the goal. Used when 'automatic' is off",
            self.steps: "Most optimisation steps per explanation; a run stops earlier once it has converged",
            self.lr: "Step size of the optimiser on the mask (0 = the default for the game)",
            self.optimizer: "The optimiser that updates the mask",
            self.preserve_ratio: "Preserve goal: the explanation must keep at least this share of the photo's\n"
            "probability for the class (and the class stays the model's top-1 on it)",
            self.delete_ratio: "Delete goal: with the evidence removed the class may keep at most this share\n"
            "of the photo's probability",
            self.patience: "Stop when the loss has not improved for this many steps (off: always run every step)",
            self.seed: "Random seed: the same seed and settings give the same mask",
            self.advanced_toggle: "Show the optimiser, goals, early stop and seed",
            self.reset_button: "Put every method setting back to its default",
        }
        for widget, tip in tips.items():
            widget.setToolTip(tip)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(form)
        layout.addWidget(self.advanced_toggle)
        layout.addWidget(self.advanced)
        layout.addWidget(self.reset_button)
        layout.addStretch(1)

        self.advanced_toggle.toggled.connect(self._toggle_advanced)
        self.auto_lambda.toggled.connect(lambda on: self.lambda_value.setEnabled(not on))
        self.reset_button.clicked.connect(self.reset)
        for widget in (self.game, self.reference, self.optimizer):
            widget.currentIndexChanged.connect(self.changed)
        for widget in (self.defense, self.auto_lambda, self.binarize):
            widget.toggled.connect(self.changed)
        for widget in (
            self.lambda_value,
            self.steps,
            self.lr,
            self.preserve_ratio,
            self.delete_ratio,
            self.patience,
            self.seed,
            self.blur_sigma,
        ):
            widget.valueChanged.connect(self.changed)
        self.reference.currentIndexChanged.connect(self._show_blur)
        self._defaults = defaults
        self.reset()

    def _show_blur(self) -> None:
        self.blur_sigma.setEnabled(self.reference.currentText() == "blur")

    def _toggle_advanced(self, shown: bool) -> None:
        self.advanced.setVisible(shown)
        arrow = self.advanced_toggle.arrowType()
        self.advanced_toggle.setArrowType(arrow.DownArrow if shown else arrow.RightArrow)

    def reset(self) -> None:
        """Back to the measured defaults (docs/DEFAULTS.md)."""
        self.apply_settings({"game": "preserve", "defense": True, **self._config_settings(self._defaults)})

    def games(self) -> list[str]:
        choice = self.game.currentText()
        return ["preserve", "delete"] if choice == "both" else [choice]

    def config(self) -> FGVisConfig:
        """The engine settings shown (raises ``ConfigError`` for an impossible combination)."""
        return replace(
            self._defaults,
            steps=self.steps.value(),
            lr=self.lr.value() or None,
            optimizer=self.optimizer.currentText(),
            lambda_=None if self.auto_lambda.isChecked() else self.lambda_value.value(),
            reference=self.reference.currentText(),
            blur_sigma=self.blur_sigma.value(),
            binarize=self.binarize.isChecked(),
            preserve_ratio=self.preserve_ratio.value(),
            delete_ratio=self.delete_ratio.value(),
            patience=self.patience.value(),
            seed=self.seed.value(),
        )

    def settings(self) -> dict:
        return {
            "game": self.game.currentText(),
            "defense": self.defense.isChecked(),
            **self._config_settings(self.config()),
        }

    @staticmethod
    def _config_settings(config: FGVisConfig) -> dict:
        return {
            "steps": config.steps,
            "lr": config.lr or 0.0,
            "optimizer": config.optimizer,
            "auto_lambda": config.lambda_ is None,
            "lambda": config.lambda_ if config.lambda_ is not None else 0.5,
            "reference": config.reference,
            "blur_sigma": config.blur_sigma,
            "binarize": config.binarize,
            "preserve_ratio": config.preserve_ratio,
            "delete_ratio": config.delete_ratio,
            "patience": config.patience,
            "seed": config.seed,
        }

    def apply_settings(self, values: dict) -> None:
        """Show stored values; unknown or malformed ones keep the current value."""
        setters = {
            "game": lambda v: self._set_choice(self.game, v),
            "defense": lambda v: self.defense.setChecked(_as_bool(v)),
            "steps": lambda v: self.steps.setValue(_whole(v)),
            "lr": lambda v: self.lr.setValue(_finite(v)),
            "optimizer": lambda v: self._set_choice(self.optimizer, v),
            "auto_lambda": lambda v: self.auto_lambda.setChecked(_as_bool(v)),
            "lambda": lambda v: self.lambda_value.setValue(_finite(v)),
            "reference": lambda v: self._set_choice(self.reference, v),
            "blur_sigma": lambda v: self.blur_sigma.setValue(_finite(v)),
            "binarize": lambda v: self.binarize.setChecked(_as_bool(v)),
            "preserve_ratio": lambda v: self.preserve_ratio.setValue(_finite(v)),
            "delete_ratio": lambda v: self.delete_ratio.setValue(_finite(v)),
            "patience": lambda v: self.patience.setValue(_whole(v)),
            "seed": lambda v: self.seed.setValue(_whole(v)),
        }
        for key, value in values.items():
            if key in setters and value is not None:
                try:
                    setters[key](value)
                except (TypeError, ValueError):
                    continue
        self.lambda_value.setEnabled(not self.auto_lambda.isChecked())
        self._show_blur()

    @staticmethod
    def _set_choice(combo: QComboBox, value) -> None:
        index = combo.findText(str(value))
        if index >= 0:
            combo.setCurrentIndex(index)


def _as_bool(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _finite(value) -> float:
    """A stored number as a float; ``ValueError`` for NaN and infinities (a spin box would clamp them to
    its maximum instead of keeping the current value)."""
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(f"{value!r} is too large") from None
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    return number


def _whole(value) -> int:
    """A stored whole number a spin box can take (Qt's 32-bit int); ``ValueError`` otherwise (PySide would
    raise OverflowError from inside Qt for larger ones)."""
    number = _finite(value)
    if not number.is_integer() or abs(number) >= 2**31:
        raise ValueError(f"{value!r} is not a whole number a setting can take")
    return int(number)
