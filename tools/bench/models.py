"""Parameters and CPU time per 10 s analysis window for every genre network, as a markdown table.

A 10 s window at 16 kHz is cut the way the pipeline feeds models: log-mel (or MFCC) of the window,
then non-overlapping 187-frame patches (3 of them) in one batch. Stem models get 3 channels; the
time to separate the stems is not included (see the separators' own benchmark). Feature time is a
row of its own. Weights are random (cost does not depend on their values), except for the rows
of the bundled distilled students, which load `weights/NAME.safetensors` through the registry and
are fed the input their model card names.

    python -m tools.bench.models --threads 2 --repeats 15 > /tmp/bench_models.md

`--cards` also writes each bundled student's measured cost (parameters, file size, ms per window,
threads, load average) into its model card under "cost".
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from mgctag.audio import decode, features
from mgctag.models.cards import ModelError, resolve
from mgctag.models.crnn import Cnn1d, Cnn2d, Crnn
from mgctag.models.ecapa import EcapaTdnn
from mgctag.models.mobilenet import MobileNetV2
from mgctag.models.musicnn import Musicnn
from mgctag.models.registry import load_model
from mgctag.models.stemcnn import StemCnn
from mgctag.models.swishnet import SwishNet
from tools.paths import LIBROSA

CLIP = LIBROSA / "Kevin_MacLeod_-_Vibe_Ace.hq.ogg"
N = 54  # classes: the genres musicnn or mn04 reach + the two not-music outputs (the students)
STUDENTS = (
    "stemcnn_mix",
    "stemcnn_sep",
    "stemcnn_cascade",
    "ecapa_ccs_fsa",
    "swishnet_slim",
    "crnn_small",
    "mobilenetv2_half",
)

# (row name, builder, input kind, what it is)
ROWS: list[tuple[str, Callable[[], nn.Module], str, str]] = [
    ("musicnn (reference)", lambda: Musicnn(50), "mel", "the teacher, MSD/MTT port"),
    ("stemcnn", lambda: StemCnn(N), "stems", "stem CNN, 3x3 conv, drums+bass+other"),
    ("stemcnn separable", lambda: StemCnn(N, separable=True), "stems", "stem CNN, depthwise sep."),
    ("stemcnn mix", lambda: StemCnn(N, in_channels=1, separable=True), "mel", "1-spectrogram base"),
    ("ecapa_tdnn", lambda: EcapaTdnn(N), "mel", "ECAPA-TDNN C=256"),
    (
        "ecapa_tdnn ccs+fsa",
        lambda: EcapaTdnn(N, cont=192, stop=64, n_bands=3, shared_frontend=True),
        "mel",
        "CCS s=64 c=192, FSA 3 shared bands",
    ),
    ("swishnet slim", lambda: SwishNet(N, width=1), "mfcc", "20 MFCC"),
    ("swishnet wide", lambda: SwishNet(N, width=2), "mfcc", "20 MFCC"),
    ("cnn2d shallow", lambda: Cnn2d(N), "mel", "2 conv blocks"),
    ("cnn2d deep", lambda: Cnn2d(N, channels=(32, 64, 128, 128, 256)), "mel", "5 conv blocks"),
    ("cnn1d", lambda: Cnn1d(N), "mel", "conv over time"),
    ("crnn", lambda: Crnn(N), "mel", "4 conv + 2 LSTM"),
    ("mobilenetv2", lambda: MobileNetV2(N), "mel", "width 1.0"),
    ("mobilenetv2 x0.5", lambda: MobileNetV2(N, width=0.5), "mel", "width 0.5"),
]


def timings_ms(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(min, median) wall time of fn() in ms, after two warm-up calls.

    On a shared machine the minimum is the better estimate of the cost itself (other processes
    only ever add time); the median shows what a user on a busy machine sees.
    """
    fn()
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return min(times), statistics.median(times)


def record_cost(name: str, cost: dict) -> None:
    """Add the measured cost to a bundled student's card (the JSON beside its weights)."""
    path = resolve(name).with_suffix(".json")
    card = json.loads(path.read_text(encoding="utf-8"))
    card["cost"] = cost
    path.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--cards", action="store_true", help="record the students' cost in their cards")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="measure only these bundled students")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    y = decode.load(CLIP, features.SR, duration=10.0)
    mel = features.patches(features.log_mel(y))
    inputs = {
        "mel": torch.from_numpy(mel),
        "stems": torch.from_numpy(np.repeat(mel[:, None], 3, axis=1)),
        "mfcc": torch.from_numpy(features.patches(features.mfcc(y))),
    }
    print(f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} threads, load average {os.getloadavg()[0]:.1f}; "
          f"10 s window = {tuple(inputs['mel'].shape)} patches\n")  # fmt: skip
    print("| model | params | ms / 10 s window, min | median | input | notes |")
    print("|---|---:|---:|---:|---|---|")
    lo, med = timings_ms(lambda: features.patches(features.log_mel(y)), args.repeats)
    print(
        f"| log-mel features | - | {lo:.1f} | {med:.1f} | 10 s audio | per stem for stem models |"
    )
    lo, med = timings_ms(lambda: features.patches(features.mfcc(y)), args.repeats)
    print(f"| MFCC features | - | {lo:.1f} | {med:.1f} | 10 s audio | |")
    for name, build, kind, notes in ROWS:
        model = build().eval()
        params = sum(p.numel() for p in model.parameters())
        with torch.inference_mode():
            lo, med = timings_ms(functools.partial(model, inputs[kind]), args.repeats)
        shape = "x".join(str(s) for s in inputs[kind].shape)
        print(f"| {name} | {params:,} | {lo:.1f} | {med:.1f} | {kind} {shape} | {notes} |")
    for name in args.only or STUDENTS:
        try:
            model, card = load_model(name, cache=False)
        except ModelError:
            continue  # not bundled (yet)
        kind = card.preprocessing["input"]
        params = sum(p.numel() for p in model.parameters())
        with torch.inference_mode():
            lo, med = timings_ms(functools.partial(model, inputs[kind]), args.repeats)
        shape = "x".join(str(s) for s in inputs[kind].shape)
        print(f"| {name} (bundled) | {params:,} | {lo:.1f} | {med:.1f} | {kind} {shape} | "
              f"{card.arch}, {len(card.labels)} genres |")  # fmt: skip
        if args.cards:
            command = " ".join(["python -m tools.bench.models", *sys.argv[1:]])
            cost = {"params": params, "bytes": resolve(name).stat().st_size,
                    "ms_per_10s_window_min": round(lo, 1),
                    "ms_per_10s_window_median": round(med, 1),
                    "threads": args.threads, "load_average": round(os.getloadavg()[0], 1),
                    "command": command}  # fmt: skip
            record_cost(name, cost)


if __name__ == "__main__":
    main()
