"""The library's tracks: what scan found, where each file is, and what it looked like."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from mgctag.library.connection import Store
from mgctag.library.rows import (
    Track,
    analysis_key,
    db_path,
    dumps,
    like,
    now,
    under,
)

TRACK_STATUSES = ("ok", "failed", "removed")
TRACK_COLUMNS = frozenset(
    ("path", "size", "mtime", "duration", "format", "codec", "sample_rate", "channels", "artist")
    + ("album", "title", "genres", "status", "error", "scanned_at", "analyzed_at", "analysis_key")
)
_PAGE = 500  # rows per query when iterating, so no statement stays open across a yield


class Tracks(Store):
    """Queries on the tracks table (mixed into `Library`)."""

    def upsert_track(self, info: Mapping[str, Any]) -> int:
        """Insert or update the track at info["path"] with the given columns; returns its id.

        Only the columns present in `info` change; `scanned_at` is set to now unless given.
        """
        unknown = set(info) - TRACK_COLUMNS
        if unknown or "path" not in info:
            raise ValueError(f"upsert_track: need 'path'; unknown columns {sorted(unknown)}")
        values = {**info, "path": db_path(info["path"])}
        values.setdefault("scanned_at", now())
        if "genres" in values:
            values["genres"] = dumps(values["genres"])
        cols = list(values)
        sets = ", ".join(f"{c} = excluded.{c}" for c in cols if c != "path")
        sql = (
            f"INSERT INTO tracks ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
            f" ON CONFLICT(path) DO UPDATE SET {sets} RETURNING id"
        )
        with self.transaction():
            return self._exec(sql, [values[c] for c in cols]).fetchone()[0]

    def get_track(self, track_id: int) -> Track | None:
        return self._one(Track, "SELECT * FROM tracks WHERE id = ?", [track_id])

    def tracks_by_ids(self, track_ids: Iterable[int]) -> dict[int, Track]:
        """id → track for the ids that exist (any status): the rows a search result shows."""
        wanted = list(dict.fromkeys(int(i) for i in track_ids))
        out: dict[int, Track] = {}
        for start in range(0, len(wanted), _PAGE):
            part = wanted[start : start + _PAGE]
            rows = self._rows(
                Track, f"SELECT * FROM tracks WHERE id IN ({', '.join('?' * len(part))})", part
            )
            out.update((t.id, t) for t in rows)
        return out

    def track_names(self) -> list[tuple[int, str | None, str | None]]:
        """(id, artist, title) of every OK track: what telling versions apart by tags reads."""
        rows = self._exec("SELECT id, artist, title FROM tracks WHERE status = 'ok' ORDER BY id")
        return [(int(i), a, t) for i, a, t in rows]

    def track_by_path(self, path: str | os.PathLike) -> Track | None:
        return self._one(Track, "SELECT * FROM tracks WHERE path = ?", [db_path(path)])

    def find_tracks(self, text: str, *, status: str | None = "ok", limit: int = 100) -> list[Track]:
        """Tracks whose artist, album, title or path contains `text` (ASCII case-insensitive)."""
        patterns = like(text)
        match = " OR ".join(
            f"{col} LIKE ? ESCAPE '\\'"
            for _ in patterns
            for col in ("artist", "album", "title", "path")
        )
        params: list[Any] = [p for p in patterns for _ in range(4)]
        where = f"({match})"
        if status is not None:
            where += " AND status = ?"
            params.append(status)
        return self._rows(
            Track, f"SELECT * FROM tracks WHERE {where} ORDER BY path LIMIT ?", [*params, limit]
        )

    def iter_tracks(
        self, roots: Iterable[str | os.PathLike] | None = None, status: str | None = "ok"
    ) -> Iterator[Track]:
        """Tracks below `roots` (all when None) with `status` (any when None), in path order."""
        where, params = under(roots)
        if status is not None:
            where += " AND status = ?"
            params.append(status)
        after: Any = None
        while True:
            page_where = where if after is None else f"{where} AND path > ?"
            page_params = params if after is None else [*params, after]
            cursor = self._exec(
                f"SELECT * FROM tracks WHERE {page_where} ORDER BY path LIMIT {_PAGE}", page_params
            )
            raw = cursor.fetchall()
            for values in raw:
                yield Track.from_sql(cursor, values)
            if len(raw) < _PAGE:
                return
            after = raw[-1][[d[0] for d in cursor.description].index("path")]

    def tracks(self, status: str | None = "ok") -> list[Track]:
        """Every track with `status` (any when None)."""
        return list(self.iter_tracks(None, status))

    def known_files(self, roots: Iterable[str | os.PathLike] | None = None) -> dict[str, Track]:
        """path → the track below `roots`, with only what scan needs (id, size, mtime, status,
        error) read: one query for a whole library."""
        where, params = under(roots)
        rows = self._rows(
            Track, f"SELECT id, path, size, mtime, status, error FROM tracks WHERE {where}", params
        )
        return {row.path: row for row in rows}

    def tracks_needing_analysis(
        self,
        model: str,
        roots: Iterable[str | os.PathLike] | None = None,
        *,
        separator: str | None = None,
    ) -> list[Track]:
        """OK tracks with no prediction from `model` for the file as it is now (size:mtime).

        With `separator`, a prediction made with another separator does not count either.
        """
        where, params = under(roots, "t.path")
        sep_clause = "" if separator is None else " AND p.separator = ?"
        sep_params = [] if separator is None else [separator]
        return self._rows(
            Track,
            "SELECT t.* FROM tracks t LEFT JOIN predictions p"
            f" ON p.track_id = t.id AND p.model = ?{sep_clause}"
            " WHERE t.status = 'ok'"
            " AND (p.track_id IS NULL OR p.analysis_key IS NOT (t.size || ':' || t.mtime))"
            f" AND {where} ORDER BY t.path",
            [model, *sep_params, *params],
        )

    def mark_removed(self, paths: Iterable[str | os.PathLike]) -> int:
        """Mark tracks whose files are gone as removed (kept, so history and journal survive)."""
        at = now()
        with self.transaction():
            cursor = self.db.conn.executemany(
                "UPDATE tracks SET status = 'removed', scanned_at = ?"
                " WHERE path = ? AND status != 'removed'",
                [(at, db_path(p)) for p in paths],
            )
            return cursor.rowcount

    def relocate_track(
        self,
        track_id: int,
        path: str | os.PathLike,
        size: int,
        mtime: int,
        *,
        moved: bool = False,
    ) -> bool:
        """The track's file now lives at `path` with this size/mtime, its audio unchanged (moved
        or copied there, or its tags rewritten, by a tool such as beets): move the record and its
        current analysis keys along, so the file is not analysed again. A `moved` file takes its
        journal entries along too, so undo finds it where it is now. False (nothing changed)
        when `path` is another track's already."""
        with self.transaction():
            other = self._scalar("SELECT id FROM tracks WHERE path = ?", [db_path(path)])
            if other is not None and other != track_id:
                return False
            if moved:
                self._exec(
                    "UPDATE writes SET path = ? WHERE track_id = ?"
                    " AND path = (SELECT path FROM tracks WHERE id = ?)",
                    [db_path(path), track_id, track_id],
                )
            self._exec("UPDATE tracks SET path = ? WHERE id = ?", [db_path(path), track_id])
            own_change(self, track_id, size, mtime)
        return True


def own_change(
    store: Store, track_id: int, size: int, mtime: int, genres: list[str] | None = None
) -> None:
    """Move a track and its current analysis keys to the file's state after our own write (or a
    move that left its audio alone), so the next scan does not treat the file as changed."""
    row = store._exec("SELECT size, mtime FROM tracks WHERE id = ?", [track_id]).fetchone()
    if row is None:
        return
    old, new = analysis_key(*row), analysis_key(size, mtime)
    store._exec(
        "UPDATE tracks SET size = ?, mtime = ?, genres = coalesce(?, genres),"
        " analysis_key = CASE WHEN analysis_key = ? THEN ? ELSE analysis_key END WHERE id = ?",
        [size, mtime, dumps(genres), old, new, track_id],
    )
    store._exec(
        "UPDATE predictions SET analysis_key = ? WHERE track_id = ? AND analysis_key = ?",
        [new, track_id, old],
    )
