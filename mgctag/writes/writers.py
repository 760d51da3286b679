"""The two ways a planned genre change reaches a file, behind one small interface: mgctag's own
journaled tag write (`FileWriter`) and, in the beets plugin, beets' ``store()``/``try_write()``.
Both journal the change before anything is touched, so undo sees every change."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from mgctag import tags
from mgctag.library.db import Library
from mgctag.options import Change, Summary, TagOptions
from mgctag.writes import journal
from mgctag.writes.run import record_failure


class GenreWriter(Protocol):
    """Puts one planned change in place (the file's lock held by the caller where it needs one).

    Returns whether it was written; a writer that could not write reports why itself (into the
    summary, and the library where it records failures)."""

    #: Whether a write changes the file itself (beets with ``-W`` changes only its database).
    changes_file: bool

    def write(
        self,
        lib: Library,
        summary: Summary,
        track_id: int | None,
        path: str,
        old: Sequence[str],
        new: Sequence[str],
    ) -> bool: ...


class FileWriter:
    """mgctag's own verified, journaled tag write (writes/journal.py) with the run's options."""

    changes_file = True

    def __init__(self, opts: TagOptions) -> None:
        self.opts = opts

    def write(
        self,
        lib: Library,
        summary: Summary,
        track_id: int | None,
        path: str,
        old: Sequence[str],
        new: Sequence[str],
    ) -> bool:
        try:
            journal.journaled_write(
                lib,
                summary.run_id,
                track_id,
                path,
                list(old),
                list(new),
                id3v23=self.opts.id3v23,
                id3v23_separator=self.opts.id3v23_separator,
                keep_mtime=self.opts.keep_mtime,
            )
        except tags.TagWriteError as exc:
            record_failure(lib, summary, path, "write", exc.reason)
            return False
        return True


def apply_change(
    writer: GenreWriter,
    lib: Library,
    summary: Summary,
    track_id: int | None,
    path: str,
    old: list[str],
    new: list[str],
    *,
    dry_run: bool,
) -> None:
    """Write one planned change (or, in a dry run, only list it) and count it."""
    if dry_run:
        summary.changes.append(Change(path, old, new, written=False))
        return
    if writer.write(lib, summary, track_id, path, old, new):
        summary.changes.append(Change(path, old, new, written=writer.changes_file))
        summary.tagged += 1
