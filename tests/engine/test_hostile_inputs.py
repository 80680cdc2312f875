"""Hostile input to the library (issue 16): images, model, weights and labels files, and the Python API.

One group per class of failure the issue found: a path that is not a regular file must be refused before
it is opened (1), sizes derived from a file are bounded before anything is allocated for them (2),
messages name the real problem and the file (5, 7), and ``explain`` refuses what it cannot take with the
shapes it expects and accepts NumPy integers as targets (9). The CLI and batch cases live in their own
test files.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from engine import (
    ConfigError,
    DeviceError,
    FGVisConfig,
    ImageLoadError,
    ModelLoadError,
    ReferenceCache,
    TargetError,
    explain,
    load_image,
)
from engine.models.images import MAX_ASPECT_RATIO, MAX_PIXELS, read_error
from engine.models.loading import MAX_CLASSES, MAX_LABELS_FILE_BYTES, classifier_with_weights, load_model
from engine.models.preprocess import Preprocessing

from .toy_models import TinyCNN

FAST = FGVisConfig(steps=3, patience=0, binarize=False)


class Hung(BaseException):
    """Raised by the alarm: not an ``OSError`` or ``Exception``, so no error handling can disguise a hang."""


@pytest.fixture
def no_hang():
    """Fail (instead of blocking the suite for ever) if the test is still running after 20 s."""

    def expired(signum, frame):
        raise Hung("still blocked after 20 s: a FIFO or device was opened instead of refused")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(20)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


def _png_header(width: int, height: int) -> bytes:
    """An 8-bit RGB PNG of ``width`` x ``height`` whose pixel data is 8 bytes of junk: only its header is
    valid, so decoding it fails."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"junk" * 2) + chunk(b"IEND", b"")


# --- 1. Hangs: anything but a regular file is refused before it is opened ---------------------------


def test_a_fifo_as_an_image_is_refused_before_it_is_opened(no_hang, fifo, tmp_path, toy_model):
    link = tmp_path / "photo.jpg"
    link.symlink_to(fifo)
    for path in (fifo, link, str(fifo)):
        with pytest.raises(ImageLoadError, match=r"is not a regular file but a named pipe \(FIFO\)") as caught:
            load_image(path)
        assert str(path) in str(caught.value)
    with pytest.raises(ImageLoadError, match=r"pipe is not a regular file but a named pipe"):
        explain(toy_model, fifo, config=FAST)
    with pytest.raises(ImageLoadError, match=r"not a regular file"):
        toy_model.predict(str(link))


def test_a_fifo_or_a_device_as_weights_torchscript_or_labels_is_refused(no_hang, fifo):
    cases = [
        (lambda path: load_model(weights=path), "weights"),
        (lambda path: load_model(torchscript=path), "torchscript"),
        (lambda path: load_model(labels=path), "labels"),
        (lambda path: classifier_with_weights(nn.Linear(2, 2), path, Preprocessing(), "linear"), "weights"),
    ]
    for load, option in cases:
        for path, kind in ((fifo, "a named pipe"), (Path("/dev/zero"), "a device")):
            with pytest.raises(ModelLoadError, match=f"is not a regular file but {kind}") as caught:
                load(path)
            assert str(path) in str(caught.value) and caught.value.option == option


def test_folders_missing_files_and_dangling_links_say_what_they_are(tmp_path):
    (tmp_path / "gone.png").symlink_to(tmp_path / "nowhere.png")
    with pytest.raises(ImageLoadError, match=r"gone.png: a broken symbolic link \(expected an image file\)"):
        load_image(tmp_path / "gone.png")
    with pytest.raises(ModelLoadError, match=r"is not a regular file but a folder: expected a text file"):
        load_model(labels=tmp_path)


# --- 2. Bounded memory: sizes derived from a file are checked before allocating ---------------------


def test_a_thin_strip_is_refused_from_its_header_before_decoding(tmp_path):
    path = tmp_path / "strip.png"
    path.write_bytes(_png_header(1, 6000))  # 77 bytes; its pixel data is junk, so decoding would fail
    with pytest.raises(ImageLoadError) as caught:
        load_image(path)
    message = str(caught.value)
    assert str(path) in message and f"limit of {MAX_ASPECT_RATIO}" in message and "6,000 times" in message
    assert "damaged" not in message  # refused from the header, before decoding


def test_aspect_ratio_limit_keeps_panoramas_and_is_adjustable(tmp_path):
    wide = tmp_path / "panorama.png"
    Image.new("RGB", (MAX_ASPECT_RATIO * 20, 20), (10, 20, 30)).save(wide)  # exactly at the limit
    assert load_image(wide).size == (MAX_ASPECT_RATIO * 20, 20)
    tall = tmp_path / "tall.png"
    Image.new("L", (3, 3 * MAX_ASPECT_RATIO + 3)).save(tall)
    with pytest.raises(ImageLoadError, match=r"tall.png: 3x153 pixels, its long side is 51 times"):
        load_image(tall)
    assert load_image(tall, max_aspect_ratio=60).size == (3, 153)
    with pytest.raises(ImageLoadError, match=r"image: 1x500 pixels"):
        load_image(Image.new("RGB", (1, 500)))
    with pytest.raises(ImageLoadError, match=r"array: 500x2 pixels"):
        load_image(np.zeros((2, 500, 3), np.uint8))


def test_a_header_declaring_too_many_pixels_is_refused_before_decoding(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(_png_header(12_000, 10_000))
    with pytest.raises(ImageLoadError, match=rf"huge.png: 12000x10000 pixels exceeds the limit of {MAX_PIXELS:,}"):
        load_image(path)


def test_an_array_is_measured_before_it_is_converted():
    # A broadcast view: no memory of its own, but converting it would allocate it (and meet the NaN).
    huge = np.broadcast_to(np.float32(np.nan), (3000, 3000))
    with pytest.raises(ImageLoadError, match=r"array: 3000x3000 pixels exceeds the limit of 1,000,000"):
        load_image(huge, max_pixels=1_000_000)


def test_preprocessing_never_resizes_more_than_the_crop():
    """Resizing the short side of a 1x4,000,000 strip to 256 would need 10^9 x 256 pixels (an
    OverflowError or a terabyte); only the cropped part is resized."""
    prep = Preprocessing(crop=(224, 224), resize=256)
    tensor, geometry = prep(Image.new("RGB", (1, 4_000_000), (200, 100, 50)))
    assert tuple(tensor.shape) == (1, 3, 224, 224)
    assert np.array_equal(prep.to_uint8(tensor)[0, 100, 100], [200, 100, 50])
    left, top, right, bottom = geometry.crop_box
    assert right - left == pytest.approx(224 / 256) and (top + bottom) / 2 == pytest.approx(2_000_000)


def test_cropping_before_resizing_gives_the_pixels_of_resizing_then_cropping(samples):
    for size, prep in ((None, Preprocessing()), ((451, 300), Preprocessing(crop=(299, 299), resize=342))):
        photo = load_image(samples["chelsea"])
        photo = photo if size is None else photo.resize(size)
        tensor, _ = prep(photo)
        scale = prep.resize / min(photo.size)
        new_size = (round(photo.width * scale), round(photo.height * scale))
        left, top = (new_size[0] - prep.crop[1]) // 2, (new_size[1] - prep.crop[0]) // 2
        whole = photo.resize(new_size, Image.BILINEAR).crop((left, top, left + prep.crop[1], top + prep.crop[0]))
        difference = np.abs(prep.to_uint8(tensor)[0].astype(int) - np.asarray(whole, dtype=int))
        assert difference.max() <= 2 and difference.mean() < 0.05  # fixed-point rounding only


@pytest.mark.slow  # a fresh process: importing torch takes seconds
def test_peak_memory_of_a_thin_strip_stays_small():
    """A 1x3000 strip took ~800 MB when the whole photo was resized before cropping; measured in a fresh
    process (the peak resident size of this one says nothing)."""
    code = """
import resource
from PIL import Image
from engine.models.preprocess import Preprocessing
prep = Preprocessing()
prep(Image.new("RGB", (300, 200)))  # warm up torch
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tensor, _ = prep(Image.new("RGB", (1, 3000), (128, 128, 128)))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) // 1024, tuple(tensor.shape))
"""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root, timeout=120, check=True
    )
    grown_mb, shape = done.stdout.split(maxsplit=1)
    assert shape.strip() == "(1, 3, 224, 224)"
    assert int(grown_mb) < 64, f"preprocessing a 1x3000 strip raised the peak memory by {grown_mb} MB"


def test_label_files_and_class_counts_are_bounded_before_a_model_is_built(tmp_path):
    many = tmp_path / "many.txt"
    many.write_text("\n".join(f"c{i}" for i in range(MAX_CLASSES + 1)))
    with pytest.raises(ModelLoadError, match=r"many.txt holds 100,001 class names, more than the limit") as caught:
        load_model(labels=many)
    assert caught.value.option == "labels"
    big = tmp_path / "big.txt"
    big.write_bytes(b"x" * (MAX_LABELS_FILE_BYTES + 1))
    with pytest.raises(ModelLoadError, match=r"big.txt is larger than the limit of 4 MiB"):
        load_model(labels=big)
    for bad in (MAX_CLASSES + 1, 10**12, 0, -5):
        with pytest.raises(ModelLoadError, match=r"the number of classes must be from 1 to 100,000") as caught:
            load_model("efficientnet_lite0", random_weights=True, num_classes=bad)
        assert caught.value.option == "num_classes"
    for bad in (2.5, True, "10"):
        with pytest.raises(ModelLoadError, match=r"the number of classes must be a whole number"):
            load_model("efficientnet_lite0", random_weights=True, num_classes=bad)
    assert load_model("efficientnet_lite0", random_weights=True, num_classes=np.int64(3)).num_classes == 3


# --- 5 and 7. Messages name the real problem and the file --------------------------------------------


def test_a_labels_file_of_the_wrong_length_is_blamed_not_the_built_in_weights(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"class {i}" for i in range(999)))
    with pytest.raises(ModelLoadError) as caught:
        load_model(labels=labels)
    message = str(caught.value)
    assert message.startswith(f"{labels} has 999 class names") and "1000 classes" in message
    assert "expected 1000 class names" in message and caught.value.option == "labels"
    assert ".pth" not in message and "site-packages" not in message


def test_empty_odd_and_non_integer_targets_are_refused_clearly(toy_model):
    for blank in ("", "   ", "\t\n"):
        with pytest.raises(TargetError, match=r"the target class is empty: give a class index from 0 to 9"):
            toy_model.resolve_target(blank)
    for odd in ("²", "٣", "1²", "½"):  # digits to str.isdigit(), not to int()
        with pytest.raises(TargetError, match=r"no class of .* is called or contains"):
            toy_model.resolve_target(odd)
    with pytest.raises(TargetError, match=re.escape(f"class index {'9' * 24}... is out of range")):
        toy_model.resolve_target("9" * 5000)  # int() refuses more than 4300 digits
    assert toy_model.resolve_target(" +3 ") == 3
    with pytest.raises(TargetError, match=r"class index -1 is out of range"):
        toy_model.resolve_target("-1")
    for value in (np.int64(4), np.uint8(4), np.int32(4), 4):
        assert toy_model.resolve_target(value) == 4 and type(toy_model.resolve_target(value)) is int
    for bad, kind in ((True, "bool"), (4.0, "float"), (np.float32(4), "float32"), (None, "NoneType"), ([4], "list")):
        with pytest.raises(TargetError, match=rf"must be an integer index or a name, not {kind}"):
            toy_model.resolve_target(bad)


def test_a_float_tiff_with_nan_is_named(tmp_path):
    path = tmp_path / "scan.tif"
    values = np.linspace(0, 1, 20 * 10, dtype=np.float32).reshape(10, 20)
    values[3, 4] = np.nan
    Image.fromarray(values, mode="F").save(path)
    with pytest.raises(ImageLoadError, match=r"scan.tif: the image contains NaN or infinite values") as caught:
        load_image(path)
    assert str(path) in str(caught.value)


def test_read_errors_say_cannot_be_read_and_only_bad_data_is_damaged():
    path = "/photos/cat.jpg"
    denied = read_error(path, PermissionError(errno.EACCES, os.strerror(errno.EACCES), path))
    assert str(denied).startswith(f"{path} cannot be read: Permission denied") and "permissions" in str(denied)
    failing_disk = read_error(path, OSError(errno.EIO, os.strerror(errno.EIO)))
    assert str(failing_disk) == f"{path} cannot be read: Input/output error"
    for decoding in (OSError("image file is truncated (3 bytes not processed)"), SyntaxError("bad"), ValueError()):
        assert str(read_error(path, decoding)).startswith(f"{path}: the image data is damaged or truncated")


def _as_unprivileged(call) -> tuple[str, str]:
    """``call()``'s outcome, ``(exception class name, message)`` or ``("ok", "")``, run where file
    permissions apply: here when not root, else in a child process as the user ``nobody``."""

    def outcome() -> tuple[str, str]:
        try:
            call()
        except Exception as exc:
            return type(exc).__name__, str(exc)
        return "ok", ""

    if os.geteuid() != 0:
        return outcome()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            result = outcome()
        except BaseException as exc:
            result = ("child failed", repr(exc))
        os.write(write_end, json.dumps(result).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        data = reader.read()
    os.waitpid(pid, 0)
    kind, message = json.loads(data)
    if kind == "child failed":
        pytest.skip(f"cannot drop root privileges here: {message}")
    return kind, message


@pytest.fixture
def shared_dir():
    """A folder the user ``nobody`` can enter (pytest's own temporary folders are root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="fgvis-hostile-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        for path in folder.iterdir():
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)
        shutil.rmtree(folder)


def test_an_unreadable_photo_is_called_unreadable_not_damaged(shared_dir, photo, toy_model):
    locked = shared_dir / "locked.png"
    shutil.copy(photo, locked)
    locked.chmod(0)
    kind, message = _as_unprivileged(lambda: load_image(locked))
    assert kind == "ImageLoadError" and message.startswith(f"{locked} cannot be read: Permission denied")
    kind, message = _as_unprivileged(lambda: explain(toy_model, locked, config=FAST))
    assert kind == "ImageLoadError" and str(locked) in message and "damaged" not in message


def test_a_photo_in_a_folder_that_cannot_be_entered_is_an_image_error(shared_dir, photo, toy_model):
    closed = shared_dir / "closed"
    closed.mkdir()
    inside = closed / "photo.png"
    shutil.copy(photo, inside)
    closed.chmod(0o700 if os.geteuid() == 0 else 0)  # root owns it: nobody cannot enter
    for call in (lambda: load_image(inside), lambda: explain(toy_model, inside, config=FAST)):
        kind, message = _as_unprivileged(call)
        assert kind == "ImageLoadError" and message.startswith(f"{inside} cannot be read (Permission denied)")


# --- 9. The Python API: shapes explain() cannot take, NumPy targets -----------------------------------


def test_tensors_of_the_wrong_shape_are_config_errors_with_the_expected_shape(toy_model):
    cases = {
        (1, 1, 32, 32): r"has 1 channel but TinyCNN \(fruits\) takes RGB: expected a float tensor \(N, 3, H, W\)",
        (32, 32, 3): r"\(1, 32, 32, 3\) has 32 channels.*e.g. \(1, 3, 32, 32\).*looks channels-last",
        (0, 3, 32, 32): r"\(0, 3, 32, 32\) is empty: expected .* with N >= 1",
        (1, 3, 0, 32): r"is empty",
    }
    for shape, words in cases.items():
        with pytest.raises(ConfigError, match=words):
            explain(toy_model, torch.zeros(shape), config=FAST)


def test_a_bare_module_that_fails_on_the_input_is_a_config_error():
    module = TinyCNN().eval()
    with pytest.raises(ConfigError, match=r"TinyCNN fails on the input tensor of shape \(2, 1, 16, 16\): .*channels"):
        explain(module, torch.zeros(2, 1, 16, 16), config=FAST)

    class Segmenter(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(
        ConfigError, match=r"Segmenter is not a classifier: it returns a tensor of shape \(1, 3, 8, 8\)"
    ):
        explain(Segmenter(), torch.zeros(1, 3, 8, 8), config=FAST)


def test_a_model_whose_output_is_refused_leaves_nothing_in_the_cache():
    class Pair(nn.Module):
        def forward(self, x):
            return x.mean((2, 3)), x

    cache = ReferenceCache(size=2)
    for _ in range(2):
        with pytest.raises(ConfigError, match="Pair is not a classifier: it returns no tensor"):
            explain(Pair(), torch.zeros(1, 3, 8, 8), config=FAST, cache=cache)
    assert cache.hits == 0


def test_running_out_of_memory_on_the_reference_pass_is_not_blamed_on_the_input():
    class Starved(nn.Module):
        def forward(self, x):
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")

    class Refusing(nn.Module):
        def forward(self, x):
            raise TargetError("the model's own complaint")

    with pytest.raises(DeviceError, match="ran out of memory on the reference pass of a batch of 2"):
        explain(Starved(), torch.zeros(2, 3, 8, 8), config=FAST)
    with pytest.raises(TargetError, match="the model's own complaint"):
        explain(Refusing(), torch.zeros(1, 3, 8, 8), config=FAST)


def test_images_as_arrays_channels_last_work_and_channels_first_get_a_hint(toy_model):
    pixels = np.random.default_rng(0).random((40, 48, 3), dtype=np.float32)
    result = explain(toy_model, pixels, 2, config=FAST)
    assert result.geometries[0].original_size == (48, 40) and result.target.tolist() == [2]
    with pytest.raises(ImageLoadError, match=r"channels first\? use array.transpose\(1, 2, 0\)"):
        explain(toy_model, pixels.transpose(2, 0, 1), config=FAST)


def test_numpy_integer_targets_are_accepted_and_bools_and_floats_refused(toy_model, photo):
    assert explain(toy_model, photo, np.int64(5), config=FAST).target.tolist() == [5]
    assert explain(toy_model, [photo, photo], np.array([1, 7]), config=FAST).target.tolist() == [1, 7]
    assert explain(toy_model, photo, [np.int32(2), "fig", None], config=FAST).target.shape == (3,)
    assert explain(toy_model, photo, torch.tensor(4), config=FAST).target.tolist() == [4]
    refused = [
        (True, "bool"),
        (5.0, "float"),
        (np.float64(5), "float64"),
        (np.bool_(True), "bool"),
        ((1, 2.5), "float"),
    ]
    for bad, kind in refused:
        with pytest.raises(TargetError, match=rf"a target must be .*, not {kind}"):
            explain(toy_model, photo, bad, config=FAST)
    with pytest.raises(TargetError, match=r"must hold integer class indices, not float64"):
        explain(toy_model, photo, np.array([1.0, 2.0]), config=FAST)
    with pytest.raises(TargetError, match=r"must hold integer class indices, not torch.float32"):
        explain(toy_model, photo, torch.tensor([1.0]), config=FAST)
    with pytest.raises(TargetError, match=r"the target class is empty"):
        explain(toy_model, photo, "", config=FAST)
