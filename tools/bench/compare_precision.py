"""Does bfloat16 musicnn change what the default tagger writes? Planned genres, float32 vs bf16.

Usage: python -m tools.bench.compare_precision DIR [DIR ...] [--limit N] [--margin M]
           [--int8-sim]

Each audio file under the directories is prepared as `mgctag tag` does (three 10 s windows, one
32 kHz decode) and analysed by the default `musicnn+mn04` with its musicnn pair in float32 and in
bfloat16 (mn04 and the content gate are the same in both). For each, the genres the default's
planning writes (`genres.decide_genres`: the tree at the shipped depth, the lone-tag rule, the
default's count and floors) are compared. Printed: how many tracks raw bf16 changes; the largest
drift of a combined genre score and of one model's own genre score (what the guard's margin must
cover, `audioset.BF16_MARGIN`); how many tracks the guard (`CombinedTagger._borderline` on the
bf16 row) would re-run in float32, and whether any changed track escapes it; the musicnn pair's
time per patch in both precisions, alternating which runs first.

`--int8-sim` puts simulated int8 in bf16's place (the question issue 29 asks of VNNI int8): every
front-end convolution (`musicnn.taps_conv2d`, ~85 % of the network's time) sees its input
fake-quantised to uint8 over that batch's own range and its weights to int8 per output channel,
then computes in float32. That is the drift of a static int8 network at best (a calibrated range
is wider than each batch's own), with none of its speed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mgctag.genres import Planning, decide_genres, default_map  # noqa: E402
from mgctag.library.rows import Track  # noqa: E402
from mgctag.models import audioset, musicnn  # noqa: E402
from mgctag.models.audioset import CombinedTagger, planned_gaps  # noqa: E402
from mgctag.models.inputs import InputPlan, TrackInput, prepare  # noqa: E402
from mgctag.models.names import builtin_selection  # noqa: E402
from mgctag.models.protocol import Prediction  # noqa: E402

AUDIO = {".ogg", ".opus", ".mp3", ".flac", ".wav", ".m4a", ".mp4"}


def int8_taps(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """`musicnn.taps_conv2d` on uint8-quantised input (this batch's range) and int8 weights (per
    output channel, symmetric), computed in float32."""
    lo, hi = float(x.min()), float(x.max())
    scale = max(hi - lo, 1e-8) / 255.0
    xq = torch.fake_quantize_per_tensor_affine(x, scale, round(-lo / scale), 0, 255)
    amax = weight.abs().amax(dim=(1, 2, 3)).clamp_min(1e-12)
    zeros = torch.zeros(len(amax), dtype=torch.int32)
    wq = torch.fake_quantize_per_channel_affine(weight, amax / 127.0, zeros, 0, -127, 127)
    return EXACT_TAPS(xq, wq, bias)


EXACT_TAPS = musicnn.taps_conv2d


@contextlib.contextmanager
def precision(tagger: CombinedTagger, reduced: bool, int8_sim: bool) -> Iterator[None]:
    """musicnn in float32, or reduced: bf16 autocast, or simulated int8 (`int8_taps`)."""
    tagger.musicnn.bf16 = reduced and not int8_sim
    musicnn.taps_conv2d = int8_taps if reduced and int8_sim else EXACT_TAPS
    try:
        yield
    finally:
        musicnn.taps_conv2d = EXACT_TAPS


def combined_row(
    tagger: CombinedTagger, item: TrackInput, reduced: bool, int8_sim: bool
) -> tuple[Prediction, float]:
    """The default's own row with musicnn in one precision (no guard), and musicnn's seconds a
    patch."""
    tagger.recent.clear()  # bf16 always pays here: this compares, it does not guard
    t0 = time.perf_counter()
    with precision(tagger, reduced, int8_sim):
        (out,) = tagger.analyse([item])
    seconds = (time.perf_counter() - t0) / len(item.features["mel"])
    *_, combined = tagger._rows(out, default_map())
    return combined, seconds


def planned(row: Prediction) -> list[str]:
    plan = Planning.shipped(builtin_selection(row.model))
    return [g for g, _ in decide_genres(dict(row.genres), plan, per_model=list(row.tags.values()))]


def drifts(a: Prediction, b: Prediction) -> tuple[float, float]:
    """The largest move of a combined genre score, and of one model's own genre score."""
    ga, gb = dict(a.genres), dict(b.genres)
    combined = max((abs(ga.get(g, 0.0) - gb.get(g, 0.0)) for g in ga.keys() | gb.keys()), default=0)
    per_model = max(
        (abs(a.tags[v].get(g, 0.0) - b.tags[v].get(g, 0.0))
         for v in a.tags for g in a.tags[v].keys() | b.tags[v].keys()),
        default=0.0,
    )  # fmt: skip
    return float(combined), float(per_model)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("dirs", nargs="+", type=Path)
    ap.add_argument("--limit", type=int, default=0, help="files per directory (0: all)")
    ap.add_argument("--margin", type=float, default=None, help="guard margin (default: code's)")
    ap.add_argument("--int8-sim", action="store_true", help="simulated int8 in bf16's place")
    args = ap.parse_args()
    if args.margin is not None:
        audioset.BF16_MARGIN = args.margin
    reduced = "simulated int8" if args.int8_sim else "bf16"
    tagger = CombinedTagger()
    plan = InputPlan((tagger.inputs,))
    n = changed = rerun = escaped = 0
    moves: list[tuple[float, float]] = []
    times: dict[bool, list[float]] = {False: [], True: []}
    for d in args.dirs:
        files = sorted(p for p in d.rglob("*") if p.suffix.lower() in AUDIO)
        for path in files[: args.limit or None]:
            item = prepare(Track.of_file(path), plan)
            if item.error or item.skip:
                print(f"{path.name}: not analysed ({item.error or item.skip})")
                continue
            rows: dict[bool, Prediction] = {}
            for bf16 in (n % 2 == 0, n % 2 == 1):  # alternate which precision runs first
                rows[bf16], seconds = combined_row(tagger, item, bf16, args.int8_sim)
                times[bf16].append(seconds)
            n += 1
            moves.append(drifts(rows[False], rows[True]))
            gaps = planned_gaps(rows[True])
            borderline = min(gaps.scores, gaps.models) < audioset.BF16_MARGIN
            rerun += borderline
            if planned(rows[False]) != planned(rows[True]):
                changed += 1
                escaped += not borderline
                was, now = planned(rows[False]), planned(rows[True])
                print(f"CHANGED {path.name}: float32 {was} {reduced} {now}; re-run: {borderline}")
    combined, per_model = (np.array(m) for m in zip(*moves, strict=True))
    print(f"{n} tracks; planned genres changed by raw {reduced}: {changed}/{n}")
    print(f"largest drift: combined score {combined.max():.4f} (p95 "
          f"{np.percentile(combined, 95):.4f}), a model's own score {per_model.max():.4f} "
          f"(p95 {np.percentile(per_model, 95):.4f})")  # fmt: skip
    print(f"guard (margin {audioset.BF16_MARGIN}): re-runs {rerun}/{n} in float32; changed "
          f"tracks it misses: {escaped}")  # fmt: skip
    f32, b16 = (1000 * float(np.median(times[k])) for k in (False, True))
    print(f"musicnn pair + mn04 ms/patch (median over tracks): float32 {f32:.1f}, {reduced} "
          f"{b16:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
