"""Walk the user's folders, recognise audio files, and record what is new, changed or gone.

A file whose size and mtime (ns) match its row is not opened at all, so rescanning a large library
costs one stat per file. Nothing here is fatal for one file or folder: an unreadable folder or an
undecodable file is reported with a one-line reason and the scan goes on. A file is only marked
removed when its folder was read and the file was not there, so an unreadable folder or an
unmounted drive never makes tracks disappear.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from mgctag.audio.decode import DecodeError, probe
from mgctag.errors import UsageError, reason_of
from mgctag.library.db import Library
from mgctag.library.rows import Track
from mgctag.tags import TEMP_SUFFIX, TagError, read_tags

AUDIO_EXTENSIONS = frozenset(
    (".mp3", ".mp2", ".flac", ".ogg", ".oga", ".opus", ".spx", ".m4a", ".m4b", ".mp4", ".aac")
    + (".wav", ".wave", ".aif", ".aiff", ".aifc", ".wma", ".wv", ".ape", ".mpc", ".tta", ".dsf")
)
# What makes one file unreadable (reported, the scan goes on), as opposed to a bug in mgctag.
# UnicodeError: a reader that cannot take a file name which is not UTF-8.
FILE_ERRORS = (DecodeError, TagError, OSError, UnicodeError)

OnError = Callable[[str, str], None]
OnProgress = Callable[[int, int, str], None]


class ScanError(UsageError):
    """A root cannot be scanned at all (it does not exist); nothing was changed."""


@dataclass
class ScanReport:
    """What one scan found. Failures are (path, one-line reason)."""

    new: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0
    failed: int = 0
    links_skipped: int = 0  # symlinks not followed (without --follow-symlinks): told, not hidden
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Audio files seen on disk in this scan."""
        return self.new + self.changed + self.unchanged + self.failed

    def as_dict(self) -> dict:
        """The stable --json schema."""
        counts = ("new", "changed", "unchanged", "removed", "failed", "total", "links_skipped")
        return {
            **{name: getattr(self, name) for name in counts},
            "failures": [{"path": path, "reason": reason} for path, reason in self.failures],
        }

    def summary_line(self) -> str:
        return (
            f"{self.total} audio files: {self.new} new, {self.changed} changed,"
            f" {self.unchanged} unchanged, {self.failed} failed; {self.removed} removed"
            + links_note(self.links_skipped)
        )


def links_note(n: int) -> str:
    """The scan summary's note on symlinks left alone ("" when there were none)."""
    if not n:
        return ""
    return f"; {n} symlink{'s' if n > 1 else ''} not followed (--follow-symlinks follows them)"


def is_audio_name(name: str) -> bool:
    """An audio file we should scan: a known extension, not hidden, not one of our temp files."""
    if name.startswith(".") or name.endswith(TEMP_SUFFIX):
        return False
    return os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS


def _walk(
    roots: Iterable[str | os.PathLike],
    follow_symlinks: bool,
    on_error: OnError,
    on_link: Callable[[str], None] = lambda path: None,
) -> Iterator[tuple[str, os.stat_result]]:
    """(path, stat) of each audio file below the roots: depth first, names sorted, a folder's own
    files before its subfolders.

    Directories are remembered by (device, inode), so a symlink cycle (or the same folder under two
    roots) is walked once; a file reachable twice is reported once.
    """
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()
    for root in sorted({os.path.abspath(os.fsdecode(r)) for r in roots}):
        try:
            st = os.stat(root)
        except OSError as exc:
            on_error(root, reason_of(exc))
            continue
        if stat.S_ISREG(st.st_mode):
            if (st.st_dev, st.st_ino) not in seen_files:
                seen_files.add((st.st_dev, st.st_ino))
                yield root, st
            continue
        if not stat.S_ISDIR(st.st_mode):  # opening a FIFO would block, a device is not audio
            on_error(root, "not a regular file or folder (a FIFO, device or socket)")
            continue
        stack = [root]
        while stack:
            folder = stack.pop()
            try:
                key = os.stat(folder)
                if (key.st_dev, key.st_ino) in seen_dirs:
                    continue
                seen_dirs.add((key.st_dev, key.st_ino))
                with os.scandir(folder) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as exc:
                on_error(folder, reason_of(exc))
                continue
            subdirs = []
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                try:
                    if entry.is_symlink() and not follow_symlinks:
                        if is_audio_name(entry.name) or _links_to_dir(entry):  # a user would miss
                            on_link(entry.path)
                        continue
                    if entry.is_dir(follow_symlinks=follow_symlinks):
                        subdirs.append(entry.path)
                    elif is_audio_name(entry.name) and entry.is_file(
                        follow_symlinks=follow_symlinks
                    ):
                        est = entry.stat(follow_symlinks=follow_symlinks)
                        if (est.st_dev, est.st_ino) not in seen_files:
                            seen_files.add((est.st_dev, est.st_ino))
                            yield entry.path, est
                except OSError as exc:  # a dangling symlink, a file vanishing mid-scan
                    on_error(entry.path, reason_of(exc))
            stack.extend(reversed(subdirs))


def _links_to_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a link loop (ELOOP) or an unreadable target: not a folder to scan
        return False


def iter_audio_files(
    roots: Iterable[str | os.PathLike],
    follow_symlinks: bool = False,
    on_error: OnError | None = None,
) -> Iterator[str]:
    """Paths of the audio files below `roots` (files or folders), in a stable order.

    Hidden names and mgctag temp files are skipped. Symlinks are skipped unless `follow_symlinks`,
    so the walk never leaves the roots by accident. Unreadable folders go to `on_error(path,
    reason)` and are skipped. Paths are ``str`` as ``os.fsdecode`` gives them, so names that are not
    UTF-8 still open.
    """
    for path, _ in _walk(roots, follow_symlinks, on_error or (lambda path, reason: None)):
        yield path


def _read(path: str) -> dict:
    """The columns of a track, from its audio stream and its tags (raises on a bad file)."""
    info = probe(path)
    tags = read_tags(path)
    return {
        "format": info.format,
        "codec": info.codec,
        "duration": info.duration,
        "sample_rate": info.sample_rate,
        "channels": info.channels,
        "artist": tags.artist,
        "album": tags.album,
        "title": tags.title,
        "genres": list(tags.genres),
    }


def scan(
    lib: Library,
    roots: Iterable[str | os.PathLike],
    *,
    run_id: int | None = None,
    on_progress: OnProgress | None = None,
    follow_symlinks: bool = False,
    force: bool = False,
) -> ScanReport:
    """Bring the library's record of `roots` up to date with the disk.

    New and changed files are probed and their tags read; unchanged ones (same size and mtime_ns)
    are not opened unless `force`. A known file that failed before and has not changed counts as
    failed again, with its stored reason. Files gone from a folder that was read are marked
    removed; a removed file that comes back counts as new. Failures are stored against `run_id`.
    `on_progress(done, total, path)` is called after each file.
    """
    roots = [os.path.abspath(os.fsdecode(r)) for r in roots]
    for root in roots:
        if not os.path.exists(root):
            raise ScanError(f"{root}: no such file or folder")
    report = ScanReport()
    unreadable: list[str] = []

    def walk_error(path: str, reason: str) -> None:
        unreadable.append(path)
        report.failures.append((path, reason))
        lib.record_failure(run_id, path, "scan", reason)

    def skipped_link(path: str) -> None:
        report.links_skipped += 1

    files = list(_walk(roots, follow_symlinks, walk_error, skipped_link))
    known = lib.known_files(roots)
    for done, (path, st) in enumerate(files, 1):
        row = known.get(path)
        _scan_file(lib, report, path, st, row, run_id, force)
        if on_progress:
            on_progress(done, len(files), path)
    seen = {path for path, _ in files}
    gone = [
        path
        for path, row in known.items()
        if row.status != "removed" and path not in seen and not _below(path, unreadable)
    ]
    report.removed = lib.mark_removed(gone)
    return report


def _scan_file(
    lib: Library,
    report: ScanReport,
    path: str,
    st: os.stat_result,
    row: Track | None,
    run_id: int | None,
    force: bool,
) -> None:
    """Record one file: skip it when unchanged, else read it and store the result or the failure."""
    fresh = row is None or row.status == "removed"
    if (
        row is not None  # implied by not fresh; said for mypy
        and not fresh
        and not force
        and (row.size, row.mtime) == (st.st_size, st.st_mtime_ns)
    ):
        if row.status == "failed":
            report.failed += 1
            report.failures.append((path, row.error or "failed before"))
        else:
            report.unchanged += 1
        return
    base = {"path": path, "size": st.st_size, "mtime": st.st_mtime_ns}
    try:
        columns = _read(path)
        # Another mgctag may have written the tags since the walk's stat: store the file as read.
        now = os.stat(path)
        base.update(size=now.st_size, mtime=now.st_mtime_ns)
    except FILE_ERRORS as exc:
        reason = reason_of(exc)
        track_id = lib.upsert_track({**base, "status": "failed", "error": reason})
        lib.record_failure(run_id, path, "scan", reason, track_id=track_id)
        report.failed += 1
        report.failures.append((path, reason))
        return
    lib.upsert_track({**base, **columns, "status": "ok", "error": None})
    if fresh:
        report.new += 1
    else:
        report.changed += 1


def _below(path: str, folders: list[str]) -> bool:
    return any(path == f or path.startswith(f.rstrip(os.sep) + os.sep) for f in folders)
