"""mgctag's library as schema 5 (the release before typed blobs) wrote it: kept as a fixture.

`LibraryV5` is today's `Library` with two things put back as release 5 had them: opening applies
only the shipped migrations 1-5 (the functions themselves, never edited once shipped), and
`save_analysis` is release 5's code verbatim (scores as JSON text, embeddings as float32 blobs).
Everything else (scan, the pipeline, the journal, tag writes, undo) is the real code, so a library
tagged through `LibraryV5` is the database a user of release 5 has on disk.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mgctag.library import schema_migrations
from mgctag.library.analyses import APPROXIMATE
from mgctag.library.connection import LibraryError
from mgctag.library.db import Library
from mgctag.library.rows import analysis_key, dumps, now

V5 = 5


class LibraryV5(Library):
    """A library that stays at schema 5 and stores analyses as release 5 did."""

    def _prepare(self) -> None:
        while True:
            with self.transaction():
                version = schema_migrations.schema_version(self)
                if version >= V5:
                    return
                schema_migrations.MIGRATIONS[version](self.db)
                self.db.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?)"
                    " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    [str(version + 1)],
                )

    def save_analysis(  # release 5's code, unchanged
        self,
        track_id: int,
        model: str,
        separator: str,
        tags: Mapping[str, Any],
        genres: Sequence[tuple[str, float]],
        embeddings: Mapping[str, np.ndarray],
        *,
        content: str | None = None,
        windows: Sequence[Mapping[str, Any]] | None = None,
        approximate: bool = False,
    ) -> None:
        at, track_id = now(), int(track_id)
        vectors = {stem: _vector_v5(v) for stem, v in embeddings.items()}
        with self.transaction():
            row = self._exec("SELECT size, mtime FROM tracks WHERE id = ?", [track_id]).fetchone()
            if row is None:
                raise LibraryError(f"no track with id {track_id}")
            key = analysis_key(*row)
            row_key = key + APPROXIMATE if approximate else key
            self._exec(
                "INSERT OR REPLACE INTO predictions (track_id, model, separator, tags, genres,"
                " created_at, analysis_key, content, windows) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [track_id, model, separator, dumps(tags), dumps(genres), at, row_key]
                + [content, dumps(windows)],
            )
            self._exec("DELETE FROM embeddings WHERE track_id = ? AND model = ?", [track_id, model])
            self.db.conn.executemany(
                "INSERT INTO embeddings (track_id, model, stem, separator, dim, vector)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(track_id, model, s, separator, len(v) // 4, v) for s, v in vectors.items()],
            )
            self._exec(
                "UPDATE tracks SET analyzed_at = ?, analysis_key = ? WHERE id = ?",
                [at, key, track_id],
            )


def _vector_v5(v: np.ndarray) -> bytes:
    a = np.asarray(v)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"an embedding must be a non-empty 1-D vector, got shape {a.shape}")
    return a.astype("<f4", copy=False).tobytes()


def snapshot(path: Path) -> dict[str, list[tuple]]:
    """Every row of every table, read on a connection of its own, ordered by its key."""
    conn = sqlite3.connect(path)
    try:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in tables}
    finally:
        conn.close()


def grow(path: Path, copies: int) -> int:
    """Copy every track of a v5 library with its predictions and embeddings `copies` times (new
    ids and paths, the same bytes): a big database of real rows at SQL speed. Returns the count."""
    conn = sqlite3.connect(path)
    try:
        (top,) = conn.execute("SELECT max(id) FROM tracks").fetchone()
        cols = {
            t: [r[1] for r in conn.execute(f"PRAGMA table_info({t})")]
            for t in ("tracks", "predictions", "embeddings")
        }
        with conn:
            for k in range(1, copies + 1):
                for table, key in (("tracks", "id"), ("predictions", "track_id")) + (
                    ("embeddings", "track_id"),
                ):
                    rest = ", ".join(c for c in cols[table] if c not in (key, "path"))
                    new = f"{key} + {k * top}" + (f", path || '#{k}'" if table == "tracks" else "")
                    old = key + (", path" if table == "tracks" else "")
                    conn.execute(
                        f"INSERT INTO {table} ({old}, {rest}) SELECT {new}, {rest} FROM {table}"
                        f" WHERE {key} <= {top}"
                    )
        return int(conn.execute("SELECT count(*) FROM tracks").fetchone()[0])
    finally:
        conn.close()
