"""The engine's own exceptions: each carries a message a user can act on (no traceback needed)."""

from __future__ import annotations


class FGVisError(Exception):
    """Base class of every error the engine raises on purpose."""


class ImageLoadError(FGVisError):
    """An image could not be read or converted (missing, corrupt, unsupported, too large)."""


class ModelLoadError(FGVisError):
    """A model or weights file could not be loaded (missing, truncated, wrong keys or classes...)."""


class TargetError(FGVisError):
    """A target class is out of range, unknown or ambiguous."""


class DefenseError(FGVisError):
    """The adversarial-evidence defense cannot be applied to this model as asked."""


class ConfigError(FGVisError):
    """An explanation setting is invalid."""


class DeviceError(FGVisError):
    """The requested compute device is unavailable or ran out of memory."""
