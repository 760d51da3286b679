"""Atomic file writes: a file appears complete under its name, or not at all.

The one helper for every writer in mgctag (tag copies, stem files, exports, models): write to a
hidden temporary name in the destination folder (same file system, so the rename is atomic),
fsync it, rename it over the destination, fsync the folder; on any failure the temporary file is
removed and the destination is as it was.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

#: Temporary names end with this (hidden, not an audio extension, recognisable for cleanup).
TEMP_SUFFIX = ".mgctag-tmp"
_NAME_BYTES = 120  # the part of the destination's name kept in the temp name (under NAME_MAX)


def temp_name(dest: Path) -> Path:
    """Create (empty, mode 0600) and return a unique hidden temporary file beside `dest`."""
    stem = os.fsdecode(os.fsencode(dest.name)[:_NAME_BYTES])
    fd, name = tempfile.mkstemp(prefix=f".{stem}.", suffix=TEMP_SUFFIX, dir=dest.parent)
    os.close(fd)
    return Path(name)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: Path) -> None:
    """Make a rename durable (best effort: some systems cannot open or sync folders)."""
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


@contextmanager
def atomic_path(dest: str | os.PathLike[str], *, mode: int | None = 0o644) -> Iterator[Path]:
    """Yield a temporary path to write; on a clean exit it replaces `dest` (fsynced).

    `mode` is applied before the rename (mkstemp makes 0600); None keeps 0600.
    """
    dest = Path(dest)
    tmp = temp_name(dest)
    try:
        yield tmp
        if mode is not None:
            os.chmod(tmp, mode)
        fsync_file(tmp)
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
    finally:
        tmp.unlink(missing_ok=True)  # a no-op after the rename


def write_atomic(dest: str | os.PathLike[str], write: Callable[[Path], object], **kw) -> Path:
    """Call `write(tmp_path)` and move the result to `dest` atomically; returns `dest`."""
    with atomic_path(dest, **kw) as tmp:
        write(tmp)
    return Path(dest)
