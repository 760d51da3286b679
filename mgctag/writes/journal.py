"""The write journal: every tag write is journaled *before* it happens, under a file lock.

Order of one write (`journaled_write`, called with `file_lock` held):

1. the intended change (old → new genres) goes into the journal as ``pending``;
2. `tags.write_genres` writes a verified temporary copy and renames it over the file;
3. the entry is confirmed ``done`` (or marked ``failed`` when the file was left as it was).

A process killed at any moment therefore leaves either no entry (nothing was touched) or a pending
one, which `settle_pending` resolves by reading the file: genres as intended → done (undo can
restore it), genres as before → not written, anything else with a journaled backup (an in-place
write torn by a crash) → rolled back. The lock (``fcntl.flock``, or ``msvcrt.locking`` on
Windows, on a file in the database's folder, keyed by the file's real path) keeps two mgctag
processes from writing one file at once and from settling an entry whose write is still in flight.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from mgctag import tags
from mgctag.errors import MgctagError, reason_of
from mgctag.library.db import Library
from mgctag.library.rows import WriteEntry

try:  # POSIX
    import fcntl
except ImportError:  # Windows: msvcrt's byte-range lock does the same job for one file
    fcntl = None  # type: ignore[assignment]
    import msvcrt

#: How long a write waits for another mgctag process to finish with the same file.
LOCK_WAIT_S = 60.0
_POLL_S = 0.05
LOCK_DIR = ".mgctag-locks"
# Random part of a tempfile.mkstemp name (see tags._temp_copy).
_TEMP_RANDOM = re.compile(r"[a-z0-9_]{8}")


class FileBusyError(MgctagError):
    """Another mgctag process held the file's lock for too long (or the user stopped waiting),
    or the lock cannot be taken at all."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(reason, path)


def _try_lock(fd: int) -> bool:
    """Take the exclusive lock on an open lock file without waiting; False when it is held."""
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES, errno.EDEADLK):
            return False
        raise
    return True


# --- per-file locks ---------------------------------------------------------------------------


def lock_path(lib: Library, path: str | os.PathLike[str]) -> Path:
    """The lock file for `path`: in the database's folder, named by a hash of the real path."""
    real = os.path.realpath(os.fsencode(path))
    return lib.path.parent / LOCK_DIR / (hashlib.sha256(real).hexdigest()[:32] + ".lock")


@contextmanager
def file_lock(
    lib: Library,
    path: str | os.PathLike[str],
    *,
    timeout: float = LOCK_WAIT_S,
    stop: object = None,
) -> Iterator[None]:
    """Hold the exclusive mgctag lock on `path`; FileBusyError after `timeout` s or once `stop`.

    The lock file is removed on release. A waiter that then locks the removed inode notices (the
    name no longer points at it) and tries again, so two holders can never coexist.
    """
    lockfile = lock_path(lib, path)
    try:
        lockfile.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise FileBusyError(
            path, f"cannot lock: {lockfile.parent} exists but is not a folder; remove it"
        ) from None
    except OSError as exc:
        raise FileBusyError(path, f"cannot lock: {lockfile.parent}: {reason_of(exc)}") from None
    fd = _acquire(lockfile, path, timeout, stop)
    try:
        yield
    finally:
        try:
            with suppress(OSError):  # Windows cannot remove a file that is open
                lockfile.unlink(missing_ok=True)
        finally:
            os.close(fd)


def _acquire(lockfile: Path, path: str | os.PathLike[str], timeout: float, stop: object) -> int:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(lockfile, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise FileBusyError(path, f"cannot lock: {lockfile}: {reason_of(exc)}") from None
        try:
            locked = _try_lock(fd)
        except OSError as exc:
            os.close(fd)
            raise FileBusyError(path, f"cannot lock: {reason_of(exc)}") from None
        if not locked:
            os.close(fd)
            if stop:
                raise FileBusyError(path, "stopped while another mgctag was writing it") from None
            if time.monotonic() > deadline:
                raise FileBusyError(
                    path, f"another mgctag process kept it busy for {timeout:.0f} s; not written"
                ) from None
            time.sleep(_POLL_S)
            continue
        try:
            same = os.stat(lockfile).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the previous holder removed this inode: lock the new file instead


def remove_own_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Delete temporary copies of `path` left by a killed write (call with its lock held).

    Only exact matches of tags' temp name for this file are touched, whatever their age; names
    longer than the 120 bytes tags keeps are left to `tags.cleanup_stale_temps` (age-based).
    """
    real = Path(os.path.realpath(path))
    name = real.name
    if len(name.encode(errors="surrogateescape")) > 120:
        return []
    removed = []
    prefix, suffix = f".{name}.", tags.TEMP_SUFFIX
    try:
        entries = list(os.scandir(real.parent))
    except OSError:
        return []
    for entry in entries:
        middle = entry.name[len(prefix) : -len(suffix)]
        if (
            entry.name.startswith(prefix)
            and entry.name.endswith(suffix)
            and _TEMP_RANDOM.fullmatch(middle)
            and entry.is_file(follow_symlinks=False)
        ):
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except FileNotFoundError:
                continue
    return removed


# --- the write-ahead journal ------------------------------------------------------------------


def journaled_write(
    lib: Library,
    run_id: int | None,
    track_id: int | None,
    path: str | os.PathLike[str],
    old: Sequence[str],
    new: Sequence[str],
    *,
    id3v23: bool = False,
    id3v23_separator: str = tags.ID3V23_SEPARATOR,
    keep_mtime: bool = False,
    reverts: int | None = None,
    restore: dict | None = None,
) -> tags.WriteResult:
    """Journal (pending) → write → confirm: the one way mgctag changes a file (tagging and undo).
    Call with `file_lock(lib, path)` held.

    The genre as stored and, for an in-place write, the original bytes it replaces are journaled
    before the file is touched; the file is re-checked at the last moment (tags.write_genres).
    `restore` puts back a genre exactly as an earlier write journaled it (undo). Raises
    tags.TagWriteError (entry marked failed, file as it was) and JournalError when the journal
    cannot be written (nothing written: the run must stop). Any other interruption leaves the
    entry pending for `settle_pending`.
    """
    lib.check_journal()
    remove_own_temps(path)
    write_id = lib.begin_write(run_id, track_id, path, old, new, reverts=reverts)
    journal_error: list[BaseException] = []

    def on_commit(info: dict) -> None:
        try:
            lib.record_commit(write_id, info["raw"], info["method"], info["backup"])
        except Exception as exc:
            journal_error.append(exc)
            raise

    try:
        result = tags.write_genres(
            path,
            list(new),
            id3v23=id3v23,
            id3v23_separator=id3v23_separator,
            keep_mtime=keep_mtime,
            restore=restore,
            on_commit=on_commit,
        )
    except tags.TagWriteError:
        if journal_error:
            raise journal_error[0] from None
        lib.fail_write(write_id)
        raise
    if not result.changed:
        lib.fail_write(write_id)
        if reverts is not None:  # the file already holds what undo would put back
            lib.mark_undone(reverts)
        return result
    st = os.stat(path)
    lib.confirm_write(write_id, st.st_size, st.st_mtime_ns)
    return result


@dataclass
class Settled:
    path: str
    outcome: str  # "done", "not written", "rolled back", "left pending"
    reason: str = ""


def settle_pending(lib: Library) -> list[Settled]:
    """Resolve pending journal entries left by killed processes, by reading each file.

    An entry whose file is locked (its write is in flight in another process) is left alone.
    """
    out = []
    for w in lib.pending_writes():
        try:
            with file_lock(lib, w.path, timeout=0):
                if w.id in {p.id for p in lib.pending_writes()}:
                    out.append(_settle_one(lib, w))
        except FileBusyError:
            continue
    return out


def _settle_one(lib: Library, w: WriteEntry) -> Settled:
    path = w.path
    try:
        current = tags.read_tags(path).genres
        st = os.stat(path)
    except (tags.TagError, OSError) as exc:
        if not os.path.lexists(path):
            lib.fail_write(w.id)
            return Settled(path, "not written", "file is gone")
        if w.backup:  # an in-place write torn by a crash: put the original bytes back
            return _roll_back(lib, w)
        return Settled(path, "left pending", reason_of(exc))
    remove_own_temps(path)
    if current == tags.normalise_genres(w.new or []):
        lib.confirm_write(w.id, st.st_size, st.st_mtime_ns)
        return Settled(path, "done")
    if current == tags.normalise_genres(w.old or []):
        lib.fail_write(w.id)
        return Settled(path, "not written")
    if w.backup:
        return _roll_back(lib, w)
    lib.fail_write(w.id)
    return Settled(path, "not written", "the file holds neither the old nor the new genres")


def _roll_back(lib: Library, w: WriteEntry) -> Settled:
    backup = [(off, base64.b64decode(data)) for off, data in w.backup or []]
    try:
        tags.undo_in_place(w.path, backup)
    except OSError as exc:
        return Settled(w.path, "left pending", f"cannot roll back: {reason_of(exc)}")
    lib.fail_write(w.id)
    return Settled(w.path, "rolled back", "a torn in-place write was undone from the journal")
