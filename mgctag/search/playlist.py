"""Playlists that travel: a smooth path from one song to another, and an instant mix from a seed.

Both work on a small pool of candidates that a search finds (exact or the HNSW index, so a
million-track library costs no more than a small one), with the same rules as `similar`: other
versions of a chosen song are never added (versions.py), `genre` keeps only tracks of that genre,
`exclude_artist` leaves out the endpoints' (or seeds') artists, and an artist plays at most once
in any `spacing` consecutive tracks (2: never twice in a row; 1: no rule).

**Path** (`mgctag playlist --from A --to B`): waypoints are spaced evenly along the great circle
from A's embedding to B's; each waypoint's nearest tracks form the pool, and the pool's
neighbour graph (each track linked to its `Course.graph_k` nearest in the pool) is searched for the
sequence of exactly `length` tracks from A to B that minimises the sum over its steps of
(1 − cosine)² (squared, so one big jump costs more than several small ones) plus a pull towards
that step's waypoint (so the path keeps moving towards B instead of dwelling). A beam search
keeps the `Course.beam` best partial paths per step; it respects the spacing and repeat rules
exactly.

**Instant mix** (`--seed A`): starting from the seed, each next track is the unused candidate
most similar to the current track and to the seed together (half each), so the mix drifts no
further than the seed's neighbourhood.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mgctag.search import versions
from mgctag.search.ann import Say
from mgctag.search.similar import (
    SearchLibrary,
    SimilarError,
    filter_mask,
    searcher,
    track_genres,
)

_MIX_POOL = 8  # instant mix: candidates per track of the mix


@dataclass(frozen=True)
class Rules:
    """What a playlist may contain (the options of `mgctag playlist`)."""

    length: int = 20
    spacing: int = 3
    genre: str | None = None
    exclude_artist: bool = False


@dataclass(frozen=True)
class Course:
    """How a path is searched: `pool` nearest tracks of each waypoint, each pool track linked to
    its `graph_k` nearest in the pool, `beam` partial paths kept per step, and the `pull`
    towards each step's waypoint (docs/similar.md, "Playlists": how they were chosen)."""

    pool: int = 30
    graph_k: int = 15
    beam: int = 48
    pull: float = 0.5


COURSE = Course()


@dataclass
class Pool:
    """Candidate tracks: ids, unit vectors (rows), rows of the tracks table, artist keys."""

    ids: list[int]
    vectors: np.ndarray
    tracks: list[Any]
    artists: list[str]


def artist_key(track: Any) -> str:
    """The artist as spacing compares it (normalised); a track without one is its own."""
    return versions.normalised_artist(str(track.get("artist") or "")) or f"#{track.get('id')}"


def _pool(
    lib: SearchLibrary,
    search: Any,
    ids: Sequence[int],
    ends: Sequence[Any],
    end_vectors: np.ndarray,
    rules: Rules,
) -> Pool:
    """The candidates as a Pool: OK tracks passing the filters, versions of the endpoints and
    of better-ranked candidates dropped (so no song is offered twice)."""
    rows = lib.tracks_by_ids(ids)
    end_ids = {int(e["id"]) for e in ends}
    kept = [i for i in dict.fromkeys(ids) if i in rows and i not in end_ids]
    kept = [i for i in kept if rows[i].get("status", "ok") == "ok"]
    mask = filter_mask(
        [rows[i] for i in kept],
        genre=rules.genre,
        exclude_artists=[e.get("artist") for e in ends] if rules.exclude_artist else (),
    )
    kept = [i for n, i in enumerate(kept) if mask is None or mask[n]]
    got, vectors = search.vectors(kept)
    tracks = [rows[int(i)] for i in got]
    groups = versions.fold(tracks, vectors, ends, end_vectors)
    chosen = [g.track for g in groups]
    where = {int(t): r for r, t in enumerate(got.tolist())}
    rows_idx = [where[int(t["id"])] for t in chosen]
    return Pool(
        [int(t["id"]) for t in chosen],
        vectors[rows_idx] if rows_idx else np.empty((0, end_vectors.shape[1]), np.float32),
        chosen,
        [artist_key(t) for t in chosen],
    )


def _slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """The unit vector a fraction t of the way from a to b along the great circle."""
    omega = float(np.arccos(np.clip(a @ b, -1.0, 1.0)))
    if omega < 1e-6:
        return a
    v = (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)
    return (v / np.linalg.norm(v)).astype(np.float32)


def path_playlist(
    lib: SearchLibrary,
    start: int,
    end: int,
    *,
    model: str,
    by: str = "mix",
    rules: Rules = Rules(),
    method: str = "auto",
    say: Say | None = None,
    course: Course = COURSE,
) -> list[dict]:
    """`length` tracks from `start` to `end` (track ids), each step a small one (above)."""
    if rules.length < 2:
        raise SimilarError("a path needs a length of 2 or more (the two ends)")
    if start == end:
        raise SimilarError("the path's two ends are the same track")
    search = searcher(lib, model, by, method=method, say=say)
    got, ends_v = search.vectors([start, end])
    if len(got) < 2:
        raise SimilarError("both ends need an embedding: run `mgctag tag` on them first")
    a, b = ends_v[0], ends_v[1]
    ends = [lib.tracks_by_ids([start])[start], lib.tracks_by_ids([end])[end]]
    inner = rules.length - 2
    waypoints = [_slerp(a, b, (i + 1) / (inner + 1)) for i in range(inner)]
    ids: list[int] = []
    for w in waypoints:
        ids += [h.id for h in search.ranked(w, course.pool, exclude=(start, end))]
    pool = _pool(lib, search, ids, ends, ends_v, rules)
    order = _beam_path(
        pool, a, b, waypoints, (artist_key(ends[0]), artist_key(ends[1])), rules.spacing, course
    )
    if order is None:
        raise SimilarError(
            f"no path of {rules.length} tracks fits the rules (fewer candidates than places,"
            " or the artist spacing): try a shorter --length, a smaller --spacing or no --genre"
        )
    chain = [ends[0], *(pool.tracks[i] for i in order), ends[1]]
    vectors = np.vstack([a, *(pool.vectors[i] for i in order), b])
    return _records(chain, vectors)


def _beam_path(
    pool: Pool,
    a: np.ndarray,
    b: np.ndarray,
    waypoints: Sequence[np.ndarray],
    artists: tuple[str, str],
    spacing: int,
    course: Course,
) -> list[int] | None:
    """Pool rows for the inner places, by beam search over the pool's neighbour graph."""
    artist_a, artist_b = artists
    inner = len(waypoints)
    if inner == 0:
        return []
    n = len(pool.ids)
    if n < inner:
        return None
    sims = pool.vectors @ pool.vectors.T
    k = min(course.graph_k, n - 1)
    graph = np.argsort(-sims, axis=1)[:, 1 : k + 1] if n > 1 else np.zeros((n, 0), int)
    from_a = pool.vectors @ a
    to_b = pool.vectors @ b
    toward = np.stack([pool.vectors @ w for w in waypoints])  # (inner, n)
    gap = max(spacing - 1, 0)  # how many tracks before each may not share its artist
    # a state: (cost, path of pool rows); the first step may start anywhere near A
    beam: list[tuple[float, list[int]]] = [(0.0, [])]
    for step in range(inner):
        grown: list[tuple[float, list[int]]] = []
        for cost, path in beam:
            if path:
                nxt = graph[path[-1]]
                step_sim = sims[path[-1], nxt]
                if not len(nxt):
                    continue
            else:
                nxt = np.argsort(-from_a)[: max(course.graph_k, course.beam)]
                step_sim = from_a[nxt]
            costs = (1 - step_sim) ** 2 + course.pull * (1 - toward[step, nxt]) ** 2
            if step == inner - 1:
                costs = costs + (1 - to_b[nxt]) ** 2
            recent = [artist_a, *(pool.artists[r] for r in path)][-(spacing - 1) :] if gap else []
            for c, r in sorted(zip(costs.tolist(), nxt.tolist(), strict=True))[: course.beam]:
                if r in path or pool.artists[r] in recent:
                    continue
                if gap and step >= inner - gap and pool.artists[r] == artist_b:
                    continue  # B's artist must not come within `spacing` tracks of B
                grown.append((cost + c, [*path, r]))
        if not grown:
            return None
        grown.sort(key=lambda s: s[0])
        beam = _distinct(grown, course.beam)
    return beam[0][1]


def _distinct(states: list[tuple[float, list[int]]], width: int) -> list[tuple[float, list[int]]]:
    """The best `width` states, one per (last track, set of tracks): duplicates add nothing."""
    seen, out = set(), []
    for cost, path in states:
        key = (path[-1], frozenset(path))
        if key not in seen:
            seen.add(key)
            out.append((cost, path))
            if len(out) == width:
                break
    return out


def instant_mix(
    lib: SearchLibrary,
    seeds: Sequence[int],
    *,
    model: str,
    by: str = "mix",
    rules: Rules = Rules(),
    method: str = "auto",
    say: Say | None = None,
) -> list[dict]:
    """A mix of `length` tracks starting with the (first) seed, each the unused candidate most
    like the current track and the seeds together, artists spaced."""
    if rules.length < 1:
        raise SimilarError("a mix needs a length of 1 or more")
    search = searcher(lib, model, by, method=method, say=say)
    got, seed_v = search.vectors(list(seeds))
    if len(got) < len(seeds):
        raise SimilarError("every seed needs an embedding: run `mgctag tag` on it first")
    seed_rows = lib.tracks_by_ids(seeds)
    ends = [seed_rows[int(s)] for s in seeds]
    centre = np.mean(seed_v, axis=0)
    centre = centre / (np.linalg.norm(centre) or 1.0)
    want = max(_MIX_POOL * rules.length, 100)
    ids = [h.id for h in search.ranked(centre, want, exclude=seeds)]
    pool = _pool(lib, search, ids, ends, seed_v, rules)
    chain_rows: list[int] = []
    current = seed_v[0]
    artists = [artist_key(ends[0])]
    to_seed = pool.vectors @ centre
    used = np.zeros(len(pool.ids), dtype=bool)
    while len(chain_rows) < rules.length - 1:
        score = 0.5 * (pool.vectors @ current) + 0.5 * to_seed
        score[used] = -np.inf
        gap = max(rules.spacing - 1, 0)
        recent = set(artists[-gap:]) if gap else set()
        for r in np.argsort(-score):
            if not np.isfinite(score[r]):
                break
            if pool.artists[r] not in recent:
                chain_rows.append(int(r))
                used[r] = True
                artists.append(pool.artists[r])
                current = pool.vectors[r]
                break
        else:
            break
        if not np.isfinite(score).any():
            break
    chain = [ends[0], *(pool.tracks[r] for r in chain_rows)]
    vectors = np.vstack([seed_v[0], *(pool.vectors[r] for r in chain_rows)])
    return _records(chain, vectors)


def _records(chain: Sequence[Any], vectors: np.ndarray) -> list[dict]:
    """Track records in order, each with `score`: its cosine to the track before it (1 first)."""
    out = []
    for i, track in enumerate(chain):
        step = 1.0 if i == 0 else float(vectors[i] @ vectors[i - 1])
        record = {f: track.get(f) for f in ("id", "path", "artist", "album", "title", "duration")}
        record["genres"] = track_genres(track)
        record["score"] = round(step, 6)
        out.append(record)
    return out


def artist_repeats(records: Sequence[Any], spacing: int) -> int:
    """How many tracks share their artist with one of the `spacing` - 1 tracks before them."""
    keys = [artist_key(r) for r in records]
    gap = max(spacing - 1, 0)
    return sum(1 for i, k in enumerate(keys) if gap and k in keys[max(0, i - gap) : i])


def smoothness(records: Sequence[Any]) -> float:
    """Mean cosine between consecutive tracks (the `score` of each record after the first)."""
    steps = [float(r["score"]) for r in records[1:]]
    return float(np.mean(steps)) if steps else 1.0
