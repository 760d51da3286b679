"""Playlists and tables out of mgctag: M3U8, XSPF, CSV and JSON, safe against whatever the tags
contain.

Tag text is user data from anywhere: a newline in a title must not start a new playlist entry, a
title like `=HYPERLINK(...)` must not run as a spreadsheet formula, and a file is either written
whole or not at all (written to a temp file beside it, then renamed).
"""

from __future__ import annotations

import csv
import math
import os
import re
import stat
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import numpy as np

from mgctag.atomicio import atomic_path
from mgctag.errors import MgctagError, reason_of
from mgctag.jsonable import dumps_json

# C0/C1 controls and the Unicode line/paragraph separators some players treat as line breaks.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # OWASP "CSV injection" trigger characters


class ExportError(MgctagError):
    """An export that cannot be written correctly; the message names the file and the reason."""


@dataclass(frozen=True)
class PlaylistEntry:
    """One playlist line: the file and what the player shows for it."""

    path: str | Path
    artist: str | None = None
    title: str | None = None
    duration: float | None = None

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> PlaylistEntry:
        """From a track record (a `tracks` row or a `similar_tracks` result)."""
        return cls(r["path"], r.get("artist"), r.get("title"), r.get("duration"))


def one_line(text: Any) -> str:
    """Tag text flattened to one line: runs of control characters become a single space."""
    return _CONTROL.sub(" ", "" if text is None else str(text)).strip()


@contextmanager
def _atomic_text(path: Path, newline: str | None = None) -> Iterator[IO[str]]:
    """A text file that appears at `path` only when fully written (atomicio: fsync, rename)."""
    # a playlist gets the usual mode, or keeps the one the user gave the old file
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o644
    with (
        atomic_path(path, mode=mode) as tmp,
        open(tmp, "w", encoding="utf-8", newline=newline) as f,
    ):
        yield f


def _m3u_location(entry_path: str | Path, relative_to: str | Path | None) -> str:
    p = Path(entry_path)
    loc = str(p.absolute())
    if relative_to is not None:
        # on Windows a file on another drive has no relative path: keep the absolute one
        with suppress(ValueError):
            loc = os.path.relpath(p.absolute(), Path(relative_to).absolute())
    if _CONTROL.search(loc):
        raise ExportError("its path contains a line break or control character", entry_path)
    return "./" + loc if loc.startswith("#") else loc  # a leading '#' would read as a comment


def _extinf(e: PlaylistEntry) -> str:
    secs = -1
    if e.duration is not None and math.isfinite(float(e.duration)):
        secs = round(float(e.duration))
    artist, title = one_line(e.artist), one_line(e.title) or Path(e.path).stem
    label = f"{artist} - {title}" if artist else title
    return f"#EXTINF:{secs},{label}"


def write_m3u(
    path: str | Path,
    entries: Iterable[PlaylistEntry | Mapping[str, Any]],
    relative_to: str | Path | None = None,
) -> int:
    """Write an extended M3U8 playlist (UTF-8, LF); returns the number of entries.

    Paths are absolute, or relative to `relative_to` (usually the playlist's own folder, so the
    playlist and music can move together). Raises ExportError for a path no M3U can hold.
    """
    items = [e if isinstance(e, PlaylistEntry) else PlaylistEntry.from_record(e) for e in entries]
    lines = ["#EXTM3U"]
    for e in items:
        lines += [_extinf(e), _m3u_location(e.path, relative_to)]
    try:
        with _atomic_text(Path(path), newline="\n") as f:
            f.write("\n".join(lines) + "\n")
    except OSError as err:
        raise ExportError(f"cannot write playlist: {reason_of(err)}", path) from err
    return len(items)


XSPF_NAMESPACE = "http://xspf.org/ns/0/"


def _xspf_location(entry_path: str | Path, relative_to: str | Path | None) -> str:
    """A file URI (absolute), or a relative URI reference resolved against the playlist."""
    p = Path(entry_path).absolute()
    if relative_to is not None:
        with suppress(ValueError):
            rel = os.path.relpath(p, Path(relative_to).absolute())
            return quote(Path(rel).as_posix())
    return p.as_uri()


def write_xspf(
    path: str | Path,
    entries: Iterable[PlaylistEntry | Mapping[str, Any]],
    relative_to: str | Path | None = None,
    title: str | None = None,
) -> int:
    """Write an XSPF playlist (XML, UTF-8); returns the number of entries.

    Locations are file URIs, or URI references relative to `relative_to`; tag text is flattened
    to one line (XML 1.0 cannot hold most control characters) and escaped by ElementTree."""
    from xml.etree import ElementTree as ET

    items = [e if isinstance(e, PlaylistEntry) else PlaylistEntry.from_record(e) for e in entries]
    root = ET.Element("playlist", version="1", xmlns=XSPF_NAMESPACE)
    if title:
        ET.SubElement(root, "title").text = one_line(title)
    tracks = ET.SubElement(root, "trackList")
    for e in items:
        track = ET.SubElement(tracks, "track")
        ET.SubElement(track, "location").text = _xspf_location(e.path, relative_to)
        if one_line(e.title):
            ET.SubElement(track, "title").text = one_line(e.title)
        if one_line(e.artist):
            ET.SubElement(track, "creator").text = one_line(e.artist)
        if e.duration is not None and math.isfinite(float(e.duration)):
            ET.SubElement(track, "duration").text = str(round(float(e.duration) * 1000))
    ET.indent(root)
    text = ET.tostring(root, encoding="unicode", xml_declaration=False)
    try:
        with _atomic_text(Path(path), newline="\n") as f:
            f.write('<?xml version="1.0" encoding="UTF-8"?>\n' + text + "\n")
    except OSError as err:
        raise ExportError(f"cannot write playlist: {reason_of(err)}", path) from err
    return len(items)


def write_playlist(
    path: str | Path,
    entries: Iterable[PlaylistEntry | Mapping[str, Any]],
    relative_to: str | Path | None = None,
) -> int:
    """An M3U8 or, for a name ending in .xspf, an XSPF playlist."""
    if str(path).lower().endswith(".xspf"):
        return write_xspf(path, entries, relative_to)
    return write_m3u(path, entries, relative_to)


def csv_cell(value: Any) -> str | int | float:
    """A value as a CSV cell: lists joined with '; ', text that a spreadsheet would run as a
    formula prefixed with an apostrophe. Numbers stay numbers (a negative number is no formula)."""
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    if isinstance(value, (int, float, np.integer, np.floating)):
        return value.item() if isinstance(value, np.generic) else value
    if isinstance(value, (list, tuple)):
        value = "; ".join(str(v) for v in value)
    text = str(value)
    formula = text.startswith(_FORMULA_START) or _unpadded(text).startswith(_FORMULA_START)
    return "'" + text if formula else text


def _unpadded(text: str) -> str:
    """`text` without what a spreadsheet skips before a formula: whitespace (NBSP and newlines
    included), control and invisible format characters (zero-width space, BOM)."""
    i = 0
    while i < len(text) and (text[i].isspace() or unicodedata.category(text[i]) in ("Cc", "Cf")):
        i += 1
    return text[i:]


def write_csv(
    path: str | Path, rows: Iterable[Mapping[str, Any]], fields: Sequence[str] | None = None
) -> int:
    """Write rows as RFC 4180 CSV (UTF-8, header first, quoted where needed); returns the row count.

    `fields` picks and orders the columns (default: the keys of the first row, in order).
    """
    rows = list(rows)
    cols = list(fields) if fields is not None else list(rows[0]) if rows else []
    try:
        with _atomic_text(Path(path), newline="") as f:
            w = csv.writer(f, lineterminator="\r\n")
            if cols:
                w.writerow([csv_cell(c) for c in cols])
            for r in rows:
                w.writerow([csv_cell(r.get(c)) for c in cols])
    except OSError as err:
        raise ExportError(f"cannot write CSV: {reason_of(err)}", path) from err
    return len(rows)


def write_json(path: str | Path, data: Any) -> None:
    """Write `data` (records, a summary...) as a JSON document."""
    try:
        with _atomic_text(Path(path), newline="\n") as f:
            f.write(dumps_json(data) + "\n")
    except OSError as err:
        raise ExportError(f"cannot write JSON: {reason_of(err)}", path) from err
