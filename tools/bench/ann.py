"""An ANN index for `similar` at catalogue size: usearch HNSW against today's exact search.

    pip install usearch==2.26.6          # for this benchmark only; mgctag does not import it
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 nice -n 19 \\
        python -m tools.bench.ann --tracks 1000000 --vectors real --out ann-1m.json

Vectors have the dimensionality of the default tagger's stored embedding (musicnn + mn04, 584-d):

- `--vectors real`: the 70 real MUSDB preview embeddings (`python -m
  tools.experiments.eval_similarity features musdb --separator none --mn04`, the `X_mix_mn04`
  rows), each replicated with noise drawn from the real vectors' own covariance (scaled by
  --noise), so the copies stay in the subspace real embeddings span (participation ratio ~15 of
  584 dimensions) instead of filling all 584.
- `--vectors store`: tools/bench/store.py's distribution (its real template track's embedding +
  0.5 x one of 256 Gaussian centres + 0.2 x isotropic Gaussian noise). Isotropic noise in 584-d
  makes every point of a cluster almost equally near: the hard case for any graph index.

The exact answer is mgctag's own search (`similar.VectorIndex.query` with the seed's id, the seed
excluded, as `mgctag similar` asks). The HNSW index (cosine, int8 or f16 storage) is built once,
then searched for the same seeds at each --ef (expansion_search), one query at a time with one
thread: recall@10 against the exact top-10, raw and after re-scoring --rerank candidates with the
float32 vectors (what an integration would do, as it keeps them anyway), and p50/p95 latency.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from mgctag.options import DEFAULT_TAGGER
from mgctag.search.similar import VectorIndex
from tools.bench.store import template

# Written by `python -m tools.experiments.eval_similarity features musdb --separator none --mn04
# --out F`.
MUSDB = Path("/work/data/musdb_feats.npz")


def real_vectors(
    n: int, noise: float, rng: np.random.Generator, source: Path = MUSDB, chunk: int = 100_000
) -> np.ndarray:
    """n copies of the real embeddings, each plus noise ~ N(0, noise^2 x their covariance)."""
    if not source.exists():
        raise SystemExit(
            f"{source}: no real embeddings; make them with tools.experiments.eval_similarity"
        )
    real = np.load(source)["X_mix_mn04"].astype(np.float32)
    centred = (real - real.mean(0)) / np.sqrt(len(real) - 1)  # z @ centred ~ N(0, cov)
    out = np.empty((n, real.shape[1]), dtype=np.float32)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        z = rng.standard_normal((m, len(real)), dtype=np.float32)
        out[s : s + m] = real[rng.integers(len(real), size=m)] + noise * (z @ centred)
    return out


def store_vectors(n: int, rng: np.random.Generator, chunk: int = 100_000) -> np.ndarray:
    """tools.bench.store's embeddings: template + 0.5 x a Gaussian centre + 0.2 x Gaussian noise."""

    (row,) = [r for r in template() if r["model"] == DEFAULT_TAGGER]
    base = np.asarray(row["embeddings"]["mix"], dtype=np.float32)
    centres = rng.standard_normal((256, len(base)), dtype=np.float32)
    out = np.empty((n, len(base)), dtype=np.float32)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        noise = rng.standard_normal((m, len(base)), dtype=np.float32)
        out[s : s + m] = base + 0.5 * centres[rng.integers(256, size=m)] + 0.2 * noise
    return out


def exact_answers(index: VectorIndex, seeds: np.ndarray) -> tuple[list[set[int]], list[float]]:
    """The exact top-10 of each seed (seed excluded) and the seconds each query took."""
    truth, times = [], []
    for tid in seeds:
        t0 = time.perf_counter()
        hits = index.query(np.array([tid]), 10)
        times.append(time.perf_counter() - t0)
        truth.append({h.id for h in hits})
    return truth, times


def build_hnsw(matrix: np.ndarray, args: argparse.Namespace):
    """The usearch index over `matrix` (ids are row numbers); (index, build seconds)."""
    try:
        from usearch.index import Index
    except ImportError:
        raise SystemExit("this benchmark needs usearch: pip install usearch==2.26.6") from None
    index = Index(
        ndim=matrix.shape[1],
        metric="cos",
        dtype=args.dtype,
        connectivity=args.connectivity,
        expansion_add=args.expansion_add,
    )
    keys = np.arange(len(matrix), dtype=np.uint64)
    t0 = time.perf_counter()
    step = 100_000
    for s in range(0, len(matrix), step):
        index.add(keys[s : s + step], matrix[s : s + step], threads=args.threads)
        print(
            f"  hnsw: {min(s + step, len(matrix))} added, {time.perf_counter() - t0:.0f} s",
            flush=True,
        )
    return index, time.perf_counter() - t0


def search_hnsw(
    index, matrix: np.ndarray, seeds: np.ndarray, truth: list[set[int]], ef: int, rerank: int
) -> dict:
    """Recall@10 (raw and re-scored) and latency of one-at-a-time searches at expansion `ef`."""
    index.expansion_search = ef
    raw, rescored, times = [], [], []
    depth = max(11, rerank + 1)
    for tid, exact in zip(seeds, truth, strict=True):
        t0 = time.perf_counter()
        found = index.search(matrix[tid], depth, threads=1).keys
        found = found[found != tid]
        times.append(time.perf_counter() - t0)
        raw.append(len(exact & set(int(k) for k in found[:10])) / 10)
        best = found[np.argsort(-(matrix[found] @ matrix[tid]), kind="stable")[:10]]
        rescored.append(len(exact & set(int(k) for k in best)) / 10)
    return {
        "ef": ef,
        "recall10": statistics.mean(raw),
        f"recall10_rerank{rerank}": statistics.mean(rescored),
        "recall10_min": min(raw),
        **_latency(times),
    }


def _latency(times: list[float]) -> dict:
    ms = sorted(t * 1000 for t in times)
    return {"p50_ms": statistics.median(ms), "p95_ms": ms[int(0.95 * (len(ms) - 1))]}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracks", type=int, default=1_000_000)
    ap.add_argument("--vectors", choices=("real", "store"), default="real")
    ap.add_argument("--noise", type=float, default=0.5, help="real: noise scale (x covariance)")
    ap.add_argument("--real-npz", type=Path, default=MUSDB, help="real: the X_mix_mn04 file")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--dtype", choices=("i8", "f16", "f32"), default="i8")
    ap.add_argument("--connectivity", type=int, default=16)
    ap.add_argument("--expansion-add", type=int, default=128)
    ap.add_argument("--ef", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--rerank", type=int, default=40, help="candidates re-scored in float32")
    ap.add_argument("--threads", type=int, default=2, help="threads for the HNSW build")
    ap.add_argument("--index-dir", type=Path, default=None, help="where to save the index")
    ap.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    args = ap.parse_args()
    out: dict = {"args": {k: str(v) for k, v in vars(args).items()}}
    rng = np.random.default_rng(0)

    t0 = time.perf_counter()
    if args.vectors == "real":
        vectors = real_vectors(args.tracks, args.noise, rng, args.real_npz)
    else:
        vectors = store_vectors(args.tracks, rng)
    exact = VectorIndex(np.arange(args.tracks), vectors)  # normalises in place: no second copy
    matrix = exact.matrix
    print(f"vectors: {matrix.shape}, {time.perf_counter() - t0:.0f} s", flush=True)
    seeds = rng.choice(args.tracks, args.queries, replace=False)
    truth, times = exact_answers(exact, seeds)
    out["exact"] = {"index_mb": exact.nbytes / 1e6, **_latency(times)}
    print("exact:", json.dumps(out["exact"]), flush=True)

    index, build_s = build_hnsw(matrix, args)
    out["hnsw"] = {"build_s": build_s, "memory_mb": index.memory_usage / 1e6}
    folder = args.index_dir or Path(tempfile.mkdtemp(prefix="mgctag-ann-"))
    file = folder / "index.usearch"
    index.save(str(file))
    out["hnsw"]["file_mb"] = file.stat().st_size / 1e6
    del index
    from usearch.index import Index

    t0 = time.perf_counter()
    index = Index.restore(str(file))
    out["hnsw"]["load_s"] = time.perf_counter() - t0
    print("hnsw:", json.dumps(out["hnsw"]), flush=True)
    out["search"] = []
    for ef in args.ef:
        got = search_hnsw(index, matrix, seeds, truth, ef, args.rerank)
        out["search"].append(got)
        print("search:", json.dumps(got), flush=True)
    file.unlink()
    if args.index_dir is None:
        folder.rmdir()
    out["peak_rss_mb"] = _rss_mb()
    out["threads_env"] = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    print(json.dumps(out, indent=1))
    if args.out:
        args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
