"""Benchmark search.similar.VectorIndex (and sqlite-vec, where it loads) on synthetic vectors.

    python -m tools.bench.similar                      # 100k and 1M tracks, 200-d, 2 threads
    python -m tools.bench.similar --sizes 100000 --no-sqlite-vec
    python -m tools.bench.similar --quality-only       # centroid vs RRF on MUSDB previews

Speed: p50/p95 latency of top-10 queries (one seed; three seeds by centroid and by RRF; one seed
with a 50 % allowed mask), build time, and memory (index bytes / raw vector bytes, plus the peak
traced by tracemalloc while building). Every answer is checked against a full argsort.
sqlite-vec needs a SQLite that can load extensions; Python's sqlite3 here cannot, so it goes
through `apsw` (pip install apsw sqlite-vec). Its vec0 table is also exact (brute force).

Quality: for each genre of the MUSDB18 7-second previews with >= 3 tracks, draw 3 seeds of that
genre and count how many of the top 5 share it; features are mean+std MFCCs (a cheap, real
stand-in for the model embeddings). Same draws for both fusions.
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
import tracemalloc

import numpy as np
from threadpoolctl import threadpool_limits

from mgctag.search.similar import VectorIndex
from tools.paths import MUSDB

Row = tuple[str, float, float, float]  # case, p50 ms, p95 ms, min ms


def unit_rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Clustered synthetic vectors (like embeddings: genres form clusters), unit rows, float32."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((64, d), dtype=np.float32)
    m = np.empty((n, d), dtype=np.float32)
    step = 100_000
    for s in range(0, n, step):
        e = min(n, s + step)
        noise = rng.standard_normal((e - s, d), dtype=np.float32)
        m[s:e] = centres[rng.integers(0, 64, e - s)] + 0.8 * noise
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    return m


def pct(ts: list[float]) -> tuple[float, float, float]:
    """p50, p95 and min in ms; on a shared machine the min is the closest to an idle one."""
    a = np.asarray(ts) * 1e3
    return float(np.percentile(a, 50)), float(np.percentile(a, 95)), float(a.min())


def bench_index(m: np.ndarray, queries: int, k: int) -> list[Row]:
    n = len(m)
    ids = np.arange(1, n + 1, dtype=np.int64)
    rng = np.random.default_rng(1)
    raw = m * 3.0  # unnormalised copy: the index must normalise it (one copy)
    tracemalloc.start()
    t = time.perf_counter()
    VectorIndex(ids, raw)
    build_raw = time.perf_counter() - t
    peak_raw = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del raw
    t = time.perf_counter()
    idx = VectorIndex(ids, m)
    build = time.perf_counter() - t
    print(f"  build from unit float32: {build * 1e3:.1f} ms (no copy: {idx.matrix is m})")
    print(f"  build from unnormalised: {build_raw * 1e3:.1f} ms, peak {peak_raw / m.nbytes:.2f}x")
    print(f"  index memory: {idx.nbytes / 2**20:.0f} MiB = {idx.nbytes / m.nbytes:.3f}x raw")
    mask = rng.random(n) < 0.5
    rows: list[Row] = []
    cases = {
        "1 seed": lambda s: idx.query(ids[s[:1]], k),
        "1 seed, 50% mask": lambda s: idx.query(ids[s[:1]], k, allowed_mask=mask),
        "3 seeds centroid": lambda s: idx.query(ids[s], k, fusion="centroid"),
        "3 seeds rrf": lambda s: idx.query(ids[s], k, fusion="rrf"),
    }
    for name, fn in cases.items():
        ts = []
        for _ in range(queries):
            seeds = rng.choice(n, 3, replace=False)
            t = time.perf_counter()
            hits = fn(seeds)
            ts.append(time.perf_counter() - t)
        rows.append((name, *pct(ts)))
    for s in rng.choice(n, 5, replace=False):  # exactness against a full sort
        scores = m @ m[s]
        scores[s] = -np.inf
        want = np.argsort(-scores, kind="stable")[:k] + 1
        got = [h.id for h in idx.query(ids[[s]], k)]
        assert list(want) == got, (list(want), got)
    hits = idx.query(ids[:1], k)
    assert len(hits) == k
    return rows


def bench_sqlite_vec(m: np.ndarray, queries: int, k: int) -> list[Row] | None:
    try:
        import apsw
        import sqlite_vec
    except ImportError as e:
        print(f"  sqlite-vec skipped: {e}")
        return None
    n, d = m.shape
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        db = apsw.Connection(os.path.join(tmp, "vec.db"))
        db.enable_load_extension(True)
        db.load_extension(sqlite_vec.loadable_path())
        db.execute(f"create virtual table v using vec0(e float[{d}] distance_metric=cosine)")
        t = time.perf_counter()
        with db:
            db.executemany(
                "insert into v(rowid, e) values (?, ?)",
                ((i + 1, m[i].tobytes()) for i in range(n)),
            )
        build = time.perf_counter() - t
        size = os.path.getsize(os.path.join(tmp, "vec.db"))
        print(f"  sqlite-vec build (insert {n}): {build:.1f} s, file {size / m.nbytes:.2f}x raw")
        rng = np.random.default_rng(1)
        sql = "select rowid, distance from v where e match ? and k = ? order by distance"
        ts, agree = [], 0
        for _ in range(queries):
            s = int(rng.integers(n))
            t = time.perf_counter()
            got = [r for r, _ in db.execute(sql, (m[s].tobytes(), k + 1))]
            ts.append(time.perf_counter() - t)
            scores = m @ m[s]
            want = set(np.argpartition(-scores, k)[: k + 1] + 1)
            agree += len(want & set(got))
        db.close()
    print(f"  sqlite-vec top-{k + 1} agreement with exact numpy: {agree / (queries * (k + 1)):.3f}")
    return [("sqlite-vec 1 seed", *pct(ts))]


def musdb_features() -> tuple[np.ndarray, list[str]]:
    """Mean+std of 20 MFCCs of each MUSDB preview's mixture (stream 0), with its genre."""
    import av
    import librosa

    with open(MUSDB / "genres.csv", newline="") as f:
        genres = {r["file"]: r["genre"] for r in csv.DictReader(f)}
    feats, labels = [], []
    for name, genre in sorted(genres.items()):
        with av.open(str(MUSDB / "train" / name)) as f:
            res = av.AudioResampler(format="flt", layout="mono", rate=22050)
            y = np.concatenate(
                [fr.to_ndarray().ravel() for p in f.decode(audio=0) for fr in res.resample(p)]
            )
        mf = librosa.feature.mfcc(y=y, sr=22050, n_mfcc=20)
        feats.append(np.concatenate([mf.mean(1), mf.std(1)]))
        labels.append(genre)
    x = np.asarray(feats, dtype=np.float32)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)  # standardise so no coefficient dominates the cosine
    return x, labels


def quality(draws: int = 1000, k: int = 5) -> None:
    x, labels = musdb_features()
    lab = np.asarray(labels)
    idx = VectorIndex(np.arange(len(x)), x)
    rng = np.random.default_rng(0)
    genres = [g for g in sorted(set(labels)) if (lab == g).sum() >= 3]
    print(f"  {len(x)} tracks; seed genres: {', '.join(genres)}")
    prec: dict[str, list[float]] = {"centroid": [], "rrf": [], "1 seed": []}
    for _ in range(draws):
        g = genres[rng.integers(len(genres))]
        seeds = rng.choice(np.flatnonzero(lab == g), 3, replace=False)
        for fusion in ("centroid", "rrf"):
            hits = idx.query(seeds, k, fusion=fusion)
            prec[fusion].append(np.mean([lab[h.id] == g for h in hits]))
        hits = idx.query(seeds[:1], k, exclude_ids=seeds[1:])
        prec["1 seed"].append(np.mean([lab[h.id] == g for h in hits]))
    for name, p in prec.items():
        print(f"  {name:>8}: genre precision@{k} = {np.mean(p):.3f} (over {draws} draws)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--vec-queries", type=int, default=50)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--no-sqlite-vec", action="store_true")
    ap.add_argument("--quality-only", action="store_true")
    a = ap.parse_args()
    with threadpool_limits(a.threads):
        if not a.quality_only:
            for n in a.sizes:
                print(f"\n## {n} tracks x {a.dim}-d, {a.threads} BLAS threads, top-{a.k}")
                m = unit_rows(n, a.dim)
                load_before = os.getloadavg()[0]
                rows = bench_index(m, a.queries, a.k)
                if not a.no_sqlite_vec:
                    rows += bench_sqlite_vec(m, a.vec_queries, a.k) or []
                load_after = os.getloadavg()[0]
                print(f"\n1-min load average: {load_before:.1f} before, {load_after:.1f} after")
                print("\n| query | p50 ms | p95 ms | min ms |\n|---|---:|---:|---:|")
                for name, p50, p95, low in rows:
                    print(f"| {name} | {p50:.2f} | {p95:.2f} | {low:.2f} |")
                del m
        print("\n## multi-seed fusion quality (MUSDB18 previews, MFCC features)")
        quality()


if __name__ == "__main__":
    main()
