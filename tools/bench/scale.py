"""The compact store and the similarity index at catalogue size (docs/scale.md).

    python -m tools.bench.scale store --tracks 1000000 --db /work/data/scale/store-1m.db
    python -m tools.bench.scale measure --db /work/data/scale/store-1m.db --queries 300
    python -m tools.bench.scale first --db /work/data/scale/store-1m.db   # one fresh `similar`
    python -m tools.bench.scale threshold --sizes 10000 30000 100000 --dir /work/data/scale
    python -m tools.bench.scale convert --tracks 1000000 --db /work/data/scale/v5-1m.db
    python -m tools.bench.scale layout --db /work/data/scale/store-1m.db  # an index built before
    python -m tools.bench.scale cold --db /work/data/scale/store-1m.db  # where the time goes
    python -m tools.bench.scale pages --db /work/data/scale/store-1m.db --queries 20 --efs 128 64

`store`: tools.bench.store's synthetic library (each track gets exactly the rows the default
tagger stores; `--api-tracks` tracks go through `Library.save_analysis`, the rest are SQL copies of
those rows, the same bytes a track), then every track's 584-d vector, the one `similar` searches,
is replaced by a distinct real-ish one: one of the real default-tagger embeddings in `--real` (a
library of real recordings tagged with `mgctag tag DIR... --dry-run --db REAL`: the Debian
game-music corpus, or the MUSDB previews and shared recordings) plus noise drawn from the real
vectors' own covariance (x --noise), so the million stay in the subspace real embeddings span
(as the earlier ANN measurement did with 70 MUSDB vectors).

`measure`: the exact top 10 of --queries random seeds (in this process, all vectors in memory),
the index build (timed), then in fresh processes: `mgctag similar ID --json` end to end
(`/usr/bin/time`: wall seconds, peak RSS), first with the store and index evicted from the page
cache (posix_fadvise, these files only), and a process calling `similar_tracks` for every seed
(first answer, p50/p95 of the rest, recall@10 against the exact answers, peak RSS): once from a
cold cache, once after reading the store and index whole (warm: what a machine with the RAM to
cache 8 GB sees in steady state).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from mgctag.library.db import Library
from mgctag.options import DEFAULT_TAGGER
from tools.bench.store import fill, grow, template
from tools.paths import REPO

# Real default-tagger embeddings: real recordings tagged (dry run) into this library (--real).
REAL = Path("/work/data/similar/corpus.db")


def real_vectors(n: int, noise: float, rng: np.random.Generator, source: Path = REAL) -> np.ndarray:
    """n unit vectors: real default-tagger embeddings plus noise ~ N(0, noise² x their cov)."""
    with Library(source) as lib:
        base = lib.embedding_matrix(DEFAULT_TAGGER)[1]
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    centred = (base - base.mean(0)) / np.sqrt(len(base) - 1)
    out = np.empty((n, base.shape[1]), np.float32)
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        z = rng.standard_normal((m, len(base)), dtype=np.float32)
        out[s : s + m] = base[rng.integers(len(base), size=m)] + noise * (z @ centred)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def distinct_vectors(path: Path, noise: float, real: Path = REAL, seed: int = 0) -> float:
    """Give every track's default-tagger vector a distinct real-ish value (float16, as stored)."""
    t0 = time.perf_counter()
    db = sqlite3.connect(path)
    rows = db.execute(
        "SELECT rowid FROM embeddings WHERE model = ? AND stem = 'mix' ORDER BY rowid",
        [DEFAULT_TAGGER],
    ).fetchall()
    vectors = real_vectors(len(rows), noise, np.random.default_rng(seed), real)
    for s in range(0, len(rows), 50_000):
        with db:
            db.executemany(
                "UPDATE embeddings SET vector = ? WHERE rowid = ?",
                [
                    (vectors[i].astype("<f2").tobytes(), rows[i][0])
                    for i in range(s, min(len(rows), s + 50_000))
                ],
            )
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return time.perf_counter() - t0


def name_tracks(path: Path) -> float:
    """Give every track its own title, and artists and albums as a catalogue has them (20 tracks
    an artist, 10 an album): the copies made by `grow` would otherwise share their original's
    tags, and tags that name the same song make versions (search/versions.py)."""
    t0 = time.perf_counter()
    db = sqlite3.connect(path)
    with db:
        db.execute(
            "UPDATE tracks SET artist = 'Artist ' || (id / 20), album = 'Album ' || (id / 10),"
            " title = 'Title ' || id"
        )
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return time.perf_counter() - t0


def store_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())


def build_store(args: argparse.Namespace) -> dict[str, Any]:
    path: Path = args.db
    if path.exists():
        raise SystemExit(f"{path}: exists; give a new path")
    path.parent.mkdir(parents=True, exist_ok=True)
    api = min(args.api_tracks, args.tracks)
    rows = template()
    out: dict[str, Any] = {"tracks": args.tracks, "api_tracks": api}
    seconds = fill(path, api, rows)
    out["api_tracks_per_s"] = api / seconds
    out["api_bytes_per_track"] = store_size(path) / api
    if api < args.tracks:
        out["grow_s"] = grow(path, args.tracks)
    out["vectors_s"] = distinct_vectors(path, args.noise, args.real)
    out["names_s"] = name_tracks(path)
    size = store_size(path)
    out["bytes"], out["bytes_per_track"] = size, size / args.tracks
    out["tables"] = table_sizes(path)
    return out


def table_sizes(path: Path) -> dict[str, float]:
    """Bytes a track per table and index (SQLite's dbstat), when this SQLite has dbstat."""
    db = sqlite3.connect(path)
    try:
        (n,) = db.execute("SELECT count(*) FROM tracks").fetchone()
        rows = db.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall()
    except sqlite3.OperationalError:
        return {}
    finally:
        db.close()
    return {name: size / n for name, size in sorted(rows, key=lambda r: -r[1])}


# --- measuring ---------------------------------------------------------------------------------


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def exact_truth(path: Path, queries: int, seed: int = 1) -> dict[str, Any]:
    """Random seeds and their exact top 10 (seed excluded), from every vector in memory (kept
    beside the store: minutes at a million tracks)."""
    from mgctag.search.similar import VectorIndex

    cache = path.with_name(f"{path.name}.truth-{queries}-{seed}.json")
    if cache.exists():
        saved = json.loads(cache.read_text())
        return {"seeds": saved["seeds"], "truth": {int(k): v for k, v in saved["truth"].items()}}
    with Library(path) as lib:
        ids, matrix = lib.embedding_matrix(DEFAULT_TAGGER)
    index = VectorIndex(ids, matrix)
    seeds = np.random.default_rng(seed).choice(ids, queries, replace=False)
    truth = {int(s): [h.id for h in index.query(np.array([s]), 10)] for s in seeds}
    result = {"seeds": [int(s) for s in seeds], "truth": truth}
    cache.write_text(json.dumps(result))
    return result


def queries_in_process(
    path: Path, seeds: list[int], method: str, settings: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What a fresh process pays: first `similar_tracks`, then the rest (run in a subprocess).
    `settings`: values for module constants: ann's EXPANSION_SEARCH and INDEX_ADVICE, and
    vectorfile's PREFETCH (0 turns it off)."""
    from mgctag.search import ann, vectorfile
    from mgctag.search.similar import similar_tracks

    for name, value in (settings or {}).items():
        setattr(vectorfile if name == "PREFETCH" else ann, name, value)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    lib = Library(path)
    opened = time.perf_counter() - t0
    answers, times = {}, []
    for s in seeds:
        t = time.perf_counter()
        hits = similar_tracks(
            lib, [s], model=DEFAULT_TAGGER, k=10, all_versions=True, method=method
        )
        times.append(time.perf_counter() - t)
        answers[s] = [h["id"] for h in hits]
    folded = []
    for s in seeds[:50]:
        t = time.perf_counter()
        similar_tracks(lib, [s], model=DEFAULT_TAGGER, k=10, method=method)
        folded.append(time.perf_counter() - t)
    rest = sorted(x * 1000 for x in times[1:])
    return {
        "open_s": opened,
        "first_s": times[0],
        "p50_ms": statistics.median(rest),
        "p95_ms": rest[int(0.95 * (len(rest) - 1))],
        "folded_p50_ms": statistics.median(x * 1000 for x in folded[1:]),
        "peak_rss_mb": _peak_rss_mb(),
        "load": [load_before, os.getloadavg()],
        "answers": answers,
    }


def breakdown(
    path: Path, queries: int, settings: dict[str, Any], cold: bool = True
) -> dict[str, Any]:
    """Where a query's time goes (run in a fresh process: `--cold`/`--warm` steps): the graph
    search (`Ann.search`), the vector file's rows (`VectorFile.get`) and SQLite's track rows
    (`Library.tracks_by_ids`) of each of `queries` `similar_tracks`, after evicting the store's
    files (`cold`) or with them as the last run left them. Medians over all but the first."""
    from mgctag.search import ann, vectorfile
    from mgctag.search.similar import similar_tracks

    for name, value in settings.items():
        setattr(vectorfile if name == "PREFETCH" else ann, name, value)
    spent = {"graph": 0.0, "vectors": 0.0, "sqlite": 0.0}

    def timed(part: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[part] += time.perf_counter() - t

        return wrapper

    ann.Ann.search = timed("graph", ann.Ann.search)  # type: ignore[method-assign]
    vectorfile.VectorFile.get = timed("vectors", vectorfile.VectorFile.get)  # type: ignore[method-assign]
    Library.tracks_by_ids = timed("sqlite", Library.tracks_by_ids)  # type: ignore[method-assign]
    seeds = exact_truth(path, queries)["seeds"]
    if cold:
        evict(path)
    load = os.getloadavg()
    rows = []
    with Library(path) as lib:
        for seed in seeds:
            spent.update(dict.fromkeys(spent, 0.0))
            t = time.perf_counter()
            similar_tracks(lib, [seed], model=DEFAULT_TAGGER, k=10, all_versions=True)
            rows.append({"total": time.perf_counter() - t, **spent})
    ms = {k: [r[k] * 1000 for r in rows] for k in rows[0]}
    return {
        "cold": cold,
        "settings": settings,
        "code": ann.__file__,
        "first_ms": {k: round(v[0], 2) for k, v in ms.items()},
        "median_ms": {k: round(statistics.median(v[1:]), 2) for k, v in ms.items()},
        "p95_total_ms": round(sorted(ms["total"][1:])[int(0.95 * (len(rows) - 2))], 2),
        "load": [load, os.getloadavg()],
    }


def pages_touched(path: Path, index_file: Path, queries: int, ef: int) -> dict[str, Any]:
    """Distinct pages of the index file one graph search reads, each from a cold cache: the
    file mapped with MADV_RANDOM (no read-ahead: a page read is a page the search touched),
    unmapped and evicted before each of `queries` seeds' searches (41 neighbours, as `similar`
    asks), counted by `fincore`. `index_file` may be a copy laid out another way."""
    import mmap

    from usearch.index import Index

    seeds = exact_truth(path, 300)["seeds"][:queries]
    with open(index_file, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    mapped.madvise(mmap.MADV_RANDOM)
    index: Any = Index.restore(memoryview(mapped), view=True)
    index.expansion_search = ef
    vectors = np.memmap(f"{ann_path(path)}.f16", "<f2", mode="r").reshape(-1, index.ndim)
    counts = []
    for seed in seeds:
        q = vectors[seed].astype(np.float32)
        mapped.madvise(mmap.MADV_DONTNEED)
        fd = os.open(index_file, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
        before = _resident_pages(index_file)
        index.search(q / np.linalg.norm(q), 41, threads=1)
        counts.append(_resident_pages(index_file) - before)
    del index
    return {
        "index": str(index_file),
        "ef": ef,
        "pages_median": statistics.median(counts),
        "pages_mean": statistics.mean(counts),
        "file_pages": index_file.stat().st_size // mmap.PAGESIZE,
        "load": os.getloadavg(),
    }


def _resident_pages(path: Path) -> int:
    out = subprocess.run(["fincore", "-b", "-n", "-o", "RES", str(path)], capture_output=True)
    return int(out.stdout.split()[0]) // 4096


def ann_path(path: Path) -> Path:
    """The default tagger's index file of the store at `path`."""
    from mgctag.search import ann

    return ann.index_path(path, DEFAULT_TAGGER, "mix")


def _peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM: ru_maxrss would carry the parent's over exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return _rss_mb()


def sweep(path: Path, queries: int, efs: list[int], candidates: list[int]) -> list[dict[str, Any]]:
    """Recall@10 and latency of the index path at other search settings (one process, each
    setting over the same seeds; the settings are ann's module constants)."""
    from mgctag.search import ann
    from mgctag.search.similar import similar_tracks

    truth = exact_truth(path, queries)
    out = []
    with Library(path) as lib:
        for ef in efs:
            for cand in candidates:
                ann.EXPANSION_SEARCH, ann.CANDIDATES = ef, cand
                times, recall = [], []
                for s in truth["seeds"]:
                    t = time.perf_counter()
                    hits = similar_tracks(
                        lib, [s], model=DEFAULT_TAGGER, k=10, all_versions=True, method="ann"
                    )
                    times.append(time.perf_counter() - t)
                    got = {h["id"] for h in hits}
                    recall.append(len(got & set(truth["truth"][s])) / 10)
                ms = sorted(x * 1000 for x in times[1:])
                row = {
                    "ef": ef,
                    "candidates": cand,
                    "recall10": statistics.mean(recall),
                    "recall10_min": min(recall),
                    "below_0.5": sum(r < 0.5 for r in recall),
                    "p50_ms": statistics.median(ms),
                    "p95_ms": ms[int(0.95 * (len(ms) - 1))],
                    "load": os.getloadavg(),
                }
                print(json.dumps(row), flush=True)
                out.append(row)
    return out


def evict(path: Path) -> None:
    """Drop the store's and its index's pages from the page cache (posix_fadvise DONTNEED: only
    these files; nobody else's cache is touched), so the next `similar` starts cold."""
    for f in path.parent.glob(path.name + "*"):
        if f.is_file():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def cached_mb(path: Path) -> dict[str, float]:
    """MB of each of the store's files in the page cache (util-linux `fincore`): after a cold
    run, what it read, read-ahead included."""
    out = {}
    for f in sorted(path.parent.glob(path.name + "*")):
        proc = subprocess.run(
            ["fincore", "-b", "-n", "-o", "RES", str(f)], capture_output=True, text=True
        )
        if proc.returncode == 0 and proc.stdout.split():
            out[f.name[len(path.name) :] or "db"] = int(proc.stdout.split()[0]) / 1e6
    return out


def lay_out(path: Path) -> dict[str, Any]:
    """Lay out an existing index as `ann.build` now does (usearch's compaction), in place: the
    same graph in another order, so a store's index need not be rebuilt to compare the two."""
    from mgctag.search import ann

    t0 = time.perf_counter()
    with Library(path) as lib:
        opened = ann.open_index(lib, DEFAULT_TAGGER, "mix", build_missing=False)
        if opened is None:
            raise SystemExit(f"{path}: no index to lay out")
        loaded = ann._restore(opened.path)
        ann._lay_out(loaded)
        opened.index, opened.viewed, opened.mapping = loaded, False, None
        ann.save(opened)
    ann.forget()
    return {"lay_out_s": time.perf_counter() - t0, "load": os.getloadavg()}


def warm(path: Path) -> float:
    """Read the store and its index once, so their pages are in the page cache (the steady
    state of a machine with the RAM to hold them: 8 GB here at a million tracks); seconds."""
    t0 = time.perf_counter()
    for f in path.parent.glob(path.name + "*"):
        if f.is_file():
            with open(f, "rb") as fh:
                while fh.read(1 << 24):
                    pass
    return time.perf_counter() - t0


def cli_first_answer(path: Path, seed: int, *extra: str, cold: bool = False) -> dict[str, Any]:
    """`mgctag similar ID --db PATH --json` in a fresh process: wall seconds and peak RSS; with
    `cold`, after evicting the store and index from the page cache."""
    if cold:
        evict(path)
    mgctag = Path(sys.executable).with_name("mgctag")
    cmd = ["/usr/bin/time", "-f", "%e %M", str(mgctag), "similar", str(seed), "--db", str(path)]
    proc = subprocess.run([*cmd, "--json", *extra], capture_output=True, text=True, check=False)
    wall, rss_kb = proc.stderr.strip().splitlines()[-1].split()
    return {
        "seed": seed,
        "cold": cold,
        "args": list(extra),
        "code": proc.returncode,
        "wall_s": float(wall),
        "peak_rss_mb": int(rss_kb) / 1024,
        "hits": len(json.loads(proc.stdout)) if proc.returncode == 0 else proc.stderr[-300:],
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from mgctag.search import ann

    path: Path = args.db
    out: dict[str, Any] = {"db": str(path), "bytes": store_size(path)}
    t0 = time.perf_counter()
    truth = exact_truth(path, args.queries)
    out["exact_truth_s"] = time.perf_counter() - t0
    out["exact_truth_peak_rss_mb"] = _rss_mb()
    index_file = ann.index_path(path, DEFAULT_TAGGER, "mix")
    if args.method == "ann" and not index_file.exists():
        t0 = time.perf_counter()
        with Library(path) as lib:
            built = ann.build(lib, DEFAULT_TAGGER, "mix")
        out["build_s"] = time.perf_counter() - t0
        out["index_bytes"] = index_file.stat().st_size
        out["index_vectors"] = len(built)
        del built
        ann.forget()
    print(json.dumps({k: v for k, v in out.items()}), flush=True)
    seeds = truth["seeds"]
    out["cli"] = [cli_first_answer(path, s, cold=True) for s in seeds[:2]]
    out["cli"] += [cli_first_answer(path, s) for s in seeds[2:4]]
    out["cli"] += [cli_first_answer(path, s, "--all-versions") for s in seeds[4:6]]
    print(json.dumps(out["cli"]), flush=True)
    evict(path)  # the first queries below start from a cold cache too, then all from a warm one
    settings = {"EXPANSION_SEARCH": args.ef, "INDEX_ADVICE": args.advice, "PREFETCH": args.prefetch}
    settings = {k: v for k, v in settings.items() if v is not None}
    out["settings"] = settings
    code = (
        "import json, sys; from tools.bench.scale import queries_in_process;"
        f" print(json.dumps(queries_in_process(__import__('pathlib').Path({str(path)!r}),"
        f" {seeds!r}, {args.method!r}, {settings!r})))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path.cwd()
    )
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    recall = [len(set(got["answers"][str(s)]) & set(truth["truth"][s])) / 10 for s in seeds]
    out["in_process"] = {k: v for k, v in got.items() if k != "answers"}
    out["read_by_cold_run_mb"] = cached_mb(path)
    out["warm_read_s"] = warm(path)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path.cwd()
    )
    warm_got = json.loads(proc.stdout.strip().splitlines()[-1])
    out["in_process_warm"] = {k: v for k, v in warm_got.items() if k != "answers"}
    out["cli_warm"] = [cli_first_answer(path, s) for s in seeds[6:8]]
    out["recall10"] = statistics.mean(recall)
    out["recall10_min"] = min(recall)
    out["load"] = os.getloadavg()
    return out


def threshold(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Exact vs the index at each size: a fresh `mgctag similar`'s wall time and the p50."""
    from mgctag.search import ann

    rows = template()
    results = []
    for n in args.sizes:
        path = args.dir / f"threshold-{n}.db"
        if not path.exists():
            fill(path, min(n, 20_000), rows)
            if n > 20_000:
                grow(path, n)
            distinct_vectors(path, args.noise, args.real)
            name_tracks(path)
        truth = exact_truth(path, 100)
        for method in ("exact", "ann"):
            index_file = ann.index_path(path, DEFAULT_TAGGER, "mix")
            if method == "exact":
                for f in (index_file, Path(f"{index_file}.json")):
                    f.unlink(missing_ok=True)
            row: dict[str, Any] = {"tracks": n, "method": method}
            if method == "ann":
                t0 = time.perf_counter()
                with Library(path) as lib:
                    ann.build(lib, DEFAULT_TAGGER, "mix")
                ann.forget()
                row["build_s"] = time.perf_counter() - t0
            row["cli"] = [cli_first_answer(path, s) for s in truth["seeds"][:2]]
            code = (
                "import json; from tools.bench.scale import queries_in_process;"
                f" print(json.dumps(queries_in_process(__import__('pathlib').Path({str(path)!r}),"
                f" {truth['seeds']!r}, {method!r})))"
            )
            proc = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            )
            got = json.loads(proc.stdout.strip().splitlines()[-1])
            row["recall10"] = statistics.mean(
                len(set(got["answers"][str(s)]) & set(truth["truth"][s])) / 10
                for s in truth["seeds"]
            )
            row.update({k: v for k, v in got.items() if k != "answers"})
            row["load"] = os.getloadavg()
            print(json.dumps(row), flush=True)
            results.append(row)
    return results


def convert(args: argparse.Namespace) -> dict[str, Any]:
    """A release-5 library of --tracks tracks (made once at --db: the template's rows stored by
    release 5's own `save_analysis`, kept in tests/library_v5.py: scores as JSON, embeddings as
    float32; then SQL copies), and the first open by today's code, which converts it in place
    (schema 6's step, then the rows 500 tracks a transaction), timed in a fresh process."""
    path: Path = args.db
    out: dict[str, Any] = {"db": str(path), "tracks": args.tracks}
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        sys.path.insert(0, str(REPO / "tests"))
        from library_v5 import LibraryV5  # type: ignore[import-not-found]

        api = min(args.api_tracks, args.tracks)
        out["v5_api_s"] = fill(path, api, template(), library=LibraryV5)
        if api < args.tracks:
            out["v5_grow_s"] = grow(path, args.tracks)
    out["v5_bytes"] = store_size(path)
    out["load_before"] = os.getloadavg()
    print(json.dumps(out), flush=True)
    code = (
        "import logging; logging.basicConfig(level=logging.INFO, format='%(asctime)s %(message)s');"
        " from pathlib import Path; from mgctag.library.db import Library;"
        f" Library(Path({str(path)!r})).close()"
    )
    cmd = ["/usr/bin/time", "-f", "%e %U %S %M", sys.executable, "-c", code]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=REPO)
    lines = proc.stderr.strip().splitlines()
    wall, user, system, rss_kb = lines[-1].split()
    out.update(
        code=proc.returncode,
        convert_wall_s=float(wall),
        convert_cpu_s=float(user) + float(system),
        convert_peak_rss_mb=int(rss_kb) / 1024,
        progress=lines[:-1][-20:],
        bytes_after=store_size(path),
        load_after=os.getloadavg(),
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    steps = ["store", "name", "measure", "sweep", "first", "threshold", "convert", "layout"]
    steps += ["cold", "warm", "pages"]
    ap.add_argument("step", choices=steps)
    ap.add_argument("--efs", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--candidates", type=int, nargs="+", default=[40, 100])
    ap.add_argument("--db", type=Path, default=Path("/work/data/scale/store-1m.db"))
    ap.add_argument("--dir", type=Path, default=Path("/work/data/scale"))
    ap.add_argument("--tracks", type=int, default=1_000_000)
    ap.add_argument("--api-tracks", type=int, default=20_000)
    ap.add_argument("--noise", type=float, default=0.5)
    ap.add_argument("--real", type=Path, default=REAL, help="library of real embeddings")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--method", choices=("ann", "exact"), default="ann")
    ap.add_argument("--ef", type=int, default=None, help="measure: expansion_search")
    ap.add_argument("--advice", default=None, help="measure: INDEX_ADVICE (MADV_RANDOM, ...)")
    ap.add_argument("--prefetch", type=int, default=None, help="measure: vectorfile.PREFETCH")
    ap.add_argument("--index", type=Path, default=None, help="pages: this index file instead")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    ap.add_argument("--out", type=Path, default=None, help="also write the result as JSON")
    args = ap.parse_args()
    result: Any
    if args.step == "store":
        result = build_store(args)
    elif args.step == "sweep":
        result = sweep(args.db, args.queries, args.efs, args.candidates)
    elif args.step == "name":
        result = {"names_s": name_tracks(args.db), "bytes": store_size(args.db)}
        result["tables"] = table_sizes(args.db)
    elif args.step == "measure":
        result = measure(args)
    elif args.step == "convert":
        result = convert(args)
    elif args.step == "layout":
        result = lay_out(args.db)
    elif args.step == "pages":
        index_file = args.index or ann_path(args.db)
        result = [pages_touched(args.db, index_file, args.queries, ef) for ef in args.efs]
    elif args.step in ("cold", "warm"):
        settings = {"EXPANSION_SEARCH": args.ef, "INDEX_ADVICE": args.advice}
        settings |= {"PREFETCH": args.prefetch}
        settings = {k: v for k, v in settings.items() if v is not None}
        result = breakdown(args.db, args.queries, settings, cold=args.step == "cold")
    elif args.step == "first":
        with Library(args.db) as lib:
            (seed,) = lib.db.conn.execute("SELECT max(id) / 2 FROM tracks").fetchone()
        result = cli_first_answer(args.db, int(seed))
    else:
        args.dir.mkdir(parents=True, exist_ok=True)
        result = threshold(args)
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
