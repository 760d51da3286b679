"""Writing genre tags to files: each track's plan, re-checked and applied under its mgctag lock."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from mgctag import tags
from mgctag.errors import reason_of
from mgctag.genres import plan_genres
from mgctag.library.db import Library, LibraryError
from mgctag.library.rows import Track
from mgctag.options import (
    Progress,
    StopFlag,
    Summary,
    TagOptions,
)
from mgctag.writes import journal
from mgctag.writes.plan import Plan, Skip, max_genres, plan_track
from mgctag.writes.run import record_failure
from mgctag.writes.vocabulary import library_vocabulary
from mgctag.writes.writers import FileWriter, GenreWriter, apply_change


def write_tags(
    lib: Library,
    tracks: Sequence[Track],
    opts: TagOptions,
    summary: Summary,
    progress: Progress,
    stop: StopFlag,
) -> None:
    """Apply the planned genre change to each file (or only report it under --dry-run).

    Each file is re-checked, planned and written under its mgctag lock, with the change journaled
    before the file is touched (writes/journal.py), so a kill at any moment or a second process
    never leaves a change that undo cannot see. Writes a killed run left pending are settled and its
    stale temporary copies removed first.
    """
    progress.stage("writing" if not opts.dry_run else "planning", len(tracks))
    if not opts.dry_run:
        _clean_stale_temps(tracks)
    writer = FileWriter(opts)
    vocabulary = library_vocabulary(lib, opts.model, opts.learn_from_library)
    failed = {path for path, _ in summary.failures}
    told = dict(summary.skips)  # skips analysis already listed (too short, silent)
    for track in tracks:
        if stop:
            break
        progress.advance()
        if track.path in failed:  # counted once, as failed, never also as skipped
            continue
        plan = plan_track(lib, track, opts, vocabulary)
        if isinstance(plan, Skip):
            if plan.content:  # so --json can list the audiobooks and field recordings
                summary.contents[track.path] = plan.content
            _skip(summary, told, track.path, plan.reason)
            continue
        t0 = time.perf_counter()
        if opts.dry_run:
            _write_one(lib, track, plan, opts, summary, writer)
            continue
        try:
            with journal.file_lock(lib, track.path, stop=stop):
                _write_one(lib, track, plan, opts, summary, writer)
        except journal.FileBusyError as exc:
            if stop:
                break
            record_failure(lib, summary, track.path, "write", exc.reason)
            continue
        except LibraryError:  # the journal is gone or full: no further write may go unjournaled
            raise
        except Exception as exc:  # a bug on one odd file must not end the run; its entry settles
            reason = f"internal error: {reason_of(exc)}"
            record_failure(lib, summary, track.path, "write", reason, type(exc).__name__)
            continue
        summary.stage_seconds["tag write"] += time.perf_counter() - t0


def _skip(summary: Summary, told: dict[str, str], path: str, reason: str) -> None:
    """Count a skipped track once and list it with its reason (once, even if analysis told it)."""
    summary.skipped += 1
    if path not in told:
        summary.skips.append((path, reason))
        told[path] = reason


def _write_one(
    lib: Library,
    track: Track,
    plan: Plan,
    opts: TagOptions,
    summary: Summary,
    writer: GenreWriter,
) -> None:
    """Plan and write one file (lock held): a file changed since the scan is left alone."""
    path = track.path
    row = lib.get_track(track.id) or track  # another mgctag may have written it meanwhile
    try:
        st = os.stat(path)
        current = tags.read_tags(path).genres
    except FileNotFoundError:
        record_failure(lib, summary, path, "read tags", "the file is gone since the scan")
        return
    except OSError as exc:
        record_failure(lib, summary, path, "read tags", exc.strerror or str(exc))
        return
    except tags.TagError as exc:
        record_failure(lib, summary, path, "read tags", exc.reason)
        return
    if (st.st_size, st.st_mtime_ns) != (row.size, row.mtime):
        reason = "the file changed since it was scanned; not written (run mgctag again)"
        record_failure(lib, summary, path, "write", reason)
        return
    new = plan_genres(current, plan.predicted, opts.mode, max_genres(opts))
    if new is None:
        summary.unchanged += 1
        return
    apply_change(writer, lib, summary, track.id, path, current, new, dry_run=opts.dry_run)


def _clean_stale_temps(tracks: Sequence[Track]) -> None:
    """Remove temporary copies a killed mgctag left beside these tracks (old enough to be dead)."""
    for folder in sorted({os.path.dirname(t.path) for t in tracks}):
        try:
            tags.cleanup_stale_temps(folder, recursive=False)
        except OSError:
            continue
