"""Speed of mn04 (AudioSet) beside the musicnn pair, per 10 s analysis window, on the CPU.

Usage: python -m tools.bench.mn04 [--threads 1] [--rounds 5] [--reps 10] [--batch 1]

Both taggers get the same real 10 s window (librosa's Vibe Ace clip, decoded once at 32 kHz and
resampled to 16 kHz for musicnn, as the pipeline does). Timed per window: the front-end (mel) and
the network(s), rounds alternating between the two so that machine load hits both alike; the median
round is reported. bfloat16 rows run the network under CPU autocast and report the max |Δ| of the
probabilities against float32.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from tools.paths import LIBROSA

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mgctag.audio import decode  # noqa: E402
from mgctag.audio.features import efficientat_mel, log_mel, patches  # noqa: E402
from mgctag.models.registry import load_model  # noqa: E402

CLIP = LIBROSA / "Kevin_MacLeod_-_Vibe_Ace.hq.ogg"


def timed(fn, reps: int) -> float:
    """Median seconds of one call of fn over reps calls."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@torch.inference_mode()
def run_models(models: list[torch.nn.Module], x: torch.Tensor, bf16: bool) -> np.ndarray:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        return np.concatenate([torch.sigmoid(m(x)[0]).float().numpy().ravel() for m in models])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=1, help="windows per forward pass")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    y32 = decode.load_windows(CLIP, 32000, [(20.0, 10.0)])[0]
    y16 = decode.convert(y32, 32000, 16000)
    mn04 = [load_model("audioset_mn04")[0]]
    musicnn = [load_model(n)[0] for n in ("MSD_musicnn", "MTT_musicnn")]
    mel = torch.from_numpy(np.repeat(efficientat_mel(y32)[None], args.batch, axis=0))
    pat = torch.from_numpy(np.concatenate([patches(log_mel(y16))] * args.batch))
    rows: dict[str, list[float]] = {}
    cases = {
        "mn04 front-end (32 kHz mel)": lambda: efficientat_mel(y32),
        "musicnn front-end (resample + 16 kHz mel)": lambda: patches(
            log_mel(decode.convert(y32, 32000, 16000))
        ),
        "mn04 network, float32": lambda: run_models(mn04, mel, False),
        "musicnn MSD+MTT networks, float32": lambda: run_models(musicnn, pat, False),
        "mn04 network, bfloat16": lambda: run_models(mn04, mel, True),
        "musicnn MSD+MTT networks, bfloat16": lambda: run_models(musicnn, pat, True),
    }
    for fn in cases.values():  # warm-up
        fn()
    for _ in range(args.rounds):
        for name, fn in cases.items():
            rows.setdefault(name, []).append(timed(fn, args.reps) / args.batch)
    drift = {
        "mn04": np.abs(run_models(mn04, mel, True) - run_models(mn04, mel, False)).max(),
        "musicnn": np.abs(run_models(musicnn, pat, True) - run_models(musicnn, pat, False)).max(),
    }
    print(f"threads {args.threads}, batch {args.batch} window(s), {len(pat) // args.batch} musicnn")
    print("patches per window; median of rounds, ms per 10 s window")
    print("| what | ms / window |\n|---|---|")
    for name, values in rows.items():
        print(f"| {name} | {1000 * statistics.median(values):.1f} |")
    print(f"bfloat16 max |Δ prob|: mn04 {drift['mn04']:.4f}, musicnn {drift['musicnn']:.4f}")


if __name__ == "__main__":
    main()
