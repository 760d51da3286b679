"""Score speech / music / noise detectors on the held-out set of issue 27 (packages and speakers
none of the training data came from; `tools.data.segments_corpus heldout` draws it).

    python -m tools.experiments.segments_heldout score --data /work/data/segdata4 \
        --model weights/segmenter_swishnet.safetensors [--model OTHER ...] [--mn04] \
        [--peer ina.json] --out heldout.json
    python -m tools.experiments.segments_heldout table heldout.json
    python -m tools.experiments.segments_heldout compare heldout.json A B   # paired, by file
    python -m tools.experiments.segments_heldout genres --model MODEL@4 ...  # tests/data's music

`genres` is a sanity check, not a held-out measure: tests/data's genre excerpts (10 of them
distorted metal), each excerpt's content by the gate's rule; never used to choose.

Broadcast files: every 10 ms frame whose plan class is not silence and whose own level is above
the detector's silence floor (-50 dBFS; pauses inside speech are not scored) is scored; a frame
a method calls silence counts as wrong. "Speech over music" is the frames of the speech over a
music bed, called speech. Clips: the majority class of a clip's non-silent frames. The content
gate: a clip is skipped when the gate's track class is not music (`content.track_class`).
CPU: `time.process_time` of one thread, decoding and features included, per minute of audio.
`--peer` reads the intervals `tools.experiments.peer_inaseg` wrote for the same WAV files.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mgctag.segments.detector import CLASSES, FPS, SILENCE_DB, SR, frame_db
from tools import paths

GRID = 100  # frames per second of the scoring grid (10 ms)
INA = {"speech": "speech", "music": "music", "noise": "noise", "noEnergy": "silence"}
LabelFn = Callable[[Path], tuple[np.ndarray, float]]  # wav → (labels on the 10 ms grid, CPU s)


def plan_grid(plan: list[dict], duration: float) -> tuple[np.ndarray, np.ndarray]:
    """Reference class index (-1 silence) and 'speech over music' flag on the 10 ms grid."""
    n = int(duration * GRID)
    ref = np.full(n, -1, np.int64)
    bed = np.zeros(n, bool)
    for seg in plan:
        a, b = int(seg["start"] * GRID), int(seg["end"] * GRID)
        ref[a:b] = CLASSES.index(seg["class"]) if seg["class"] in CLASSES else -1
        bed[a:b] = seg["kind"] == "speech_over_music"
    return ref, bed


def to_grid(labels: np.ndarray, duration: float) -> np.ndarray:
    """Detector frame labels (62.5 frames/s) on the 10 ms grid."""
    t = (np.arange(int(duration * GRID)) + 0.5) / GRID
    idx = np.minimum((t * FPS).astype(np.int64), len(labels) - 1)
    return labels[idx]


def audible_grid(y: np.ndarray, duration: float) -> np.ndarray:
    """10 ms frames whose level (the detector's frame RMS) is above the silence floor."""
    db = frame_db(y)
    return to_grid((db >= SILENCE_DB).astype(np.int64), duration).astype(bool)


def segmenter(spec: str):  # noqa: ANN201 - a Segmenter (imported late: torch)
    """A detector from `MODEL[@MEDIAN_S[,voiced]]`: its card's settings, or this median filter
    (seconds) and smoothing over the non-silent frames only (`voiced`), for choosing them."""
    from mgctag.segments.detector import FPS as fps
    from mgctag.segments.detector import Segmenter

    model, _, opts = spec.partition("@")
    seg = Segmenter(model)
    if opts:
        median, *flags = opts.split(",")
        seg.median = round(float(median) * fps) | 1
        seg.voiced_smoothing = "voiced" in flags
    return seg


def ensemble_fn(spec: str) -> LabelFn:
    """`A+B[+...]`: the mean of several detectors' frame probabilities, decided with the first
    one's settings (median, floor, minimum segment) — whether two detectors that err
    differently do better together."""
    from mgctag.segments.detector import decide
    from mgctag.segments.recordings import decode_file

    segs = [segmenter(m) for m in spec.split("+")]
    first = segs[0]

    def run(wav: Path) -> tuple[np.ndarray, float]:
        t0 = time.process_time()
        d = decode_file(wav)
        probs = np.mean([s.input_probs(d.feats, raw=True) for s in segs], axis=0)
        timeline = decide(
            probs, d.db, d.duration, first.median, first.floor, first.min_frames,
            first.voiced_smoothing,
        )  # fmt: skip
        return to_grid(timeline.labels, timeline.duration), time.process_time() - t0

    return run


def segmenter_fn(model: str) -> LabelFn:
    from mgctag.segments.recordings import segment_file

    if "+" in model:
        return ensemble_fn(model)
    seg = segmenter(model)

    def run(wav: Path) -> tuple[np.ndarray, float]:
        t0 = time.process_time()
        timeline, _ = segment_file(wav, seg)
        return to_grid(timeline.labels, timeline.duration), time.process_time() - t0

    return run


def mn04_fn() -> LabelFn:
    """The content gate of `tag` (mn04) over 1 s windows at a 0.5 s hop, each window's class
    given to the 0.5 s around its centre; music / speech / other as music / speech / noise."""
    from mgctag.audio import decode
    from mgctag.content import MUSIC, SPEECH
    from mgctag.genres import default_map
    from mgctag.models.audioset import AudiosetNet

    net = AudiosetNet()
    gate = net.gate(default_map())
    index = {MUSIC: 1, SPEECH: 0}

    def run(wav: Path) -> tuple[np.ndarray, float]:
        t0 = time.process_time()
        y = decode.load(wav, 32000)
        starts = np.arange(0, max(1, len(y) - 32000 + 1), 16000)
        probs = np.concatenate(
            [
                net([y[s : s + 32000] for s in starts[b : b + 64]])[0]
                for b in range(0, len(starts), 64)
            ]
        )
        cls = np.array([index.get(c, 2) for c in gate.classify(probs)])
        duration = len(y) / 32000
        t = np.arange(int(duration * GRID)) / GRID
        k = np.clip(((t - 0.25) / 0.5).astype(np.int64), 0, len(cls) - 1)
        return cls[k], time.process_time() - t0

    return run


def peer_fn(path: Path) -> LabelFn:
    """inaSpeechSegmenter's intervals (tools.experiments.peer_inaseg) on the grid, its CPU."""
    data = json.loads(path.read_text())
    per_min = float(data["_cpu_s_per_min"])

    def run(wav: Path) -> tuple[np.ndarray, float]:
        import soundfile as sf

        duration = sf.info(wav).duration
        out = np.full(int(duration * GRID), -1, np.int64)
        for label, a, b in data[wav.stem]:
            name = INA.get(label, label)
            out[int(a * GRID) : int(b * GRID)] = CLASSES.index(name) if name in CLASSES else -1
        return out, per_min * duration / 60

    return run


def score_broadcast(fn: LabelFn, folder: Path, plans: dict) -> dict:
    from mgctag.audio import decode

    right = total = 0
    per = np.zeros((len(CLASSES), 2), np.int64)  # right, total per reference class
    bed = np.zeros(2, np.int64)
    per_file: dict[str, dict[str, list[int]]] = {}  # right, scored: for `compare`
    cpu = seconds = 0.0
    for name, plan in sorted(plans.items()):
        wav = folder / f"{name}.wav"
        y = decode.load(wav, SR)
        duration = len(y) / SR
        ref, over_music = plan_grid(plan, duration)
        pred, c = fn(wav)
        n = min(len(ref), len(pred))
        ref, over_music, pred = ref[:n], over_music[:n], pred[:n]
        scored = (ref >= 0) & audible_grid(y, duration)[:n]
        ok = (pred == ref) & scored
        right, total = right + int(ok.sum()), total + int(scored.sum())
        for k in range(len(CLASSES)):
            m = scored & (ref == k)
            per[k] += (int(ok[m].sum()), int(m.sum()))
        m = scored & over_music
        bed += (int(ok[m].sum()), int(m.sum()))
        mine = {"all": scored, "speech_over_music": m}
        mine |= {c: scored & (ref == k) for k, c in enumerate(CLASSES)}
        per_file[name] = {key: [int(ok[v].sum()), int(v.sum())] for key, v in mine.items()}
        cpu, seconds = cpu + c, seconds + duration
    return {
        "frame_accuracy": right / max(1, total),
        "recall": {c: float(per[k, 0] / max(1, per[k, 1])) for k, c in enumerate(CLASSES)},
        "speech_over_music": float(bed[0] / max(1, bed[1])),
        "scored_frames": total,
        "minutes": seconds / 60,
        "cpu_s": cpu,
        "cpu_s_per_min": cpu / max(seconds, 1e-9) * 60,
        "per_file": per_file,
    }


def score_clips(fn: LabelFn, folder: Path, labels: dict) -> dict:
    """Majority class of each clip's non-silent frames; right per class."""
    per: dict[str, list[int]] = {c: [0, 0] for c in CLASSES}
    wrong = []
    for name, info in sorted(labels.items()):
        pred, _ = fn(folder / f"{name}.wav")
        voiced = pred[pred >= 0]
        guess = (
            CLASSES[int(np.bincount(voiced, minlength=3).argmax())] if len(voiced) else "silence"
        )
        per[info["class"]][1] += 1
        if guess == info["class"]:
            per[info["class"]][0] += 1
        else:
            wrong.append(f"{name} ({info['origin']}): {guess}")
    right = sum(r for r, _ in per.values())
    return {
        "accuracy": right / max(1, sum(t for _, t in per.values())),
        "per_class": {c: r / max(1, t) for c, (r, t) in per.items()},
        "wrong": wrong,
    }


def gate_clips(folder: Path, labels: dict, model: str | None) -> dict:
    """`tag`'s content gate (mn04, or the detector's timeline when `model` is given) on each clip
    as a track: speech and noise must be skipped (not music), music kept."""
    from mgctag.audio import decode
    from mgctag.content import MUSIC, track_class

    if model is None:
        from mgctag.genres import default_map
        from mgctag.models.audioset import AudiosetNet

        net = AudiosetNet()
        gate = net.gate(default_map())

        def content(wav: Path) -> str:
            y = decode.load(wav, 32000)
            windows = [y[a : a + 320000] for a in range(0, max(1, len(y)), 320000)]
            return track_class(gate.classify(net(windows)[0]))
    else:
        from mgctag.segments.recordings import segment_file

        seg = segmenter(model)

        def content(wav: Path) -> str:
            return segment_file(wav, seg)[0].content()

    per: dict[str, list[int]] = {c: [0, 0] for c in CLASSES}
    wrong = []
    for name, info in sorted(labels.items()):
        c = content(folder / f"{name}.wav")
        good = (c == MUSIC) == (info["class"] == "music")
        per[info["class"]][1] += 1
        per[info["class"]][0] += int(good)
        if not good:
            wrong.append(f"{name} ({info['origin']}, {Path(info['path']).name}): {c}")
    return {"right": {c: r / max(1, t) for c, (r, t) in per.items()}, "wrong": wrong}


def score(a: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(1)
    held = a.data / ("heldout" if a.split == "test" else f"heldout_{a.split}")
    plans = json.loads((held / "broadcast.json").read_text())
    clips = json.loads((held / "clips.json").read_text())
    results = json.loads(a.out.read_text()) if a.out.exists() else {}
    methods: list[tuple[str, LabelFn, str | None]] = [
        (Path(m).name.replace(".safetensors", ""), segmenter_fn(m), m) for m in a.model
    ]
    if a.mn04:
        methods.append(("mn04_gate", mn04_fn(), None))
    if a.peer:
        methods.append(("inaSpeechSegmenter", peer_fn(a.peer), None))
    for name, fn, model in methods:
        r = {"broadcast": score_broadcast(fn, held / "broadcast", plans)}
        print(name, json.dumps(r["broadcast"]), flush=True)
        if name != "inaSpeechSegmenter" and not a.no_clips:
            r["clips"] = score_clips(fn, held / "clips", clips)
            print(name, "clips", r["clips"]["accuracy"], r["clips"]["per_class"], flush=True)
        if (model is not None or name == "mn04_gate") and not a.no_clips:
            r["gate"] = gate_clips(held / "clips", clips, model)
            print(name, "gate", r["gate"]["right"], flush=True)
        results[name] = r
        a.out.write_text(json.dumps(results, indent=1))


def table(a: argparse.Namespace) -> None:
    results = json.loads(a.results.read_text())
    print(
        "| method | frame acc | sp / mu / no recall | speech over music | clips"
        " | gate sp / no / mu | CPU s per min |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        b = r["broadcast"]
        rec = " / ".join(f"{b['recall'][c]:.3f}" for c in CLASSES)
        clips = f"{r['clips']['accuracy']:.3f}" if "clips" in r else "–"
        g = r.get("gate", {}).get("right")
        gate = f"{g['speech']:.2f} / {g['noise']:.2f} / {g['music']:.2f}" if g else "–"
        print(
            f"| {name} | {b['frame_accuracy']:.3f} | {rec} | {b['speech_over_music']:.3f} | {clips}"
            f" | {gate} | {b['cpu_s_per_min']:.3f} |"
        )


def compare(a: argparse.Namespace) -> None:
    """Method A minus method B on the same broadcast files (frame accuracy, each class's recall,
    speech over music), with a 95 % bootstrap over files: is a difference more than the draw?"""
    from tools.experiments.eval_segmenter import paired_bootstrap

    results = json.loads(a.results.read_text())
    fa, fb = results[a.a]["broadcast"]["per_file"], results[a.b]["broadcast"]["per_file"]
    names = sorted(fa)
    for key in ("all", *CLASSES, "speech_over_music"):
        rows_a = np.array([fa[n][key] for n in names], float)
        rows_b = np.array([fb[n][key] for n in names], float)
        point, lo, hi = paired_bootstrap(rows_a, rows_b)
        print(f"{key}: {100 * point:+.2f} points (95 %: {100 * lo:+.2f} to {100 * hi:+.2f})")


def genres(a: argparse.Namespace) -> None:
    """Each detector on tests/data's genre excerpts: how many it calls music (the recording's
    content), metal apart, and the excerpts it does not call music with their music share."""
    import torch

    from mgctag.segments.recordings import segment_file

    torch.set_num_threads(1)
    files = sorted(a.folder.glob("*/*.ogg"))
    for spec in a.model:
        seg = segmenter(spec)
        missed = []
        for f in files:
            timeline, _ = segment_file(f, seg)
            content = timeline.content()
            if content != "music":
                share = timeline.shares()["music"]
                missed.append(f"{f.parent.name}/{f.name} {content} (music {share:.2f})")
        metal = [f for f in files if f.parent.name == "metal"]
        metal_right = len(metal) - sum(m.startswith("metal/") for m in missed)
        print(
            f"{Path(spec).name}: music {len(files) - len(missed)}/{len(files)}, "
            f"metal {metal_right}/{len(metal)}; not music: {', '.join(missed) or '-'}",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("score")
    s.add_argument("--data", type=Path, required=True)
    s.add_argument("--model", nargs="*", default=[])
    s.add_argument("--mn04", action="store_true")
    s.add_argument("--peer", type=Path)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--split", choices=["test", "val"], default="test")
    s.add_argument("--no-clips", action="store_true", help="broadcast files only")
    t = sub.add_parser("table")
    t.add_argument("results", type=Path)
    c = sub.add_parser("compare", help="A minus B, bootstrap over the broadcast files")
    c.add_argument("results", type=Path)
    c.add_argument("a")
    c.add_argument("b")
    g = sub.add_parser("genres", help="sanity check on tests/data's genre excerpts")
    g.add_argument("--model", nargs="+", required=True)
    g.add_argument("--folder", type=Path, default=paths.REPO / "tests" / "data" / "music")
    a = ap.parse_args()
    {"score": score, "table": table, "compare": compare, "genres": genres}[a.cmd](a)


if __name__ == "__main__":
    main()
