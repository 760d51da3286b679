"""Speed of `mgctag explain` on a 5-minute track built from real recordings, on the CPU.

Usage: python -m tools.bench.explain [--minutes 5] [--auralise 4] [--threads N] [--no-stems]

The track is real music from ../shared/audio/librosa (jazz, drum & bass, ragtime, waltz, string
orchestra, ...) concatenated end to end to the asked length and written as a 44.1 kHz stereo FLAC
in a temp dir. It runs the command the user runs (`mgctag explain FILE --html --png --auralise N
--json`) as a subprocess, so model loading and start-up count, and reports the wall time and the
command's own per-part seconds (from its --json), and the CPU time the command used (user + sys
over all its threads), which a loaded machine stretches far less than the wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from tools.paths import LIBROSA

CLIPS = [
    "Kevin_MacLeod_-_Vibe_Ace",
    "admiralbob77_-_Choice_-_Drum-bass",
    "442789__lena-orsa__happy-music-pistachio-ice-cream-ragtime",
    "147793__setuniman__sweet-waltz-0i-22mi",
    "Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra)",
    "Karissa_Hobbs_-_Lets_Go_Fishin",
    "Kevin_MacLeod_-_P_I_Tchaikovsky_Dance_of_the_Sugar_Plum_Fairy",
    "sorohanro_-_solo-trumpet-06",
]
RATE = 44100


def build_track(dest: Path, minutes: float) -> Path:
    """Real clips end to end (repeating the list if needed) to `minutes`, as a FLAC."""
    from mgctag.audio import decode

    need = round(minutes * 60 * RATE)
    parts, have, i = [], 0, 0
    while have < need:
        y = decode.load(LIBROSA / f"{CLIPS[i % len(CLIPS)]}.hq.ogg", RATE, mono=False)
        y = np.atleast_2d(y)
        y = np.repeat(y, 2, axis=0) if y.shape[0] == 1 else y[:2]
        parts.append(y)
        have += y.shape[1]
        i += 1
    sf.write(dest, np.concatenate(parts, axis=1)[:, :need].T, RATE, subtype="PCM_16")
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--auralise", type=int, default=4)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--no-stems", action="store_true")
    args = ap.parse_args()
    env = dict(os.environ)
    if args.threads:
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    with tempfile.TemporaryDirectory(prefix="mgctag-bench-explain-") as tmp:
        track = build_track(Path(tmp) / "five-minutes.flac", args.minutes)
        mgctag = str(Path(sys.executable).parent / "mgctag")
        cmd = [mgctag, "explain", str(track), "--json", "--html", f"{tmp}/r.html",
               "--png", f"{tmp}/r.png", "--auralise", str(args.auralise)]  # fmt: skip
        cmd += ["--no-stems"] if args.no_stems else []
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        wall = time.perf_counter() - t0
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode:
            sys.exit(f"explain failed ({done.returncode}): {done.stderr.strip()}")
        doc = json.loads(done.stdout)
        size = Path(f"{tmp}/r.html").stat().st_size
    print(f"track: {doc['duration']:.1f} s, {len(doc['timeline']['windows'])} timeline windows")
    print(f"written: {doc['written']} ({doc['content']})")
    print(f"wall (whole command, start-up and model loading included): {wall:.1f} s")
    cpu = usage.ru_utime + usage.ru_stime
    print(f"CPU time of the command (user + sys, all threads): {cpu:.1f} s")
    print("parts (s): " + ", ".join(f"{k} {v:.1f}" for k, v in doc["seconds"].items()))
    print(f"HTML report: {size / 1e6:.2f} MB; cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
