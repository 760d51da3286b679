"""The user's own vocabulary (`tag --learn-from-library`): for a track to tag, the genres the user
wrote on the most similar tracks of the same library, weighted by similarity.

Only genres the user wrote count: a track whose genres are still what mgctag's own last write
put there (the write journal knows, `Library.tracks_tagged_by_mgctag`) is never a neighbour, so
mgctag never learns from itself. Similarity is the cosine of the stored embeddings of the model
that tags (the default's musicnn + mn04 embedding), read through the library's public
`embedding_matrix`; built once per run, before anything is written. The blend and its weight
are in `genres.blend_neighbours` and were chosen by grouped cross-validation (docs/models.md).
"""

from __future__ import annotations

import numpy as np

from mgctag.genres import split_and_normalise
from mgctag.library.db import Library

# Cross-validated (docs/models.md, tools/experiments/genre_cv.py; refitted on all clips): how
# many neighbours vote, and the share of a genre's score their vote makes.
LIBRARY_NEIGHBOURS = 5
LIBRARY_WEIGHT = 0.25


class LibraryVocabulary:
    """The user-labelled tracks of a library and their embeddings, for `neighbours`."""

    def __init__(self, lib: Library, model: str, k: int = LIBRARY_NEIGHBOURS) -> None:
        ids, matrix = lib.embedding_matrix(model, "mix")
        own = lib.tracks_tagged_by_mgctag()
        labels = {
            t.id: genres
            for t in lib.iter_tracks()
            if t.id not in own and (genres := split_and_normalise(t.genres or []))
        }
        self.ids = np.asarray(ids, dtype=np.int64)
        self.matrix = np.asarray(matrix, dtype=np.float32)  # (n, d), unit rows; (0, 0) if none
        self.row = {int(i): r for r, i in enumerate(self.ids)}
        self.labelled = np.array([int(i) in labels for i in self.ids], dtype=bool)
        self.labels = labels
        self.k = k

    def neighbours(self, track_id: int) -> list[tuple[float, list[str]]]:
        """(cosine, the user's genres) of the k most similar user-labelled tracks, the track
        itself left out; none when the track has no embedding or nobody labelled anything."""
        row = self.row.get(int(track_id))
        if row is None or not self.labelled.any():
            return []
        sims = self.matrix @ self.matrix[row]
        sims[~self.labelled] = -np.inf
        sims[row] = -np.inf
        top = np.argsort(-sims, kind="stable")[: self.k]
        return [
            (float(sims[r]), self.labels[int(self.ids[r])]) for r in top if np.isfinite(sims[r])
        ]


def library_vocabulary(lib: Library, model: str, wanted: bool) -> LibraryVocabulary | None:
    """The run's vocabulary when --learn-from-library is on and the model stored embeddings."""
    if not wanted:
        return None
    vocabulary = LibraryVocabulary(lib, model)
    return vocabulary if len(vocabulary.ids) and vocabulary.labelled.any() else None
