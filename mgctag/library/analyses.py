"""The library's analyses: each model's stored result per track, and the embeddings behind
similar songs, the map and retraining.

Scores and embeddings are stored as typed blobs (blobs.py: float16 tag scores, float32 genre
scores, float16 embeddings where they hold), read back as the Python values that were saved.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from mgctag.library import blobs
from mgctag.library.connection import LibraryError, Store
from mgctag.library.rows import (
    NotMusic,
    StoredPrediction,
    analysis_key,
    decode_row,
    dumps,
    now,
    under,
)
from mgctag.library.tracks import TRACK_STATUSES

APPROXIMATE = ":approximate"  # suffix of an approximate result's analysis key (save_analysis)
_IN_CHUNK = 500  # ids per IN (...) query
# Tracks that are not OK, as an indexed condition (`status != 'ok'` would read the whole index).
NOT_OK = "status IN (" + ", ".join(f"'{s}'" for s in TRACK_STATUSES if s != "ok") + ")"


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
        `embeddings` maps stem → 1-D vector (stored as float16 when it holds, else float32:
        blobs.pack_vector); `content` and
        `windows` are the content gate's track class and per-window decisions, when it ran.
        An `approximate` result (reduced precision) gets an analysis key that never matches the
        file's, so `tracks_needing_analysis(model)` still lists the track.
        """
        at, track_id = now(), int(track_id)
        vectors = {stem: (len(v), blobs.pack_vector(v)) for stem, v in embeddings.items()}
        with self.transaction():
            row = self._exec("SELECT size, mtime FROM tracks WHERE id = ?", [track_id]).fetchone()
            if row is None:
                raise LibraryError(f"no track with id {track_id}")
            key = analysis_key(*row)
            row_key = key + APPROXIMATE if approximate else key
            self._exec(
                "INSERT OR REPLACE INTO predictions (track_id, model, separator, tags, genres,"
                " created_at, analysis_key, content, windows) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [track_id, model, separator, self._scores(tags), self._scores(genres, True), at]
                + [row_key, content, dumps(windows)],
            )
            self._exec("DELETE FROM embeddings WHERE track_id = ? AND model = ?", [track_id, model])
            self.db.conn.executemany(
                "INSERT INTO embeddings (track_id, model, stem, separator, dim, vector)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(track_id, model, s, separator, n, v) for s, (n, v) in vectors.items()],
            )
            self._exec(
                "UPDATE tracks SET analyzed_at = ?, analysis_key = ? WHERE id = ?",
                [at, key, track_id],
            )

    def get_predictions(self, track_id: int) -> dict[str, StoredPrediction]:
        """model → what that model's last analysis of the track stored."""
        cursor = self._exec(
            "SELECT * FROM predictions WHERE track_id = ? ORDER BY model", [track_id]
        )
        rows = [decode_row(cursor, values) for values in cursor.fetchall()]
        for row in rows:
            for col in ("tags", "genres"):
                if blobs.is_scores_blob(row[col]):
                    row[col] = blobs.unpack_scores(row[col], self._vocabularies(row[col]))
        return {row["model"]: StoredPrediction(**row) for row in rows}

    def _scores(self, value: Any, precise: bool = False) -> str | bytes | None:
        return scores_value(self.db.conn, value, precise)

    def _vocabularies(self, blob: bytes) -> dict[int, tuple[str, ...]]:
        """The label lists a scores blob refers to (cached: an id is a hash of its labels)."""
        cache: dict[int, tuple[str, ...]] = self.__dict__.setdefault("_vocabulary_cache", {})
        for vid in blobs.scores_vocabularies(blob):
            if vid not in cache:
                text = self._scalar("SELECT labels FROM vocabularies WHERE id = ?", [vid])
                if text is None:
                    raise LibraryError(f"damaged: label list {vid} is missing", self.path)
                cache[vid] = tuple(json.loads(text))
        return cache

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
            "SELECT stem, dim, vector FROM embeddings WHERE track_id = ? AND model = ?",
            [track_id, model],
        )
        return {stem: blobs.unpack_vector(blob, dim) for stem, dim, blob in rows}

    def embedding_count(self, model: str, stem: str = "mix") -> int:
        """How many tracks have an embedding of this model and stem."""
        return int(
            self._scalar(
                "SELECT count(*) FROM embeddings WHERE model = ? AND stem = ?", [model, stem]
            )
            or 0
        )

    def embeddings_of(
        self, track_ids: Iterable[int], model: str, stem: str = "mix", *, ok_only: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """(ids, float32 (n, d)) of those tracks that have this embedding (and are OK, unless
        `ok_only` is False: a search that checks the rows it shows anyway saves a lookup a
        track), in the order asked: what a search reads for the few tracks it scores."""
        wanted = [int(i) for i in track_ids]
        found: dict[int, np.ndarray] = {}
        join = " JOIN tracks t ON t.id = e.track_id AND t.status = 'ok'" if ok_only else ""
        for start in range(0, len(wanted), _IN_CHUNK):
            part = wanted[start : start + _IN_CHUNK]
            rows = self._exec(
                f"SELECT e.track_id, e.dim, e.vector FROM embeddings e{join}"
                " WHERE e.model = ? AND e.stem = ?"
                f" AND e.track_id IN ({', '.join('?' * len(part))})",
                [model, stem, *part],
            ).fetchall()
            found.update((tid, blobs.unpack_vector(blob, dim)) for tid, dim, blob in rows)
        ids = [i for i in dict.fromkeys(wanted) if i in found]
        if not ids:
            return np.empty(0, np.int64), np.empty((0, 0), np.float32)
        return np.array(ids, np.int64), np.stack([found[i] for i in ids])

    def iter_embeddings(
        self, model: str, stem: str = "mix", batch: int = 20_000
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """All OK tracks' embeddings of this model and stem, `batch` rows at a time (ids, float32
        matrix): an index is built from these in bounded memory. Each batch is its own query, so
        no read transaction stays open while the caller works."""
        after = -1
        while True:
            rows = self._exec(
                "SELECT rowid, track_id, dim, vector FROM embeddings"
                " WHERE model = ? AND stem = ? AND rowid > ?"
                f" AND track_id NOT IN (SELECT id FROM tracks WHERE {NOT_OK})"
                " ORDER BY rowid LIMIT ?",
                [model, stem, after, batch],
            ).fetchall()
            if not rows:
                return
            after = rows[-1][0]
            dims = {r[2] for r in rows}
            if len(dims) != 1:
                raise LibraryError(f"embeddings of {model}/{stem} have mixed sizes {sorted(dims)}")
            ids = np.array([r[1] for r in rows], np.int64)
            yield ids, blobs.unpack_matrix([r[3] for r in rows], rows[0][2])

    def ok_embedding_count(self, model: str, stem: str = "mix") -> int:
        """How many OK tracks have an embedding of this model and stem (what an index holds):
        all of them (the (model, stem) index alone) less the few of tracks not OK."""
        gone = self._scalar(
            "SELECT count(*) FROM tracks t CROSS JOIN embeddings e ON e.track_id = t.id"
            f" AND e.model = ? AND e.stem = ? WHERE {NOT_OK.replace('status', 't.status')}",
            [model, stem],
        )
        return self.embedding_count(model, stem) - int(gone or 0)

    def generation(self) -> int:
        """The library's change generation: grows with every change of an embedding or of a
        track's status (kept by triggers; schema v7)."""
        return int(self._scalar("SELECT max(generation) FROM changes") or 0)

    def changed_since(self, generation: int) -> list[int]:
        """Tracks whose embeddings or status changed after `generation`."""
        rows = self._exec("SELECT track_id FROM changes WHERE generation > ?", [generation])
        return [r[0] for r in rows]

    @property
    def library_id(self) -> str:
        """A random id given to this library when it was created or upgraded to schema v7."""
        return str(self._scalar("SELECT value FROM meta WHERE key = 'library_id'") or "")

    def embedding_matrix(self, model: str, stem: str = "mix") -> tuple[np.ndarray, np.ndarray]:
        """(track ids int64 (n,) ascending, float32 (n, d) C-contiguous, writable) for OK tracks.

        One query and no per-row parsing: the blobs are joined into one buffer and viewed. Tracks
        are filtered with NOT IN over the (few) non-OK ids and sorted in numpy, which measured
        2-3x faster than a JOIN + ORDER BY at 100k x 200-d (tools/bench/db.py).
        """
        rows = self._exec(
            "SELECT track_id, dim, vector FROM embeddings WHERE model = ? AND stem = ?"
            f" AND track_id NOT IN (SELECT id FROM tracks WHERE {NOT_OK})",
            [model, stem],
        ).fetchall()
        if not rows:
            return np.empty(0, np.int64), np.empty((0, 0), np.float32)
        raw_ids, dims, vectors = zip(*rows, strict=True)
        if len(set(dims)) != 1:
            raise LibraryError(f"embeddings of {model}/{stem} have mixed sizes {sorted(set(dims))}")
        matrix = blobs.unpack_matrix(vectors, dims[0])
        ids = np.array(raw_ids, dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        if (order != np.arange(len(order))).any():
            ids, matrix = ids[order], matrix[order]
        return ids, matrix.astype(np.float32, copy=False)


def scores_value(conn: sqlite3.Connection, value: Any, precise: bool = False) -> str | bytes | None:
    """A scores column's value: a typed blob (its label lists stored in `vocabularies` in the
    caller's transaction), else JSON when the blob format does not hold it. `precise`: float32
    (genre scores), else float16 (raw tag scores)."""
    if value is None:
        return None
    packed = blobs.pack_scores(value, precise=precise)
    if packed is None:
        return dumps(value)
    conn.executemany(
        "INSERT OR IGNORE INTO vocabularies (id, labels) VALUES (?, ?)",
        [(v.id, v.text) for v in packed.vocabularies],
    )
    return packed.blob
