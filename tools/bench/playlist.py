"""How smooth `mgctag playlist` is on a real library, against a random walk and the straight top-k.

    python -m tools.bench.playlist --db /work/data/similar/corpus.db --pairs 200 --length 10

For random pairs of tracks (A, B) of the library (not versions of each other):

- path: `playlist --from A --to B --length L` (search/playlist.py);
- waypoint nearest: the same evenly spaced waypoints from A to B, each given its nearest track
  under the same rules, without the graph or the beam (the naive way to get from A to B);
- random walk: from A, each next track drawn from the current one's 10 nearest not yet played
  (the neighbour graph the path searches, walked without a goal); and the same walk held to the
  playlist's rules (no version of a track played, artists spaced);
- top-k: A then `similar A`'s L - 1 results in rank order (versions folded), what a "radio"
  made of one query gives;
- instant mix: `playlist --seed A --length L`.

Each is scored by the mean cosine of consecutive tracks (the default tagger's embeddings), its
weakest step, and how many tracks repeat an artist within `--spacing` (tracks without an artist
tag count as their own artist), and how many are another version of a track already played
(versions.py). The path is also checked to start at A and end at B.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from mgctag.library.db import Library
from mgctag.options import DEFAULT_TAGGER
from mgctag.search import playlist as pl
from mgctag.search import versions
from mgctag.search.similar import ExactSearcher, SimilarError, similar_tracks


def _steps(vectors: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", vectors[1:], vectors[:-1])


def _score(ids: list[int], where: dict[int, int], unit: np.ndarray, tracks: Any, k: int) -> dict:
    vectors = unit[[where[i] for i in ids]]
    steps = _steps(vectors)
    records = [tracks[i] for i in ids]
    return {
        "mean_step": float(np.mean(steps)),
        "min_step": float(np.min(steps)),
        "artist_repeats": pl.artist_repeats(records, k),
        "version_repeats": version_repeats(records, vectors),
        "length": len(ids),
    }


def version_repeats(records: list[Any], vectors: np.ndarray) -> int:
    """How many tracks are another version of an earlier one in the list, as versions.py
    decides it (the same song by the tags; by the embedding when a side's tags name none)."""
    keys = [versions.version_key(r) for r in records]
    sims = vectors @ vectors.T

    def same(i: int, j: int) -> bool:
        if keys[i] is not None and keys[j] is not None:
            return keys[i] == keys[j]
        return bool(sims[i, j] >= versions.DUPLICATE_COSINE)

    return sum(1 for i in range(1, len(records)) if any(same(i, j) for j in range(i)))


_KEYS: dict[int, np.ndarray] = {}


def version_mask(played: list[int], records: list[Any], unit: np.ndarray) -> np.ndarray:
    """Rows that are a version of a played row, as versions.py decides it."""
    if id(records) not in _KEYS:
        _KEYS[id(records)] = np.array([versions.version_key(r) for r in records], dtype=object)
    keys = _KEYS[id(records)]
    unnamed = np.array([k is None for k in keys])
    mask = np.zeros(len(records), dtype=bool)
    for p, sims in zip(played, unit[played] @ unit.T, strict=True):
        close = sims >= versions.DUPLICATE_COSINE
        if keys[p] is None:
            mask |= close
        else:
            mask |= (close & unnamed) | np.array([k == keys[p] for k in keys])
    return mask


def random_walk(
    start: int,
    length: int,
    unit: np.ndarray,
    ids: np.ndarray,
    rng: Any,
    rules: tuple[list[Any], int] | None = None,
) -> list[int]:
    """A walk on the 10-nearest-neighbour graph from `start`, never revisiting a track; with
    `rules` (the tracks in row order, the spacing) also never a version of a track played and
    never an artist within the spacing: the playlist's own rules, without its goal."""
    row = int(np.nonzero(ids == start)[0][0])
    path = [row]
    while len(path) < length:
        sims = unit @ unit[path[-1]]
        sims[path] = -np.inf
        if rules is not None:
            records, spacing = rules
            sims[version_mask(path, records, unit)] = -np.inf
            recent = (
                {pl.artist_key(records[r]) for r in path[-(spacing - 1) :]}
                if spacing > 1
                else set()
            )
            for r in np.nonzero(np.isfinite(sims))[0]:
                if pl.artist_key(records[r]) in recent:
                    sims[r] = -np.inf
        near = np.argsort(-sims)[:10]
        near = near[np.isfinite(sims[near])]
        if not len(near):
            break
        path.append(int(rng.choice(near)))
    return [int(ids[r]) for r in path]


def waypoint_nearest(
    a: int, b: int, length: int, unit: np.ndarray, ids: np.ndarray, records: list[Any], spacing: int
) -> list[int]:
    """The naive path: for each of the evenly spaced points between A and B (as the playlist
    spaces its waypoints), the nearest track not played, not a version of one played, artists
    spaced; no graph, no look-ahead."""
    ra, rb = (int(np.nonzero(ids == x)[0][0]) for x in (a, b))
    va, vb = unit[ra], unit[rb]
    omega = float(np.arccos(np.clip(va @ vb, -1, 1)))
    path = [ra]
    for i in range(1, length - 1):
        t = i / (length - 1)
        w = (np.sin((1 - t) * omega) * va + np.sin(t * omega) * vb) / np.sin(omega)
        sims = unit @ (w / np.linalg.norm(w))
        sims[[*path, rb]] = -np.inf
        sims[version_mask([*path, rb], records, unit)] = -np.inf
        recent = (
            {pl.artist_key(records[r]) for r in path[-(spacing - 1) :]} if spacing > 1 else set()
        )
        for r in np.argsort(-sims):
            if not np.isfinite(sims[r]):
                break
            if pl.artist_key(records[r]) not in recent:
                path.append(int(r))
                break
    return [int(ids[r]) for r in [*path, rb]]


def evaluate(db: Path, pairs: int, length: int, spacing: int, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    with Library(db) as lib:
        search = ExactSearcher(lib, DEFAULT_TAGGER, "mix")
        ids, unit = search.index.ids, search.index.matrix
        where = {int(i): r for r, i in enumerate(ids.tolist())}
        tracks = lib.tracks_by_ids(ids.tolist())
        rules = pl.Rules(length=length, spacing=spacing)
        records = [tracks[int(i)] for i in ids]
        names = (
            "path",
            "waypoint_nearest",
            "random_walk",
            "random_walk_same_rules",
            "top_k",
            "mix",
        )
        scores: dict[str, list[dict]] = {name: [] for name in names}
        ends_ok, tried = 0, 0
        while len(scores["path"]) < pairs and tried < 5 * pairs:
            tried += 1
            a, b = (int(x) for x in rng.choice(ids, 2, replace=False))
            if versions.version_key(tracks[a]) and (
                versions.version_key(tracks[a]) == versions.version_key(tracks[b])
            ):
                continue
            if version_mask([where[a]], records, unit)[where[b]]:
                continue
            try:
                path = pl.path_playlist(lib, a, b, model=DEFAULT_TAGGER, rules=rules)
            except SimilarError:
                continue
            got = [int(t["id"]) for t in path]
            ends_ok += got[0] == a and got[-1] == b
            scores["path"].append(_score(got, where, unit, tracks, spacing))
            naive = waypoint_nearest(a, b, length, unit, ids, records, spacing)
            scores["waypoint_nearest"].append(_score(naive, where, unit, tracks, spacing))
            walk = random_walk(a, length, unit, ids, rng)
            scores["random_walk"].append(_score(walk, where, unit, tracks, spacing))
            ruled = random_walk(a, length, unit, ids, rng, (records, spacing))
            scores["random_walk_same_rules"].append(_score(ruled, where, unit, tracks, spacing))
            top = similar_tracks(lib, [a], model=DEFAULT_TAGGER, k=length - 1, method="exact")
            straight = [a, *(int(t["id"]) for t in top)]
            scores["top_k"].append(_score(straight, where, unit, tracks, spacing))
            mix = pl.instant_mix(lib, [a], model=DEFAULT_TAGGER, rules=rules, method="exact")
            scores["mix"].append(_score([int(t["id"]) for t in mix], where, unit, tracks, spacing))
    summary = {
        name: {
            "mean_step": statistics.mean(s["mean_step"] for s in rows),
            "mean_min_step": statistics.mean(s["min_step"] for s in rows),
            "artist_repeats_per_list": statistics.mean(s["artist_repeats"] for s in rows),
            "version_repeats_per_list": statistics.mean(s["version_repeats"] for s in rows),
            "mean_length": statistics.mean(s["length"] for s in rows),
        }
        for name, rows in scores.items()
        if rows
    }
    paired = {
        other: _interval(
            [
                p["mean_step"] - w["mean_step"]
                for p, w in zip(scores["path"], scores[other], strict=True)
            ],
            rng,
        )
        for other in ("waypoint_nearest", "random_walk_same_rules", "top_k")
    }
    return {
        "db": str(db),
        "tracks": len(ids),
        "pairs": len(scores["path"]),
        "pairs_tried": tried,
        "length": length,
        "spacing": spacing,
        "paths_from_a_to_b": ends_ok,
        "summary": summary,
        "path_minus_other_mean_step": paired,
    }


def _interval(values: list[float], rng: Any, n: int = 2000) -> dict[str, float]:
    """Mean and 95 % bootstrap interval."""
    arr = np.asarray(values)
    means = [float(np.mean(rng.choice(arr, len(arr)))) for _ in range(n)]
    return {
        "mean": float(arr.mean()),
        "low": float(np.percentile(means, 2.5)),
        "high": float(np.percentile(means, 97.5)),
    }


def tagged_copy(dupes: Path, corpus: Path, dest: Path) -> Path:
    """A copy of tools.bench.dupes' library (originals and their variants) with each track's
    artist and title as its source names them: the corpus file's tags (tools.bench.dupes wrote
    its excerpts untagged), MUSDB's "Artist - Title" file names, the shared files' names. A
    library with real duplicates in it, for playlists that must not repeat a song."""
    import shutil
    import sqlite3

    shutil.copy(dupes, dest)
    sources = json.loads((dupes.parent / "sources.json").read_text())
    with sqlite3.connect(f"file:{corpus}?mode=ro", uri=True) as c:
        corpus_tags = {
            Path(p).stem: (a, t) for p, a, t in c.execute("SELECT path, artist, title FROM tracks")
        }
    db = sqlite3.connect(dest)
    with db:
        for tid, path in db.execute("SELECT id, path FROM tracks").fetchall():
            key = Path(path).parent.name
            origin = Path(sources[key]["path"])
            if key.startswith("corpus-"):
                artist, title = corpus_tags.get(origin.stem, (None, None))
            elif key.startswith("musdb-"):
                artist, _, title = origin.name.removesuffix(".stem.mp4").partition(" - ")
            else:
                artist, title = origin.parent.name, origin.stem
            db.execute("UPDATE tracks SET artist = ?, title = ? WHERE id = ?", [artist, title, tid])
    db.close()
    return dest


GRID_SIZES = {"pool": (15, 30, 60), "graph_k": (8, 15, 30), "beam": (16, 48, 128)}
GRID_PULLS = (0.0, 0.25, 0.5, 1.0, 2.0)


def pairs_of(lib: Library, ids: np.ndarray, unit: np.ndarray, n: int, seed: int) -> list:
    """`n` random (A, B) of the library that are not versions of each other (as `evaluate`)."""
    rng = np.random.default_rng(seed)
    tracks = lib.tracks_by_ids(ids.tolist())
    records = [tracks[int(i)] for i in ids]
    where = {int(i): r for r, i in enumerate(ids.tolist())}
    out: list[tuple[int, int]] = []
    while len(out) < n:
        a, b = (int(x) for x in rng.choice(ids, 2, replace=False))
        key = versions.version_key(tracks[a])
        if (key and key == versions.version_key(tracks[b])) or version_mask(
            [where[a]], records, unit
        )[where[b]]:
            continue
        out.append((a, b))
    return out


def tune(tuning_db: Path, test_db: Path, pairs: int, length: int, spacing: int) -> dict[str, Any]:
    """The path's search settings (`playlist.Course`) chosen on one library, tested on another:
    every combination of GRID_SIZES and GRID_PULLS on `tuning_db`'s pairs, scored by mean step +
    weakest step (a smooth list with no big jump); the best and the shipped settings then on
    `test_db`'s pairs, paired, with 95 % bootstrap intervals."""
    import itertools

    rules = pl.Rules(length=length, spacing=spacing)

    def run(db: Path, courses: list[pl.Course]) -> list[list[dict]]:
        with Library(db) as lib:
            search = ExactSearcher(lib, DEFAULT_TAGGER, "mix")
            ids, unit = search.index.ids, search.index.matrix
            where = {int(i): r for r, i in enumerate(ids.tolist())}
            tracks = lib.tracks_by_ids(ids.tolist())
            todo = pairs_of(lib, ids, unit, pairs, seed=1)
            rows = []
            for course in courses:
                got = []
                for a, b in todo:
                    try:
                        path = pl.path_playlist(
                            lib, a, b, model=DEFAULT_TAGGER, rules=rules, course=course
                        )
                    except SimilarError:
                        got.append({"mean_step": 0.0, "min_step": -1.0, "reached": False})
                        continue
                    chosen = [int(t["id"]) for t in path]
                    row = _score(chosen, where, unit, tracks, spacing)
                    got.append(row | {"reached": chosen[0] == a and chosen[-1] == b})
                rows.append(got)
            return rows

    def objective(rows: list[dict]) -> float:
        return statistics.mean(r["mean_step"] + r["min_step"] for r in rows)

    grid = [
        pl.Course(pool=p, graph_k=k, beam=b, pull=w)
        for (p, k, b), w in itertools.product(itertools.product(*GRID_SIZES.values()), GRID_PULLS)
    ]
    tuned = run(tuning_db, grid)
    ranking = sorted(zip(grid, tuned, strict=True), key=lambda cr: -objective(cr[1]))
    best = ranking[0][0]
    shipped = pl.COURSE
    test = run(test_db, [shipped, best])
    rng = np.random.default_rng(0)

    def summary(rows: list[dict]) -> dict[str, float]:
        return {
            "mean_step": statistics.mean(r["mean_step"] for r in rows),
            "mean_min_step": statistics.mean(r["min_step"] for r in rows),
            "reached": sum(r["reached"] for r in rows),
        }

    return {
        "tuning_db": str(tuning_db),
        "test_db": str(test_db),
        "pairs": pairs,
        "length": length,
        "top_on_tuning": [
            {"course": vars(c), "objective": objective(r)} | summary(r) for c, r in ranking[:5]
        ],
        "shipped_on_tuning": summary(tuned[grid.index(shipped)]) if shipped in grid else None,
        "test": {"shipped": summary(test[0]), "best": summary(test[1]), "best_course": vars(best)},
        "test_best_minus_shipped": {
            key: _interval([b[key] - s[key] for s, b in zip(test[0], test[1], strict=True)], rng)
            for key in ("mean_step", "min_step")
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", type=Path, default=Path("/work/data/similar/corpus.db"))
    ap.add_argument(
        "--from-dupes",
        type=Path,
        default=None,
        help="measure on a tagged copy of this tools.bench.dupes library (written to --db)",
    )
    ap.add_argument("--pairs", type=int, default=200)
    ap.add_argument("--length", type=int, default=10)
    ap.add_argument("--spacing", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument(
        "--tune-on",
        type=Path,
        default=None,
        help="choose the path's search settings on this library, test them on --db",
    )
    args = ap.parse_args()
    if args.tune_on:
        result = tune(args.tune_on, args.db, args.pairs, args.length, args.spacing)
        print(json.dumps(result, indent=1))
        if args.out:
            args.out.write_text(json.dumps(result, indent=1))
        return
    if args.from_dupes:
        tagged_copy(args.from_dupes, Path("/work/data/similar/corpus.db"), args.db)
    result = evaluate(args.db, args.pairs, args.length, args.spacing)
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
