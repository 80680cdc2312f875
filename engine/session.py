"""Saved review sessions: a ``.fgvis`` file is a zip holding ``session.json`` (images, their paths and
SHA-256, notes, result metadata, view settings) and one ``.npz`` of arrays per result, so a reviewer
reopens exactly what was seen without recomputing. Arrays are read with ``allow_pickle=False``."""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import FGVisError
from .export import write_all_or_nothing
from .models import sha256_of
from .record import ExplanationRecord

FORMAT = "fgvis-session"
VERSION = 1


class SessionError(FGVisError):
    """A session file that cannot be read: corrupt, foreign, or from a newer version."""


@dataclass
class SessionImage:
    """One image of a session; ``path``/``sha256`` locate and identify the original file."""

    name: str
    path: str | None
    sha256: str | None
    notes: str = ""
    results: list[ExplanationRecord] = field(default_factory=list)


@dataclass
class Session:
    images: list[SessionImage]
    view: dict = field(default_factory=dict)
    app_version: str = ""


def session_bytes(session: Session) -> bytes:
    """The ``.fgvis`` zip as bytes."""
    buffer = io.BytesIO()
    images = []
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        count = 0
        for image in session.images:
            results = []
            for record in image.results:
                name = f"arrays/result_{count}.npz"
                count += 1
                arrays = io.BytesIO()
                np.savez(arrays, **record.arrays())
                archive.writestr(name, arrays.getvalue())
                results.append({"meta": record.metadata(), "arrays": name})
            images.append({"name": image.name, "path": image.path, "sha256": image.sha256, "notes": image.notes,
                           "results": results})  # fmt: skip
        document = {"format": FORMAT, "version": VERSION, "app_version": session.app_version,
                    "images": images, "view": session.view}  # fmt: skip
        archive.writestr("session.json", json.dumps(document, indent=1, ensure_ascii=False))
    return buffer.getvalue()


def save_session(path: Path, session: Session) -> None:
    """Write atomically: the old file stays intact if the disk is full or read-only."""
    write_all_or_nothing({Path(path): session_bytes(session)})


def load_session(path: Path) -> Session:
    """Read a ``.fgvis`` file.

    Raises
    ------
    SessionError
        Missing, not a zip, not a session, a newer format version, or damaged content.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            document = json.loads(archive.read("session.json").decode("utf-8"))
            if not isinstance(document, dict) or document.get("format") != FORMAT:
                raise SessionError(f"{path.name} is not an FGVis Studio session")
            if int(document.get("version", 0)) > VERSION:
                raise SessionError(f"{path.name} was saved by a newer FGVis Studio (format {document['version']})")
            images = []
            for entry in document["images"]:
                results = []
                for result in entry.get("results", []):
                    with np.load(io.BytesIO(archive.read(result["arrays"])), allow_pickle=False) as arrays:
                        results.append(ExplanationRecord.from_parts(result["meta"], dict(arrays)))
                images.append(SessionImage(entry["name"], entry.get("path"), entry.get("sha256"),
                                           entry.get("notes", ""), results))  # fmt: skip
    except FileNotFoundError as exc:
        raise SessionError(f"{path} does not exist") from exc
    except zipfile.BadZipFile as exc:
        raise SessionError(f"{path.name} is not an FGVis Studio session (not a zip file)") from exc
    except SessionError:
        raise
    except (KeyError, TypeError, ValueError, OSError) as exc:
        raise SessionError(f"{path.name} is damaged: {type(exc).__name__}: {exc}") from exc
    return Session(images, document.get("view", {}), document.get("app_version", ""))


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
