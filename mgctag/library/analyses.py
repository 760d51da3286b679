"""The library's analyses: each model's stored result per track, and the embeddings behind
similar songs, the map and retraining."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from mgctag.library.connection import LibraryError, Store
from mgctag.library.rows import (
    NotMusic,
    StoredPrediction,
    analysis_key,
    dumps,
    now,
    under,
    vector,
)

APPROXIMATE = ":approximate"  # suffix of an approximate result's analysis key (save_analysis)


class Analyses(Store):
    """Queries on the predictions and embeddings tables (mixed into `Library`)."""

    def save_analysis(
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
        """Store one track's result from one model in one transaction, replacing the previous one.

        `tags` is any JSON-able mapping (tag → probability, or model → {tag → probability});
        `embeddings` maps stem → 1-D vector, stored as little-endian float32; `content` and
        `windows` are the content gate's track class and per-window decisions, when it ran.
        An `approximate` result (reduced precision) gets an analysis key that never matches the
        file's, so `tracks_needing_analysis(model)` still lists the track.
        """
        at, track_id = now(), int(track_id)
        vectors = {stem: vector(v) for stem, v in embeddings.items()}
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

    def get_predictions(self, track_id: int) -> dict[str, StoredPrediction]:
        """model → what that model's last analysis of the track stored."""
        rows = self._rows(
            StoredPrediction,
            "SELECT * FROM predictions WHERE track_id = ? ORDER BY model",
            [track_id],
        )
        return {row.model: row for row in rows}

    def heard_not_music(self, roots: Iterable[str | os.PathLike] | None) -> list[NotMusic]:
        """Tracks below `roots` whose latest content-gated analysis heard no music.

        One row per track (path, content 'speech' or 'other', model, created_at): the gate of the
        default tagger or the speech / music / noise detector (`segments --store`), whichever ran
        last. Lets a user find the audiobooks, podcasts and field recordings in a music folder.
        """
        where, params = under(roots, "t.path")
        return self._rows(
            NotMusic,
            "SELECT t.path, p.content, p.model, p.created_at FROM predictions p"
            " JOIN tracks t ON t.id = p.track_id"
            f" WHERE {where} AND t.status = 'ok' AND p.content IS NOT NULL"
            " AND p.created_at = (SELECT MAX(q.created_at) FROM predictions q"
            "   WHERE q.track_id = p.track_id AND q.content IS NOT NULL)"
            " AND p.content != 'music' GROUP BY t.id ORDER BY t.path",
            params,
        )

    def get_embeddings(self, track_id: int, model: str) -> dict[str, np.ndarray]:
        """stem → float32 vector of one track."""
        rows = self._exec(
            "SELECT stem, vector FROM embeddings WHERE track_id = ? AND model = ?",
            [track_id, model],
        )
        return {stem: np.frombuffer(blob, dtype="<f4").astype(np.float32) for stem, blob in rows}

    def embedding_count(self, model: str, stem: str = "mix") -> int:
        """How many tracks have an embedding of this model and stem."""
        return int(
            self._scalar(
                "SELECT count(*) FROM embeddings WHERE model = ? AND stem = ?", [model, stem]
            )
            or 0
        )

    def embedding_matrix(self, model: str, stem: str = "mix") -> tuple[np.ndarray, np.ndarray]:
        """(track ids int64 (n,) ascending, float32 (n, d) C-contiguous, writable) for OK tracks.

        One query and no per-row parsing: the blobs are joined into one buffer and viewed. Tracks
        are filtered with NOT IN over the (few) non-OK ids and sorted in numpy, which measured
        2-3x faster than a JOIN + ORDER BY at 100k x 200-d (tools/bench/db.py).
        """
        rows = self._exec(
            "SELECT track_id, dim, vector FROM embeddings WHERE model = ? AND stem = ?"
            " AND track_id NOT IN (SELECT id FROM tracks WHERE status != 'ok')",
            [model, stem],
        ).fetchall()
        if not rows:
            return np.empty(0, np.int64), np.empty((0, 0), np.float32)
        raw_ids, dims, blobs = zip(*rows, strict=True)
        if len(set(dims)) != 1:
            raise LibraryError(f"embeddings of {model}/{stem} have mixed sizes {sorted(set(dims))}")
        matrix = np.frombuffer(bytearray().join(blobs), "<f4").reshape(len(rows), dims[0])
        ids = np.array(raw_ids, dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        if (order != np.arange(len(order))).any():
            ids, matrix = ids[order], matrix[order]
        return ids, matrix.astype(np.float32, copy=False)
