"""Where the default tagger's CPU time goes, per track and stage, on real corpus tracks.

    python -m tools.bench.stage_cpu /work/data/corpus/warzone2100-music --tracks 30

Runs the pipeline's own steps serially in this thread — `models.inputs.prepare` (decode, resample,
log-mel), the default tagger's `analyse` (musicnn pair, mn04 with its mel) and `predictions`, and
one genre write on a copy of the file (`tags.write_genres`) — with one torch thread, and charges
each stage the CPU time (`time.process_time`) spent inside the function that does it. CPU time,
unlike wall time, does not count other jobs' turns, so the numbers hold on a loaded machine too.

The functions are timed by wrapping them (a few calls per track), not by cProfile: a
deterministic profiler charges every Python call it sees, which inflated the Python-heavy tag
write ~10x (31 % of the CPU in its table; 5–6 % timed this way). Indented rows are parts of the
row above; resampling is counted wherever it is called, so it overlaps decode.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from mgctag import tags
from mgctag.genres import default_map
from mgctag.library.rows import Track
from mgctag.models import inputs
from mgctag.models.audioset import CombinedTagger
from mgctag.models.inputs import InputPlan

Spent = dict[str, list[float]]  # stage -> [CPU seconds, calls]

# stage -> (module, attribute path) of the function whose inclusive CPU time is the stage's
STAGES: dict[str, tuple[str, str]] = {
    "prepare: decode, resample, log-mel (inputs.prepare)": ("mgctag.models.inputs", "prepare"),
    "  decode (decode.load_windows)": ("mgctag.audio.decode", "load_windows"),
    "  resample, every call (decode.convert)": ("mgctag.audio.decode", "convert"),
    "  musicnn log-mel (features.log_mel)": ("mgctag.audio.features", "log_mel"),
    "musicnn pair forward (EnsembleTagger.__call__)": (
        "mgctag.models.tagger",
        "EnsembleTagger.__call__",
    ),
    "mn04 forward incl. its mel (AudiosetNet.__call__)": (
        "mgctag.models.audioset",
        "AudiosetNet.__call__",
    ),
    "  mn04 mel (features.efficientat_mel)": ("mgctag.audio.features", "efficientat_mel"),
    "genres, gate, rows (CombinedTagger.predictions)": (
        "mgctag.models.audioset",
        "CombinedTagger.predictions",
    ),
    "  float32 re-run of a borderline track (CombinedTagger._float32_musicnn)": (
        "mgctag.models.audioset",
        "CombinedTagger._float32_musicnn",
    ),
    "genre tag write on a copy (tags.write_genres)": ("mgctag.tags.write", "write_genres"),
}


def _timed(fn: Callable[..., Any], spent: Spent, stage: str) -> Callable[..., Any]:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        t0 = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[stage][0] += time.process_time() - t0
            spent[stage][1] += 1

    return run


@contextmanager
def timing(spent: Spent) -> Iterator[None]:
    """Wrap every stage's function, wherever mgctag's modules hold it (`from x import f` makes
    copies), so its CPU time and calls add to `spent[stage]`; unwrapped again on exit."""
    undo: list[tuple[Any, str, Any]] = []
    for stage, (module_name, attr) in STAGES.items():
        owner: Any = importlib.import_module(module_name)
        *path, name = attr.split(".")
        for part in path:
            owner = getattr(owner, part)
        fn = owner.__dict__[name]
        wrapped = _timed(fn, spent, stage)
        holders = [owner] if path else [m for m in list(sys.modules.values()) if _holds(m, fn)]
        for holder in holders:
            for key, value in list(vars(holder).items()):
                if value is fn:
                    undo.append((holder, key, value))
                    setattr(holder, key, wrapped)
    try:
        yield
    finally:
        for holder, key, value in reversed(undo):
            setattr(holder, key, value)


def _holds(module: Any, fn: Any) -> bool:
    return getattr(module, "__name__", "").startswith(("mgctag", "tools")) and any(
        v is fn for v in vars(module).values()
    )


def run(files: Sequence[Path], scratch: Path) -> tuple[Spent, float, int]:
    """The stages over every file, timed; (per stage [CPU seconds, calls], CPU seconds in all,
    tracks)."""
    tagger, gmap = CombinedTagger(), default_map()
    plan = InputPlan((tagger.inputs,))
    spent: Spent = defaultdict(lambda: [0.0, 0])
    done, total = 0, 0.0
    with timing(spent):
        for i, path in enumerate(files):
            copy = scratch / f"{i:03d}{path.suffix}"
            shutil.copyfile(path, copy)
            t0 = time.process_time()
            item = inputs.prepare(Track.of_file(copy), plan)  # via the module: wrapped
            if item.error or item.skip:
                continue
            (out,) = tagger.analyse([item])
            rows = tagger.predictions(out, gmap)
            tags.write_genres(copy, [g for g, _ in rows[-1].genres[:2]])
            total += time.process_time() - t0
            done += 1
    return spent, total, done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--tracks", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(1)
    exts = (".ogg", ".opus", ".mp3", ".flac", ".m4a")
    files = sorted(p for f in args.folders for p in f.iterdir() if p.suffix in exts)
    files = files[: args.tracks]
    with tempfile.TemporaryDirectory() as tmp:
        spent, seconds, done = run(files, Path(tmp))
    per_track = 1000 * seconds / done
    print(f"{done} tracks, {per_track:.0f} CPU ms per track in all (1 torch thread)")
    print("| stage | CPU ms / track | share | calls |\n|---|---:|---:|---:|")
    for stage in STAGES:
        ms = 1000 * spent[stage][0] / done
        print(f"| {stage} | {ms:.0f} | {100 * ms / per_track:.0f} % | {spent[stage][1]:.0f} |")


if __name__ == "__main__":
    main()
