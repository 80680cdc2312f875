"""Hostile and damaged session files (issue 16, classes 2 and 6): every case is a real session saved by
``save_session`` and then tampered with, byte by byte where needed (a small zip writer below forges what
``zipfile`` will not write: encrypted flags, Deflate64 ids, zip bombs). Each must end in a
``SessionError`` that names the file and the problem, quickly and with bounded memory."""

from __future__ import annotations

import copy
import io
import json
import struct
import subprocess
import sys
import time
import tracemalloc
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import ClassifierModel, FGVisConfig, Preprocessing, explain
from engine.models import images
from engine.results import session as session_module
from engine.results.record import ExplanationRecord
from engine.results.session import (
    MAX_IMAGES,
    MAX_JSON_BYTES,
    MAX_MEMBER_BYTES,
    MAX_MEMBERS,
    MAX_RESULTS,
    MAX_TOTAL_BYTES,
    Session,
    SessionError,
    SessionImage,
    load_session,
    placeholder_size,
    session_bytes,
)

from ..conftest import FRUITS
from .toy_models import TinyCNN

NAME = "review.fgvis"
MB = 1 << 20
#: Peak memory a refusal may take (tracemalloc: Python objects and numpy arrays).
MEMORY_LIMIT = 200 * MB
#: Seconds a refusal may take on a busy 2-core machine (they take milliseconds).
TIME_LIMIT = 5.0


# ---------------------------------------------------------------- a valid session, saved for real
@dataclass
class Valid:
    """The parts of a valid session: ``session.json`` as a dict and each result's arrays."""

    document: dict
    arrays: dict[str, dict[str, np.ndarray]]  # member name -> arrays


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> Valid:
    """One photo with two results (preserve, delete) of the toy classifier, saved with ``save_session``."""
    torch.manual_seed(0)
    preprocessing = Preprocessing(crop=(32, 32), resize=36, mean=(0.0,) * 3, std=(255.0,) * 3)
    model = ClassifierModel(TinyCNN(classes=len(FRUITS)).eval(), preprocessing, list(FRUITS), "TinyCNN")
    folder = tmp_path_factory.mktemp("valid")
    photo = folder / "photo.png"
    y, x = np.mgrid[0:90, 0:120]
    pixels = np.stack([x * 2, y * 2, np.full_like(x, 60)], axis=2).astype(np.uint8)
    from PIL import Image

    Image.fromarray(pixels).save(photo)
    records = []
    for game in ("preserve", "delete"):
        result = explain(model, photo, game=game, config=FGVisConfig(steps=3))
        records.append(
            ExplanationRecord.from_explanation(result, 0, model, image_name=photo.name, image_path=str(photo))
        )
    path = folder / NAME
    session_module.save_session(
        path,
        Session(
            [SessionImage(photo.name, str(photo), None, "note", records)], {"current": 0, "method": {"steps": 3}}, "1.0"
        ),
    )
    with zipfile.ZipFile(path) as archive:
        document = json.loads(archive.read("session.json"))
        arrays = {}
        for image in document["images"]:
            for result in image["results"]:
                with np.load(io.BytesIO(archive.read(result["arrays"]))) as npz:
                    arrays[result["arrays"]] = dict(npz)
    return Valid(document, arrays)


# ---------------------------------------------------------------- a zip writer that forges
@dataclass
class Member:
    name: str
    data: bytes  # as stored: raw deflate for method 8
    size: int  # uncompressed size the directory declares
    crc: int
    method: int = zipfile.ZIP_DEFLATED
    flags: int = 0


def member(name: str, content: bytes, *, method: int = zipfile.ZIP_DEFLATED, **forged) -> Member:
    data = content
    if method == zipfile.ZIP_DEFLATED:
        packer = zlib.compressobj(6, zlib.DEFLATED, -15)
        data = packer.compress(content) + packer.flush()
    return Member(
        **{"name": name, "data": data, "size": len(content), "crc": zlib.crc32(content), "method": method, **forged}
    )


_ZERO_CHUNK = 16 * MB
_bomb_cache: dict = {}


def bomb(name: str, size: int, prefix: bytes = b"", filler: int = 0) -> Member:
    """A genuine deflate bomb: ``prefix`` then ``size`` bytes of ``filler`` in about ``size / 1000`` bytes
    (blocks flushed with ``Z_FULL_FLUSH`` compress to the same bytes, so one is made and repeated)."""
    assert size % _ZERO_CHUNK == 0
    key = (size, prefix, filler)
    if key not in _bomb_cache:
        chunk = bytes([filler]) * _ZERO_CHUNK
        packer = zlib.compressobj(9, zlib.DEFLATED, -15)
        head = packer.compress(prefix) + packer.flush(zlib.Z_FULL_FLUSH)
        block = packer.compress(chunk) + packer.flush(zlib.Z_FULL_FLUSH)
        crc = zlib.crc32(prefix)
        for _ in range(size // _ZERO_CHUNK):
            crc = zlib.crc32(chunk, crc)
        _bomb_cache[key] = (head + block * (size // _ZERO_CHUNK) + packer.flush(), crc)
    data, crc = _bomb_cache[key]
    return Member(name, data, len(prefix) + size, crc)


def zip_bytes(members: list[Member]) -> bytes:
    """A zip of ``members`` exactly as given (no zip64)."""
    out, directory = bytearray(), bytearray()
    for m in members:
        name, offset = m.name.encode(), len(out)
        # Fields both headers share: flags, method, time, date, CRC-32, compressed and real size, name length.
        shared = (m.flags, m.method, 0, 33, m.crc, len(m.data), m.size, len(name))
        out += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, *shared, 0) + name + m.data
        directory += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, *shared, 0, 0, 0, 0, 0, offset) + name
    start = len(out)
    out += directory + struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(directory), start, 0
    )
    return bytes(out)


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=array.dtype.hasobject)
    return buffer.getvalue()


def npy_header(shape: tuple, descr: str = "<f4", data: bytes = b"") -> bytes:
    """An ``.npy`` file whose header declares ``shape``/``descr`` over ``data``, whatever their size."""
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape!r}, }}"
    text += " " * (-(len(text) + 11) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1") + data


def npz(arrays: dict[str, np.ndarray | bytes], method: int = zipfile.ZIP_STORED) -> bytes:
    """An ``.npz`` (``numpy.savez`` stores its members) of arrays or ready ``.npy`` bytes."""
    return zip_bytes(
        [
            member(f"{key}.npy", value if isinstance(value, bytes) else npy(value), method=method)
            for key, value in arrays.items()
        ]
    )


def build(valid: Valid, *, document=None, text=None, arrays=None, members=None, extra=()) -> bytes:
    """The valid session with parts replaced: ``document`` (a dict), ``text`` (session.json's raw bytes),
    ``arrays`` (member name -> dict of arrays or ready ``.npz`` bytes), ``members`` (name -> Member)."""
    document = valid.document if document is None else document
    raw = json.dumps(document).encode() if text is None else text
    parts = {"session.json": member("session.json", raw)}
    for name, values in {**valid.arrays, **(arrays or {})}.items():
        parts[name] = member(name, values if isinstance(values, bytes) else npz(values))
    parts.update(members or {})
    return zip_bytes([*parts.values(), *extra])


def first_meta(document: dict) -> dict:
    return document["images"][0]["results"][0]["meta"]


def edit(valid: Valid, change) -> bytes:
    """The valid session with ``change(document)`` applied to a copy of its ``session.json``."""
    document = copy.deepcopy(valid.document)
    change(document)
    return build(valid, document=document)


def edit_meta(valid: Valid, key: str, value) -> bytes:
    return edit(valid, lambda document: first_meta(document).__setitem__(key, value))


def edit_arrays(valid: Valid, **changes) -> bytes:
    """Result 1's arrays with ``changes`` (``None`` removes one)."""
    name = valid.document["images"][0]["results"][0]["arrays"]
    arrays = {**valid.arrays[name], **changes}
    return build(valid, arrays={name: {k: v for k, v in arrays.items() if v is not None}})


def first_member(valid: Valid) -> str:
    return valid.document["images"][0]["results"][0]["arrays"]


def raw_json(valid: Valid, key: str, literal: str) -> bytes:
    """session.json with result 1's ``key`` written as the JSON text ``literal`` (beyond what json.dumps writes)."""
    document = copy.deepcopy(valid.document)
    first_meta(document)[key] = "@@VALUE@@"
    return build(valid, text=json.dumps(document).replace('"@@VALUE@@"', literal).encode())


def view(valid: Valid, value) -> bytes:
    return edit(valid, lambda document: document.__setitem__("view", value))


def reviews(valid: Valid, value) -> bytes:
    return edit(valid, lambda document: document.__setitem__("reviews", value))


def config(valid: Valid, **changes) -> bytes:
    return edit(valid, lambda document: first_meta(document)["config"].update(changes))


def many_results(valid: Valid, count: int) -> bytes:
    """``count`` results that all point at result 1's array member."""
    document = copy.deepcopy(valid.document)
    document["images"][0]["results"] = document["images"][0]["results"][:1] * count
    return build(valid, document=document)


def with_member(valid: Valid, forged: Member) -> bytes:
    return build(valid, members={forged.name: forged})


def shapes(mask_side: int, other_side: int) -> dict[str, np.ndarray]:
    return {
        "mask": np.zeros((3, mask_side, mask_side), np.float32),
        "evidence": np.zeros((other_side, other_side), np.float32),
    }


# ---------------------------------------------------------------- the corpus
# (id, build(valid) -> bytes, what the message must say). Bomb cases are also in BOMBS (memory measured).
# fmt: off
CASES = [
    # -- the zip container
    ("not a zip", lambda v: b"garbage, not a zip" * 10, r"not an FGVis Studio session \(not a zip file\)"),
    ("truncated zip", lambda v: build(v)[:-30], r"not an FGVis Studio session \(not a zip file"),
    ("no session.json", lambda v: zip_bytes([member("other.json", b"{}")]), r"no session.json"),
    ("encrypted member", lambda v: with_member(v, member(first_member(v), npz(v.arrays[first_member(v)]), flags=1)),
     r"member 'arrays/result_0.npz' is encrypted"),
    ("deflate64 member", lambda v: with_member(v, member(first_member(v), npz(v.arrays[first_member(v)]), method=9)),
     r"compression method 9 \(Deflate64\); only stored and deflated"),
    ("lzma member", lambda v: with_member(v, member(first_member(v), b"x", method=14)), r"method 14 \(LZMA\)"),
    ("too many members", lambda v: build(v, extra=[member(f"pad/{i}", b"") for i in range(MAX_MEMBERS + 1)]),
     rf"number of zip members is {MAX_MEMBERS + 4}, more than the limit of {MAX_MEMBERS}"),
    ("huge zip directory", lambda v: build(v, extra=[member("x" * 60_000 + str(i), b"") for i in range(20)]),
     r"the zip directory's size in bytes is \d+, more than the limit"),
    ("member bomb", lambda v: with_member(v, bomb(first_member(v), 256 * MB)),
     rf"member 'arrays/result_0.npz' inflates to 268,435,456 bytes, more than the limit of {MAX_MEMBER_BYTES:,}"),
    ("session.json bomb", lambda v: build(v, members={"session.json": bomb("session.json", 64 * MB,
                                                                           json.dumps(v.document).encode(), 32)}),
     rf"session.json inflates to 67,1\d\d,\d\d\d bytes, more than the limit of {MAX_JSON_BYTES:,}"),
    ("total bomb", lambda v: build(v, extra=[bomb(f"pad/{i}", 112 * MB) for i in range(20)]),
     rf"members inflate to 2,34\d,\d\d\d,\d\d\d bytes, more than the limit of {MAX_TOTAL_BYTES:,}"),
    ("size the directory understates", lambda v: with_member(v, Member(**{**bomb(first_member(v), 256 * MB).__dict__,
                                                                          "size": 4096})),
     r"review.fgvis is damaged: .*(CRC|arrays)"),
    # -- session.json
    ("not utf-8", lambda v: build(v, text=b'{"format": "\xff"}'), r"session.json is not UTF-8"),
    ("not json", lambda v: build(v, text=b'{"format": '), r"session.json is not valid JSON"),
    ("a list, not an object", lambda v: build(v, text=b"[]"), r"not an FGVis Studio session"),
    ("deep nesting", lambda v: build(v, text=b'{"format": "fgvis-session", "view": ' + b"[" * 200_000 + b"]" * 200_000
                                     + b"}"), r"session.json nests 200001 levels deep, more than the limit of 32"),
    ("a million values", lambda v: build(v, text=b"[" + b"0," * 1_000_000 + b"0]"),
     r"session.json holds about 1,000,00\d values, more than the limit of 1,000,000"),
    ("quote marks only", lambda v: build(v, text=b'"' * (4 * MB)), r"session.json holds about 2,097,152 values"),
    ("an unterminated string of escapes", lambda v: build(v, text=b'{"format": "' + b'\\"' * MB),
     r"session.json is not valid JSON"),
    ("deep nesting in a string is fine, unbalanced outside is not", lambda v: edit_meta(v, "notes", "[" * 100),
     None),
    ("huge integer", lambda v: raw_json(v, "target", "1" + "0" * 5000),
     r"an integer of 5,001 digits, more than the limit of 20"),
    ("integer beyond 64 bits", lambda v: raw_json(v, "target", str(10**19)),
     r"result 1: target is 10000000000000000000, outside 0..9,223,372,036,854,775,807"),
    ("float overflow", lambda v: raw_json(v, "lambda", "1e400"), r"lambda is inf, expected a finite number"),
    ("newer version", lambda v: edit(v, lambda d: d.__setitem__("version", 99)), r"saved by a newer FGVis Studio"),
    ("version as text", lambda v: edit(v, lambda d: d.__setitem__("version", "1")),
     r"format version must be a whole number, not the text '1'"),
    ("images an object", lambda v: edit(v, lambda d: d.__setitem__("images", {})),
     r"images must be a list, not an object"),
    ("too many images", lambda v: edit(v, lambda d: d.__setitem__("images", [{"name": "x"}] * (MAX_IMAGES + 1))),
     rf"number of images is {MAX_IMAGES + 1}, more than the limit of {MAX_IMAGES}"),
    ("image a string", lambda v: edit(v, lambda d: d["images"].__setitem__(0, "photo.png")),
     r"image 1 must be an object, not the text 'photo.png'"),
    ("image name a number", lambda v: edit(v, lambda d: d["images"][0].__setitem__("name", 5)),
     r"image 1: name must be text, not the number 5"),
    ("image notes too long", lambda v: edit(v, lambda d: d["images"][0].__setitem__("notes", "x" * 200_000)),
     r"notes has 200,000 characters, more than the limit of 100,000"),
    ("results an object", lambda v: edit(v, lambda d: d["images"][0].__setitem__("results", {"a": 1})),
     r"results must be a list, not an object"),
    ("too many results", lambda v: many_results(v, MAX_RESULTS + 1),
     rf"number of results is {MAX_RESULTS + 1}, more than the limit of {MAX_RESULTS}"),
    ("1000 results on one member", lambda v: many_results(v, 1000),
     r"result 1 and image 1 \('photo.png'\), result 2 point at the same array member 'arrays/result_0.npz'"),
    ("arrays member missing", lambda v: edit(v, lambda d: d["images"][0]["results"][0].__setitem__("arrays", "no")),
     r"damaged: image 1 \('photo.png'\), result 1's array member 'no' is missing"),
    ("metadata a list", lambda v: edit(v, lambda d: d["images"][0]["results"][0].__setitem__("meta", [])),
     r"result 1: its metadata must be an object, not a list of 0 items"),
    ("target missing", lambda v: edit(v, lambda d: first_meta(d).pop("target")), r"result 1: target is missing"),
    ("target as text", lambda v: edit_meta(v, "target", "3"), r"target must be a whole number, not the text '3'"),
    ("target as bool", lambda v: edit_meta(v, "target", True), r"target must be a whole number, not true/false"),
    ("negative target", lambda v: edit_meta(v, "target", -1), r"target is -1, outside 0"),
    ("probability 2.5", lambda v: edit_meta(v, "prob_original", 2.5), r"prob_original is 2.5, expected a finite"),
    ("reference probability NaN", lambda v: edit_meta(v, "prob_reference", float("nan")), r"prob_reference is nan"),
    ("unknown game", lambda v: edit_meta(v, "game", "win"), r"game must be one of preserve, delete, not 'win'"),
    ("defense as text", lambda v: edit_meta(v, "defense", "yes"), r"defense must be true or false"),
    ("label an object", lambda v: edit_meta(v, "target_label", {"a": 1}), r"target_label must be text, not an object"),
    ("top-5 row too short", lambda v: edit_meta(v, "top5_original", [[1, "x"]]),
     r"top5_original row 1 must be \[class index, name, probability\]"),
    ("warnings an object", lambda v: edit_meta(v, "warnings", {"a": 1}), r"warnings must be a list, not an object"),
    # -- crop boxes
    ("crop box as text", lambda v: edit_meta(v, "crop_box", "0,0,10,10"), r"crop_box must be 4 numbers"),
    ("crop box of 3", lambda v: edit_meta(v, "crop_box", [0, 0, 10]), r"crop_box must be 4 numbers"),
    ("crop box of strings", lambda v: edit_meta(v, "crop_box", ["0", "0", "9", "9"]),
     r"crop_box must be a number, not the text '0'"),
    ("crop box NaN", lambda v: edit_meta(v, "crop_box", [0, 0, float("nan"), 10]), r"crop_box is nan"),
    ("crop box huge", lambda v: edit_meta(v, "crop_box", [0, 0, 1e6, 1e6]), r"reaches beyond the largest photo"),
    ("crop box inverted", lambda v: edit_meta(v, "crop_box", [10, 10, 0, 0]), r"crop_box .* is empty or inverted"),
    ("crop box negative", lambda v: edit_meta(v, "crop_box", [-5, 0, 10, 10]), r"crop_box is -5"),
    ("crop boxes spanning too much", lambda v: edit(v, lambda d: (
        first_meta(d).__setitem__("crop_box", [0, 0, images.MAX_PIXELS, 1]),
        d["images"][0]["results"][1]["meta"].__setitem__("crop_box", [0, 0, 1, images.MAX_PIXELS]))),
     r"image 1 \('photo.png'\)'s crop boxes span \S+ pixels, beyond the largest photo"),
    # -- stored config
    ("invalid config", lambda v: config(v, steps=0), r"result 1: invalid config: steps must be at least 1"),
    ("unknown setting", lambda v: config(v, bogus=1), r"config has an unknown setting 'bogus'"),
    ("setting of the wrong type", lambda v: config(v, steps="many"), r"config steps must be a whole number"),
    ("named choice not text", lambda v: config(v, optimizer=3), r"config optimizer must be text, not the number 3"),
    ("named choice too long", lambda v: config(v, loss="x" * 5000), r"config loss has 5,000 characters, more than"),
    ("infinite setting", lambda v: config(v, lr=float("inf")), r"config lr is inf"),
    ("config a list", lambda v: edit_meta(v, "config", []), r"config must be an object of settings, not a list"),
    # -- view settings
    ("view a list", lambda v: view(v, []), r"the view settings must be an object, not a list"),
    ("current as text", lambda v: view(v, {"current": "0"}), r"view current must be a whole number"),
    ("method a list", lambda v: view(v, {"method": [1]}), r"view method must be an object"),
    ("method value huge", lambda v: view(v, {"method": {"steps": 1e300}}), r"view method 'steps' is 1e\+300"),
    ("method value an object", lambda v: view(v, {"method": {"game": {"a": 1}}}),
     r"view method 'game' must be text, not an object"),
    ("layer a list", lambda v: view(v, {"layers": {"Evidence": [1]}}), r"view layers 'Evidence' must be an object"),
    # -- dataset reviews' notes
    ("reviews an object", lambda v: reviews(v, {"a": 1}), r"reviews must be a list, not an object"),
    ("too many reviews", lambda v: reviews(v, [{"results_dir": "b"}] * (session_module.MAX_REVIEWS + 1)),
     rf"number of dataset reviews is {session_module.MAX_REVIEWS + 1}, more than the limit"),
    ("review a list", lambda v: reviews(v, [[]]), r"dataset review 1 must be an object, not a list"),
    ("review folder missing", lambda v: reviews(v, [{"notes": {}}]),
     r"dataset review 1: results_dir must be text, not null"),
    ("review game unknown", lambda v: reviews(v, [{"results_dir": "b", "game": "win"}]),
     r"dataset review 1's game must be preserve or delete, not the text 'win'"),
    ("review notes a list", lambda v: reviews(v, [{"results_dir": "b", "notes": ["x"]}]),
     r"dataset review 1's notes must be an object, not a list"),
    ("review note key", lambda v: reviews(v, [{"results_dir": "b", "notes": {"../x": "t"}}]),
     r"a note's key must be <class>:<cluster>, not '../x'"),
    ("review note a number", lambda v: reviews(v, [{"results_dir": "b", "notes": {"1:2": 3}}]),
     r"dataset review 1: note 1:2 must be text"),
    ("review note too long", lambda v: reviews(v, [{"results_dir": "b", "notes": {"1:2": "x" * 100_001}}]),
     r"dataset review 1: note 1:2 .*100,001"),
    ("review folder with a NUL", lambda v: reviews(v, [{"results_dir": "a\x00b"}]),
     r"dataset review 1's results_dir has control characters"),
    ("review note key with a leading zero", lambda v: reviews(v, [{"results_dir": "b", "notes": {"01:2": "t"}}]),
     r"a note's key must be <class>:<cluster>, not '01:2'"),
    ("review note key in other digits", lambda v: reviews(v, [{"results_dir": "b", "notes": {"\u0661:2": "t"}}]),
     r"a note's key must be <class>:<cluster>"),
    ("review notes fine", lambda v: reviews(v, [{"results_dir": "b", "notes": {"1:2": "clever hans"}}]), None),
    # -- arrays
    ("mask (3, 5)", lambda v: edit_arrays(v, mask=np.zeros((3, 5), np.float32)),
     r"review.fgvis: image 1 \('photo.png'\), result 1: mask has shape \(3, 5\), expected \(3, H, W\)"),
    ("scalar mask", lambda v: edit_arrays(v, mask=np.float32(0.5)), r"mask has shape \(\), expected \(3, H, W\)"),
    ("mask of another size", lambda v: edit_arrays(v, **shapes(16, 32)),
     r"evidence has shape \(32, 32\), expected \(16, 16\) \(the mask's 16x16\)"),
    ("mask side over the limit", lambda v: edit_arrays(v, mask=npy_header((3, 4096, 1), data=bytes(49_152))),
     r"mask has shape \(3, 4096, 1\): H and W must be 1 to 2048"),
    ("integer mask", lambda v: edit_arrays(v, mask=np.zeros((3, 32, 32), np.uint8)),
     r"mask has dtype uint8, expected floating point"),
    ("float picture", lambda v: edit_arrays(v, input_rgb=np.zeros((32, 32, 3), np.float32)),
     r"input_rgb has dtype float32, expected uint8"),
    ("object array", lambda v: edit_arrays(v, mask=np.array([{"a": 1}, None], dtype=object)),
     r"mask holds Python objects \(dtype object\)"),
    ("NaN mask", lambda v: edit_arrays(v, mask=np.full((3, 32, 32), np.nan, np.float32)),
     r"mask has values that are not finite"),
    ("evidence missing", lambda v: edit_arrays(v, evidence=None), r"the evidence array is missing"),
    ("history 2-D", lambda v: edit_arrays(v, history_lambda=np.zeros((2, 2), np.float32)),
     r"history_lambda has shape \(2, 2\)"),
    ("1 GB declared in a header", lambda v: edit_arrays(v, mask=npy_header((3, 9459, 9459))),
     r"mask declares shape \(3, 9459, 9459\) of float32 \(1,073,\d\d\d,\d\d\d bytes\) but its member holds 0"),
    ("36 TiB declared in a header", lambda v: edit_arrays(v, mask=npy_header((3, 1 << 21, 1 << 21), "<f8")),
     r"mask declares shape \(3, 2097152, 2097152\) of float64"),
    ("a header of 3000 sides", lambda v: edit_arrays(v, mask=npy_header((1,) * 3000, data=bytes(4))),
     r"mask has shape \(1, 1, 1, 1, 1, 1, 1, 1, … 3000 sides\), expected \(3, H, W\)"),
    ("negative side in a header", lambda v: edit_arrays(v, mask=npy_header((3, -1, 5))),
     r"mask has a negative side|invalid .npy header"),
    ("header garbage", lambda v: edit_arrays(v, mask=b"\x93NUMPY\x01\x00\x10\x00{'descr': [[[[  \n"),
     r"mask has an invalid .npy header"),
    ("not an npy", lambda v: edit_arrays(v, mask=b"hello, world"), r"mask has an invalid .npy header"),
    ("truncated array", lambda v: edit_arrays(v, mask=npy(np.zeros((3, 32, 32), np.float32))[:-100]),
     r"mask declares shape \(3, 32, 32\) of float32 \(12,288 bytes\) but its member holds 12,188"),
    ("arrays not an npz", lambda v: build(v, arrays={first_member(v): b"not a zip file"}),
     r"damaged: image 1 \('photo.png'\), result 1's arrays \('arrays/result_0.npz'\) are not an .npz file"),
    ("npz with many members", lambda v: build(v, arrays={first_member(v): npz(
        {**v.arrays[first_member(v)], **{f"x{i}": np.zeros(1) for i in range(40)}})}),
     r"result 1's arrays .*: the number of zip members is 49, more than the limit of 32"),
    ("bomb inside the npz", lambda v: build(v, arrays={first_member(v): zip_bytes([
        *(member(f"{k}.npy", npy(a)) for k, a in v.arrays[first_member(v)].items() if k != "mask"),
        bomb("mask.npy", 256 * MB, npy_header((3, 8192, 8192))[:128])])}),
     rf"result 1's arrays .*: member 'mask.npy' inflates to 268,435,584 bytes, more than the limit of "
     rf"{MAX_MEMBER_BYTES:,}"),
    ("encrypted member inside the npz", lambda v: build(v, arrays={first_member(v): zip_bytes([
        member(f"{k}.npy", npy(a), flags=1) for k, a in v.arrays[first_member(v)].items()])}),
     r"result 1's arrays .*: member '\w+.npy' is encrypted"),
]
# fmt: on
BOMBS = {
    "a million values",
    "quote marks only",
    "member bomb",
    "session.json bomb",
    "total bomb",
    "size the directory understates",
    "deep nesting",
    "huge integer",
    "1 GB declared in a header",
    "36 TiB declared in a header",
    "1000 results on one member",
    "bomb inside the npz",
    "too many members",
    "huge zip directory",
}


def test_the_valid_session_loads_through_the_forging_writer(valid, tmp_path):
    """The corpus's writer makes files the loader reads: every refusal below is the tampering's doing."""
    path = tmp_path / NAME
    path.write_bytes(build(valid))
    session = load_session(path)
    (image,) = session.images
    assert [r.game for r in image.results] == ["preserve", "delete"]
    assert session.view == {"current": 0, "method": {"steps": 3}} and image.notes == "note"
    mask = valid.arrays[first_member(valid)]["mask"]
    assert np.array_equal(image.results[0].mask, mask) and image.results[0].mask.flags.writeable


@pytest.mark.parametrize(("case", "make", "message"), CASES, ids=[case[0] for case in CASES])
def test_a_hostile_session_is_refused_with_a_message_naming_the_file_and_the_problem(
    valid, tmp_path, case, make, message
):
    path = tmp_path / NAME
    path.write_bytes(make(valid))
    tracemalloc.start()
    started = time.perf_counter()
    try:
        if message is None:  # a control case: the loader must accept it
            load_session(path)
            return
        with pytest.raises(SessionError) as raised:
            load_session(path)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    text = str(raised.value)
    assert text.startswith(NAME), text
    assert raised.match(message)
    assert "Traceback" not in text and len(text) < 600, text
    assert elapsed < TIME_LIMIT, f"{case}: {elapsed:.2f} s"
    assert peak < (MEMORY_LIMIT if case in BOMBS else 64 * MB), f"{case}: peak {peak / MB:.1f} MB"


@pytest.mark.slow
def test_every_bomb_is_refused_with_little_memory_in_a_fresh_process(valid, tmp_path):
    """Peak resident memory of a fresh interpreter (``ru_maxrss``, which sees every allocation, not only
    Python's) grows by less than ``MEMORY_LIMIT`` while it refuses all the bombs."""
    paths = []
    for case, make, _ in CASES:
        if case in BOMBS:
            paths.append(tmp_path / f"{len(paths)}.fgvis")
            paths[-1].write_bytes(make(valid))
    script = (
        "import resource, sys, time\n"
        "from engine.results.session import SessionError, load_session\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "started = time.perf_counter()\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        load_session(path)\n"
        "    except SessionError:\n"
        "        pass\n"
        "    else:\n"
        "        raise SystemExit(f'{path} was accepted')\n"
        "grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before\n"
        "print(grown * 1024, time.perf_counter() - started)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stderr[-2000:]
    grown, elapsed = done.stdout.split()
    assert int(grown) < MEMORY_LIMIT, f"peak RSS grew by {int(grown) / MB:.0f} MB"
    assert float(elapsed) < TIME_LIMIT * 2, f"{len(paths)} bombs took {float(elapsed):.1f} s"


def test_a_session_over_a_limit_is_refused_when_saved_not_when_reopened(valid, tmp_path):
    path = tmp_path / NAME
    path.write_bytes(build(valid))
    session = load_session(path)
    record = session.images[0].results[0]
    session.images[0].results = [record] * (MAX_RESULTS + 1)
    with pytest.raises(SessionError, match="cannot be saved: it has 1,001 results, more than the 1,000"):
        session_module.save_session(tmp_path / "big.fgvis", session)
    assert not (tmp_path / "big.fgvis").exists()


def test_an_invalid_stored_config_is_a_session_error_not_a_config_error(valid, tmp_path):
    from engine.errors import ConfigError

    path = tmp_path / NAME
    path.write_bytes(config(valid, optimizer="magic"))
    with pytest.raises(SessionError, match="invalid config: optimizer must be one of") as raised:
        load_session(path)
    assert not isinstance(raised.value, ConfigError)


def test_a_session_saved_before_binarisation_still_loads(valid, tmp_path):
    """Old records (no ``sparsity``/``binarize``, ``lr`` null, no ``warnings``/``prob_rescored``) pass the schema."""

    def old(document):
        for result in document["images"][0]["results"]:
            for key in ("warnings", "prob_rescored", "notes", "created"):
                result["meta"].pop(key)
            for key in ("sparsity", "binarize", "monitor_every", "cuda_graph", "preview_rate_hz"):
                result["meta"]["config"].pop(key)
            result["meta"]["config"]["lr"] = None
        document["view"] = {"current": 0, "layers": {"Evidence": {"auto_contrast": False, "opacity": 0.5}}}

    path = tmp_path / NAME
    path.write_bytes(edit(valid, old))
    (image,) = load_session(path).images
    assert [r.config.sparsity for r in image.results] == ["proximal", "proximal"]
    assert image.results[0].config.lr == 0.01 and image.results[1].config.lr == 0.02


def test_a_path_that_is_not_a_regular_file_is_refused_before_opening(tmp_path):
    import os

    fifo = tmp_path / "pipe.fgvis"
    os.mkfifo(fifo)
    with pytest.raises(SessionError, match=r"pipe\.fgvis is not a regular file but a named pipe"):
        load_session(fifo)
    with pytest.raises(SessionError, match="is not a regular file but a folder"):
        load_session(tmp_path)


def test_the_stand_in_for_a_missing_photo_is_bounded_and_keeps_the_crop_boxes_in_proportion(valid, tmp_path):
    path = tmp_path / NAME
    path.write_bytes(build(valid))
    (image,) = load_session(path).images
    (_, _, right, bottom) = image.results[0].crop_box  # the central crop of the 120x90 photo
    assert placeholder_size(image) == (round(right), round(bottom), 1.0, 1.0)
    for result in image.results:
        result.crop_box = (0.0, 0.0, 40_000.0, 2_500.0)  # 100 MP: allowed; a grey copy would take 700 MB
    width, height, scale_x, scale_y = placeholder_size(image)
    assert width * height <= session_module.MAX_PLACEHOLDER_PIXELS
    assert (
        abs(width / height - 16) < 0.01
        and abs(scale_x - width / 40_000) < 1e-9
        and abs(scale_y - height / 2_500) < 1e-9
    )
    for result in image.results:
        result.crop_box = (0.0, 0.0, 1e8, 1.0)  # a forged, extreme aspect ratio stays bounded too
    width, height, _, _ = placeholder_size(image)
    assert width * height <= session_module.MAX_PLACEHOLDER_PIXELS and height >= 1


def test_session_bytes_round_trip_is_unchanged(valid, tmp_path):
    """What ``save_session`` writes today passes every check (the schema is the writer's)."""
    path = tmp_path / NAME
    path.write_bytes(build(valid))
    session = load_session(path)
    again = tmp_path / "again.fgvis"
    again.write_bytes(session_bytes(session))
    reread = load_session(again)
    assert [r.metadata() for r in reread.images[0].results] == [r.metadata() for r in session.images[0].results]


def test_dataset_review_notes_round_trip(valid, tmp_path):
    """The cluster notes of dataset reviews travel with the session: written, read back, and limited."""
    path = tmp_path / NAME
    path.write_bytes(build(valid))
    session = load_session(path)
    assert session.reviews == []
    session.reviews = [session_module.ReviewNotes("/data/batch", "delete", {"3:0": "reads the tag", "3:2": "ok"})]
    again = tmp_path / "again.fgvis"
    again.write_bytes(session_bytes(session))
    assert load_session(again).reviews == session.reviews
    session.reviews = [session_module.ReviewNotes("b")] * (session_module.MAX_REVIEWS + 1)
    with pytest.raises(SessionError, match="dataset reviews"):
        session_bytes(session)
    # What the loader refuses is refused when saving, so a saved session always opens again (notes can
    # come from an analysis folder's notes.json, which nothing checks).
    session.reviews = [session_module.ReviewNotes("b", "preserve", {"x": "a note with a bad key"})]
    with pytest.raises(SessionError, match="The session cannot be saved: dataset review 1: a note's key"):
        session_bytes(session)
    session.reviews = [session_module.ReviewNotes("b", "preserve", {"0:1": "x" * 100_001})]
    with pytest.raises(SessionError, match="note 0:1"):
        session_bytes(session)
