"""Read tags from any audio file; write only the genre field, atomically and verified.

Users point mgctag at collections curated for decades, so a damaged file or a lost tag is the one
unforgivable bug. Every write therefore goes into a temporary copy in the same folder, is read back
and compared with the original (genres as intended, every other tag unchanged, audio payload hash
unchanged), fsynced, and only then renamed over the original. See docs/tags.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import struct
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import av
import mutagen
from mutagen.aiff import AIFF
from mutagen.apev2 import APENoHeaderError, APEv2, APEv2File
from mutagen.asf import ASF
from mutagen.flac import FLAC
from mutagen.id3 import ID3, TCON, Frame, ID3FileType, ID3Tags
from mutagen.mp3 import MP3
from mutagen.mp4 import MP4
from mutagen.ogg import OggFileType, OggPage
from mutagen.oggopus import OggOpus
from mutagen.oggvorbis import OggVorbis
from mutagen.wave import WAVE

#: How ID3v2.3 tags join several genres in their one TCON string (the Picard/foobar2000 choice;
#: ID3v2.3 has no multi-value text frames, and "/" is ambiguous with names like "Pop/Funk").
ID3V23_SEPARATOR = "; "
#: Temporary copies are named ".<file name>.<random>.mgctag-tmp": hidden, not an audio extension.
TEMP_SUFFIX = ".mgctag-tmp"

_ID3V1_GENRES = {name.casefold(): index for index, name in enumerate(TCON.GENRES)}
_ASF_HEADER = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")
_ASF_DATA = bytes.fromhex("3626b2758e66cf11a6d900aa0062ce6c")
_CHUNK = 1 << 20

# Formats write_genres handles (each has a tested writer and payload hash); everything else is read.
_WRITERS: dict[type, str] = {
    MP3: "id3",
    WAVE: "id3",
    AIFF: "id3",
    FLAC: "vorbis",
    OggVorbis: "vorbis",
    OggOpus: "vorbis",
    MP4: "mp4",
    ASF: "asf",
}
# Per family: keys of artist, album, title and genre.
_KEYS: dict[str, tuple[str, str, str, str]] = {
    "id3": ("TPE1", "TALB", "TIT2", "TCON"),
    "vorbis": ("artist", "album", "title", "genre"),
    "mp4": ("\xa9ART", "\xa9alb", "\xa9nam", "\xa9gen"),
    "asf": ("Author", "WM/AlbumTitle", "Title", "WM/Genre"),
    "ape": ("Artist", "Album", "Title", "Genre"),
}


class TagError(Exception):
    """A tag could not be read or written; the message is one line naming the file and why."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class TagReadError(TagError):
    """The file is missing, not audio, or its tags cannot be parsed."""


class TagWriteError(TagError):
    """Genres were not written; the file is exactly as it was."""


@dataclass(frozen=True)
class FileTags:
    """The tags mgctag cares about, normalised across formats."""

    path: Path
    family: str  # tag family the values came from: "id3", "vorbis", "mp4", "asf", "ape"
    artist: str | None
    album: str | None
    title: str | None
    genres: list[str] = field(default_factory=list)
    writable: bool = (
        False  # write_genres would be attempted (format supported, file/folder writable)
    )


@dataclass(frozen=True)
class WriteResult:
    """What write_genres did, with what the journal needs to notice later edits."""

    path: Path
    old: list[str]
    new: list[str]
    changed: bool  # False when the file already held exactly these genres (it was not touched)
    size_after: int
    mtime_after: float


# ----------------------------------------------------------------------------------------- reading


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
    return _file_tags(path, audio, _write_blocker(path, audio) is None)


def _open(path: Path, cls: type | None = None, **kwargs: Any) -> Any:
    """Load with mutagen (by content, or as `cls`), turning every failure into TagReadError."""
    if not path.exists():
        raise TagReadError(path, "no such file")
    if not path.is_file():
        raise TagReadError(path, "not a regular file")
    try:
        audio = mutagen.File(path) if cls is None else cls(path, **kwargs)
    except PermissionError:
        raise TagReadError(path, "permission denied") from None
    except Exception as e:  # mutagen raises many types on corrupt input; the user needs one line
        raise TagReadError(path, f"cannot parse tags: {_one_line(e)}") from None
    if audio is None:
        raise TagReadError(path, "not an audio format mutagen recognises")
    return audio


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _family(audio: Any) -> str:
    if isinstance(audio.tags, ID3) or isinstance(audio, ID3FileType | WAVE | AIFF):
        return "id3"
    if isinstance(audio, FLAC | OggFileType):
        return "vorbis"
    if isinstance(audio, MP4):
        return "mp4"
    if isinstance(audio, ASF):
        return "asf"
    if isinstance(audio.tags, APEv2) or isinstance(audio, APEv2File):
        return "ape"
    return type(audio).__name__.lower()


def _file_tags(path: Path, audio: Any, writable: bool) -> FileTags:
    family = _family(audio)
    if family not in _KEYS:
        return FileTags(path, family, None, None, None, [], writable)
    sources = [(family, audio.tags)]
    if isinstance(audio, MP3) and (ape := _mp3_ape(path)) is not None:
        # Field by field, ID3v2 wins over APEv2, which wins over ID3v1 (which mutagen merges
        # into the ID3 frames, so a tag of version 1.x holds nothing but ID3v1 fields).
        v1_only = audio.tags is None or audio.tags.version < (2, 2, 0)
        sources = [("ape", ape), sources[0]] if v1_only else [sources[0], ("ape", ape)]
    found = [[_values(tags, fam, key) for key in _KEYS[fam]] for fam, tags in sources]
    artist, album, title, genres = (next((f[i] for f in found if f[i]), []) for i in range(4))
    fam, tags = next((src for src, f in zip(sources, found, strict=True) if f[3]), sources[0])
    split_slash = fam == "id3" and tags is not None and tags.version < (2, 4, 0)
    return FileTags(
        path,
        sources[0][0],
        _joined(artist),
        _joined(album),
        _joined(title),
        normalise_genres(genres, split_slash=split_slash),
        writable,
    )


def _mp3_ape(path: Path) -> APEv2 | None:
    try:
        return APEv2(path)
    except APENoHeaderError:
        return None
    except Exception as e:
        raise TagReadError(path, f"cannot parse APEv2 tag: {_one_line(e)}") from None


def _values(tags: Any, family: str, key: str) -> list[str]:
    """All values of one field as strings (ID3 TCON through mutagen's ID3v1-number resolution)."""
    if tags is None:
        return []
    if family == "id3":
        frames = tags.getall(key)
        if key == "TCON":
            return [g for frame in frames for g in frame.genres]
        return [str(t) for frame in frames for t in frame.text]
    if family == "ape":
        return str(tags[key]).split("\0") if key in tags else []
    return [str(v) for v in tags.get(key, [])]


def _joined(values: list[str]) -> str | None:
    values = [v for v in values if v]
    return "; ".join(values) if values else None


# ----------------------------------------------------------------------------------------- writing


def write_genres(
    path: str | os.PathLike[str],
    genres: list[str],
    *,
    id3v23: bool = False,
    keep_mtime: bool = False,
) -> WriteResult:
    """Replace the genre field of one file (empty list: remove it) and nothing else.

    Atomic: the change is made in a temporary copy beside the file, verified, fsynced and renamed
    over the original. On any failure the file is untouched and TagWriteError says why. ID3v2.3 and
    ID3v2.4 tags keep their version; `id3v23` picks the version of new (or upgraded ID3v2.2) tags.
    """
    path = Path(path)
    try:
        audio = _open(path)
    except TagReadError as e:
        raise TagWriteError(path, e.reason) from None
    old = _file_tags(path, audio, True).genres
    new = normalise_genres(genres)
    if old == new:  # nothing to do, even where writing would be refused
        st = path.stat()
        return WriteResult(path, old, new, False, st.st_size, st.st_mtime)
    blocker = _write_blocker(path, audio)
    if blocker:
        raise TagWriteError(path, blocker)

    real = path.resolve()  # write through symlinks, never replace the link itself
    before = real.stat()
    cls = type(audio)
    try:
        payload = audio_payload_hash(real)
        v24_view = isinstance(audio.tags, ID3) and audio.tags.version < (2, 3, 0)
        snapshot = _snapshot(real, cls, v24_view)
        tmp = _temp_copy(real)
    except TagError as e:
        raise TagWriteError(path, e.reason) from None
    except OSError as e:
        raise TagWriteError(path, f"cannot make a temporary copy: {_os_reason(e)}") from None
    try:
        _write_into(tmp, cls, new, id3v23)
        _verify(tmp, cls, new, payload, snapshot, v24_view)
        _commit(tmp, real, before, keep_mtime)
    except TagWriteError as e:
        raise TagWriteError(path, e.reason) from None
    except TagError as e:
        raise TagWriteError(path, f"verification failed: {e.reason}") from None
    except Exception as e:  # anything else from mutagen or the OS: the original is untouched
        raise TagWriteError(path, f"write failed: {_one_line(e)}") from None
    finally:
        tmp.unlink(missing_ok=True)
    after = real.stat()
    return WriteResult(path, old, new, True, after.st_size, after.st_mtime)


def _write_blocker(path: Path, audio: Any) -> str | None:
    """Why write_genres would refuse this file, or None.

    Mode bits are checked as well as access(2) so a read-only file is respected even when running
    as root (the rename would otherwise replace it regardless of its own permissions).
    """
    if type(audio) not in _WRITERS:
        return f"writing tags to {type(audio).__name__} files is not supported"
    real = path.resolve()
    mode = real.stat().st_mode
    if not os.access(real, os.W_OK) or not mode & 0o222:
        return "file is read-only"
    folder = real.parent
    if not os.access(folder, os.W_OK | os.X_OK) or not folder.stat().st_mode & 0o222:
        return "folder is read-only (mgctag writes a temporary copy beside the file)"
    return None


def _os_reason(e: OSError) -> str:
    return e.strerror or _one_line(e)


def _temp_copy(real: Path) -> Path:
    """Copy `real` to a hidden temp file in its own folder (same filesystem: rename is atomic)."""
    stem = os.fsdecode(os.fsencode(real.name)[:120])  # under NAME_MAX; any name encoding
    fd, name = tempfile.mkstemp(prefix=f".{stem}.", suffix=TEMP_SUFFIX, dir=real.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as dst, real.open("rb") as src:
            shutil.copyfileobj(src, dst, _CHUNK)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _write_into(tmp: Path, cls: type, genres: list[str], id3v23: bool) -> None:
    family = _WRITERS[cls]
    if family == "id3":
        _write_id3(tmp, cls, genres, id3v23)
        return
    audio = cls(tmp)
    if audio.tags is None:
        audio.add_tags()
    tags = audio.tags
    if family == "vorbis":
        key = next((k for k, _ in tags if k.lower() == "genre"), "GENRE")  # keep the file's case
        _set(tags, key, genres)
    elif family == "mp4":
        _set(tags, "\xa9gen", genres)  # mutagen already folded a legacy numeric gnre atom into ©gen
    elif family == "asf":
        _set(tags, "WM/Genre", genres)
        _set(tags, "WM/GenreID", [])  # a stale numeric genre id would contradict the new names
    audio.save()


def _set(tags: Any, key: str, values: list[str]) -> None:
    if values:
        tags[key] = values
    elif key in tags:
        del tags[key]


def _write_id3(tmp: Path, cls: type, genres: list[str], id3v23: bool) -> None:
    """TCON in the tag's own version (2.3 or 2.4); ID3v1 and APEv2 genres updated in place."""
    audio = cls(tmp, translate=False)
    existing = audio.tags.version if audio.tags is not None else None
    if audio.tags is None:
        audio.add_tags()
    tags = audio.tags
    if existing is not None and existing >= (2, 3, 0):
        version = existing[1]  # never convert: that rewrites (and may drop) other frames
    else:  # no tag, ID3v1 only or ID3v2.2: mutagen writes only 2.3/2.4 frames
        version = 3 if id3v23 else 4
        if version == 3:
            tags.update_to_v23()
        else:
            tags.update_to_v24()
    tags.delall("TCON")
    if genres:
        tags.add(TCON(encoding=3, text=genres))
    if cls is not MP3:
        audio.save(v2_version=version, v23_sep=ID3V23_SEPARATOR)
        return
    v1 = _id3v1_block(tmp)
    audio.save(v1=0, v2_version=version, v23_sep=ID3V23_SEPARATOR)  # v1=0 drops ID3v1 ...
    ape = _mp3_ape(tmp)
    if ape is not None and "Genre" in ape:
        _set(ape, "Genre", genres)
        ape.save(tmp)
    if v1 is not None:  # ... which goes back last, byte for byte but for its genre byte
        index = next(
            (_ID3V1_GENRES[g.casefold()] for g in genres if g.casefold() in _ID3V1_GENRES), 255
        )
        with tmp.open("ab") as fh:
            fh.write(v1[:127] + bytes([index]))


def _id3v1_block(path: Path) -> bytes | None:
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        if fh.tell() < 128:
            return None
        fh.seek(-128, os.SEEK_END)
        block = fh.read(128)
    return block if block.startswith(b"TAG") else None


def _verify(
    tmp: Path, cls: type, genres: list[str], payload: str, snapshot: dict, v24_view: bool
) -> None:
    """Re-open the written copy: genres as intended, other tags and audio payload unchanged."""
    got = _file_tags(tmp, _open(tmp, cls), True).genres
    if got != genres:
        raise TagWriteError(tmp, f"verification failed: genres read back as {got}, not {genres}")
    after = _snapshot(tmp, cls, v24_view)
    changed = sorted(k for k in snapshot.keys() | after.keys() if snapshot.get(k) != after.get(k))
    if changed:
        raise TagWriteError(
            tmp, f"verification failed: other tags would change ({', '.join(changed)})"
        )
    if audio_payload_hash(tmp) != payload:
        raise TagWriteError(tmp, "verification failed: the audio data would change")


def _commit(tmp: Path, real: Path, before: os.stat_result, keep_mtime: bool) -> None:
    """Give the copy the original's owner, mode, xattrs (and mtime), fsync it, rename it over."""
    if hasattr(os, "chown"):  # POSIX only
        try:
            os.chown(tmp, before.st_uid, before.st_gid)
        except OSError:
            with contextlib.suppress(OSError):  # a group member may keep the group at least
                os.chown(tmp, -1, before.st_gid)
    shutil.copystat(real, tmp)  # mode, atime/mtime, extended attributes
    if not keep_mtime:
        os.utime(tmp)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    now = real.stat()
    if (now.st_ino, now.st_size, now.st_mtime_ns) != (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    ):
        raise TagWriteError(real, "the file changed while mgctag was writing it; try again")
    os.replace(tmp, real)
    _fsync_dir(real.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def cleanup_stale_temps(
    folder: str | os.PathLike[str], *, recursive: bool = True, older_than_s: float = 600.0
) -> list[Path]:
    """Remove temporary copies left by a killed mgctag; returns what was removed.

    Age is judged by ctime (which utime cannot set back), so a copy another mgctag process is still
    finishing is left alone.
    """
    folder = Path(folder)
    pattern = f".*{TEMP_SUFFIX}"
    candidates = folder.rglob(pattern) if recursive else folder.glob(pattern)
    cutoff = time.time() - older_than_s
    removed = []
    for tmp in candidates:
        try:
            st = tmp.lstat()
            if stat.S_ISREG(st.st_mode) and st.st_ctime <= cutoff:
                tmp.unlink()
                removed.append(tmp)
        except FileNotFoundError:
            continue
    return removed


# ------------------------------------------------------------------------------ tag snapshots


def _snapshot(path: Path, cls: type, v24_view: bool = False) -> dict[str, Any]:
    """Every tag value except the genre, in a form that compares by content.

    ID3 frames compare raw, or in mutagen's ID3v2.4 view (`v24_view`) when the write had to
    upgrade an ID3v1/ID3v2.2 tag.
    """
    family = _WRITERS[cls]
    if family == "id3":
        return _id3_snapshot(path, cls, v24_view)
    audio = _open(path, cls)
    tags = audio.tags
    if family == "vorbis":
        snap: dict[str, Any] = {
            "comments": [(k.lower(), v) for k, v in tags or [] if k.lower() != "genre"]
        }
        if isinstance(audio, FLAC):  # pictures, cue sheet, seek table, stream info: byte for byte
            snap["blocks"] = [
                (b.code, b.write()) for b in audio.metadata_blocks if b.code not in (1, 4)
            ]
        return snap
    if family == "mp4":
        return {
            k: [_mp4_value(v) for v in vals] for k, vals in (tags or {}).items() if k != "\xa9gen"
        }
    skip = {"WM/Genre", "WM/GenreID"}
    return {
        "attributes": [
            (k, type(v).__name__, v.value, v.language, v.stream)
            for k, v in tags or []
            if k not in skip
        ]
    }


def _mp4_value(v: Any) -> Any:
    if isinstance(v, bytes):  # MP4Cover / MP4FreeForm: bytes plus a format code
        return (bytes(v), getattr(v, "imageformat", None), getattr(v, "dataformat", None))
    return v


def _id3_snapshot(path: Path, cls: type, v24_view: bool) -> dict[str, Any]:
    tags = _open(path, cls, translate=False).tags
    snap: dict[str, Any] = {"unknown frames": []}
    if tags is not None:
        if v24_view:
            tags.update_to_v24()
        snap.update(_frames(tags))
        snap["unknown frames"] = sorted(tags.unknown_frames)
    if cls is MP3:
        snap["ID3v1"] = (_id3v1_block(path) or b"")[:127]  # all but the genre byte
    if cls is MP3 and (ape := _mp3_ape(path)) is not None:
        snap["APEv2"] = sorted(
            (k, bytes(v.value) if isinstance(v.value, bytes) else v.value)
            for k, v in ape.items()
            if k.lower() != "genre"
        )
    return snap


def _frames(tags: ID3Tags) -> dict[str, Any]:
    return {
        frame.HashKey: _frame_content(frame) for frame in tags.values() if frame.FrameID != "TCON"
    }


def _frame_content(frame: Frame) -> list[tuple[str, Any]]:
    """A frame's fields; the text encoding is left out (ID3v2.3 cannot store UTF-8, say)."""
    out = []
    for name, value in sorted(vars(frame).items()):
        if name == "encoding":
            continue
        if isinstance(value, ID3Tags):
            value = _frames(value)
        elif isinstance(value, list):
            value = [str(v) if not isinstance(v, bytes | tuple | list) else v for v in value]
        out.append((name, value))
    return out


# -------------------------------------------------------------------------------- payload hash


def audio_payload_hash(path: str | os.PathLike[str]) -> str:
    """SHA-256 of the audio data only, so a tag edit can be shown to leave the audio alone.

    MP3/ADTS: the bytes between leading ID3v2 tags and trailing APEv2/Lyrics3/ID3v1 tags.
    FLAC: the frames after the metadata blocks. Ogg: every packet except each stream's comment
    header (packet 1). WAV/AIFF: the fmt/data or COMM/SSND chunks. ASF: the Data Object.
    MP4 and anything else: the audio packets as FFmpeg demuxes them (this also checks that the
    sample tables still point at the same bytes after mutagen moved them).
    """
    path = Path(path)
    h = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            _hash_payload(fh, h)
    except TagError:
        raise
    except FileNotFoundError:
        raise TagReadError(path, "no such file") from None
    except Exception as e:
        raise TagReadError(path, f"cannot read the audio data: {_one_line(e)}") from None
    return h.hexdigest()


def _hash_payload(fh: BinaryIO, h: Any) -> None:
    head = fh.read(64)
    start = _skip_id3v2(fh)
    fh.seek(start)
    after = fh.read(16)
    if head.startswith(b"OggS"):
        _hash_ogg(fh, h)
    elif after.startswith(b"fLaC"):
        _hash_flac(fh, h, start)
    elif head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        _hash_chunks(fh, h, "<I", {b"fmt ", b"data"})
    elif head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        _hash_chunks(fh, h, ">I", {b"COMM", b"SSND"})
    elif head[:16] == _ASF_HEADER:
        _hash_asf(fh, h)
    elif head[4:8] != b"ftyp" and (start > 0 or (after[:1] == b"\xff" and after[1] & 0xE0 == 0xE0)):
        _hash_range(fh, h, start, _trailer_start(fh))
    else:
        _hash_demuxed(fh, h)


def _hash_range(fh: BinaryIO, h: Any, start: int, end: int) -> None:
    fh.seek(start)
    left = end - start
    while left > 0:
        block = fh.read(min(_CHUNK, left))
        if not block:
            break
        h.update(block)
        left -= len(block)


def _size(fh: BinaryIO) -> int:
    return fh.seek(0, os.SEEK_END)


def _skip_id3v2(fh: BinaryIO) -> int:
    """Offset after any ID3v2 tags at the start (size is synchsafe; +10 with a footer)."""
    pos = 0
    while True:
        fh.seek(pos)
        header = fh.read(10)
        if len(header) < 10 or header[:3] != b"ID3":
            return pos
        size = (header[6] << 21) | (header[7] << 14) | (header[8] << 7) | header[9]
        pos += 10 + size + (10 if header[5] & 0x10 else 0)


def _trailer_start(fh: BinaryIO) -> int:
    """End of the audio: before trailing ID3v1, APEv2 and Lyrics3v2 tags, in any order."""
    end = _size(fh)
    while end > 0:
        fh.seek(max(0, end - 128))
        tail = fh.read(end - max(0, end - 128))
        if tail[-128:-125] == b"TAG" and len(tail) == 128:
            end -= 128
        elif tail[-32:-24] == b"APETAGEX":
            size, flags = struct.unpack("<I4xI", tail[-20:-8])
            end -= size + (32 if flags & 0x80000000 else 0)
        elif tail[-9:] == b"LYRICS200" and tail[-15:-9].isdigit():
            end -= int(tail[-15:-9]) + 15
        else:
            return end
    return 0


def _hash_flac(fh: BinaryIO, h: Any, start: int) -> None:
    pos = start + 4
    last = False
    while not last:
        fh.seek(pos)
        header = fh.read(4)
        if len(header) < 4:
            raise ValueError("truncated FLAC metadata")
        last = bool(header[0] & 0x80)
        pos += 4 + int.from_bytes(header[1:4], "big")
    _hash_range(fh, h, pos, _trailer_start(fh))


def _hash_chunks(fh: BinaryIO, h: Any, fmt: str, wanted: set[bytes]) -> None:
    """RIFF/IFF chunks named in `wanted`, with their ids (tags live in other chunks)."""
    size = _size(fh)
    pos = 12
    while pos + 8 <= size:
        fh.seek(pos)
        cid, length = struct.unpack(fmt[0] + "4s" + fmt[1:], fh.read(8))
        end = size if length == 0xFFFFFFFF else min(pos + 8 + length, size)  # RF64 data
        if cid in wanted:
            h.update(cid)
            _hash_range(fh, h, pos + 8, end)
        pos = end + (length & 1)


def _hash_asf(fh: BinaryIO, h: Any) -> None:
    size = _size(fh)
    fh.seek(16)
    pos = struct.unpack("<Q", fh.read(8))[0]  # the Header Object (all tags) is skipped whole
    while pos + 24 <= size:
        fh.seek(pos)
        guid, length = struct.unpack("<16sQ", fh.read(24))
        if guid == _ASF_DATA:
            _hash_range(fh, h, pos, size if length == 0 else pos + length)
        if length < 24:
            break
        pos += length


def _hash_ogg(fh: BinaryIO, h: Any) -> None:
    """Every packet of every logical stream except packet 1, the comment header."""
    fh.seek(0)
    partial: dict[int, list[bytes]] = {}
    count: dict[int, int] = {}
    while True:
        try:
            page = OggPage(fh)
        except EOFError:
            break
        serial = page.serial
        for i, data in enumerate(page.packets):
            parts = partial.pop(serial, []) if i == 0 and page.continued else []
            parts.append(data)
            if i == len(page.packets) - 1 and not page.complete:
                partial[serial] = parts
                continue
            index = count.get(serial, 0)
            count[serial] = index + 1
            if index != 1:
                h.update(struct.pack("<IQ", serial, index))
                h.update(b"".join(parts))


def _hash_demuxed(fh: BinaryIO, h: Any) -> None:
    fh.seek(0)
    with av.open(fh) as container:
        streams = [s for s in container.streams if s.type == "audio"]
        if not streams:
            raise ValueError("no audio stream")
        for packet in container.demux(*streams):
            if packet.size:
                h.update(struct.pack("<iqq", packet.stream.index, packet.pts or 0, packet.dts or 0))
                h.update(bytes(packet))
