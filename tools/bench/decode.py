"""Benchmark decoding: 3×10 s analysis windows at 16 kHz mono per format; windowed vs whole file.

    python -m tools.bench.decode [--corpus /work/corpus] [--work /tmp/mgctag-bench] [--repeats 3]

Full-length real tracks: ../shared/audio/arcade/*.mp3 (and transcodes of them into every other
format that tests/media.py makes), plus the Ogg Vorbis/Opus/MP3 game soundtracks in --corpus when
present.
For the long-file comparison the arcade tracks are joined into one ≥10 min FLAC and M4A (AAC).
Prints a Markdown table; times are medians over --repeats runs, wall clock and CPU (process) time.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from mgctag.audio.decode import load, load_windows, probe
from mgctag.audio.segment import plan_windows
from tests.media import AUDIO, encode  # the tests' helper that encodes real audio with PyAV

TRANSCODE = ["flac", "m4a", "alac.m4a", "wav", "aiff", "wma"]


def timed(fn, repeats: int) -> tuple[float, float]:
    """Median (wall, cpu) seconds of fn() over repeats."""
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def analysis_windows(path: Path) -> list[np.ndarray]:
    """What the pipeline does per track: probe, plan 3×10 s, decode those at 16 kHz mono."""
    return load_windows(path, 16000, plan_windows(probe(path).duration))


def corpus_files(work: Path, corpus: Path | None, per_format: int) -> dict[str, list[Path]]:
    arcade = sorted((AUDIO / "arcade").glob("*.mp3"))
    files: dict[str, list[Path]] = {"mp3": list(arcade)}
    work.mkdir(parents=True, exist_ok=True)
    for src in arcade:
        y = None
        for ext in TRANSCODE:
            dest = work / f"{src.stem}.{ext}"
            if not dest.exists():
                y = load(src, None, mono=False) if y is None else y
                encode(y, probe(src).sample_rate, dest, ext)
            files.setdefault(ext, []).append(dest)
    if corpus and corpus.is_dir():
        for ext in ("ogg", "opus", "mp3"):
            found = sorted(corpus.rglob(f"*.{ext}"))
            files.setdefault(ext, []).extend(found[: per_format - len(files.get(ext, []))])
    return files


def long_files(work: Path, minutes: float = 10.0) -> list[Path]:
    """One ≥`minutes` min track as FLAC and AAC M4A, made by joining the arcade MP3s."""
    flac, m4a = work / "long.flac", work / "long.m4a"
    if not (flac.exists() and m4a.exists()):
        parts = [load(p, None, mono=False) for p in sorted((AUDIO / "arcade").glob("*.mp3"))]
        y = np.concatenate(parts, axis=1)
        y = np.tile(y, (1, int(np.ceil(minutes * 60 * 44100 / y.shape[1]))))
        with sf.SoundFile(flac, "w", 44100, 2, subtype="PCM_16") as f:
            for i in range(0, y.shape[1], 1 << 20):
                f.write(y[:, i : i + (1 << 20)].T)
        encode(y, 44100, m4a)
    return [flac, m4a]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=Path("/work/corpus"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/mgctag-bench"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--per-format", type=int, default=8, help="at most this many files per format")
    args = ap.parse_args()

    files = corpus_files(args.work, args.corpus, args.per_format)
    print("## 3×10 s windows at 16 kHz mono (probe + plan + load_windows), per track\n")
    print("| format | files | mean track length | wall ms/track | CPU ms/track | decoded via |")
    print("|---|---:|---:|---:|---:|---|")
    for ext, paths in files.items():
        times = [timed(lambda p=p: analysis_windows(p), args.repeats) for p in paths]
        length = statistics.mean(probe(p).duration for p in paths)
        via = "PyAV" if ext in ("m4a", "alac.m4a", "wma") else "soundfile"
        wall = 1000 * statistics.mean(t[0] for t in times)
        cpu = 1000 * statistics.mean(t[1] for t in times)
        print(f"| {ext} | {len(paths)} | {length:.0f} s | {wall:.0f} | {cpu:.0f} | {via} |")

    print("\n## Whole file vs 3×10 s windows, 16 kHz mono\n")
    print("| file | length | whole: wall / CPU s | windows: wall / CPU s | speed-up (wall) |")
    print("|---|---:|---:|---:|---:|")
    for path in long_files(args.work):
        whole = timed(lambda p=path: load(p, 16000), args.repeats)
        win = timed(lambda p=path: analysis_windows(p), args.repeats)
        minutes = probe(path).duration / 60
        print(
            f"| {path.name} | {minutes:.1f} min | {whole[0]:.2f} / {whole[1]:.2f} "
            f"| {win[0]:.3f} / {win[1]:.3f} | {whole[0] / win[0]:.0f}× |"
        )


if __name__ == "__main__":
    main()
