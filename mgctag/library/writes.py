"""The library's write journal: every tag write mgctag makes, journaled before the file is
touched (write-ahead), confirmed or failed after, and what undo needs to put the old bytes back."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Sequence
from typing import Any

from mgctag.library.connection import LibraryError, Store
from mgctag.library.rows import WriteEntry, db_path, dumps, now
from mgctag.library.tracks import own_change


class Writes(Store):
    """Queries on the writes table (mixed into `Library`)."""

    def begin_write(
        self,
        run_id: int | None,
        track_id: int | None,
        path: str | os.PathLike,
        old: Sequence[str],
        new: Sequence[str],
        *,
        reverts: int | None = None,
    ) -> int:
        """Journal a tag write as pending *before* the file is touched; returns its id.

        Confirm it with `confirm_write` once the file holds `new`, or `fail_write` if it was not
        written. A pending entry left by a killed process is settled by reading the file.
        """
        with self.transaction():
            return self._exec(
                "INSERT INTO writes (run_id, track_id, path, old, new, state, reverts)"
                " VALUES (?, ?, ?, ?, ?, 'pending', ?) RETURNING id",
                [run_id, track_id, db_path(path), dumps(list(old)), dumps(list(new)), reverts],
            ).fetchone()[0]

    def confirm_write(
        self, write_id: int, size_after: int, mtime_after: int, *, payload_hash: str | None = None
    ) -> None:
        """The file now holds the pending write's genres: mark it done (and what it reverts
        undone) and move its track to the file's new size/mtime, in one transaction."""
        with self.transaction():
            row = self._exec(
                "UPDATE writes SET state = 'done', written_at = ?, size_after = ?,"
                " mtime_after = ?, payload_hash = coalesce(?, payload_hash)"
                " WHERE id = ? RETURNING track_id, new, reverts",
                [now(), size_after, mtime_after, payload_hash, write_id],
            ).fetchone()
            if row is None:
                raise LibraryError(f"no journaled write with id {write_id}")
            track_id, new, reverts = row
            if reverts is not None:
                self._exec(
                    "UPDATE writes SET undone_at = coalesce(undone_at, ?) WHERE id = ?",
                    [now(), reverts],
                )
            if track_id is not None:
                own_change(self, track_id, size_after, mtime_after, genres=json.loads(new))

    def record_commit(
        self, write_id: int, raw: Any, method: str, backup: Sequence[tuple[int, bytes]]
    ) -> None:
        """Before a pending write touches its file: the genre exactly as stored (for an exact
        undo), how the file will be changed, the original bytes of each range patched in place."""
        self.check_journal()
        encoded = [[off, base64.b64encode(data).decode("ascii")] for off, data in backup]
        with self.transaction():
            self._exec(
                "UPDATE writes SET raw = ?, method = ?, backup = ? WHERE id = ?",
                [dumps(raw), method, dumps(encoded) if encoded else None, write_id],
            )

    def last_changing_run(self) -> int | None:
        """The newest run of mgctag's own (not an undo, not the beets plugin's) with a write that
        reached a file."""
        return self._scalar(
            "SELECT max(w.run_id) FROM writes w JOIN runs r ON r.id = w.run_id"
            " WHERE w.state = 'done' AND r.command != 'undo' AND r.command NOT LIKE 'beet %'"
        )

    def beets_changed_files(self) -> bool:
        """Whether a run of the beets plugin has a write that reached a file (those runs are
        undone with `beet mgctag-undo`, not `mgctag undo`)."""
        return bool(
            self._scalar(
                "SELECT 1 FROM writes w JOIN runs r ON r.id = w.run_id"
                " WHERE w.state = 'done' AND r.command LIKE 'beet %' LIMIT 1"
            )
        )

    def fail_write(self, write_id: int) -> None:
        """The pending write did not happen (the file is as it was)."""
        with self.transaction():
            self._exec("UPDATE writes SET state = 'failed' WHERE id = ?", [write_id])

    def pending_writes(self) -> list[WriteEntry]:
        """Writes journaled as pending: in flight in another process, or left by a killed one."""
        return self._rows(WriteEntry, "SELECT * FROM writes WHERE state = 'pending' ORDER BY id")

    def tracks_tagged_by_mgctag(self) -> set[int]:
        """Tracks whose genres (as last scanned) are ones mgctag wrote as its prediction: a write
        of `tag` or `beet mgctag` that reached the file. An undo's own write puts the user's
        genres back (`reverts` is set), so it never makes a track mgctag's."""
        rows = self._exec(
            "SELECT DISTINCT w.track_id, w.new, t.genres FROM writes w"
            " JOIN tracks t ON t.id = w.track_id WHERE w.state = 'done' AND w.reverts IS NULL"
        )
        return {
            tid
            for tid, new, genres in rows
            if genres is not None and json.loads(new) == json.loads(genres)
        }

    def writes_for_run(self, run_id: int) -> list[WriteEntry]:
        """The journal of one run, in the order the writes happened."""
        return self._rows(WriteEntry, "SELECT * FROM writes WHERE run_id = ? ORDER BY id", [run_id])

    def mark_undone(
        self, write_id: int, size_after: int | None = None, mtime_after: int | None = None
    ) -> None:
        """Mark a journaled write as reverted; with the file's new size/mtime, update its track."""
        with self.transaction():
            row = self._exec(
                "UPDATE writes SET undone_at = ? WHERE id = ? RETURNING track_id, old",
                [now(), write_id],
            ).fetchone()
            if row is None:
                raise LibraryError(f"no journaled write with id {write_id}")
            track_id, old = row
            if track_id is not None and size_after is not None and mtime_after is not None:
                own_change(self, track_id, size_after, mtime_after, genres=json.loads(old))
