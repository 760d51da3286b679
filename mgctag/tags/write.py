"""Write only the genre: edit a copy, verify it byte for byte, then commit it safely.

Users point mgctag at collections curated for decades, so a damaged file or a lost tag is the one
unforgivable bug. Every write edits a temporary copy beside the file (tags/formats.py), then
checks the copy: genres read back as intended, every other tag unit (ID3 frame, Vorbis comment,
FLAC block, MP4 atom, ASF attribute) byte-identical, audio payload hash unchanged. Only then is the
original touched, in one of two ways:

* **in place** when the copy has the original's size (the usual case: tags keep padding): only the
  changed byte ranges are written into the original file, so its inode, owner, group, mode, ACLs,
  extended attributes and hard links stay as they are. The original bytes of those ranges go to
  the journal first (`on_commit`), so a write torn by a crash can be rolled back.
* **replaced** when the size changes: the verified copy gets the original's owner, group, mode,
  xattrs, is fsynced and renamed over the original — only when all of that can be kept and the
  file has a single link; otherwise the file is refused with one line and left untouched.

Right before either, the file is checked once more (inode, size, mtime, ctime, and the bytes about
to be replaced), so an edit another program made meanwhile is never overwritten.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mgctag import atomicio
from mgctag.errors import reason_of
from mgctag.tags.common import TagError, TagReadError, TagWriteError, WriteResult
from mgctag.tags.formats import ID3V23_SEPARATOR, EditOptions, FormatError, format_for
from mgctag.tags.id3raw import Id3Unsupported
from mgctag.tags.payload import audio_payload_hash
from mgctag.tags.read import _file_tags, _open, normalise_genres, write_blocker
from mgctag.tags.vorbis import VorbisUnsupported

TEMP_SUFFIX = atomicio.TEMP_SUFFIX
_CHUNK = 1 << 20
#: A same-size write changing up to this many bytes is patched in place; above it the copy is
#: renamed over the file where that keeps owner, mode, xattrs and links, else it is patched in
#: place up to MAX_PATCH_BYTES (the journal keeps a backup of every patched byte).
SMALL_PATCH_BYTES = 1 << 20
MAX_PATCH_BYTES = 64 << 20
_BINARY = getattr(os, "O_BINARY", 0)  # Windows would translate newlines without it
_UNSUPPORTED = (FormatError, Id3Unsupported, VorbisUnsupported)

#: What `on_commit` receives before the file is touched: the genre exactly as stored before
#: ("raw", for an exact undo), how the file is changed and, for in-place writes, the original
#: bytes of each changed range ("backup": [(offset, bytes)]).
CommitHook = Callable[[dict[str, Any]], None]


def write_genres(
    path: str | os.PathLike[str],
    genres: list[str],
    *,
    id3v23: bool = False,
    id3v23_separator: str = ID3V23_SEPARATOR,
    keep_mtime: bool = False,
    restore: dict | None = None,
    on_commit: CommitHook | None = None,
) -> WriteResult:
    """Replace the genre field of one file (empty list: remove it) and nothing else.

    `restore` is a genre as stored (the "raw" an earlier write handed to `on_commit`): it is put
    back byte for byte, and `genres` are the genres it should read as. On any failure the file
    is untouched and TagWriteError says why (one line).
    """
    path = Path(path)
    try:
        audio = _open(path)
    except TagReadError as e:
        raise TagWriteError(e.reason, path) from None
    old = _file_tags(path, audio, True).genres
    new = normalise_genres(genres)
    if old == new and restore is None:  # nothing to do, even where writing would be refused
        return _unchanged(path, old, new)
    blocker = write_blocker(path, audio)
    if blocker:
        raise TagWriteError(blocker, path)
    fmt = format_for(audio)
    assert fmt is not None  # write_blocker refused formats without a writer
    real = path.resolve()  # write through symlinks, never replace the link itself
    try:
        old_raw = fmt.genre_raw(real)
    except (*_UNSUPPORTED, OSError) as e:
        raise TagWriteError(f"not written: {reason_of(e)}", path) from None
    if restore is not None and old_raw == restore:
        return _unchanged(path, old, new)
    try:
        edit = EditOptions(id3v23=id3v23, id3v23_separator=id3v23_separator)
        return _write(path, real, fmt, old, old_raw, new, edit, keep_mtime, restore, on_commit)
    except TagWriteError as e:
        raise TagWriteError(e.reason, path) from None
    except TagError as e:
        raise TagWriteError(f"verification failed: {e.reason}", path) from None
    except _UNSUPPORTED as e:
        raise TagWriteError(f"not written: {reason_of(e)}", path) from None
    except Exception as e:  # anything else from mutagen or the OS: the original is untouched
        raise TagWriteError(f"write failed: {reason_of(e)}", path) from None


def _unchanged(path: Path, old: list[str], new: list[str]) -> WriteResult:
    st = path.stat()
    return WriteResult(path, old, new, False, st.st_size, st.st_mtime)


def _write(
    path: Path,
    real: Path,
    fmt: Any,
    old: list[str],
    old_raw: dict,
    new: list[str],
    edit: EditOptions,
    keep_mtime: bool,
    restore: dict | None,
    on_commit: CommitHook | None,
) -> WriteResult:
    before = real.stat()
    units = fmt.units(real)
    payload = audio_payload_hash(real)
    try:
        tmp = _temp_copy(real)
    except OSError as e:
        raise TagWriteError(f"cannot make a temporary copy: {reason_of(e)}") from None
    try:
        fmt.edit(tmp, new, edit, restore)
        _verify(tmp, fmt, new, units, payload)
        ranges = _changed_ranges(real, tmp) if tmp.stat().st_size == before.st_size else None
        patch = sum(len(o) for _, o, _ in ranges) if ranges is not None else None
        blocker = (
            ""
            if patch is not None and patch <= SMALL_PATCH_BYTES
            else _replace_blocker(real, tmp, before)
        )
        if not blocker and (patch is None or patch > SMALL_PATCH_BYTES):
            method = _commit_replace(tmp, real, before, keep_mtime, fmt, units, old_raw, on_commit)
        elif patch is not None and patch <= MAX_PATCH_BYTES:
            assert ranges is not None  # patch is only set from ranges
            method = _commit_in_place(ranges, real, before, keep_mtime, old_raw, on_commit)
        else:
            raise TagWriteError(f"{blocker}; not written")
    finally:
        tmp.unlink(missing_ok=True)
    after = real.stat()
    return WriteResult(path, old, new, True, after.st_size, after.st_mtime, method)


def _temp_copy(real: Path) -> Path:
    """Copy `real` to a hidden temp file in its own folder (same file system).

    shutil.copyfile lets the kernel copy (sendfile, or a reflink where the file system shares
    blocks): a 35 MB FLAC took 46 ms of CPU through Python's 1 MB reads (issue 29)."""
    tmp = atomicio.temp_name(real)
    try:
        shutil.copyfile(real, tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _verify(tmp: Path, fmt: Any, genres: list[str], units: list, payload: str) -> None:
    """Re-open the edited copy: genres as intended, every other tag byte and the audio unchanged."""
    got = _file_tags(tmp, _open(tmp), True).genres
    if got != genres:
        raise TagWriteError(f"verification failed: genres read back as {got}, not {genres}")
    if fmt.units(tmp) != units:
        raise TagWriteError(
            "not written: other tags would not stay byte-identical"
            " (mgctag cannot rewrite this file's tags losslessly)"
        )
    if audio_payload_hash(tmp) != payload:
        raise TagWriteError("verification failed: the audio data would change")


# --- committing -------------------------------------------------------------------------------


def _identity(st: os.stat_result) -> tuple:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _changed_ranges(a: Path, b: Path) -> list[tuple[int, bytes, bytes]]:
    """(offset, bytes in a, bytes in b) of every differing span (one per differing block)."""
    out: list[tuple[int, bytes, bytes]] = []
    with a.open("rb") as fa, b.open("rb") as fb:
        offset = 0
        while True:
            x, y = fa.read(_CHUNK), fb.read(_CHUNK)
            if not x and not y:
                return out
            if x != y:  # same sizes: the copy has the original's length
                diff = np.flatnonzero(np.frombuffer(x, np.uint8) != np.frombuffer(y, np.uint8))
                first, last = int(diff[0]), int(diff[-1])
                out.append((offset + first, x[first : last + 1], y[first : last + 1]))
            offset += len(x)


def _recheck(real: Path, before: os.stat_result, check: Callable[[], bool]) -> None:
    """The last-moment check: nobody touched the file since it was read (ctime cannot be set
    back by another tagger, unlike mtime), and the bytes about to be replaced are as read."""
    if _identity(real.stat()) != _identity(before) or not check():
        raise TagWriteError("the file changed while mgctag was writing it; not written, try again")


def _commit_in_place(
    ranges: list[tuple[int, bytes, bytes]],
    real: Path,
    before: os.stat_result,
    keep_mtime: bool,
    old_raw: dict,
    on_commit: CommitHook | None,
) -> str:
    if on_commit is not None:
        on_commit(
            {"raw": old_raw, "method": "in place", "backup": [(off, o) for off, o, _ in ranges]}
        )

    def same() -> bool:
        with real.open("rb") as fh:
            return all(_read_at(fh, off, len(o)) == o for off, o, _ in ranges)

    fd = os.open(real, os.O_WRONLY | _BINARY)
    try:
        _recheck(real, before, same)
        for off, _, data in ranges:
            _write_at(fd, off, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    if keep_mtime:
        os.utime(real, ns=(before.st_atime_ns, before.st_mtime_ns))
    return "in place"


def _write_at(fd: int, offset: int, data: bytes) -> None:
    """os.pwrite, portably (Windows has no pwrite)."""
    os.lseek(fd, offset, os.SEEK_SET)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_at(fh: Any, offset: int, n: int) -> bytes:
    fh.seek(offset)
    return fh.read(n)


def _commit_replace(
    tmp: Path,
    real: Path,
    before: os.stat_result,
    keep_mtime: bool,
    fmt: Any,
    units: list,
    old_raw: dict,
    on_commit: CommitHook | None,
) -> str:
    """Rename the verified copy (prepared by _replace_blocker) over the original."""
    if not keep_mtime:
        os.utime(tmp)
    atomicio.fsync_file(tmp)
    if on_commit is not None:
        on_commit({"raw": old_raw, "method": "replaced", "backup": []})
    _recheck(real, before, lambda: fmt.units(real) == units and fmt.genre_raw(real) == old_raw)
    os.replace(tmp, real)
    atomicio.fsync_dir(real.parent)
    return "replaced"


def _replace_blocker(real: Path, tmp: Path, before: os.stat_result) -> str:
    """Why the copy cannot replace the original without changing more than the tag ("": it
    can); gives the copy the original's identity on the way."""
    if before.st_nlink > 1:
        return (
            f"the tag changes size and the file has {before.st_nlink} hard links (a new copy"
            " would split them)"
        )
    _copy_identity(real, tmp, before)
    lost = _identity_lost(real, tmp)
    return f"the tag changes size and a new copy cannot keep the file's {lost}" if lost else ""


def _copy_identity(real: Path, tmp: Path, before: os.stat_result) -> None:
    """Give the copy the original's owner and group (where allowed), mode, times and xattrs."""
    if hasattr(os, "chown"):
        try:
            os.chown(tmp, before.st_uid, before.st_gid)
        except OSError:
            with contextlib.suppress(OSError):
                os.chown(tmp, -1, before.st_gid)
    with contextlib.suppress(OSError):  # what could not be copied is found by _identity_lost
        shutil.copystat(real, tmp)  # mode, atime/mtime, extended attributes (ACLs included)


def _identity_lost(real: Path, tmp: Path) -> str:
    """What of owner, group, mode and extended attributes the copy does not share."""
    a, b = real.stat(), tmp.stat()
    if a.st_uid != b.st_uid:
        return "owner"
    if a.st_gid != b.st_gid:
        return "group"
    if stat.S_IMODE(a.st_mode) != stat.S_IMODE(b.st_mode):
        return "mode"
    if hasattr(os, "listxattr"):
        try:
            if _xattrs(real) != _xattrs(tmp):
                return "extended attributes"
        except OSError:
            return "extended attributes"
    return ""


def _xattrs(path: Path) -> dict[str, bytes]:
    try:
        names = os.listxattr(path)
    except OSError as e:
        if e.errno in (getattr(os, "ENOTSUP", 95), 95):
            return {}
        raise
    return {n: os.getxattr(path, n) for n in names}


def undo_in_place(real: str | os.PathLike[str], backup: list[tuple[int, bytes]]) -> None:
    """Put back the original bytes of an in-place write (a torn write found after a crash)."""
    fd = os.open(real, os.O_WRONLY | _BINARY)
    try:
        for off, data in backup:
            _write_at(fd, off, data)
        os.fsync(fd)
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
