"""Saved review sessions: a ``.fgvis`` file is a zip holding ``session.json`` (images, their paths and
SHA-256, notes, result metadata, view settings, the cluster notes of dataset reviews) and one ``.npz`` of
arrays per result, so a reviewer reopens exactly what was seen without recomputing.

A session file may come from anyone, so :func:`load_session` checks it against the format's schema and
the limits below before it allocates anything for what the file declares: the zip's directory, member
count, sizes and compression methods from the zip's own records; ``session.json``'s size and nesting
depth before parsing it, then the type and range of every field it reads; each array's shape and type from
its ``.npy`` header before loading it (``allow_pickle=False``), and each array member is read for one
result only. Whatever fails is a :class:`SessionError` naming the file and the problem. The limits are
module constants (and those of a result in :mod:`engine.results.record`: ``MAX_ARRAY_SIDE``,
``MAX_HISTORY_STEPS``, ``MAX_TEXT_CHARS``, ``MAX_NAME_CHARS``, ``MAX_LIST_ITEMS``, ``MAX_INTEGER``); a
caller with a real need raises them in one place.
"""

from __future__ import annotations

import io
import json
import math
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypedDict, overload

import numpy as np

from engine.core.explanation import GAMES, Game
from engine.errors import SessionError
from engine.models import images as _images
from engine.models.inputs import check_count, regular_file
from engine.models.loading import sha256_of

from . import record as _record
from .export import write_all_or_nothing
from .record import ExplanationRecord

FORMAT = "fgvis-session"
VERSION = 1

#: Most images in a session.
MAX_IMAGES = 1000
#: Most results in a session, all images together (each is one array member, ~1.3 MB at 224x224).
MAX_RESULTS = 1000
#: Most members of the zip (``session.json``, one per result, a few to spare).
MAX_MEMBERS = MAX_RESULTS + 16
#: Largest zip directory, in bytes (read before the members are counted; ~100 bytes a member).
MAX_DIRECTORY_BYTES = 1 << 20
#: Largest uncompressed member, in bytes: one result's arrays at the largest array side, with room.
MAX_MEMBER_BYTES = 128 << 20
#: Largest uncompressed total of all members, in bytes.
MAX_TOTAL_BYTES = 2 << 30
#: Largest ``session.json``, in bytes (a saved session takes about 3 KB a result).
MAX_JSON_BYTES = 8 << 20
#: Most values in ``session.json``, counted before parsing as its commas, brackets and pairs of quote
#: marks (inside text too, so an overestimate: a saved session has about 200 a result). Parsed values take
#: memory: this bounds it to tens of MB.
MAX_JSON_ITEMS = 1_000_000
#: Deepest nesting of ``[]``/``{}`` in ``session.json`` (a saved session nests 8 deep).
MAX_JSON_DEPTH = 32
#: Most digits of an integer in ``session.json`` (a 64-bit integer has 20 at most).
MAX_JSON_DIGITS = 20
#: Most arrays in one result's ``.npz`` (a saved result has 9).
MAX_ARRAYS_PER_RESULT = 32
#: Largest magnitude of a number in the view settings: what the window's fields take (32-bit).
MAX_VIEW_NUMBER = 2**31 - 1
#: Most pixels of the grey stand-in an application shows for a photo that is gone
#: (:func:`placeholder_size`; 16 MP is 112 MB with a 32-bit display copy).
MAX_PLACEHOLDER_PIXELS = 16_000_000
#: Most dataset reviews whose notes a session keeps.
MAX_REVIEWS = 100
#: Most cluster notes of one dataset review.
MAX_REVIEW_NOTES = 10_000
#: Compression methods read: stored and deflated (what this format and ``numpy.savez`` write).
COMPRESSION_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
_METHOD_NAMES = {9: "Deflate64", 12: "bzip2", 14: "LZMA", 93: "Zstandard", 95: "XZ", 98: "PPMd", 99: "AES"}


@dataclass
class SessionImage:
    """One image of a session; ``path``/``sha256`` locate and identify the original file."""

    name: str
    path: str | None
    sha256: str | None
    notes: str = ""
    results: list[ExplanationRecord] = field(default_factory=list)


@dataclass
class ReviewNotes:
    """The reviewer's notes of one dataset review (:mod:`engine.analysis`), kept in the session so that
    they travel with it: the batch ``results_dir`` reviewed, the ``game`` of its maps (``"preserve"`` or
    ``"delete"``) and the ``notes`` per cluster, keyed ``"<class index>:<cluster index>"``
    (:func:`engine.analysis.note_key`)."""

    results_dir: str
    game: Game = "preserve"
    notes: dict[str, str] = field(default_factory=dict)


@dataclass
class Session:
    images: list[SessionImage]
    view: dict = field(default_factory=dict)
    app_version: str = ""
    reviews: list[ReviewNotes] = field(default_factory=list)


def session_bytes(session: Session) -> bytes:
    """The ``.fgvis`` zip as bytes.

    Raises
    ------
    SessionError
        The session is over a limit :func:`load_session` enforces (too many images or results, arrays or
        ``session.json`` too large), so the file could not be opened again.
    """
    _within(len(session.images), MAX_IMAGES, "images")
    _within(sum(len(image.results) for image in session.images), MAX_RESULTS, "results")
    reviews = [
        {"results_dir": review.results_dir, "game": review.game, "notes": review.notes} for review in session.reviews
    ]
    # The loader's own checks, so that a session that saves also opens (notes can come from a notes.json).
    _check_reviews(reviews, "The session cannot be saved")
    buffer = io.BytesIO()
    images = []
    total = 0
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        count = 0
        for image in session.images:
            results = []
            for record in image.results:
                name = f"arrays/result_{count}.npz"
                count += 1
                arrays = io.BytesIO()
                # numpy's stub lets **arrays bind to savez's allow_pickle: bool; these are all arrays.
                np.savez(arrays, **record.arrays())  # type: ignore[arg-type]
                _within(len(arrays.getvalue()), MAX_MEMBER_BYTES, f"bytes in the arrays of result {count}")
                total += len(arrays.getvalue())
                archive.writestr(name, arrays.getvalue())
                results.append({"meta": record.metadata(), "arrays": name})
            images.append(
                {
                    "name": image.name,
                    "path": image.path,
                    "sha256": image.sha256,
                    "notes": image.notes,
                    "results": results,
                }
            )
        document = {
            "format": FORMAT,
            "version": VERSION,
            "app_version": session.app_version,
            "images": images,
            "view": session.view,
            "reviews": reviews,
        }
        text = json.dumps(document, indent=1, ensure_ascii=False).encode("utf-8")
        _within(len(text), MAX_JSON_BYTES, "bytes in session.json")
        _within(total + len(text), MAX_TOTAL_BYTES, "bytes in all")
        archive.writestr("session.json", text)
    return buffer.getvalue()


def _within(count: int, limit: int, what: str) -> None:
    if count > limit:
        raise SessionError(
            f"The session cannot be saved: it has {count:,} {what}, more than the {limit:,} a "
            f"session file may hold (engine.results.session's limits)"
        )


def save_session(path: Path, session: Session) -> None:
    """Write atomically: the old file stays intact if the disk is full or read-only."""
    write_all_or_nothing({Path(path): session_bytes(session)})


def load_session(path: Path) -> Session:
    """Read a ``.fgvis`` file, checked against the format's schema and limits (module docstring).

    Raises
    ------
    SessionError
        Not a regular file, not a zip, not a session, a newer format version, damaged content, or content
        that breaks the schema or a limit; the message names the file and the problem.
    """
    path = regular_file(path, "a .fgvis session file", SessionError)
    name = path.name
    try:
        with path.open("rb") as file:
            _check_directory(file, name, MAX_MEMBERS, f"{name} is not an FGVis Studio session (not a zip file)")
            try:
                archive = zipfile.ZipFile(file)
            except zipfile.BadZipFile as exc:
                raise SessionError(f"{name} is not an FGVis Studio session (not a zip file: {exc})") from None
            with archive:
                members = _check_members(archive, name, MAX_MEMBERS, MAX_MEMBER_BYTES, MAX_TOTAL_BYTES)
                if "session.json" not in members:
                    raise SessionError(f"{name} is not an FGVis Studio session (no session.json)")
                if members["session.json"].file_size > MAX_JSON_BYTES:
                    raise SessionError(
                        f"{name}: session.json inflates to {members['session.json'].file_size:,} bytes, "
                        f"more than the limit of {MAX_JSON_BYTES:,}"
                    )
                document = _parse_json(_read_member(archive, members["session.json"], name), name)
                entries, view, app_version = _check_document(document, members, name)
                assert isinstance(document, dict)  # _check_document refuses anything else
                reviews = _check_reviews(document.get("reviews", []), name)
                images = []
                for entry in entries:
                    results = [
                        _read_result(archive, members[member], meta, name, where)
                        for where, meta, member in entry["results"]
                    ]
                    images.append(SessionImage(entry["name"], entry["path"], entry["sha256"], entry["notes"], results))
    except SessionError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise SessionError(f"{name} is damaged: {exc}") from exc
    except OSError as exc:
        raise SessionError(f"{name} cannot be read: {exc.strerror or exc}") from exc
    except MemoryError:  # a limit set above what this machine holds
        raise SessionError(f"{name} is too large to load into this machine's memory") from None
    except (ValueError, KeyError, TypeError, ArithmeticError, RecursionError, RuntimeError, NotImplementedError) as exc:
        raise SessionError(f"{name} is damaged: {type(exc).__name__}: {exc}") from exc
    return Session(images, view, app_version, reviews)


# ---------------------------------------------------------------- the zip container
_END = struct.Struct("<4s4H2LH")  # end of central directory record
_END64 = struct.Struct("<4sQ2H2L4Q")  # zip64 end of central directory record
_END64_LOCATOR_SIZE = 20


def _check_directory(file, name: str, max_members: int, not_zip: str) -> None:
    """Refuse a zip whose end record declares more than ``max_members`` members or a central directory
    over :data:`MAX_DIRECTORY_BYTES`, before :mod:`zipfile` reads that directory into memory. Finds the
    end records the way :mod:`zipfile` does (the last end signature; a zip64 record just before its
    locator)."""
    file.seek(0, io.SEEK_END)
    size = file.tell()
    span = min(size, _END.size + 0xFFFF + _END64_LOCATOR_SIZE + _END64.size)
    file.seek(size - span)
    tail = file.read(span)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _END.size:
        raise SessionError(not_zip)
    _, _, _, _, entries, directory, _, _ = _END.unpack_from(tail, at)
    locator = at - _END64_LOCATOR_SIZE
    if locator >= 0 and tail[locator : locator + 4] == b"PK\x06\x07":
        record = locator - _END64.size
        if record < 0:
            raise SessionError(f"{name} is damaged: its zip64 end record is cut off")
        signature, _, _, _, _, _, _, entries, directory, _ = _END64.unpack_from(tail, record)
        if signature != b"PK\x06\x06":
            raise SessionError(f"{name} is damaged: its zip64 end record is missing")
    check_count(entries, max_members, "the number of zip members", name, SessionError)
    check_count(directory, MAX_DIRECTORY_BYTES, "the zip directory's size in bytes", name, SessionError)


def _check_members(
    archive: zipfile.ZipFile, name: str, max_members: int, max_member: int, max_total: int
) -> dict[str, zipfile.ZipInfo]:
    """The members by name, after checking their count, methods and declared uncompressed sizes."""
    infos = archive.infolist()
    check_count(len(infos), max_members, "the number of zip members", name, SessionError)
    total = 0
    for info in infos:
        member = _record.quoted(info.filename)
        if info.flag_bits & 0x1:
            raise SessionError(f"{name}: member {member} is encrypted; sessions are never encrypted")
        if info.compress_type not in COMPRESSION_METHODS:
            method = _METHOD_NAMES.get(info.compress_type, "unknown")
            raise SessionError(
                f"{name}: member {member} uses compression method {info.compress_type} ({method}); "
                f"only stored and deflated members are read"
            )
        if info.file_size > max_member:
            raise SessionError(
                f"{name}: member {member} inflates to {info.file_size:,} bytes, more than the limit of {max_member:,}"
            )
        total += info.file_size
    if total > max_total:
        raise SessionError(f"{name}: its members inflate to {total:,} bytes, more than the limit of {max_total:,}")
    return {info.filename: info for info in infos}


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> bytes:
    """The member's bytes; never more than its declared (and checked) size."""
    with archive.open(info) as stream:
        data = stream.read(info.file_size + 1)
    if len(data) != info.file_size:
        raise SessionError(
            f"{name} is damaged: member {_record.quoted(info.filename)} holds {len(data):,} bytes, "
            f"its directory says {info.file_size:,}"
        )
    return data


# ---------------------------------------------------------------- session.json
# A JSON string, also one cut off by the end of the text; possessive, so that a scan is linear in any text.
_STRINGS = re.compile(rb'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))
_NESTING = np.zeros(256, np.int64)
_NESTING[list(b"[{")] = 1
_NESTING[list(b"]}")] = -1


def _parse_json(raw: bytes, name: str) -> object:
    """``session.json`` parsed, after checking its size, its number of values and its nesting depth (no
    ``RecursionError``), with integers of at most :data:`MAX_JSON_DIGITS` digits."""
    if len(raw) > MAX_JSON_BYTES:
        raise SessionError(f"{name}: session.json is {len(raw):,} bytes, more than the limit of {MAX_JSON_BYTES:,}")
    items = sum(raw.count(char) for char in (b",", b"[", b"]", b"{", b"}")) + raw.count(b'"') // 2
    if items > MAX_JSON_ITEMS:
        raise SessionError(
            f"{name}: session.json holds about {items:,} values, more than the limit of {MAX_JSON_ITEMS:,}"
        )
    brackets = np.frombuffer(_STRINGS.sub(b"", raw).translate(None, _NOT_BRACKETS), np.uint8)
    depth = int(np.cumsum(_NESTING[brackets]).max()) if brackets.size else 0
    if depth > MAX_JSON_DEPTH:
        raise SessionError(f"{name}: session.json nests {depth} levels deep, more than the limit of {MAX_JSON_DEPTH}")

    def integer(text: str) -> int:
        if len(text.lstrip("-")) > MAX_JSON_DIGITS:
            raise SessionError(
                f"{name}: session.json holds an integer of {len(text.lstrip('-')):,} digits, more "
                f"than the limit of {MAX_JSON_DIGITS}"
            )
        return int(text)

    try:
        return json.loads(raw.decode("utf-8"), parse_int=integer)
    except UnicodeDecodeError as exc:
        raise SessionError(f"{name} is damaged: session.json is not UTF-8 text ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise SessionError(f"{name} is damaged: session.json is not valid JSON ({exc})") from None


class _CheckedImage(TypedDict):
    """An image of ``session.json`` as :func:`_check_document` checked it; ``results`` are ``(where,
    metadata, array member)``."""

    name: str
    path: str | None
    sha256: str | None
    notes: str
    results: list[tuple[str, dict, str]]


def _check_document(document: object, members: dict, name: str) -> tuple[list[_CheckedImage], dict, str]:
    """Check the parsed ``session.json`` (everything but the arrays) before any array is read: ``(images,
    view, app version)``, each image a dict with ``name``, ``path``, ``sha256``, ``notes`` and
    ``results`` as ``(where, metadata, array member)``."""
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise SessionError(f"{name} is not an FGVis Studio session")
    version = document.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise SessionError(f"{name}: its format version must be a whole number, not {_record.describe(version)}")
    if version > VERSION:
        raise SessionError(f"{name} was saved by a newer FGVis Studio (format {version})")
    app_version = _field(document.get("app_version", ""), "app_version", name, "the session")
    images = document.get("images")
    if not isinstance(images, list):
        raise SessionError(f"{name}: images must be a list, not {_record.describe(images)}")
    check_count(len(images), MAX_IMAGES, "the number of images", name, SessionError)
    count = sum(
        len(entry["results"]) for entry in images if isinstance(entry, dict) and isinstance(entry.get("results"), list)
    )
    check_count(count, MAX_RESULTS, "the number of results", name, SessionError)
    owners: dict[str, str] = {}
    checked: list[_CheckedImage] = []
    for i, entry in enumerate(images, 1):
        where = f"image {i}"
        if not isinstance(entry, dict):
            raise SessionError(f"{name}: {where} must be an object, not {_record.describe(entry)}")
        image_name = _field(entry.get("name"), "name", name, where)
        where = f"image {i} ({_record.quoted(image_name)})"
        image: _CheckedImage = {
            "name": image_name,
            "path": _field(entry.get("path"), "path", name, where, optional=True),
            "sha256": _field(entry.get("sha256"), "sha256", name, where, optional=True),
            "notes": _field(entry.get("notes", ""), "notes", name, where, _record.MAX_TEXT_CHARS),
            "results": [],
        }
        results = entry.get("results", [])
        if not isinstance(results, list):
            raise SessionError(f"{name}: {where}'s results must be a list, not {_record.describe(results)}")
        extent = [0.0, 0.0]
        for j, result in enumerate(results, 1):
            place = f"{where}, result {j}"
            if not isinstance(result, dict):
                raise SessionError(f"{name}: {place} must be an object, not {_record.describe(result)}")
            member = result.get("arrays")
            if not isinstance(member, str):
                raise SessionError(f"{name}: {place}'s arrays must name a member, not {_record.describe(member)}")
            if member not in members:
                raise SessionError(f"{name} is damaged: {place}'s array member {_record.quoted(member)} is missing")
            if member in owners:
                raise SessionError(
                    f"{name}: {owners[member]} and {place} point at the same array member "
                    f"{_record.quoted(member)}; each result has its own"
                )
            owners[member] = place
            try:
                meta = _record.check_metadata(result.get("meta"))
                box = _record.check_crop_box(meta.get("crop_box"))
                _record.stored_config(meta["config"], meta["game"])
            except ValueError as exc:
                raise SessionError(f"{name}: {place}: {exc}") from None
            if box is not None:
                extent = [max(extent[0], box[2]), max(extent[1], box[3])]
            image["results"].append((place, meta, member))
        if extent[0] * extent[1] > _images.MAX_PIXELS * (1 + 1e-6):
            raise SessionError(
                f"{name}: {where}'s crop boxes span {extent[0]:g}x{extent[1]:g} pixels, beyond the "
                f"largest photo ({_images.MAX_PIXELS:,} pixels)"
            )
        checked.append(image)
    return checked, _check_view(document.get("view", {}), name), app_version


_NOTE_KEY = re.compile(r"(0|[1-9][0-9]{0,8}):(0|[1-9][0-9]{0,8})")


def _check_reviews(reviews: object, name: str) -> list[ReviewNotes]:
    """The dataset reviews' notes: a list of at most :data:`MAX_REVIEWS` objects, each a ``results_dir``
    path, a ``game`` and at most :data:`MAX_REVIEW_NOTES` notes keyed ``"<class>:<cluster>"``."""
    if not isinstance(reviews, list):
        raise SessionError(f"{name}: reviews must be a list, not {_record.describe(reviews)}")
    check_count(len(reviews), MAX_REVIEWS, "the number of dataset reviews", name, SessionError)
    checked = []
    for i, entry in enumerate(reviews, 1):
        where = f"dataset review {i}"
        if not isinstance(entry, dict):
            raise SessionError(f"{name}: {where} must be an object, not {_record.describe(entry)}")
        results_dir = _field(entry.get("results_dir"), "results_dir", name, where)
        if any(ord(character) < 32 for character in results_dir):
            raise SessionError(f"{name}: {where}'s results_dir has control characters")
        game = entry.get("game", "preserve")
        if game not in GAMES:
            raise SessionError(f"{name}: {where}'s game must be preserve or delete, not {_record.describe(game)}")
        notes = entry.get("notes", {})
        if not isinstance(notes, dict):
            raise SessionError(f"{name}: {where}'s notes must be an object, not {_record.describe(notes)}")
        check_count(len(notes), MAX_REVIEW_NOTES, f"the number of notes of {where}", name, SessionError)
        for key, text in notes.items():
            if not _NOTE_KEY.fullmatch(key):
                raise SessionError(
                    f"{name}: {where}: a note's key must be <class>:<cluster>, not {_record.quoted(key[:40])}"
                )
            _field(text, f"note {key}", name, where, _record.MAX_TEXT_CHARS)
        checked.append(ReviewNotes(results_dir, game, dict(notes)))
    return checked


def _check_view(view: object, name: str) -> dict:
    """The view settings: ``current`` and ``selected_result`` whole numbers, ``method`` an object of
    plain values, ``layers`` an object of such objects (numbers within :data:`MAX_VIEW_NUMBER`, text
    within ``MAX_NAME_CHARS``); other keys are kept as they are (the window ignores them)."""
    if not isinstance(view, dict):
        raise SessionError(f"{name}: the view settings must be an object, not {_record.describe(view)}")
    for key in ("current", "selected_result"):
        if key in view:
            _view_value(view[key], f"view {key}", name, whole=True)
    for key, depth in (("method", 1), ("layers", 2)):
        if key not in view:
            continue
        values = view[key]
        if not isinstance(values, dict):
            raise SessionError(f"{name}: view {key} must be an object, not {_record.describe(values)}")
        for item, value in values.items():
            if depth == 1:
                _view_value(value, f"view {key} {_record.quoted(item)}", name)
                continue
            if not isinstance(value, dict):
                raise SessionError(
                    f"{name}: view {key} {_record.quoted(item)} must be an object, not {_record.describe(value)}"
                )
            for prop, setting in value.items():
                _view_value(setting, f"view {key} {_record.quoted(item)} {_record.quoted(prop)}", name)
    return view


def _view_value(value: object, what: str, name: str, *, whole: bool = False) -> None:
    try:
        if whole:
            _record.check_integer(value, what, -1, MAX_VIEW_NUMBER)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            _record.check_number(value, what, -MAX_VIEW_NUMBER, MAX_VIEW_NUMBER)
        elif value is not None and not isinstance(value, bool):
            _record.check_text(value, what)
    except ValueError as exc:
        raise SessionError(f"{name}: {exc}") from None


@overload
def _field(
    value: object, key: str, name: str, where: str, limit: int = ..., *, optional: Literal[False] = False
) -> str: ...
@overload
def _field(value: object, key: str, name: str, where: str, limit: int = ..., *, optional: bool) -> str | None: ...
def _field(
    value: object, key: str, name: str, where: str, limit: int = _record.MAX_NAME_CHARS, *, optional: bool = False
) -> str | None:
    try:
        return _record.check_text(value, key, limit, optional=optional)
    except ValueError as exc:
        raise SessionError(f"{name}: {where}: {exc}") from None


# ---------------------------------------------------------------- one result's arrays
@dataclass(frozen=True)
class _Header:
    """What an ``.npy`` header declares."""

    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int  # where the data starts in the member


def _read_result(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, meta: dict, name: str, where: str
) -> ExplanationRecord:
    """One result: its ``.npz`` member read once, every array's header checked before the array is loaded."""
    data = io.BytesIO(_read_member(archive, info, name))
    place = f"{where}'s arrays ({_record.quoted(info.filename)})"
    _check_directory(
        data, f"{name}: {place}", MAX_ARRAYS_PER_RESULT, f"{name} is damaged: {place} are not an .npz file"
    )
    try:
        inner = zipfile.ZipFile(data)
    except zipfile.BadZipFile as exc:
        raise SessionError(f"{name} is damaged: {place} are not an .npz file ({exc})") from None
    with inner:
        members = _check_members(inner, f"{name}: {place}", MAX_ARRAYS_PER_RESULT, MAX_MEMBER_BYTES, MAX_MEMBER_BYTES)
        wanted = {*_record.ARRAY_FIELDS, *(f"history_{key}" for key in _record.HISTORY_KEYS)}
        infos = {
            member.removesuffix(".npy"): info
            for member, info in members.items()
            if member.removesuffix(".npy") in wanted
        }
        headers = {key: _npy_header(inner, info, name, where, key) for key, info in infos.items()}
        try:
            _record.check_arrays(headers)
        except ValueError as exc:
            raise SessionError(f"{name}: {where}: {exc}") from None
        arrays = {}
        for key, info in infos.items():
            with inner.open(info) as stream:
                arrays[key] = np.lib.format.read_array(stream, allow_pickle=False)
    try:
        return ExplanationRecord.from_parts(meta, arrays)
    except ValueError as exc:
        raise SessionError(f"{name}: {where}: {exc}") from None


def _npy_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, where: str, key: str) -> _Header:
    """The shape and dtype ``key``'s ``.npy`` header declares, read without loading the array; the data
    it declares must fit the member."""
    with archive.open(info) as stream:
        try:
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
            else:
                raise ValueError(f"npy format version {version} is not read")
            offset = stream.tell()
        except Exception as exc:  # numpy's parser of the header's text: ValueError, SyntaxError, TokenError...
            raise SessionError(f"{name}: {where}'s {key} has an invalid .npy header ({exc})") from None
    if dtype.hasobject:
        raise SessionError(f"{name}: {where}'s {key} holds Python objects (dtype {dtype}); only numbers are read")
    if any(side < 0 for side in shape):
        raise SessionError(f"{name}: {where}'s {key} has a negative side in its shape {_record.shape_text(shape)}")
    size = dtype.itemsize
    for side in shape:
        size *= side
    if offset + size > info.file_size:
        raise SessionError(
            f"{name}: {where}'s {key} declares shape {_record.shape_text(shape)} of {dtype} "
            f"({size:,} bytes) but its member holds {info.file_size - offset:,}"
        )
    return _Header(tuple(shape), dtype, offset)


def placeholder_size(image: SessionImage, max_pixels: int = MAX_PLACEHOLDER_PIXELS) -> tuple[int, int, float, float]:
    """``(width, height, scale_x, scale_y)`` of a stand-in for ``image``'s photo when it is gone: the size its
    results' crop boxes span (224x224 without any), scaled down to at most ``max_pixels`` pixels. Scale the
    crop boxes by ``scale_x``/``scale_y`` (1.0 unless scaled down) so that the results sit where they did."""
    boxes = [box for box in (r.crop_box for r in image.results) if box is not None and all(map(math.isfinite, box))]
    width = max(1, round(max((box[2] for box in boxes), default=224)))
    height = max(1, round(max((box[3] for box in boxes), default=224)))
    if width * height <= max_pixels:
        return width, height, 1.0, 1.0
    shrink = math.sqrt(max_pixels / (width * height))
    small_w, small_h = max(1, int(width * shrink)), max(1, int(height * shrink))
    small_w, small_h = min(small_w, max(1, max_pixels // small_h)), min(small_h, max(1, max_pixels // small_w))
    return small_w, small_h, small_w / width, small_h / height


def source_problem(image: SessionImage) -> str | None:
    """Why the image's original file cannot be trusted (moved or changed), or ``None``."""
    if not image.path:
        return f"{image.name}: the session has no path for it"
    path = Path(image.path)
    if not path.is_file():
        return f"{image.name}: not found at {path} (moved or deleted)"
    if image.sha256 and sha256_of(path) != image.sha256:
        return f"{image.name}: {path} has changed since the session was saved (SHA-256 differs)"
    return None
