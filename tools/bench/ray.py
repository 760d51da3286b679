"""Local pipeline vs `--engine ray` with 1 and 2 workers, in one run on the same tracks.

    python -m tools.bench.ray --tracks 24 [--workers 1 2]

Copies real recordings from ../shared/audio/librosa (cycled) into a temp folder, then analyses
them with the default tagger on a fresh database per engine (dry run: no tag writes, so every
engine does the same work). The Ray cluster is local (as many CPUs as this machine has) and
started once, outside the timings; each Ray run includes its actors' model loads, which a
catalogue-size run pays once. Prints wall seconds, tracks/s, the ratio to local and the extra
seconds per track.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from mgctag import pipeline
from mgctag.library.db import Library
from tools.paths import LIBROSA

SPEECH_AND_SOUND = ("198-", "3436-", "5703-", "456440", "glacier", "pibble")  # not music


def build_folder(dest: Path, n: int) -> list[Path]:
    """n copies of the music recordings, cycled, each under its own name."""
    clips = sorted(p for p in LIBROSA.glob("*.hq.ogg") if not p.name.startswith(SPEECH_AND_SOUND))
    dest.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(clips[i % len(clips)], dest / f"{i:04d}.ogg")) for i in range(n)]


class Clock(pipeline.Progress):
    """When analysed tracks arrive: the first one's time includes every model load."""

    def __init__(self) -> None:
        self.analysing = False
        self.times: list[float] = []

    def stage(self, name: str, total: int) -> None:
        self.analysing = name == "analysing"

    def advance(self, n: int = 1) -> None:
        if self.analysing:
            self.times += [time.perf_counter()] * n


def timed(folder: Path, db: Path, opts: pipeline.TagOptions) -> tuple[float, int, float]:
    """Wall seconds, tracks analysed, and the steady rate (tracks/s after the first result)."""
    clock = Clock()
    with Library(db) as lib:
        t0 = time.perf_counter()
        s = pipeline.tag_paths(lib, [folder], opts, progress=clock)
        wall = time.perf_counter() - t0
    t = clock.times
    return wall, s.analysed, (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracks", type=int, default=24)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    import ray

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "Music"
        build_folder(folder, args.tracks)
        t0 = time.perf_counter()
        ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        print(
            f"ray.init (local cluster, {ray.cluster_resources()['CPU']:.0f} CPUs): "
            f"{time.perf_counter() - t0:.1f} s, outside the timings"
        )
        runs = [("local", pipeline.TagOptions(dry_run=True))] + [
            (f"ray, {w} worker(s)", pipeline.TagOptions(dry_run=True, engine="ray", workers=w))
            for w in args.workers
        ]
        rows = []
        for i, (name, opts) in enumerate(runs):
            rows.append((name, *timed(folder, Path(tmp) / f"{i}.db", opts)))
        ray.shutdown()
    base = rows[0][1]
    print(f"{args.tracks} tracks, {os.cpu_count()} cores, default tagger, dry run")
    print(f"load average (1, 5, 15 min) at the end: {os.getloadavg()}")
    head = ("engine", "analysed", "wall s", "tracks/s", "vs local", "extra s/track", "steady/s")
    print(f"{head[0]:<20}" + "".join(f"{h:>14}" for h in head[1:]))
    for name, seconds, analysed, steady in rows:
        extra = (seconds - base) / args.tracks
        print(
            f"{name:<20}{analysed:>14}{seconds:>14.1f}{args.tracks / seconds:>14.2f}"
            f"{base / seconds:>14.2f}{extra:>+14.2f}{steady:>14.2f}"
        )


if __name__ == "__main__":
    main()
