"""Join short spoken words into 30 s speech recordings, for the students' not-music outputs.

    python -m tools.data.speech_streams /work/data/speech2/ktuberling-data /work/data/speech-streams

ktuberling-data (Debian, GPL-2+) speaks ~1,700 words in 25 languages, wideband, each about a
second long: too short for a 3 s training patch alone. Joined per language with 0.25 s pauses,
they make wideband speech for distillation (docs/distill-data.md); the telephone-band asterisk
prompts alone taught the students that "speech" means 8 kHz audio. One folder per language,
`NN.flac` files at 32 kHz mono.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf

from mgctag.audio import decode

RATE = 32000
SUFFIXES = (".ogg", ".opus", ".wav", ".flac")


def streams(words: list[Path], seconds: float, gap: float) -> list[np.ndarray]:
    """The words in order, with `gap` s of silence between, cut into `seconds`-long recordings."""
    out, current, length = [], [], 0
    pause = np.zeros(int(gap * RATE), np.float32)
    for word in words:
        try:
            y = decode.load(word, RATE)
        except decode.DecodeError as exc:
            print(f"skip: {exc}")
            continue
        current += [y, pause]
        length += len(y) + len(pause)
        if length >= seconds * RATE:
            out.append(np.concatenate(current))
            current, length = [], 0
    if length >= seconds * RATE / 2:  # a last half-length recording is still worth keeping
        out.append(np.concatenate(current))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path, help="an unpacked ktuberling-data package")
    ap.add_argument("dest", type=Path)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--gap", type=float, default=0.25)
    args = ap.parse_args()
    for lang in sorted(p for p in args.source.rglob("sounds/*") if p.is_dir()):
        words = sorted(f for f in lang.rglob("*") if f.suffix.lower() in SUFFIXES)
        for i, y in enumerate(streams(words, args.seconds, args.gap)):
            dest = args.dest / f"ktuberling-{lang.name}" / f"{i:02d}.flac"
            dest.parent.mkdir(parents=True, exist_ok=True)
            sf.write(dest, y, RATE)
        print(f"{lang.name}: {len(words)} words")


if __name__ == "__main__":
    main()
