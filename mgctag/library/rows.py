"""What the library's tables hold, as Python values, and how values reach SQLite.

Rows leave the library as frozen dataclasses (`Track`, `StoredPrediction`, `WriteEntry`, `Run`,
`NotMusic`): paths as ``str``, JSON columns decoded. mgctag and its beets plugin read rows by
attribute only, so mypy checks every field name; like a beets ``Item`` a row also answers
``row["field"]`` and ``row.get("field")``, for scripts and tests that read a field or two.

Paths are stored as TEXT when they are valid UTF-8 and as a BLOB of the raw bytes when they are not
(a file named in Latin-1 on Linux), so every path round-trips exactly to the ``str`` that
``os.fsdecode`` gives and the file can be opened again.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import unicodedata
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import numpy as np

from mgctag.jsonable import to_jsonable

_JSON_COLUMNS = ("genres", "tags", "args", "counts", "old", "new", "windows", "raw", "backup")

R = TypeVar("R", bound="Row")


class Row:
    """Read access by name as well as by attribute (``row["path"]`` is ``row.path``)."""

    def __getitem__(self, name: str) -> Any:
        try:
            return getattr(self, name)
        except AttributeError:
            raise KeyError(name) from None

    def get(self, name: str, default: Any = None) -> Any:
        return getattr(self, name, default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.keys()

    def keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self)]  # type: ignore[arg-type]

    @classmethod
    def from_sql(cls: type[R], cursor: sqlite3.Cursor, values: tuple) -> R:
        return cls(**decode_row(cursor, values))


@dataclass(frozen=True)
class Track(Row):
    """One file of the library as last scanned (`status` 'ok', 'failed' or 'removed')."""

    id: int
    path: str
    size: int | None = None
    mtime: int | None = None
    duration: float | None = None
    format: str | None = None
    codec: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    artist: str | None = None
    album: str | None = None
    title: str | None = None
    genres: list[str] | None = None
    status: str = "ok"
    error: str | None = None
    scanned_at: str | None = None
    analyzed_at: str | None = None
    analysis_key: str | None = None

    @classmethod
    def of_file(cls, path: str | os.PathLike, duration: float | None = None) -> Track:
        """A file that is not in the library (explain, a test clip), shaped like a row so the
        features stage reads every track the same way; id 0, which no stored track has."""
        return cls(0, os.fsdecode(path), duration=duration)


@dataclass(frozen=True)
class StoredPrediction(Row):
    """One model's stored result for one track: `genres` is [[genre, p], ...] best first; `tags`
    the model's raw output; `content`/`windows` what the content gate heard (None without it)."""

    track_id: int
    model: str
    separator: str | None = None
    tags: Any = None
    genres: list[list[Any]] | None = None
    created_at: str | None = None
    analysis_key: str | None = None
    content: str | None = None
    windows: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class WriteEntry(Row):
    """One journaled tag write (`state` 'pending', 'done' or 'failed'); `reverts` is the id of
    the write an undo's own write put back; `raw`/`method`/`backup` what an exact undo needs."""

    id: int
    run_id: int | None
    track_id: int | None
    path: str
    old: list[str] | None = None
    new: list[str] | None = None
    written_at: str | None = None
    size_after: int | None = None
    mtime_after: int | None = None
    undone_at: str | None = None
    payload_hash: str | None = None
    state: str = "done"
    reverts: int | None = None
    raw: Any = None
    method: str | None = None
    backup: list[list[Any]] | None = None


@dataclass(frozen=True)
class Run(Row):
    """One command run (`status` 'running', 'ok', 'failed', ...; `counts` its summary)."""

    id: int
    command: str
    args: Any = None
    started_at: str | None = None
    finished_at: str | None = None
    status: str | None = None
    counts: dict[str, Any] | None = None


@dataclass(frozen=True)
class NotMusic(Row):
    """A track whose latest content-gated analysis heard no music (`content` 'speech'/'other')."""

    path: str
    content: str
    model: str
    created_at: str | None = None


# --- value conversions ------------------------------------------------------------------------


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def db_path(path: str | os.PathLike) -> str | bytes:
    """A path as SQLite keeps it: TEXT when it is valid UTF-8, else its raw bytes as a BLOB."""
    text = os.fsdecode(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(text)
    return text


def py_path(value: str | bytes) -> str:
    return os.fsdecode(value) if isinstance(value, bytes) else value


def analysis_key(size: int | None, mtime: int | None) -> str:
    """What a file looked like when analysed; a different key means the audio may have changed."""
    return f"{size}:{mtime}"


def scalar_param(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def dumps(value: Any) -> str | None:
    """JSON text for a column. Text holding lone surrogates (a non-UTF-8 file name or argument,
    as Python decodes it) cannot be stored as UTF-8: it is kept as `\\udcXX` escapes instead,
    which `json.loads` turns back into the same string (and os.fsencode into the same bytes)."""
    if value is None:
        return None
    text = json.dumps(to_jsonable(value), ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(to_jsonable(value), ensure_ascii=True)
    return text


def decode_row(cursor: sqlite3.Cursor, values: tuple) -> dict[str, Any]:
    """A result row as a dict with paths as str and JSON columns decoded."""
    row = {d[0]: v for d, v in zip(cursor.description, values, strict=True)}
    for col in _JSON_COLUMNS:
        if isinstance(row.get(col), str):
            with suppress(ValueError):  # a damaged value is shown as it is, never a crash
                row[col] = json.loads(row[col])
    if "path" in row and row["path"] is not None:
        row["path"] = py_path(row["path"])
    return row


def under(roots: Iterable[str | os.PathLike] | None, column: str = "path") -> tuple[str, list]:
    """A WHERE clause selecting paths equal to or below any of the roots (an index range scan).

    Paths below ``/a/b`` sort between ``/a/b/`` and ``/a/b0`` ('0' follows '/'), for TEXT and for
    BLOB paths alike; no LIKE, so '%' or '_' in a folder name match only themselves.
    """
    if roots is None:
        return "1", []
    clauses, params = [], []
    for root in roots:
        text = os.path.abspath(os.fsdecode(root))
        for value in {db_path(text), os.fsencode(text)}:
            sep: Any  # the same type as value (str or bytes)
            nxt: Any
            sep, nxt = (b"/", b"0") if isinstance(value, bytes) else ("/", "0")
            prefix = value if value.endswith(sep) else value + sep
            clauses.append(f"({column} = ? OR ({column} >= ? AND {column} < ?))")
            params += [value, prefix, prefix[:-1] + nxt]
    return ("(" + " OR ".join(clauses) + ")" if clauses else "0"), params


def like(text: str) -> list[str]:
    """LIKE patterns for free text in both Unicode normal forms (macOS file names are NFD)."""
    forms = {unicodedata.normalize("NFC", text), unicodedata.normalize("NFD", text)}
    escaped = (f.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") for f in forms)
    return [f"%{e}%" for e in sorted(escaped)]
