"""Read the tags mgctag cares about (artist, album, title, genres) from any audio file."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import mutagen
from mutagen.aiff import AIFF
from mutagen.apev2 import APENoHeaderError, APEv2, APEv2File
from mutagen.asf import ASF
from mutagen.flac import FLAC
from mutagen.id3 import ID3, TCON, ID3FileType
from mutagen.mp3 import MP3
from mutagen.mp4 import MP4
from mutagen.ogg import OggFileType
from mutagen.wave import WAVE

from mgctag.errors import reason_of
from mgctag.tags.common import FileTags, TagReadError
from mgctag.tags.formats import ID3V1_GENRES as _ID3V1_GENRES
from mgctag.tags.formats import format_for


class Fields:
    """How one tag family names artist, album, title and genre, and how a field's values read.

    One small class per family (the writers are in formats.py); `name` is FileTags.family.
    """

    name = ""
    keys: tuple[str, str, str, str] = ("", "", "", "")

    def values(self, tags: Any, key: str) -> list[str]:
        return [str(v) for v in tags.get(key, [])]

    def split_slash(self, tags: Any) -> bool:
        """Whether "/" joins several genres (formats without multi-value fields)."""
        return False


class Id3Fields(Fields):
    name = "id3"
    keys = ("TPE1", "TALB", "TIT2", "TCON")

    def values(self, tags: Any, key: str) -> list[str]:
        frames = tags.getall(key)
        if key == "TCON":  # through mutagen's ID3v1-number resolution: "(17)" is Rock
            return [g for frame in frames for g in frame.genres]
        return [str(t) for frame in frames for t in frame.text]

    def split_slash(self, tags: Any) -> bool:
        return tags.version < (2, 4, 0)


class VorbisFields(Fields):
    name = "vorbis"
    keys = ("artist", "album", "title", "genre")


class Mp4Fields(Fields):
    name = "mp4"
    keys = ("\xa9ART", "\xa9alb", "\xa9nam", "\xa9gen")


class AsfFields(Fields):
    name = "asf"
    keys = ("Author", "WM/AlbumTitle", "Title", "WM/Genre")

    def values(self, tags: Any, key: str) -> list[str]:
        names = super().values(tags, key)
        if key == "WM/Genre" and not names:  # a numeric or named WM/GenreID is a genre too
            return [_genre_id(v.value) for v in tags.get("WM/GenreID", [])]
        return names


class ApeFields(Fields):
    name = "ape"
    keys = ("Artist", "Album", "Title", "Genre")

    def values(self, tags: Any, key: str) -> list[str]:
        return str(tags[key]).split("\0") if key in tags else []


def _genre_id(value: Any) -> str:
    """WM/GenreID holds a name, "(17)" or a bare number (ID3v1 genre numbers)."""
    text = str(value).strip()
    if text.isdigit():
        text = f"({text})"
    genres = TCON(encoding=3, text=[text]).genres
    return genres[0] if genres else text


def normalise_genres(values: Iterable[str], *, split_slash: bool = False) -> list[str]:
    """Split joined genre strings, strip, drop empties and case-insensitive duplicates.

    ";" separates genres everywhere (no genre name contains it). "/" separates them only where
    the format has no multi-value field (ID3v2.3 and older), never inside an ID3v1 name
    ("Pop/Funk").
    """
    out: list[str] = []
    seen: set[str] = set()
    for value in values:
        value = str(value)
        if ";" in value:
            parts = value.split(";")
        elif split_slash and "/" in value and value.strip().casefold() not in _ID3V1_GENRES:
            parts = value.split("/")
        else:
            parts = [value]
        for part in (p.strip() for p in parts):
            if part and part.casefold() not in seen:
                seen.add(part.casefold())
                out.append(part)
    return out


def read_tags(path: str | os.PathLike[str]) -> FileTags:
    """Artist, album, title and genres of any audio file mutagen knows; raises TagReadError."""
    path = Path(path)
    audio = _open(path)
    return _file_tags(path, audio, write_blocker(path, audio) is None)


def _open(path: Path, cls: type | None = None, **kwargs: Any) -> Any:
    """Load with mutagen (by content, or as `cls`), turning every failure into TagReadError."""
    if not path.exists():
        raise TagReadError("no such file", path)
    if not path.is_file():
        raise TagReadError("not a regular file", path)
    try:
        audio = mutagen.File(path) if cls is None else cls(path, **kwargs)
    except PermissionError:
        raise TagReadError("permission denied", path) from None
    except Exception as e:  # mutagen raises many types on corrupt input; the user needs one line
        raise TagReadError(f"cannot parse tags: {reason_of(e)}", path) from None
    if audio is None:
        raise TagReadError("not an audio format mutagen recognises", path)
    return audio


def _fields(audio: Any) -> Fields | None:
    if isinstance(audio.tags, ID3) or isinstance(audio, ID3FileType | WAVE | AIFF):
        return Id3Fields()
    if isinstance(audio, FLAC | OggFileType):
        return VorbisFields()
    if isinstance(audio, MP4):
        return Mp4Fields()
    if isinstance(audio, ASF):
        return AsfFields()
    if isinstance(audio.tags, APEv2) or isinstance(audio, APEv2File):
        return ApeFields()
    return None


def _file_tags(path: Path, audio: Any, writable: bool) -> FileTags:
    fields = _fields(audio)
    if fields is None:
        return FileTags(path, type(audio).__name__.lower(), None, None, None, [], writable)
    sources: list[tuple[Fields, Any]] = [(fields, audio.tags)]
    if isinstance(audio, MP3) and (ape := _mp3_ape(path)) is not None:
        # Field by field, ID3v2 wins over APEv2, which wins over ID3v1 (which mutagen merges
        # into the ID3 frames, so a tag of version 1.x holds nothing but ID3v1 fields).
        v1_only = audio.tags is None or audio.tags.version < (2, 2, 0)
        sources = [(ApeFields(), ape), sources[0]] if v1_only else [sources[0], (ApeFields(), ape)]
    found = [
        [f.values(tags, key) if tags is not None else [] for key in f.keys] for f, tags in sources
    ]
    artist, album, title, genres = (next((f[i] for f in found if f[i]), []) for i in range(4))
    src, tags = next((src for src, f in zip(sources, found, strict=True) if f[3]), sources[0])
    return FileTags(
        path,
        sources[0][0].name,
        _joined(artist),
        _joined(album),
        _joined(title),
        normalise_genres(genres, split_slash=tags is not None and src.split_slash(tags)),
        writable,
    )


def _mp3_ape(path: Path) -> APEv2 | None:
    try:
        return APEv2(path)
    except APENoHeaderError:
        return None
    except Exception as e:
        raise TagReadError(f"cannot parse APEv2 tag: {reason_of(e)}", path) from None


def _joined(values: list[str]) -> str | None:
    values = [v for v in values if v]
    return "; ".join(values) if values else None


def write_blocker(path: Path, audio: Any) -> str | None:
    """Why write_genres would refuse this file, or None.

    Mode bits are checked as well as access(2) so a read-only file is respected even when running
    as root. The folder must be writable too: the edited copy is made beside the file.
    """
    if format_for(audio) is None:
        return f"writing tags to {type(audio).__name__} files is not supported"
    real = path.resolve()
    mode = real.stat().st_mode
    if not os.access(real, os.W_OK) or not mode & 0o222:
        return "file is read-only"
    folder = real.parent
    if not os.access(folder, os.W_OK | os.X_OK) or not folder.stat().st_mode & 0o222:
        return "folder is read-only (mgctag writes a temporary copy beside the file)"
    return None
