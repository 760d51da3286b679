"""Can mn04 and the mel-CNN together gate better than either alone (issue 27)?

    python -m tools.experiments.gate_combo features --data DATA --split val --out v.json
    python -m tools.experiments.gate_combo choose v.json [--test t.json]

`features` records, per held-out clip (`tools.data.segments_corpus heldout`), mn04's music and
speech evidence (`ContentGate.scores`, one 10 s window: a clip is a track of one window) and the
detector's timeline shares over non-silent frames, and whether a validation speech clip lies over a
music or noise bed (`segments_corpus build` lays beds under a share of the validation speech; the
test speech has none). The gate's speech is scored on clean speech, as the test's is; speech
over a bed is shown beside it. `choose` scores each rule family on the
validation clips, picks each family's parameters there (most music kept first, then the fewer of
speech and noise skipped), and only then, with `--test`, reports the chosen rules on the test
clips once.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from mgctag.content import MUSIC, MUSIC_FLOOR, MUSIC_SHARE, OTHER, track_class

Clip = dict[str, float | str]
Rule = Callable[[Clip], bool]  # True: the clip is music (tagged)


def features(data: Path, split: str, out: Path) -> None:
    from mgctag.audio import decode
    from mgctag.genres import default_map
    from mgctag.models.audioset import AUDIOSET_RATE, AudiosetNet
    from mgctag.segments.detector import CLASSES, Segmenter
    from mgctag.segments.recordings import segment_file

    held = data / ("heldout" if split == "test" else "heldout_val")
    labels = json.loads((held / "clips.json").read_text())
    rows_of = json.loads((data / "files.json").read_text())
    beds = {r["path"]: r["extra"].get("bed", "") for r in rows_of if r["split"] == split}
    net = AudiosetNet()
    gate = net.gate(default_map())
    seg = Segmenter()
    rows: dict[str, Clip] = {}
    for name, info in sorted(labels.items()):
        wav = held / "clips" / f"{name}.wav"
        y = decode.load(wav, AUDIOSET_RATE, duration=10.0)  # a clip is one 10 s window
        m, s = gate.scores(net([y])[0])
        timeline = segment_file(wav, seg)[0]
        voiced = timeline.labels[timeline.labels >= 0]
        share = np.bincount(voiced, minlength=3) / max(1, len(voiced))
        rows[name] = {"class": info["class"], "origin": info["origin"], "m": float(m[0])}
        rows[name] |= {"s": float(s[0])} | {c: float(share[i]) for i, c in enumerate(CLASSES)}
        rows[name] |= {"voiced": float(len(voiced)), "bed": beds.get(info["path"], "")}
    out.write_text(json.dumps(rows, indent=0))


def _mn04(c: Clip, floor: float = MUSIC_FLOOR) -> bool:
    return float(c["m"]) >= floor


def _mel(c: Clip, share: float = MUSIC_SHARE) -> bool:
    return float(c["voiced"]) > 0 and float(c["music"]) >= share


def _both(c: Clip, share: float = 0.5) -> bool:
    return _mn04(c) and _mel(c, share)


def _mean(c: Clip, w: float, t: float) -> bool:
    return w * float(c["m"]) + (1 - w) * float(c["music"]) >= t


def library(paths: list[Path], out: Path) -> None:
    """Real music tracks through `tag`'s windows (3 x 10 s from the middle 80 %): each window's
    mn04 evidence and detector share, to see how much music each rule would leave untagged."""
    from mgctag.audio import decode, segment
    from mgctag.genres import default_map
    from mgctag.models.audioset import AUDIOSET_RATE, AudiosetNet
    from mgctag.segments.detector import SR, Segmenter

    net = AudiosetNet()
    gate = net.gate(default_map())
    seg = Segmenter()
    rows: dict[str, list[Clip]] = {}
    for path in paths:
        try:
            windows = segment.plan_windows(decode.probe(path).duration)
            audio = decode.load_windows(path, AUDIOSET_RATE, windows)
        except decode.DecodeError as exc:
            print(f"skip {path}: {exc.reason}")
            continue
        m, s = gate.scores(net(audio)[0])
        rows[str(path)] = []
        for k, y in enumerate(audio):
            t = seg.segment(decode.convert(y, AUDIOSET_RATE, SR))
            voiced = t.labels[t.labels >= 0]
            share = float((voiced == 1).mean()) if len(voiced) else 0.0
            rows[str(path)].append(
                {"m": float(m[k]), "s": float(s[k]), "music": share, "voiced": len(voiced)}
            )
    out.write_text(json.dumps(rows, indent=0))


def music_kept(tracks: dict[str, list[Clip]], rule: Rule) -> tuple[float, list[str]]:
    """Share of tracks `tag` would call music under `rule` (`content.track_class` over their
    windows), and the rest."""
    lost = [
        p
        for p, ws in tracks.items()
        if track_class([MUSIC if rule(w) else OTHER for w in ws]) != MUSIC
    ]
    return 1 - len(lost) / max(1, len(tracks)), lost


def families() -> dict[str, list[tuple[str, Rule]]]:
    """Each rule family with its parameter grid."""
    grid = [float(v) for v in np.round(np.arange(0.05, 1.0, 0.05), 2)]
    return {
        "mn04 (tag's gate)": [(f"m>={MUSIC_FLOOR}", _mn04)],
        "melcnn": [(f"music share>={MUSIC_SHARE}", _mel)],
        "either says music": [("or", lambda c: _mn04(c) or _mel(c))],
        "both say music": [("and", _both)],
        "weighted mean": [
            (f"w={w} t={t}", partial(_mean, w=w, t=t)) for w, t in itertools.product(grid, grid)
        ],
        "mn04 and melcnn share": [(f"m>=0.2, share>={t}", partial(_both, share=t)) for t in grid],
        "mn04 floor": [(f"m>={t}", partial(_mn04, floor=t)) for t in grid],
    }


def rates(rows: dict[str, Clip], rule: Rule) -> dict[str, float]:
    """Music kept; clean speech, speech over a bed and noise skipped."""
    groups = {
        "music": [c for c in rows.values() if c["class"] == "music"],
        "speech": [c for c in rows.values() if c["class"] == "speech" and not c.get("bed")],
        "bedded": [c for c in rows.values() if c["class"] == "speech" and c.get("bed")],
        "noise": [c for c in rows.values() if c["class"] == "noise"],
    }
    out = {}
    for group, mine in groups.items():
        kept = sum(rule(c) for c in mine)
        out[group] = (kept if group == "music" else len(mine) - kept) / max(1, len(mine))
    return out


def _line(r: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.3f}" for k, v in r.items())


def choose(a: argparse.Namespace) -> None:
    val = json.loads(Path(a.val).read_text())
    test = json.loads(Path(a.test).read_text()) if a.test else None
    lib = json.loads(Path(a.music).read_text()) if a.music else None
    for fam, rules in families().items():
        scored = [(name, rule, rates(val, rule)) for name, rule in rules]
        name, rule, r = max(
            scored, key=lambda x: (x[2]["music"], min(x[2]["speech"], x[2]["noise"]))
        )
        line = f"{fam:28s} {name:22s} val: {_line(r)}"
        if test is not None:
            line += f" | test: {_line(rates(test, rule))}"
        if lib is not None:
            kept, lost = music_kept(lib, rule)
            line += f" | library music kept {kept:.3f} ({len(lib)})"
            if a.verbose:
                line += "".join(f"\n    lost: {Path(p).name}" for p in lost)
        print(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("features")
    f.add_argument("--data", type=Path, required=True)
    f.add_argument("--split", choices=["val", "test"], default="val")
    f.add_argument("--out", type=Path, required=True)
    c = sub.add_parser("choose")
    c.add_argument("val")
    c.add_argument("--test")
    c.add_argument("--music", help="`library` output: real music through tag's windows")
    c.add_argument("--verbose", action="store_true")
    lb = sub.add_parser("library")
    lb.add_argument("paths", nargs="*", type=Path)
    lb.add_argument("--list", type=Path, help="a file of paths, one per line")
    lb.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    if a.cmd == "features":
        features(a.data, a.split, a.out)
    elif a.cmd == "library":
        listed = a.list.read_text().splitlines() if a.list else []
        library(a.paths + [Path(p) for p in listed if p], a.out)
    else:
        choose(a)


if __name__ == "__main__":
    main()
