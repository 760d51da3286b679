"""Evaluate the speech / music / noise detectors as the SwishNet paper does (issue 13).

    python -m tools.experiments.eval_segmenter --files 100 --val-files 30 \\
        --out /work/data/segdata/eval.json

1. Clip accuracy and per-class recall on non-overlapping 0.5 / 1 / 2 s clips of the test streams
   (held-out source files), for every SwishNet variant, the GMM and FNN baselines and the mn04
   teacher (its speech / music / noise from the 1 s windows inside the clip).
2. A synthetic segmentation set: files of 20-120 s concatenating held-out noise, speech and music
   pieces (gamma lengths, means 5, 10, 12 s) with 0.5 s silences between half of them (the others
   abrupt), scored frame by frame against the true labels; silence (inserted or by energy) is not
   scored. The median filter of each method is chosen on a validation set built the same way
   from the validation streams. The mn04 gate (mgctag.content, 1 s windows at a 0.5 s hop) is
   scored on the same frames.
3. CPU time per minute of audio on one thread, features included.

`table RESULTS.json...` prints the markdown table; `compare RESULTS.json A B` the frame-accuracy
difference of two methods with a bootstrap over files.

The peer, inaSpeechSegmenter, runs in its own virtualenv (tools.experiments.peer_inaseg): `--dump
DIR` writes the synthetic test files as 16 kHz WAV for it, `--peer OUT.json` scores its intervals on
the same frames (its own smoothing, no median filter; where it hears no energy in a frame that is
scored, it is wrong).
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mgctag.audio import decode
from mgctag.content import MUSIC, SPEECH
from mgctag.models.registry import load_model
from mgctag.models.swishnet import SwishNet
from mgctag.segments.detector import (
    CLASSES,
    FPS,
    HOP,
    SR,
    context_mean,
    frame_db,
    mfcc,
    silent_frames,
    smooth,
    swishnet_frame_logits,
)
from tools.experiments import segmenter_training as seg
from tools.experiments.train_segmenter import DATA, clips, standardisation, stream

MEANS = {"noise": 5.0, "speech": 10.0, "music": 12.0}
MEDIANS_S = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0)
CONTEXTS = (0.5, 1.0, 2.0)


# --- synthetic set ------------------------------------------------------------------------------


def synth_file(
    rng: np.random.Generator, audio: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """One file: audio at 16 kHz and its per-frame truth (class index, -1 silence)."""
    total = rng.uniform(20, 120) * SR
    pieces, labels = [], []
    n = 0
    prev = None
    while n < total:
        cls = rng.choice([c for c in CLASSES if c != prev])
        prev = cls
        length = int(max(1.0, rng.gamma(4.0, MEANS[cls] / 4.0)) * SR)
        src = audio[cls]
        length = min(length, len(src) - 1)
        start = int(rng.integers(0, len(src) - length))
        pieces.append(src[start : start + length])
        labels.append(np.full(length, CLASSES.index(cls), np.int8))
        n += length
        if rng.random() < 0.5:  # a natural-silence transition (~0.5 s of room tone)
            k = int(rng.uniform(0.3, 0.7) * SR)
            pieces.append((rng.standard_normal(k) * 10 ** (-70 / 20)).astype(np.float32))
            labels.append(np.full(k, -1, np.int8))
            n += k
    y = np.concatenate(pieces)[: int(total)]
    lab = np.concatenate(labels)[: int(total)]
    frames = 1 + len(y) // HOP
    truth = lab[np.minimum(np.arange(frames) * HOP, len(lab) - 1)].astype(np.int64)
    truth[silent_frames(frame_db(y, frames))] = -1  # silence by energy is not scored either
    return y, truth


def synth_set(split: str, count: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    audio = {c: np.load(DATA / f"{split}_{c}.npy").astype(np.float32) / 32767 for c in CLASSES}
    rng = np.random.default_rng(seed)
    return [synth_file(rng, audio) for _ in range(count)]


# --- methods: frame scores of a whole file ------------------------------------------------------


class SwishMethod:
    def __init__(self, name: str) -> None:
        self.name = name
        model, self.card = load_model(DATA / "models" / f"{name}.safetensors")
        if not isinstance(model, SwishNet):
            raise SystemExit(f"{name}: not a SwishNet ({type(model).__name__})")
        self.model = model
        pre = self.card.preprocessing
        self.mean = np.asarray(pre["standardize"]["mean"], np.float32)
        self.std = np.asarray(pre["standardize"]["std"], np.float32)
        self.context = round(pre["context_seconds"] * FPS)
        self.params = sum(p.numel() for p in self.model.parameters())

    def frames(self, y: np.ndarray) -> np.ndarray:
        x = (mfcc(y) - self.mean) / self.std
        return torch.softmax(
            torch.from_numpy(swishnet_frame_logits(self.model, x, self.context)), 1
        ).numpy()

    def clip_scores(self, split_clips: seg.Clips) -> np.ndarray:
        return seg.clip_predict(self.model, split_clips.x)


class FrameMethod:
    """GMM or FNN: per-frame scores averaged over the context window."""

    def __init__(self, kind: str, base: dict, context_s: float) -> None:
        self.kind, self.base = kind, base
        self.name = f"{kind}_{context_s:g}s"
        self.context = round(context_s * FPS)
        if kind == "fnn":
            self.net = seg.FrameMlp(n_in=len(base["mean"]))
            self.net.load_state_dict(base["fnn"])
            self.net.eval()
            self.params = sum(p.numel() for p in self.net.parameters())
        else:
            self.params = base["gmm"].params()

    def frame_scores(self, m: np.ndarray) -> np.ndarray:
        f = ((seg.with_deltas(m) - self.base["mean"]) / self.base["std"]).astype(np.float32)
        if self.kind == "gmm":
            return self.base["gmm"].frame_scores(f)
        return seg.frame_log_probs(self.net, f)

    def frames(self, y: np.ndarray) -> np.ndarray:
        return context_mean(self.frame_scores(mfcc(y)), self.context)

    def clip_scores_stream(self, split: str, frames: int) -> tuple[np.ndarray, np.ndarray]:
        """Clip decisions on the test streams (same clips as `clips('test', ...)`)."""
        preds, truth = [], []
        for k, cls in enumerate(CLASSES):
            d = stream(split, cls)
            s = self.frame_scores(d["mfcc"])
            c = seg.cut_clips(d["mfcc"], d["silent"], None, k, frames, frames)
            preds += [s[st : st + frames].mean(0).argmax() for st in c.start]
            truth += [k] * len(c.start)
        return np.asarray(preds), np.asarray(truth)


class Mn04Gate:
    """The content gate of `tag` (mgctag.content) on 1 s windows at a 0.5 s hop."""

    name = "mn04_gate"

    def __init__(self) -> None:
        from mgctag.genres import default_map
        from mgctag.models.audioset import AudiosetNet

        self.net = AudiosetNet()
        self.gate = self.net.gate(default_map())
        self.params = sum(p.numel() for p in self.net.module.parameters())

    def frames(self, y: np.ndarray) -> np.ndarray:
        """One-hot (frames, 3) of the gate's window classes, each frame from the nearest window."""
        y32 = decode.convert(y, SR, 32000)
        starts = np.arange(0, max(1, len(y32) - 32000 + 1), 16000)
        probs = np.concatenate(
            [
                self.net([y32[s : s + 32000] for s in starts[b : b + 64]])[0]
                for b in range(0, len(starts), 64)
            ]
        )
        cls = self.gate.classify(probs)
        idx = np.asarray([0 if c == SPEECH else 1 if c == MUSIC else 2 for c in cls])
        n = 1 + len(y) // HOP
        centre = (np.arange(n) / FPS - 0.5) / 0.5
        w = np.clip(np.round(centre), 0, len(idx) - 1).astype(int)
        return np.eye(3, dtype=np.float32)[idx[w]]


class Peer:
    """inaSpeechSegmenter's intervals (tools.experiments.peer_inaseg) as frame scores, by file."""

    name = "inaSpeechSegmenter"
    LABELS = {"speech": 0, "music": 1, "noise": 2, "noEnergy": 3}

    def __init__(self, path: Path) -> None:
        self.result = json.loads(path.read_text())
        self.params = self.result["_params"]

    def frames_of(self, i: int, y: np.ndarray) -> np.ndarray:
        """(frames, 4): speech, music, noise and "no energy" (never right on a scored frame)."""
        n = 1 + len(y) // HOP
        out = np.zeros((n, 4), np.float32)
        out[:, 3] = 1.0
        t = np.arange(n) / FPS
        for label, start, end in self.result[synth_name(i)]:
            inside = (t >= start) & (t < end)
            out[inside] = np.eye(4, dtype=np.float32)[self.LABELS[label]]
        return out


def synth_name(i: int) -> str:
    return f"synth_{i:04d}"


def dump(data: list[tuple[np.ndarray, np.ndarray]], folder: Path) -> None:
    """The synthetic files as 16 kHz WAV (for the peer) and their frame truth (one .npy each)."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    for i, (y, truth) in enumerate(data):
        sf.write(folder / f"{synth_name(i)}.wav", y, SR, subtype="PCM_16")
        np.save(folder / f"{synth_name(i)}.truth.npy", truth)


# --- scoring ------------------------------------------------------------------------------------


def frame_scores(method, data: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
    return [method.frames(y) for y, _ in data]


def score(scores: list[np.ndarray], data, median_s: float) -> dict[str, Any]:
    """Frame accuracy and per-class recall over the scored (non-silent) frames."""
    pred, truth = [], []
    for s, (_, t) in zip(scores, data, strict=True):
        p = smooth(s, int(round(median_s * FPS)) | 1).argmax(1)
        n = min(len(p), len(t))
        keep = t[:n] >= 0
        pred.append(p[:n][keep])
        truth.append(t[:n][keep])
    # right and scored frames per file: for a bootstrap over files of one method against another
    per_file = [[int((a == b).sum()), len(b)] for a, b in zip(pred, truth, strict=True)]
    p, t = np.concatenate(pred), np.concatenate(truth)
    out: dict[str, Any] = {"frame_acc": float((p == t).mean()), "per_file": per_file}
    out |= {f"recall_{c}": float((p[t == k] == k).mean()) for k, c in enumerate(CLASSES)}
    # rows: true speech / music / noise; columns: the share called speech / music / noise
    out["confusion"] = [
        [round(float((p[t == k] == j).mean()), 4) for j in range(3)] for k in range(3)
    ]
    return out


def clip_report(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    out = {"acc": float((pred == truth).mean()), "n": int(len(truth))}
    return out | {
        f"recall_{c}": float((pred[truth == k] == k).mean()) for k, c in enumerate(CLASSES)
    }


def cpu_per_minute(method, y: np.ndarray, reps: int = 3) -> float:
    """Seconds of one-thread CPU per minute of audio, features included (best of reps)."""
    torch.set_num_threads(1)
    best = float("inf")
    for _ in range(reps):
        t0 = time.process_time()
        method.frames(y)
        best = min(best, time.process_time() - t0)
    return best * 60 * SR / len(y)


def mn04_cpu_10s(gate: Mn04Gate, y: np.ndarray, reps: int = 3) -> float:
    """mn04's cheapest use (as `tag` runs it): non-overlapping 10 s windows, resampling included."""
    torch.set_num_threads(1)
    best = float("inf")
    for _ in range(reps):
        t0 = time.process_time()
        y32 = decode.convert(y, SR, 32000)
        gate.net([y32[s : s + 320000] for s in range(0, len(y32), 320000)])
        best = min(best, time.process_time() - t0)
    return best * 60 * SR / len(y)


def table(paths: list[Path]) -> str:
    """The markdown table of one or more result files (methods in the order found)."""
    rows: dict[str, dict[str, Any]] = {}
    for p in paths:
        rows |= {k: v for k, v in json.loads(p.read_text()).items() if k != "synthetic"}
    head = (
        "| method | params | clip acc 0.5 / 1 / 2 s | clip recall sp / mu / no (1 s) | median | "
        "synthetic frame acc | sp / mu / no recall | CPU s per min |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for name, r in rows.items():
        clip = r["clip"]
        if name.startswith(("gmm_", "fnn_")):  # one context each: its clips are that long
            clip = {name.split("_")[1]: next(iter(clip.values()))}
        accs = " / ".join(
            f"{clip[k]['acc']:.3f}" if k in clip else "–" for k in ("0.5s", "1s", "2s")
        )
        one = clip.get("1s") or next(iter(clip.values()), None)
        rec = " / ".join(f"{one[f'recall_{c}']:.3f}" for c in CLASSES) if one else "–"
        syn = r["synthetic"]
        srec = " / ".join(f"{syn[f'recall_{c}']:.3f}" for c in CLASSES)
        cpu = f"{r['cpu_s_per_min']:.3f}"
        if "cpu_s_per_min_10s_windows" in r:
            cpu += f" ({r['cpu_s_per_min_10s_windows']:.3f} on 10 s windows)"
        lines.append(
            f"| {name} | {r['params']:,} | {accs} | {rec} | {r['median_s']:g} s | "
            f"{syn['frame_acc']:.3f} | {srec} | {cpu} |"
        )
    return "\n".join(lines)


def compare(path: Path, a: str, b: str, draws: int = 2000) -> str:
    """Frame accuracy of method a minus method b on the same synthetic files, with a bootstrap
    over files (95 % interval): whether a difference is more than which files were drawn."""
    r = json.loads(path.read_text())
    fa = np.asarray(r[a]["synthetic"]["per_file"], float)
    fb = np.asarray(r[b]["synthetic"]["per_file"], float)
    point, lo, hi = paired_bootstrap(fa, fb, draws)
    span = f"{100 * lo:+.2f} to {100 * hi:+.2f}"
    return f"{a} - {b}: {100 * point:+.2f} points (95 % bootstrap over files: {span})"


def paired_bootstrap(
    fa: np.ndarray, fb: np.ndarray, draws: int = 2000
) -> tuple[float, float, float]:
    """Accuracy of a minus b from (right, scored) rows per file, the same files in the same
    order, and its 95 % interval when the files are drawn again with replacement."""
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(fa), (draws, len(fa)))
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = fa[idx, 0].sum(1) / fa[idx, 1].sum(1) - fb[idx, 0].sum(1) / fb[idx, 1].sum(1)
    point = fa[:, 0].sum() / fa[:, 1].sum() - fb[:, 0].sum() / fb[:, 1].sum()
    lo, hi = np.nanquantile(diff, [0.025, 0.975])
    return float(point), float(lo), float(hi)


def main() -> None:
    if sys.argv[1:2] == ["table"]:
        print(table([Path(p) for p in sys.argv[2:]]))
        return
    if sys.argv[1:2] == ["compare"]:  # compare RESULTS.json A B
        print(compare(Path(sys.argv[2]), sys.argv[3], sys.argv[4]))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=60)
    ap.add_argument("--val-files", type=int, default=20)
    ap.add_argument("--models", nargs="*", default=None)
    ap.add_argument("--no-mn04", action="store_true")
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--out", type=Path, default=DATA / "eval.json")
    ap.add_argument("--dump", type=Path, help="write the synthetic test files here (WAV)")
    ap.add_argument("--peer", type=Path, help="score inaSpeechSegmenter's intervals (JSON)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    mean, std = standardisation()
    found = sorted(p.stem for p in (DATA / "models").glob("seg_*.safetensors"))
    names = a.models if a.models is not None else found
    methods: list = [SwishMethod(n) for n in names]
    if not a.no_baselines:
        base = pickle.loads((DATA / "models" / "baselines.pkl").read_bytes())
        methods += [FrameMethod(k, base, c) for k in ("gmm", "fnn") for c in CONTEXTS]
    if not a.no_mn04:
        methods.append(Mn04Gate())
    test_clips = {c: clips("test", c, mean, std) for c in CONTEXTS}
    val = synth_set("val", a.val_files, seed=1)
    test = synth_set("test", a.files, seed=2)
    if a.dump:
        dump(test, a.dump)
    minute = (
        test[0][0][: 60 * SR] if len(test[0][0]) >= 60 * SR else np.tile(test[0][0], 3)[: 60 * SR]
    )
    results = {
        "synthetic": {
            "files": a.files,
            "seconds": sum(len(y) for y, _ in test) / SR,
            "val_files": a.val_files,
        }
    }
    for m in methods:
        r: dict = {"params": int(m.params)}
        if isinstance(m, SwishMethod):
            r["clip"] = {
                f"{c:g}s": clip_report(m.clip_scores(test_clips[c]).argmax(1), test_clips[c].y)
                for c in CONTEXTS
            }
        elif isinstance(m, FrameMethod):
            c = m.name.split("_")[1]
            r["clip"] = {c: clip_report(*m.clip_scores_stream("test", m.context))}
        else:
            r["clip"] = {
                f"{c:g}s": clip_report(
                    np.nan_to_num(test_clips[c].teacher).argmax(1), test_clips[c].y
                )
                for c in CONTEXTS
            }
        vs = frame_scores(m, val)
        tuned = {med: score(vs, val, med)["frame_acc"] for med in MEDIANS_S}
        med = max(tuned, key=tuned.__getitem__)
        t0 = time.time()
        ts = frame_scores(m, test)
        r["synthetic_wall_s"] = round(time.time() - t0, 1)
        r["median_s"] = med
        r["val_frame_acc"] = tuned
        r["synthetic"] = score(ts, test, med)
        r["cpu_s_per_min"] = round(cpu_per_minute(m, minute), 3)
        if isinstance(m, Mn04Gate):
            r["cpu_s_per_min_10s_windows"] = round(mn04_cpu_10s(m, minute), 3)
        results[m.name] = r
        print(m.name, json.dumps(r), flush=True)
        a.out.write_text(json.dumps(results, indent=1))
    if a.peer:
        peer = Peer(a.peer)
        ps = [peer.frames_of(i, y) for i, (y, _) in enumerate(test)]
        pairs = zip(ps, test, strict=True)
        silent = np.concatenate([p[: len(t)][t >= 0, 3] for p, (_, t) in pairs])
        results[peer.name] = {
            "params": peer.params,
            "clip": {},
            "median_s": 0.0,
            "synthetic": score(ps, test, 0.0),
            "no_energy_share": float(silent.mean()),
            "cpu_s_per_min": round(peer.result["_cpu_s_per_min"], 3),
        }
        print(peer.name, json.dumps(results[peer.name]), flush=True)
        a.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
