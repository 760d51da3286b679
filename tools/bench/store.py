"""The store at catalogue size: SQLite size, fill rate, `similar` load time, p50 and memory.

    python -m tools.bench.store --tracks 1000000 --db /tmp/store-1m.db
    python -m tools.bench.store --measure /tmp/store-1m.db      # again, on an existing store
    python -m tools.bench.store --tracks 1000000 --similar-only --db /tmp/sim-1m.db

Each track gets exactly the rows the default tagger stores (one real clip analysed here gives
the template: three prediction rows with their genres, tags, content windows, and the 200-, 384-
and 584-d embeddings); embeddings are the template's plus clustered noise so that top-k is not
degenerate. Measuring runs in a fresh process: `library_index` (what the first `similar` of a
process pays: matrix + track rows from SQLite, exact index), then `similar_tracks` p50 over 30
random seeds, and the process's peak RSS. `--similar-only` keeps only the rows `similar` reads
(the track row and the default tagger's 584-d embedding; no predictions, no per-model embeddings):
the smallest store the exact search can run on.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mgctag import pipeline
from mgctag.library.db import Library
from mgctag.options import DEFAULT_TAGGER
from mgctag.search import similar
from tools.paths import LIBROSA, REPO

CLIP = LIBROSA / "Kevin_MacLeod_-_Vibe_Ace.hq.ogg"


def template() -> list[dict]:
    """The rows the default tagger stores for one real track (analysed here, dry run)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "Music"
        folder.mkdir()
        (folder / "a.ogg").write_bytes(CLIP.read_bytes())
        with Library(Path(tmp) / "t.db") as lib:
            pipeline.tag_paths(lib, [folder], pipeline.TagOptions(dry_run=True))
            (track,) = lib.iter_tracks()
            preds = lib.get_predictions(track["id"])
            return [
                {
                    "model": model,
                    "separator": p["separator"],
                    "tags": p["tags"],
                    "genres": [tuple(g) for g in p["genres"]],
                    "content": p["content"],
                    "windows": p["windows"],
                    "embeddings": lib.get_embeddings(track["id"], model),
                }
                for model, p in preds.items()
            ]


def fill(
    path: Path, n: int, rows: list[dict], chunk: int = 20_000, library: type[Library] = Library
) -> float:
    """n tracks with the template's rows, stored by `library` (release 5's writer for a store to
    convert: tests/library_v5.py); seconds taken."""
    rng = np.random.default_rng(0)
    centres = {
        r["model"]: rng.standard_normal((256, len(r["embeddings"]["mix"])), dtype=np.float32)
        for r in rows
    }
    t0 = time.perf_counter()
    with library(path) as lib:
        for start in range(0, n, chunk):
            with lib.transaction():
                for i in range(start, min(n, start + chunk)):
                    tid = lib.upsert_track(
                        {"path": f"/catalogue/{i // 1000:04d}/{i:07d}.flac", "size": i, "mtime": i}
                    )
                    c = int(rng.integers(256))
                    for r in rows:
                        v = r["embeddings"]["mix"] + 0.5 * centres[r["model"]][c]
                        v = v + 0.2 * rng.standard_normal(len(v), dtype=np.float32)
                        lib.save_analysis(
                            tid,
                            r["model"],
                            r["separator"],
                            r["tags"],
                            r["genres"],
                            {"mix": v},
                            content=r["content"],
                            windows=r["windows"],
                        )
            print(f"  {min(n, start + chunk)} tracks, {time.perf_counter() - t0:.0f} s", flush=True)
    return time.perf_counter() - t0


def grow(path: Path, n: int) -> float:
    """Copy the store's tracks (ids 1..B, filled through the API) with all their rows until it
    holds n: the same bytes per track as the API writes, at SQL speed; seconds taken.

    The copies' embeddings equal their originals', which changes no cost of an exact search.
    """
    import sqlite3

    t0 = time.perf_counter()
    db = sqlite3.connect(path)
    (base,) = db.execute("SELECT max(id) FROM tracks").fetchone()
    cols = {t: [r[1] for r in db.execute(f"PRAGMA table_info({t})")] for t in TABLES}
    for k in range(1, -(-n // base)):
        limit = min(base, n - k * base)
        with db:
            for table, key in TABLES.items():
                rest = ", ".join(c for c in cols[table] if c not in (key, "path"))
                new = f"{key} + {k * base}" + (f", path || '#{k}'" if table == "tracks" else "")
                old = key + (", path" if table == "tracks" else "")
                db.execute(
                    f"INSERT INTO {table} ({old}, {rest}) SELECT {new}, {rest} FROM {table}"
                    f" WHERE {key} <= {limit}"
                )
        print(f"  {k * base + limit} tracks, {time.perf_counter() - t0:.0f} s", flush=True)
    db.close()
    return time.perf_counter() - t0


def drop_predictions(path: Path) -> None:
    """Delete the prediction rows (`similar` reads only tracks and embeddings)."""
    import sqlite3

    db = sqlite3.connect(path)
    with db:
        db.execute("DELETE FROM predictions")
    db.execute("VACUUM")
    db.close()


TABLES = {"tracks": "id", "predictions": "track_id", "embeddings": "track_id"}


def measure(path: Path, queries: int = 30) -> dict:
    """Load + query cost of `similar` on this store, in this (fresh) process."""
    with Library(path) as lib:
        model = similar.default_embedding_model(lib)
        t0 = time.perf_counter()
        li = similar.library_index(lib, model)
        load = time.perf_counter() - t0
        ids = np.random.default_rng(1).choice(li.index.ids, queries, replace=False)
        times = []
        for tid in ids:
            t0 = time.perf_counter()
            similar.similar_tracks(lib, [int(tid)], model=model, k=10)
            times.append(time.perf_counter() - t0)
    return {
        "model": model,
        "tracks": len(li.index),
        "dim": li.index.dim,
        "index_mb": li.index.nbytes / 1e6,
        "load_s": load,
        "similar_p50_ms": statistics.median(times) * 1000,
        "similar_p95_ms": float(np.percentile(times, 95)) * 1000,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracks", type=int, default=1_000_000)
    ap.add_argument("--db", type=Path, default=None)
    ap.add_argument("--measure", type=Path, default=None, help="only measure this store")
    ap.add_argument("--api-tracks", type=int, default=None, help="fill only these through the API")
    ap.add_argument(
        "--similar-only", action="store_true", help="only the rows `similar` reads (see above)"
    )
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    path = args.db or Path(tempfile.mkdtemp(prefix="mgctag-store-")) / "store.db"
    if path.exists():
        raise SystemExit(f"{path}: exists; give a new path")
    api = min(args.api_tracks or args.tracks, args.tracks)
    rows = template()
    if args.similar_only:
        rows = [r for r in rows if r["model"] == DEFAULT_TAGGER]
    seconds = fill(path, api, rows)
    print(f"fill through the API: {api} tracks, {seconds:.0f} s ({api / seconds:.0f} tracks/s)")
    if args.similar_only:
        drop_predictions(path)
    if api < args.tracks:
        print(f"grow by SQL copies to {args.tracks}: {grow(path, args.tracks):.0f} s")
    size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    print(f"store: {args.tracks} tracks, {size / 1e9:.2f} GB ({size / args.tracks:.0f} B/track)")
    cmd = [sys.executable, "-m", "tools.bench.store", "--measure", str(path.resolve())]
    run = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO)
    got = json.loads(run.stdout)
    print(json.dumps(got, indent=1))
    print(f"threads: {os.cpu_count()} cores (BLAS default)")


if __name__ == "__main__":
    main()
