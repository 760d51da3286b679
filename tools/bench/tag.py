"""Throughput of `mgctag tag` on a real library: tracks/min, peak memory, seconds per stage.

    bash ../shared/corpus/fetch-debian-music.sh /work/corpus small
    python -m tools.bench.tag /work/corpus/{wesnoth-1.16,warzone2100,nexuiz}-music \
        --lib /tmp/bench-lib --tracks 120

Copies the corpus tracks into --lib, transcoding a share of them to MP3, FLAC and M4A (PyAV) so
every common format is covered, then runs the real pipeline (default settings, no stems) on a fresh
database and prints one table. `--sweep` also shows the speed vs. agreement trade-off of the number
and length of analysis windows (agreement: top genre and embedding cosine vs. a 6 x 10 s reference).
"""

from __future__ import annotations

import argparse
import random
import resource
import shutil
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from mgctag import pipeline
from mgctag.library.db import Library

FORMATS = {".mp3": ("mp3", "libmp3lame"), ".flac": ("flac", "flac"), ".m4a": ("ipod", "aac")}


def transcode(src: Path, dest: Path, container: str, codec: str) -> None:
    """Stream-transcode src to dest (no whole-file decode into memory)."""
    with av.open(str(src)) as inp, av.open(str(dest), "w", format=container) as out:
        ins = inp.streams.audio[0]
        rate = ins.codec_context.sample_rate
        layout = "stereo" if ins.codec_context.channels >= 2 else "mono"
        st = out.add_stream(codec, rate=rate, layout=layout)
        assert isinstance(st, av.AudioStream)  # FORMATS names audio codecs only
        st.codec_context.bit_rate = 192_000
        formats = st.codec_context.codec.audio_formats
        assert formats  # an audio encoder lists the sample formats it takes
        res = av.AudioResampler(format=formats[0].name, layout=layout, rate=rate)
        for frame in inp.decode(ins):
            frame.pts = None
            for f in res.resample(frame):
                out.mux(st.encode(f))
        for f in res.resample(None):
            out.mux(st.encode(f))
        out.mux(st.encode(None))


def build_library(corpora: list[Path], lib: Path, n: int, seed: int = 0) -> list[Path]:
    """n corpus tracks, a quarter each kept as is and transcoded to MP3, FLAC, M4A (cached)."""
    exts = (".ogg", ".opus", ".mp3", ".flac")
    sources = sorted(p for c in corpora for p in c.rglob("*") if p.suffix in exts)
    random.Random(seed).shuffle(sources)
    lib.mkdir(parents=True, exist_ok=True)
    out = []
    for i, src in enumerate(sources[:n]):
        kind = [None, ".mp3", ".flac", ".m4a"][i % 4]
        dest = lib / f"{i:04d}-{src.stem}{kind or src.suffix}"
        if not dest.exists():
            if kind is None:
                shutil.copy2(src, dest)
            else:
                transcode(src, dest, *FORMATS[kind])
        out.append(dest)
    return out


def _track_path(lib: Library, track_id: int) -> str:
    track = lib.get_track(track_id)
    assert track is not None  # an id of the embedding matrix: a stored track
    return track.path


def run(lib_dir: Path, opts: pipeline.TagOptions) -> tuple[pipeline.Summary, float, Path, float]:
    """One timed run on a fresh database (and, when it writes, a fresh copy of the files):
    (summary, wall seconds, database, CPU seconds)."""
    work = Path(tempfile.mkdtemp())
    if not opts.dry_run:
        lib_dir = Path(shutil.copytree(lib_dir, work / "lib"))
    db = work / "bench.db"
    t0, cpu0 = time.perf_counter(), cpu_seconds()
    summary = pipeline.tag_paths(Library(db), [lib_dir], opts)
    return summary, time.perf_counter() - t0, db, cpu_seconds() - cpu0


def cpu_seconds() -> float:
    """User + system CPU time of this process so far, all its threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def report(summary: pipeline.Summary, wall: float, n: int, cpu: float) -> None:
    """The run's rates; CPU seconds too, since on a shared machine wall time counts other jobs'
    turns (2 cores kept busy by this run alone would do 120 / (CPU s per track) tracks/min)."""
    print(f"tracks: {n}, analysed {summary.analysed}, failed {summary.failed}")
    print(f"wall: {wall:.1f} s  →  {60 * n / wall:.1f} tracks/min")
    print(
        f"CPU: {cpu:.1f} s (user + sys)  →  {cpu / n:.3f} s per track,"
        f" {120 * n / cpu:.1f} tracks/min if both cores did only this"
    )
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    print("| stage | seconds | ms/track | note |")
    print("|---|---:|---:|---|")
    notes = {"decode": "decode worker thread", "features": "decode worker thread"}
    for stage, secs in sorted(summary.stage_seconds.items(), key=lambda kv: -kv[1]):
        print(
            f"| {stage} | {secs:.1f} | {1000 * secs / n:.0f} | {notes.get(stage, 'main thread')} |"
        )


def sweep(lib_dir: Path, n: int) -> None:
    """Speed vs. agreement with a 6 x 10 s analysis, for several window plans."""
    plans = [(6, 10.0), (3, 10.0), (2, 10.0), (1, 10.0), (3, 3.0), (1, 3.0)]
    results = {}
    for windows, seconds in plans:
        opts = pipeline.TagOptions(dry_run=True, windows=windows, window_seconds=seconds)
        summary, wall, db, _ = run(lib_dir, opts)
        lib = Library(db)
        ids, emb = lib.embedding_matrix(pipeline.DEFAULT_TAGGER)
        top = {i: lib.get_predictions(int(i))[pipeline.DEFAULT_TAGGER]["genres"][0][0] for i in ids}
        paths = {int(i): _track_path(lib, int(i)) for i in ids}
        results[(windows, seconds)] = (
            wall,
            {paths[int(i)]: (top[i], e) for i, e in zip(ids, emb, strict=True)},
        )
    ref = results[plans[0]][1]
    print("| windows | tracks/min | top-1 genre = reference | embedding cosine to reference |")
    print("|---|---:|---:|---:|")
    for plan in plans:
        wall, res = results[plan]
        same = np.mean([res[p][0] == ref[p][0] for p in ref if p in res])
        cos = np.mean([float(res[p][1] @ ref[p][1]) for p in ref if p in res])
        print(f"| {plan[0]} x {plan[1]:g} s | {60 * n / wall:.0f} | {same:.0%} | {cos:.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("corpus", type=Path, nargs="+", help="folders of real music")
    ap.add_argument("--lib", type=Path, default=Path("/tmp/mgctag-bench-lib"))
    ap.add_argument("--tracks", type=int, default=120)
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--model", default=pipeline.DEFAULT_TAGGER, help="e.g. musicnn+crnn")
    args = ap.parse_args()
    files = build_library(args.corpus, args.lib, args.tracks)
    print(
        f"library: {args.lib} ({len(files)} files,"
        f" {sum(f.stat().st_size for f in files) / 1e6:.0f} MB)"
    )
    # replace mode writes every file, so the tag-write stage is measured on each run
    summary, wall, _, cpu = run(args.lib, pipeline.TagOptions(mode="replace", model=args.model))
    report(summary, wall, len(files), cpu)
    if args.sweep:
        sweep(args.lib, len(files))


if __name__ == "__main__":
    main()
