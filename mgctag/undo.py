"""Undo a run: put back the exact genre values the journal says a run replaced.

A file edited since mgctag wrote it (its size or mtime moved, or its genres are no longer what
mgctag wrote) is refused and reported, never overwritten: the user's later edit wins.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from mgctag import tags
from mgctag.journal import FileBusyError, _reason, file_lock, journaled_write, settle_pending
from mgctag.library.db import Library


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


def undo_run(lib: Library, run_id: int, *, dry_run: bool = False) -> UndoReport:
    """Restore every file run `run_id` changed (latest write first); a journaled run of its own.

    Pending entries (a killed run) are settled first, so a write that reached the file before the
    kill is undone like any other.
    """
    if not dry_run:
        settle_pending(lib)
    writes = [
        w
        for w in reversed(lib.writes_for_run(run_id))
        if w.get("state", "done") == "done" and not w["undone_at"]
    ]
    undo_id = None if dry_run else lib.start_run("undo", {"run": run_id})
    report = UndoReport(run_id, undo_id)
    for w in writes:
        report.items.append(_undo_one(lib, w, undo_id, dry_run))
    if undo_id is not None:
        failed = report.count("failed") + report.count("refused")
        lib.finish_run(
            undo_id,
            "failed" if failed else "ok",
            {"restored": report.count("restored"), "failed": failed},
        )
    return report


def _undo_one(lib: Library, w: dict, undo_id: int | None, dry_run: bool) -> UndoItem:
    if dry_run:
        return _check_and_restore(lib, w, undo_id, dry_run)
    try:
        with file_lock(lib, w["path"]):
            return _check_and_restore(lib, w, undo_id, dry_run)
    except FileBusyError as exc:
        return UndoItem(w["path"], w["new"], w["old"], "failed", exc.reason)


def _check_and_restore(lib: Library, w: dict, undo_id: int | None, dry_run: bool) -> UndoItem:
    path, old, new = w["path"], w["old"], w["new"]
    item = UndoItem(path, new, old, "refused")
    try:
        st = os.stat(path)
        current = tags.read_tags(path).genres
    except (OSError, tags.TagError) as exc:
        item.reason = _reason(exc)
        return item
    item.current = current
    moved = (st.st_size, st.st_mtime_ns) != (w["size_after"], w["mtime_after"])
    if moved or current != tags.normalise_genres(new):
        item.reason = "changed since mgctag wrote it"
        return item
    if dry_run:
        item.status = "would restore"
        return item
    try:
        journaled_write(lib, undo_id, w["track_id"], path, current, old, reverts=w["id"])
    except tags.TagWriteError as exc:
        item.status, item.reason = "failed", exc.reason
        return item
    item.status = "restored"
    return item
