"""The engine's own exceptions, all of them: each carries a message a user can act on (no traceback needed).
The modules that raise them also export them under their own names (``engine.results.session.SessionError``...)."""

from __future__ import annotations


class FGVisError(Exception):
    """Base class of every error the engine raises on purpose."""


class ImageLoadError(FGVisError):
    """An image could not be read or converted (missing, corrupt, unsupported, too large)."""


class ModelLoadError(FGVisError):
    """A model or weights file could not be loaded (missing, truncated, wrong keys or classes...).

    The message names the file, what it is not and what is expected, in words free of any user interface's
    controls. ``option`` names the :func:`engine.load_model` parameter that would fix it when there is one
    (``"num_classes"``, ``"allow_pickle"``, ``"weights"``, ``"torchscript"``, ``"labels"``) and ``value`` the
    value to give it when the file tells (e.g. the file's number of classes), so a front end can point at its
    own control or flag."""

    def __init__(self, message: str, *, option: str | None = None, value: object = None) -> None:
        super().__init__(message)
        self.option = option
        self.value = value


class TargetError(FGVisError):
    """A target class is out of range, unknown or ambiguous."""


class DefenseError(FGVisError):
    """The adversarial-evidence defense cannot be applied to this model as asked."""


class ConfigError(FGVisError):
    """An explanation setting is invalid."""


class DeviceError(FGVisError):
    """The requested compute device is unavailable or ran out of memory."""


class ExportError(FGVisError):
    """Files could not be written (nothing was left behind) or would overwrite existing ones."""


class SessionError(FGVisError):
    """A session file that cannot be read: corrupt, foreign, from a newer version, or over a limit of the
    format (the message names the file and the problem)."""


class ClusterError(FGVisError):
    """Ray is missing, the cluster cannot be reached, or the run could not be handed to it."""


class DatasetAnalysisError(FGVisError):
    """A results folder or a saved analysis cannot be analysed or read; the message says why and what to do."""


class AnalysisCancelled(DatasetAnalysisError):
    """:func:`engine.analysis.analyze` stopped because its ``cancelled`` callback said so (nothing was saved)."""
