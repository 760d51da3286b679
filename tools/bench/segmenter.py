"""CPU per minute of audio, one thread: SwishNet (slim, wide) against mn04, network and features
apart (issue 13's "slim >= 20x faster than mn04" target).

    python -m tools.bench.segmenter

One real minute (librosa's Vibe Ace at 16 kHz); best of 5 `time.process_time` runs each.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable

import numpy as np
import torch

from mgctag.audio import decode
from mgctag.audio.features import efficientat_mel
from mgctag.models.registry import load_model
from mgctag.models.swishnet import SwishNet
from mgctag.segments.detector import SR, mfcc, swishnet_frame_logits
from tools.paths import LIBROSA

CLIP = LIBROSA / "Kevin_MacLeod_-_Vibe_Ace.ogg"


def best(f: Callable[[], object], reps: int = 5) -> float:
    out = float("inf")
    for _ in range(reps):
        t0 = time.process_time()
        f()
        out = min(out, time.process_time() - t0)
    return out


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    torch.set_num_threads(1)
    y = decode.load(CLIP, SR, duration=60)
    scale = 60 * SR / len(y)
    x = mfcc(y)
    rows = {"telephone-band MFCC (resample + MFCC)": best(lambda: mfcc(y))}
    for width, name in ((1, "slim"), (2, "wide")):
        net = SwishNet(3, width=width).eval()
        rows[f"SwishNet {name}, network (1 s context)"] = best(
            functools.partial(swishnet_frame_logits, net, x, 62)
        )
    mn04, _ = load_model("audioset_mn04")
    y32 = decode.convert(y, SR, 32000)
    spans = range(0, len(y32), 320000)

    def front_end() -> list[np.ndarray]:
        z = decode.convert(y, SR, 32000)
        return [efficientat_mel(z[i : i + 320000]) for i in spans]

    rows["mn04 front end (resample + mel), 10 s windows"] = best(front_end)
    mel = torch.from_numpy(np.stack([efficientat_mel(y32[i : i + 320000]) for i in spans]))
    with torch.inference_mode():
        rows["mn04 network, 10 s windows"] = best(lambda: mn04(mel))
    for name, sec in rows.items():
        print(f"| {name} | {sec * scale:.4f} |")


if __name__ == "__main__":
    main()
