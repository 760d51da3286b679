"""Where the default tagger's CPU time goes, per track and stage, on real corpus tracks.

    python -m tools.bench.stage_cpu /work/data/corpus/warzone2100-music --tracks 30

Runs the pipeline's own steps serially in this thread — `models.inputs.prepare` (decode, resample,
log-mel), the default tagger's `analyse` (musicnn pair, mn04 with its mel) and `predictions`, and
one genre write on a copy of the file (`tags.write_genres`) — under cProfile with a CPU-time clock
and one torch thread, so the shares hold on a loaded machine too (wall time there does not: it
counts other jobs' turns). Prints CPU ms per track for each stage, from the cumulative time of the
function that does it (indented rows are parts of the row above; resampling is counted wherever
it is called, so it overlaps decode).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from mgctag import tags
from mgctag.genres import default_map
from mgctag.library.rows import Track
from mgctag.models.audioset import CombinedTagger
from mgctag.models.inputs import InputPlan, prepare

# stage -> (module file suffix, function name) whose cumulative CPU time is the stage's
STAGES: dict[str, tuple[str, str]] = {
    "prepare: decode, resample, log-mel (inputs.prepare)": ("models/inputs.py", "prepare"),
    "  decode (decode.load_windows)": ("audio/decode.py", "load_windows"),
    "  resample, every call (decode.convert)": ("audio/decode.py", "convert"),
    "  musicnn log-mel (features.log_mel)": ("audio/features.py", "log_mel"),
    "musicnn pair forward (EnsembleTagger.__call__)": ("models/tagger.py", "__call__"),
    "mn04 forward incl. its mel (AudiosetNet.__call__)": ("models/audioset.py", "__call__"),
    "  mn04 mel (features.efficientat_mel)": ("audio/features.py", "efficientat_mel"),
    "genres, gate, rows (CombinedTagger.predictions)": ("models/audioset.py", "predictions"),
    "genre tag write on a copy (tags.write_genres)": ("tags/write.py", "write_genres"),
}


def run(files: Sequence[Path], scratch: Path) -> tuple[pstats.Stats, float, int]:
    """The stages over every file, profiled; (stats, CPU seconds in all, tracks done)."""
    tagger, gmap = CombinedTagger(), default_map()
    plan = InputPlan((tagger.inputs,))
    prof = cProfile.Profile(time.process_time)
    done = 0
    t0 = time.process_time()
    for i, path in enumerate(files):
        copy = scratch / f"{i:03d}{path.suffix}"
        shutil.copyfile(path, copy)
        prof.enable()
        item = prepare(Track.of_file(copy), plan)
        if item.error or item.skip:
            prof.disable()
            continue
        (out,) = tagger.analyse([item])
        rows = tagger.predictions(out, gmap)
        tags.write_genres(copy, [g for g, _ in rows[-1].genres[:2]])
        prof.disable()
        done += 1
    return pstats.Stats(prof), time.process_time() - t0, done


def cumulative(stats: pstats.Stats, where: str, name: str) -> float:
    """CPU seconds under every function `name` defined in a file ending with `where`."""
    total = 0.0
    for (file, _, func), row in stats.stats.items():  # type: ignore[attr-defined]
        if func == name and file.endswith(where):
            total += row[3]
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--tracks", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(1)
    files = sorted(p for f in args.folders for p in f.iterdir() if p.suffix in (".ogg", ".opus"))
    files = files[: args.tracks]
    with tempfile.TemporaryDirectory() as tmp:
        stats, seconds, done = run(files, Path(tmp))
    print(f"{done} tracks, {1000 * seconds / done:.0f} CPU ms per track in all (1 torch thread)")
    print("| stage | CPU ms / track | share |\n|---|---:|---:|")
    for stage, (where, name) in STAGES.items():
        ms = 1000 * cumulative(stats, where, name) / done
        print(f"| {stage} | {ms:.0f} | {100 * ms / (1000 * seconds / done):.0f} % |")


if __name__ == "__main__":
    main()
