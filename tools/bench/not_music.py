"""What `scan`'s not-music list costs on a large library database.

    python -m tools.bench.not_music --tracks 300000 --db /tmp/nm_bench.db

Builds a database with mgctag's schema: TRACKS tracks in 1000 folders, each with the default
tagger's three prediction rows (one of every 500 tracks heard as speech), then times
`Library.heard_not_music` for the whole library and for one folder (best of 3).
"""

from __future__ import annotations

import argparse
import sqlite3
import time
from pathlib import Path

from mgctag.library.db import Library


def build(path: Path, n: int) -> None:
    path.unlink(missing_ok=True)
    Library(path).close()  # the schema
    con = sqlite3.connect(path)
    folder = [f"/music/a{i % 1000:04d}" for i in range(n + 1)]
    con.executemany(
        "INSERT INTO tracks (id, path, status) VALUES (?, ?, 'ok')",
        ((i, f"{folder[i]}/t{i:07d}.flac") for i in range(1, n + 1)),
    )
    stamp = "2026-12-01T10:00:00"
    rows = (
        (i, model, content, stamp)
        for i in range(1, n + 1)
        for model, content in (
            ("musicnn+mn04", "speech" if i % 500 == 0 else "music"),
            ("musicnn", None),
            ("audioset_mn04", None),
        )
    )
    con.executemany(
        "INSERT INTO predictions (track_id, model, content, created_at) VALUES (?, ?, ?, ?)", rows
    )
    con.commit()
    con.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracks", type=int, default=300_000)
    ap.add_argument("--db", type=Path, default=Path("/tmp/nm_bench.db"))
    a = ap.parse_args()
    build(a.db, a.tracks)
    lib = Library(a.db)
    for roots in (["/music"], ["/music/a0500"]):
        best, found = float("inf"), 0
        for _ in range(3):
            t0 = time.perf_counter()
            found = len(lib.heard_not_music(roots))
            best = min(best, time.perf_counter() - t0)
        print(f"{roots[0]}: {found} tracks heard as no music, {best:.3f} s")


if __name__ == "__main__":
    main()
