"""How long loading the embedding matrix takes for a large library (what `similar` and `map` pay).

    python -m tools.bench.db --tracks 100000 --dim 200 [--db /tmp/bench.db]

Fills a fresh library through the public API (tracks + one analysis each, in one transaction), then
times `Library.embedding_matrix` cold (first call after opening) and warm (median of repeats).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from mgctag.library.db import Library


def fill(lib: Library, tracks: int, dim: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    with lib.transaction():
        for i in range(tracks):
            tid = lib.upsert_track(
                {"path": f"/bench/{i // 1000:03d}/{i:06d}.flac", "size": i, "mtime": i}
            )
            v = rng.standard_normal(dim).astype(np.float32)
            lib.save_analysis(
                tid, "musicnn", "none", {}, [("Rock", 0.5)], {"mix": v / np.linalg.norm(v)}
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracks", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--db", type=Path, default=None)
    args = ap.parse_args()
    path = args.db or Path(tempfile.mkdtemp(prefix="mgctag-bench-")) / "bench.db"
    if path.exists():
        raise SystemExit(f"{path}: exists; give a new path")

    t0 = time.perf_counter()
    with Library(path) as lib:
        fill(lib, args.tracks, args.dim)
    fill_s = time.perf_counter() - t0

    with Library(path) as lib:
        t0 = time.perf_counter()
        ids, matrix = lib.embedding_matrix("musicnn")
        cold = time.perf_counter() - t0
        warm = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            lib.embedding_matrix("musicnn")
            warm.append(time.perf_counter() - t0)
    assert matrix.shape == (args.tracks, args.dim) and len(ids) == args.tracks
    size_mb = sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 1e6
    print(
        f"library: {args.tracks} tracks x {args.dim}-d float32, {size_mb:.0f} MB on disk ({path})"
    )
    print(f"fill (upsert_track + save_analysis, one transaction): {fill_s:.1f} s")
    print(f"embedding_matrix cold (first call after open): {cold * 1000:.0f} ms")
    print(
        f"embedding_matrix warm (median of {args.repeats}): {statistics.median(warm) * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
