"""Similar songs: exact cosine search over the embeddings stored in the library.

Exact brute force is the right tool at personal-library scale: one float32 matrix-vector product
over L2-normalised rows gives every cosine score (p50 7 ms for 100k tracks, 118 ms for 1M, on a
busy 2-core VM: docs/similar.md), ranking is exact, and there is no index to train or keep in sync.
Several seeds are combined by their centroid (one product instead of one per seed; see docs for the
comparison with reciprocal rank fusion). Filters are boolean masks the caller builds, so the index
knows nothing about genres or artists.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from mgctag.errors import UsageError
from mgctag.genres import split_and_normalise
from mgctag.library.rows import Track
from mgctag.search.ann import IndexStore, Say
from mgctag.separate.base import STEMS

Fusion = Literal["centroid", "rrf"]
# What an embedding can be of: the mix, or one of the separators' stems.
EMBEDDING_STEMS = ("mix", *STEMS)
RRF_K = 60  # the constant of Cormack et al. (2009); damps the weight of the very top ranks
_NORM_TOLERANCE = 1e-3
# A library row, as the versions module names it
Record = Track


class SimilarError(UsageError):
    """A similarity request that cannot be answered; the message is one line for the user."""


class MissingEmbeddings(SimilarError):
    """The library holds no embeddings for the requested model and stem."""


class UnknownTrack(SimilarError):
    """A seed that is not in the index (not analysed, or not in the library)."""


class LibraryLike(Protocol):
    """What similar/map need from `mgctag.library.db.Library`."""

    def embedding_matrix(self, model: str, stem: str) -> tuple[np.ndarray, np.ndarray]: ...

    def iter_tracks(self, roots: Any = None, status: str | None = "ok") -> Iterable[Track]: ...


class SearchLibrary(IndexStore, LibraryLike, Protocol):
    """What a search reads: the few rows of its candidates, by id."""

    def tracks_by_ids(self, track_ids: Iterable[int]) -> Mapping[int, Track]: ...

    def track_by_path(self, path: str) -> Track | None: ...

    def track_names(self) -> list[tuple[int, str | None, str | None]]: ...

    def embedding_count(self, model: str, stem: str = "mix") -> int: ...


@dataclass(frozen=True)
class Hit:
    """One search result: a track id and its score (cosine, or fused RRF score)."""

    id: int
    score: float


class VectorIndex:
    """Exact cosine top-k over a fixed set of L2-normalised float32 rows.

    Holds the matrix itself (no copy when it is already float32, C-contiguous and normalised) plus
    the ids; extra memory is the ids and, only when they are unsorted, their sorted copy and order.
    """

    def __init__(self, ids: np.ndarray, matrix: np.ndarray) -> None:
        ids = np.asarray(ids)
        if matrix.ndim != 2 or ids.ndim != 1 or len(ids) != matrix.shape[0]:
            raise ValueError(f"need ids (n,) and matrix (n, d); got {ids.shape} and {matrix.shape}")
        if not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"ids must be integers, got {ids.dtype}")
        self.ids = ids.astype(np.int64, copy=False)
        self.matrix = _normalised_rows(matrix)
        ordered = _strictly_increasing(self.ids)
        self._order = None if ordered else np.argsort(self.ids, kind="stable")
        self._sorted_ids = self.ids if self._order is None else self.ids[self._order]
        if len(self.ids) > 1 and np.any(self._sorted_ids[1:] == self._sorted_ids[:-1]):
            raise ValueError("ids must be unique")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return self.matrix.shape[1]

    @property
    def nbytes(self) -> int:
        """Memory held by the index (matrix, ids, id order)."""
        extra = 0 if self._order is None else self._order.nbytes + self._sorted_ids.nbytes
        return self.matrix.nbytes + self.ids.nbytes + extra

    def rows(self, ids: Iterable[int], *, strict: bool = True) -> np.ndarray:
        """Row numbers of `ids`; unknown ids raise UnknownTrack, or are dropped if not `strict`."""
        wanted = np.fromiter((int(i) for i in ids), dtype=np.int64)
        if len(self) == 0 or len(wanted) == 0:
            found = np.zeros(len(wanted), dtype=bool)
            pos = np.zeros(len(wanted), dtype=np.int64)
        else:
            pos = np.searchsorted(self._sorted_ids, wanted).clip(0, len(self) - 1)
            found = self._sorted_ids[pos] == wanted
        if strict and not np.all(found):
            missing = ", ".join(str(i) for i in wanted[~found][:5])
            raise UnknownTrack(f"track(s) {missing} have no embedding in this index")
        pos = pos[found]
        return pos if self._order is None else self._order[pos]

    def query(
        self,
        seeds: np.ndarray | Sequence[int] | Sequence[float],
        k: int = 10,
        *,
        exclude_ids: Iterable[int] = (),
        allowed_mask: np.ndarray | None = None,
        fusion: Fusion = "centroid",
    ) -> list[Hit]:
        """Top-k tracks for query vectors (floats, (d,) or (s, d)) or seed track ids (integers).

        Seed tracks and `exclude_ids` are never returned; `allowed_mask` (bool, one per row) keeps
        only the rows where it is True. Results are sorted by score (ties by row order).
        """
        arr = np.asarray(seeds)
        seed_rows = np.empty(0, dtype=np.int64)
        if arr.size and np.issubdtype(arr.dtype, np.integer):
            seed_rows = self.rows(arr.ravel())
            vectors = self.matrix[seed_rows]
        elif arr.size and np.issubdtype(arr.dtype, np.floating):
            vectors = np.atleast_2d(arr).astype(np.float32, copy=False)
        else:
            raise SimilarError("give at least one seed track or query vector")
        if vectors.shape[1] != self.dim:
            raise SimilarError(f"query has dimension {vectors.shape[1]}, index has {self.dim}")
        if allowed_mask is not None and allowed_mask.shape != (len(self),):
            raise ValueError(f"allowed_mask must have shape ({len(self)},)")
        blocked = np.concatenate([seed_rows, self.rows(exclude_ids, strict=False)])
        if fusion == "centroid":
            centre = np.mean([_unit(v) for v in vectors], axis=0)
            scores = self._scores(_unit(centre), blocked, allowed_mask)
        elif fusion == "rrf":
            scores = self._rrf_scores(vectors, k, blocked, allowed_mask)
        else:
            raise ValueError(f"unknown fusion {fusion!r}: use 'centroid' or 'rrf'")
        return self._top(scores, k)

    def _scores(
        self, vector: np.ndarray, blocked: np.ndarray, allowed: np.ndarray | None
    ) -> np.ndarray:
        """Cosine of every row to `vector`, with blocked and disallowed rows set to -inf."""
        scores = self.matrix @ vector
        if allowed is not None:
            np.copyto(scores, -np.inf, where=~allowed)
        scores[blocked] = -np.inf
        return scores

    def _rrf_scores(
        self, vectors: np.ndarray, k: int, blocked: np.ndarray, allowed: np.ndarray | None
    ) -> np.ndarray:
        """Reciprocal rank fusion of each seed's own ranking (its top max(100, 10k) count)."""
        depth = min(max(100, 10 * k), len(self))
        fused = np.zeros(len(self), dtype=np.float64)
        for v in vectors:
            scores = self._scores(_unit(v), blocked, allowed)
            top = _top_rows(scores, depth)
            top = top[np.isfinite(scores[top])]
            fused[top] += 1.0 / (RRF_K + 1 + np.arange(len(top)))
        fused[fused == 0] = -np.inf
        return fused

    def _top(self, scores: np.ndarray, k: int) -> list[Hit]:
        rows = _top_rows(scores, min(k, len(self)))
        return [Hit(int(self.ids[r]), float(scores[r])) for r in rows if np.isfinite(scores[r])]


def _top_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Rows of the k highest scores, best first (ties by row), via argpartition."""
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    part = np.argpartition(scores, -k)[-k:] if k < len(scores) else np.arange(len(scores))
    return part[np.lexsort((part, -scores[part]))]


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return (v / n if n > 0 else v).astype(np.float32, copy=False)


def _strictly_increasing(a: np.ndarray) -> bool:
    return len(a) < 2 or bool(np.all(a[1:] > a[:-1]))


def _normalised_rows(matrix: np.ndarray) -> np.ndarray:
    """`matrix` as C-contiguous float32 unit rows, copying at most once (zero rows stay zero)."""
    m = np.ascontiguousarray(matrix, dtype=np.float32)
    owned = not np.shares_memory(m, matrix)
    sq = np.einsum("ij,ij->i", m, m)
    if np.all((np.abs(sq - 1) < _NORM_TOLERANCE) | (sq == 0)):
        return m
    norms = np.sqrt(sq, dtype=np.float32)
    norms[norms == 0] = 1
    if owned:
        m /= norms[:, None]
        return m
    return m / norms[:, None]


# ---- the library's embeddings, indexed once per process ----------------------------------------


@dataclass
class LibraryIndex:
    """An index plus the track rows aligned with it (records[i] describes index.ids[i])."""

    index: VectorIndex
    records: Sequence[Track]
    by_path: dict[str, int]

    def seed_ids(self, seeds: Iterable[int | str | Path]) -> list[int]:
        """Track ids for seeds given as ids or file paths."""
        out = []
        for s in seeds:
            if isinstance(s, (int, np.integer)):
                out.append(int(s))
                continue
            key = str(s) if str(s) in self.by_path else str(Path(s).expanduser().resolve())
            if key not in self.by_path:
                raise UnknownTrack(f"{s}: not in the library (run `mgctag tag` on it first)")
            out.append(self.by_path[key])
        return out


_CACHE: dict[tuple, LibraryIndex] = {}


def _db_stamp(lib: Any) -> tuple:
    """Changes whenever the database (or its WAL) is written, so a cached index goes stale."""
    path = getattr(lib, "path", None)
    if path is None:
        return (id(lib),)
    stamp: list = [str(path)]
    for p in (Path(path), Path(f"{path}-wal")):
        try:
            st = os.stat(p)
            stamp += [st.st_mtime_ns, st.st_size]
        except OSError:
            stamp += [None, None]
    return tuple(stamp)


def library_index(lib: LibraryLike, model: str, stem: str = "mix") -> LibraryIndex:
    """The index of `model`'s `stem` embeddings with their track rows, built once per process and
    database state. Only tracks with status "ok" are in it."""
    if stem not in EMBEDDING_STEMS:
        raise SimilarError(f"unknown stem {stem!r}: choose one of {', '.join(EMBEDDING_STEMS)}")
    key = (_db_stamp(lib), model, stem)
    if key not in _CACHE:
        ids, matrix = lib.embedding_matrix(model, stem)
        if len(ids) == 0:
            raise MissingEmbeddings(_missing_message(model, stem))
        tracks = {t.id: t for t in lib.iter_tracks()}  # OK tracks only
        keep = np.fromiter((int(i) in tracks for i in ids), dtype=bool, count=len(ids))
        if not keep.all():
            ids, matrix = np.asarray(ids)[keep], np.asarray(matrix)[keep]
        records = [tracks[int(i)] for i in ids]
        by_path = {r.path: r.id for r in records}
        _CACHE.clear()  # one library state at a time: old matrices would only hold memory
        _CACHE[key] = LibraryIndex(VectorIndex(ids, matrix), records, by_path)
    return _CACHE[key]


def clear_cache() -> None:
    """Forget cached indexes (after the pipeline stored new embeddings in this process)."""
    from mgctag.search import ann

    _CACHE.clear()
    _MATRICES.clear()
    ann.forget()


def _missing_message(model: str, stem: str) -> str:
    if stem == "mix":
        return f"no {model} embeddings in the library: run `mgctag tag` first"
    return f"no {stem} embeddings: re-run `mgctag tag --stems on`"


def default_embedding_model(lib: Any, by: str = "mix") -> str:
    """The embedding `similar` and `map` use: the default tagger's (musicnn + mn04 concatenated,
    better at finding related tracks: docs/benchmarks.md) when every track musicnn embedded has it,
    else musicnn's (libraries tagged before, stems, `--model musicnn` runs). A library with an
    index of the default tagger's vectors keeps to them without counting (two counts read every
    entry of the (model, stem) index: a second of a cold million-track store's first answer)."""
    from mgctag.options import DEFAULT_TAGGER, MUSICNN_TAGGER
    from mgctag.search import ann

    if by != "mix":
        return MUSICNN_TAGGER
    path = getattr(lib, "path", None)
    if path is not None and ann.index_path(Path(path), DEFAULT_TAGGER, "mix").exists():
        return DEFAULT_TAGGER
    combined = lib.embedding_count(DEFAULT_TAGGER, "mix")
    return (
        DEFAULT_TAGGER
        if combined and combined >= lib.embedding_count(MUSICNN_TAGGER)
        else (MUSICNN_TAGGER)
    )


# ---- searching: exact below ANN_MIN_TRACKS, the persistent HNSW index above ------------------


class Searcher(Protocol):
    """Ranks a library's tracks by cosine to a query vector, scores exact (float32)."""

    size: int

    def vectors(self, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]: ...

    def ranked(
        self, vector: np.ndarray, n: int, exclude: Iterable[int] = (), expect: Iterable[int] = ()
    ) -> list[Hit]: ...


class ExactSearcher:
    """Every vector in memory (`VectorIndex`, cached per process and database state), scanned
    per query; no track rows are loaded."""

    def __init__(self, lib: LibraryLike, model: str, stem: str) -> None:
        key = (_db_stamp(lib), model, stem)
        if key not in _MATRICES:
            ids, matrix = lib.embedding_matrix(model, stem)
            if len(ids) == 0:
                raise MissingEmbeddings(_missing_message(model, stem))
            _MATRICES.clear()
            _MATRICES[key] = VectorIndex(ids, matrix)
        self.index = _MATRICES[key]
        self.size = len(self.index)

    def vectors(self, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        rows = self.index.rows(ids, strict=False)
        return self.index.ids[rows], self.index.matrix[rows]

    def ranked(
        self, vector: np.ndarray, n: int, exclude: Iterable[int] = (), expect: Iterable[int] = ()
    ) -> list[Hit]:
        return self.index.query(_unit(vector), n, exclude_ids=exclude)


_MATRICES: dict[tuple, VectorIndex] = {}


class AnnSearcher:
    """The persistent HNSW index (search/ann.py): candidates from the graph, re-scored with the
    stored vectors of those candidates only (read from the index's vector file)."""

    def __init__(self, lib: SearchLibrary, model: str, stem: str, say: Say | None = None) -> None:
        from mgctag.search import ann

        index = ann.open_index(lib, model, stem, say=say)
        if index is None or len(index) == 0:
            raise MissingEmbeddings(_missing_message(model, stem))
        self.lib, self.model, self.stem, self.ann = lib, model, stem, index
        self.size = len(index)
        self._cache: dict[int, np.ndarray] = {}

    def vectors(self, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Unit vectors of these tracks: from the index's vector file (a page each), the few it
        does not hold from the store."""
        missing = [int(i) for i in ids if int(i) not in self._cache]
        if missing:
            got_ids, matrix, rest = self.ann.stored(missing)
            if len(got_ids):
                self._cache.update(zip(got_ids.tolist(), _normalised_rows(matrix), strict=True))
            if rest:
                got_ids, matrix = self.lib.embeddings_of(rest, self.model, self.stem, ok_only=False)
                self._cache.update(zip(got_ids.tolist(), _normalised_rows(matrix), strict=True))
        kept = [int(i) for i in ids if int(i) in self._cache]
        if not kept:
            return np.empty(0, np.int64), np.empty((0, 0), np.float32)
        return np.array(kept, np.int64), np.stack([self._cache[i] for i in kept])

    def ranked(
        self, vector: np.ndarray, n: int, exclude: Iterable[int] = (), expect: Iterable[int] = ()
    ) -> list[Hit]:
        """The n best, re-scored; `expect`: tracks the graph must find (a seed, for itself)."""
        from mgctag.search import ann

        blocked = {int(i) for i in exclude}
        q = _unit(vector)
        keys = self.ann.search(q, max(ann.CANDIDATES, n) + len(blocked), expect=expect)
        ids, matrix = self.vectors([int(k) for k in keys if int(k) not in blocked])
        if len(ids) == 0:
            return []
        scores = matrix @ q
        order = np.lexsort((ids, -scores))[:n]
        return [Hit(int(ids[r]), float(scores[r])) for r in order]


def searcher(
    lib: SearchLibrary,
    model: str,
    stem: str = "mix",
    *,
    method: str = "auto",
    say: Say | None = None,
) -> Searcher:
    """Exact search for a library under `ann.ANN_MIN_TRACKS` tracks (or `method="exact"`), the
    HNSW index above it (or `method="ann"`); an index that exists is used whatever the size."""
    from mgctag.search import ann

    if stem not in EMBEDDING_STEMS:
        raise SimilarError(f"unknown stem {stem!r}: choose one of {', '.join(EMBEDDING_STEMS)}")
    if method == "auto":
        have = ann.index_path(lib.path, model, stem).exists()
        big = have or lib.embedding_count(model, stem) >= ann.ANN_MIN_TRACKS
        method = "ann" if big else "exact"
    if method == "ann":
        return AnnSearcher(lib, model, stem, say)
    return ExactSearcher(lib, model, stem)


def similar_tracks(
    lib: SearchLibrary,
    seeds: Sequence[int | str | Path],
    *,
    model: str,
    by: str = "mix",
    k: int = 10,
    genre: str | None = None,
    exclude_artist: bool = False,
    exclude_album: bool = False,
    fusion: Fusion = "centroid",
    all_versions: bool = False,
    method: str = "auto",
    say: Say | None = None,
) -> list[dict]:
    """The `similar` command: tracks like the seeds (ids or paths), by the `by` stem's embedding.

    Returns track records (id, path, artist, album, title, genres, duration) with a `score`, best
    first. Other versions of one recording (versions.py: the same normalised artist and title, or
    embeddings closer than `DUPLICATE_COSINE`) are folded into the best-ranked one, listed under
    its `versions`; `all_versions` lists each as its own result. The seeds, and their versions,
    are never returned. `exclude_artist`/`exclude_album` drop the seeds' own artists/albums (for
    discovery). Only the candidates' rows are read, never the whole library's.
    """
    from mgctag.search import versions

    search = searcher(lib, model, by, method=method, say=say)
    seed_ids = _seed_ids(lib, seeds)
    got, seed_vectors = search.vectors(seed_ids)
    if len(got) < len(seed_ids):
        missing = ", ".join(str(i) for i in sorted(set(seed_ids) - set(got.tolist()))[:5])
        raise UnknownTrack(f"track(s) {missing} have no embedding in this index")
    by_id = lib.tracks_by_ids(seed_ids)
    seed_rows = list(by_id.values())
    seed_tracks = [by_id[int(i)] for i in got]  # in the order of seed_vectors
    keep = _Filter(seed_rows, genre, exclude_artist, exclude_album)
    n = min(search.size, k + len(seed_ids))
    while True:
        hits = _fused(search, seed_vectors, n, seed_ids, fusion)
        folding = versions.Folding(seed_tracks, seed_vectors, fold=not all_versions)
        scores: dict[int, float] = {}
        for start in range(0, len(hits), k + 2):  # rows in rank order, only as many as needed
            chunk = hits[start : start + k + 2]
            rows = lib.tracks_by_ids(h.id for h in chunk)
            chunk = [h for h in chunk if h.id in rows and keep(rows[h.id])]
            _, vectors = search.vectors([h.id for h in chunk])
            for hit, vector in zip(chunk, vectors, strict=True):
                scores[hit.id] = hit.score
                folding.offer(rows[hit.id], vector)
            if len(folding.groups) >= k:
                break
        if len(folding.groups) >= k or n >= search.size or n >= _MAX_CANDIDATES:
            break
        n = min(search.size, n * 4)
    return [_result(g.track, scores[int(g.track["id"])], g.versions) for g in folding.groups[:k]]


class _Filter:
    """Whether a candidate may be a result: OK, of the genre asked, not by the seeds' artists or
    on their albums when those are excluded."""

    def __init__(
        self, seeds: Sequence[Record], genre: str | None, artist: bool, album: bool
    ) -> None:
        self.seeds, self.genre, self.artist, self.album = seeds, genre, artist, album

    def __call__(self, track: Record) -> bool:
        if track.get("status", "ok") != "ok":
            return False
        mask = filter_mask(
            [track],
            genre=self.genre,
            exclude_artists=[r.get("artist") for r in self.seeds] if self.artist else (),
            exclude_albums=[(r.get("artist"), r.get("album")) for r in self.seeds]
            if self.album
            else (),
        )
        return mask is None or bool(mask[0])


# How far a filtered or folded search looks before it answers with fewer than k: a rare genre, or
# a region where every near track is a version of the seed (a dense catalogue of near-copies).
_MAX_CANDIDATES = 2048
_EXACT_PAIRS_MAX = 5_000  # above this many tracks, `duplicates` finds close pairs with the index


def duplicates(
    lib: SearchLibrary,
    *,
    model: str,
    by: str = "mix",
    threshold: float | None = None,
    say: Say | None = None,
) -> list[list[dict]]:
    """Likely duplicates in the library (`mgctag dupes`): groups of tracks that are versions of
    one recording by their tags or their embeddings (versions.py), largest first. Each track
    record has `similarity`, its embedding's cosine to the group's first track."""
    from mgctag.search import versions

    limit = versions.DUPLICATE_COSINE if threshold is None else threshold
    names = lib.track_names()
    big = len(names) > _EXACT_PAIRS_MAX
    search = searcher(lib, model, by, method="ann" if big else "exact", say=say)
    ids = [i for i, _, _ in names]
    keys = [versions.version_key({"artist": a, "title": t}) for _, a, t in names]
    groups = versions.version_groups(ids, keys, _close_pairs(lib, search, limit))
    rows = lib.tracks_by_ids(i for g in groups for i in g)
    out = []
    for group in groups:
        got, vectors = search.vectors(group)
        sims: dict[int, float] = {}
        if len(got) and got[0] == group[0]:
            sims = dict(zip(got.tolist(), (vectors @ vectors[0]).tolist(), strict=True))
        out.append(
            [
                {**_result(rows[i], 0.0), "similarity": round(sims.get(i, float("nan")), 6)}
                for i in group
                if i in rows
            ]
        )
    return out


def _close_pairs(lib: SearchLibrary, search: Searcher, threshold: float) -> list[tuple[int, int]]:
    """Pairs of tracks whose embeddings' cosine is at least `threshold`: all pairs by blocks of
    the exact matrix, or each track's nearest neighbours in the index (re-scored exactly)."""
    pairs: list[tuple[int, int]] = []
    if isinstance(search, ExactSearcher):
        ids, m = search.index.ids, search.index.matrix
        for start in range(0, len(ids), 1024):
            block = m[start : start + 1024] @ m.T
            rows, cols = np.nonzero(block >= threshold)
            keep = cols > rows + start
            pairs += zip(ids[rows[keep] + start].tolist(), ids[cols[keep]].tolist(), strict=True)
        return pairs
    assert isinstance(search, AnnSearcher)
    for batch_ids, matrix in lib.iter_embeddings(search.model, search.stem, 10_000):
        unit = _normalised_rows(matrix)
        near = search.ann.neighbours(unit, 11)
        others = sorted({int(k) for k in near.ravel() if k >= 0})
        got, vectors = lib.embeddings_of(others, search.model, search.stem)
        where = {int(i): r for r, i in enumerate(got.tolist())}
        vectors = _normalised_rows(vectors) if len(got) else vectors
        for a, v, row in zip(batch_ids.tolist(), unit, near, strict=True):
            for b in row.tolist():
                if b > a and b in where and float(vectors[where[b]] @ v) >= threshold:
                    pairs.append((a, b))
    return pairs


def _fused(
    search: Searcher, seeds: np.ndarray, n: int, seed_ids: Sequence[int], fusion: Fusion
) -> list[Hit]:
    """The n best tracks for the seeds: by their centroid, or by reciprocal rank fusion."""
    if fusion == "centroid":
        centre = np.mean([_unit(v) for v in seeds], axis=0)
        expect = seed_ids if len(seed_ids) == 1 else ()  # one seed is its own nearest
        return search.ranked(centre, n, exclude=seed_ids, expect=expect)
    if fusion != "rrf":
        raise ValueError(f"unknown fusion {fusion!r}: use 'centroid' or 'rrf'")
    depth = min(max(100, 10 * n), search.size)
    fused: dict[int, float] = {}
    for seed, v in zip(seed_ids, seeds, strict=True):
        for rank, hit in enumerate(search.ranked(v, depth, exclude=seed_ids, expect=[seed])):
            fused[hit.id] = fused.get(hit.id, 0.0) + 1.0 / (RRF_K + 1 + rank)
    order = sorted(fused, key=lambda i: (-fused[i], i))[:n]
    return [Hit(i, fused[i]) for i in order]


def _seed_ids(lib: SearchLibrary, seeds: Iterable[int | str | Path]) -> list[int]:
    """Track ids for seeds given as ids or file paths."""
    out = []
    for s in seeds:
        if isinstance(s, (int, np.integer)):
            out.append(int(s))
            continue
        track = lib.track_by_path(str(s)) or lib.track_by_path(str(Path(s).expanduser().resolve()))
        if track is None:
            raise UnknownTrack(f"{s}: not in the library (run `mgctag tag` on it first)")
        out.append(int(track["id"]))
    return out


def _result(track: Record, score: float, versions: Sequence[Record] = ()) -> dict:
    fields = ("id", "path", "artist", "album", "title", "duration")
    out = {f: track.get(f) for f in fields}
    out["genres"] = track_genres(track)
    out["score"] = round(score, 6)
    out["versions"] = [{f: v.get(f) for f in ("id", "path", "artist", "title")} for v in versions]
    return out


# ---- filters (masks the caller hands to VectorIndex.query) ----------------------------------


def _fold(s: Any) -> str:
    return str(s or "").strip().casefold()


def track_genres(record: Track) -> list[str]:
    """A track's genres as a list, whether the row holds a list or (a damaged value) a string."""
    g: Any = record.genres
    if isinstance(g, str):
        import json

        try:
            g = json.loads(g)
        except ValueError:
            g = [g]
    return split_and_normalise(str(x) for x in (g or []))


def filter_mask(
    records: Sequence[Track],
    *,
    genre: str | None = None,
    exclude_artists: Iterable[str | None] = (),
    exclude_albums: Iterable[tuple[str | None, str | None]] = (),
) -> np.ndarray | None:
    """Rows to keep: tracks tagged `genre` (case-insensitive), not by the excluded artists, not on
    the excluded (artist, album) pairs. None when nothing is filtered (the fast path)."""
    artists = {_fold(a) for a in exclude_artists if _fold(a)}
    albums = {(_fold(a), _fold(b)) for a, b in exclude_albums if _fold(b)}
    if genre is None and not artists and not albums:
        return None
    wanted = split_and_normalise([genre]) if genre else []
    want = _fold(wanted[0]) if wanted else None  # spelled as track genres are

    def kept(r: Track) -> bool:
        artist = _fold(r.artist)
        if want is not None and want not in {_fold(g) for g in track_genres(r)}:
            return False
        return artist not in artists and (artist, _fold(r.album)) not in albums

    return np.fromiter((kept(r) for r in records), dtype=bool, count=len(records))
