"""The speech / music / noise detector as `tag`'s content gate, against the mn04 gate (issue 13).

    python -m tools.experiments.eval_gate --data /work/data/segdata3 [--detector NAME_OR_FILE]

`tag` decides a track's content from its analysis windows (3 x 10 s from the middle 80 %, silent
ones dropped: `audio.segment`), each window music, speech or other, the track by
`content.track_class`. This runs both gates that way on the held-out (test split) source files of
the detector's data (tools.data.segment_data's files.json): the mn04 gate on mn04's AudioSet
probabilities
(`content.ContentGate`), the detector on each window's timeline (`Timeline.content`: the same
rule over its non-silent frames). Music should be kept, speech and noise should not. Prints, per
class and source, how many tracks each gate calls music / speech / other.

mn04's floors were chosen on the English asterisk prompts, the corpus and the MUSDB previews
(docs/models.md), so its figures on those sources are not held out for it.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch

from mgctag.audio import decode, segment
from mgctag.content import MUSIC, OTHER, SPEECH, track_class
from mgctag.genres import default_map
from mgctag.models.audioset import AudiosetNet
from mgctag.segments.detector import SR, Segmenter

AT_SR = 32000


def windows(path: str) -> list[np.ndarray]:
    """The non-silent analysis windows `tag` would decode, at 32 kHz."""
    plan = segment.plan_windows(decode.probe(path).duration, n=3, length=10.0)
    audio = decode.load_windows(path, AT_SR, plan)
    return [w.audio for w in segment.select_windows(plan, audio) if not w.silent]


def group(row: dict) -> str:
    origin = row["origin"]
    return origin.split(":")[0] if origin.startswith(("asterisk", "ktuberling")) else origin


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/work/data/segdata3"))
    ap.add_argument("--detector", default="segmenter_swishnet")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--limit", type=int, default=0, help="every n-th file only (a smoke run)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    rows = [r for r in json.loads((a.data / "files.json").read_text()) if r["split"] == "test"]
    rows = rows[:: a.limit] if a.limit else rows
    net = AudiosetNet()
    gate = net.gate(default_map())
    detector = Segmenter(a.detector)
    counts: dict[tuple[str, str, str], Counter] = defaultdict(Counter)
    for i, row in enumerate(rows):
        try:
            audio = windows(row["path"])
        except decode.DecodeError:
            continue
        if not audio:
            continue  # all silent: tag reports it as silent, before any gate
        probs = net(audio)[0]
        by_mn04 = track_class(gate.classify(probs))
        seen = [detector.segment(decode.convert(w, AT_SR, SR)).content() for w in audio]
        by_detector = track_class(seen)
        key = (row["cls"], group(row))
        counts[key + ("mn04",)][by_mn04] += 1
        counts[key + ("detector",)][by_detector] += 1
        if i % 200 == 0:
            print(f"{i}/{len(rows)}", flush=True)
    print("| true class | source | tracks | mn04 gate: music / speech / other | detector |")
    print("|---|---|---:|---|---|")
    keys = sorted({k[:2] for k in counts})
    for cls, origin in keys:
        m, d = counts[(cls, origin, "mn04")], counts[(cls, origin, "detector")]
        n = sum(m.values())
        show = [" / ".join(str(c[k]) for k in (MUSIC, SPEECH, OTHER)) for c in (m, d)]
        print(f"| {cls} | {origin} | {n} | {show[0]} | {show[1]} |")
    for cls in ("music", "speech", "noise"):
        for who in ("mn04", "detector"):
            c = sum((counts[k] for k in counts if k[0] == cls and k[2] == who), Counter())
            n = sum(c.values())
            right = c[MUSIC] if cls == "music" else n - c[MUSIC]
            print(f"{cls}: {who} {right}/{n} right ({100 * right / max(n, 1):.1f} %)")
    if a.out:
        a.out.write_text(json.dumps({"|".join(k): dict(v) for k, v in counts.items()}, indent=1))


if __name__ == "__main__":
    main()
