"""Undo a run: put back the exact genre a run replaced, byte for byte where the journal has it.

A file whose genre was changed since mgctag wrote it is refused and reported (the user's later
edit wins) unless `force`; a file changed only otherwise (mtime, size, other tags) is restored:
only its genre is put back, everything else stays as the user left it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from mgctag import tags
from mgctag.errors import MgctagError, UsageError, reason_of
from mgctag.library.db import Library
from mgctag.library.rows import WriteEntry
from mgctag.writes.journal import FileBusyError, file_lock, journaled_write, settle_pending
from mgctag.writes.run import recorded_run


class UndoError(UsageError):
    """Nothing can be undone as asked (unknown run, already undone, nothing written): exit 2."""


@dataclass
class UndoItem:
    path: str
    current: list[str]
    restore: list[str]
    status: str  # "restored", "would restore", "refused", "failed"
    reason: str = ""


@dataclass
class UndoReport:
    run_id: int
    undo_run_id: int | None
    items: list[UndoItem] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(item.status == status for item in self.items)

    interrupted = False  # an undo runs to the end (a Ctrl-C ends it by an exception)

    def counts(self) -> dict[str, int]:
        """What the undo run records: files restored, and files not restored (refused too)."""
        return {"restored": self.count("restored"), "failed": self.failed()}

    def failed(self) -> int:
        return self.count("failed") + self.count("refused")

    def done_and_failed(self) -> tuple[int, int]:
        return len(self.items), self.failed()


def last_run(lib: Library) -> int:
    """The run `undo --last` means: the newest run that changed files (dry, no-op and undo runs
    are never "last")."""
    run_id = lib.last_changing_run()
    if run_id is None:
        if lib.beets_changed_files():
            raise UndoError(
                "no mgctag run has changed any file; the changes were made through beets"
                " (`beet mgctag`): undo them with `beet mgctag-undo`"
            )
        raise UndoError("no run has changed any file; nothing to undo")
    return run_id


def undo_run(
    lib: Library, run_id: int, *, dry_run: bool = False, force: bool = False
) -> UndoReport:
    """Restore every file run `run_id` changed (latest write first); a journaled run of its own.

    Pending entries (a killed run) are settled first, so a write that reached the file before the
    kill is undone like any other. UndoError for an unknown run, one that changed nothing, or one
    already undone. `force` restores over genres edited since.
    """
    run = lib.get_run(run_id)
    if run is None:
        raise UndoError(f"no run {run_id}")
    if run.command.startswith("beet "):  # beets owns those files and its database
        raise UndoError(f"run {run_id} was made in beets; undo it there with `beet mgctag-undo`")
    if not dry_run:
        settle_pending(lib)
    done = [w for w in lib.writes_for_run(run_id) if w.state == "done"]
    if not done:
        raise UndoError(f"run {run_id} ({run.command}) changed no file; nothing to undo")
    writes = [w for w in reversed(done) if not w.undone_at]
    if not writes:
        raise UndoError(f"run {run_id} was already undone")
    report = UndoReport(run_id, None)
    if dry_run:
        report.items = [_undo_one(lib, w, None, dry_run, force) for w in writes]
        return report
    with recorded_run(
        lib, "undo", {"run": run_id, "force": force}, report, settle=False
    ) as undo_id:
        report.undo_run_id = undo_id
        for w in writes:
            report.items.append(_undo_one(lib, w, undo_id, dry_run, force))
    return report


def _undo_one(
    lib: Library, w: WriteEntry, undo_id: int | None, dry_run: bool, force: bool
) -> UndoItem:
    if dry_run:
        return _check_and_restore(lib, w, undo_id, dry_run, force)
    try:
        with file_lock(lib, w.path):
            return _check_and_restore(lib, w, undo_id, dry_run, force)
    except FileBusyError as exc:
        return UndoItem(w.path, w.new or [], w.old or [], "failed", exc.reason)


def _check_and_restore(
    lib: Library, w: WriteEntry, undo_id: int | None, dry_run: bool, force: bool
) -> UndoItem:
    path, old, new = w.path, w.old or [], w.new or []
    item = UndoItem(path, new, old, "refused")
    try:
        os.stat(path)
        current = tags.read_tags(path).genres
    except (OSError, tags.TagError) as exc:
        item.reason = reason_of(exc)
        return item
    item.current = current
    if current != tags.normalise_genres(new) and not force:
        item.reason = "its genre was changed since mgctag wrote it (force restores it anyway)"
        return item
    if dry_run:
        item.status = "would restore"
        return item
    try:
        journaled_write(lib, undo_id, w.track_id, path, current, old, reverts=w.id, restore=w.raw)
    except MgctagError as exc:  # TagWriteError; JournalError: nothing was written
        item.status, item.reason = "failed", exc.reason
        return item
    item.status = "restored"
    return item
