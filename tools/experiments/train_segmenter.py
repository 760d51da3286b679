"""Train the speech / music / noise detectors of issue 13 on the streams of tools.data.segment_data.

The data folder is MGCTAG_SEGDATA (default /work/data/segdata: tools.data.segment_data --out),
the clips per class MGCTAG_SEG_CLIPS (default 3000; the bundled detector: 20000).

    python -m tools.experiments.train_segmenter prepare               # MFCC + silence per stream
    python -m tools.experiments.train_segmenter swishnet --width 1 --context 1 [--distill]
    python -m tools.experiments.train_segmenter baselines             # GMM and FNN
    python -m tools.experiments.train_segmenter melcnn --width 16 --context 1 --distill --augment
    python -m tools.experiments.train_segmenter bundle NAME --median 1.0 [--as segmenter_melcnn]

SwishNet variants are saved (safetensors + card) under DATA/models/; the epoch with the best
validation clip accuracy is kept. One thread by default (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import time
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from mgctag.models.cards import ModelCard
from mgctag.models.melcnn import MelCnn
from mgctag.models.registry import save_model
from mgctag.models.swishnet import SwishNet
from mgctag.options import SEGMENTERS
from mgctag.segments.detector import (
    CLASSES,
    FPS,
    N_MELS,
    N_MFCC,
    SILENCE_DB,
    chunked_features,
    frame_db,
    mfcc,
    silent_frames,
    telephone_mel,
)
from mgctag.train.distill import DistillConfig
from tools.experiments import segmenter_training as seg
from tools.paths import WEIGHTS

DATA = Path(os.environ.get("MGCTAG_SEGDATA", "/work/data/segdata"))  # tools.data.segment_data --out
# clips per class and split: every class weighs the same and an epoch stays short
MAX_CLIPS = int(os.environ.get("MGCTAG_SEG_CLIPS", "3000"))


def stream(split: str, cls: str, kind: str = "mfcc") -> dict[str, np.ndarray]:
    """A class stream's MFCC (cached), silence mask and teacher probabilities; `kind` "mel": its
    telephone-band log-mel (cached) under "mfcc" instead, for the mel-CNN."""
    cache = DATA / f"{split}_{cls}.feats.npz"
    if not cache.exists():
        y = np.load(DATA / f"{split}_{cls}.npy").astype(np.float32) / 32767
        m = mfcc(y)
        np.savez(cache, mfcc=m, silent=silent_frames(frame_db(y, len(m))))
    d = dict(np.load(cache))
    if kind == "mel":
        mel = DATA / f"{split}_{cls}.mel.npy"
        if not mel.exists():
            y = np.load(DATA / f"{split}_{cls}.npy").astype(np.float32) / 32767
            np.save(mel, chunked_features(y, feats=telephone_mel)[: len(d["mfcc"])])
        d["mfcc"] = np.load(mel)
    t = DATA / f"{split}_{cls}.teacher.npy"
    d["teacher"] = np.load(t) if t.exists() else None
    return d


def standardisation(kind: str = "mfcc") -> tuple[np.ndarray, np.ndarray]:
    path = DATA / ("standardize.json" if kind == "mfcc" else f"standardize_{kind}.json")
    if not path.exists():
        mean, std = seg.standardizer([stream("train", c, kind)["mfcc"] for c in CLASSES])
        path.write_text(json.dumps({"mean": mean.tolist(), "std": std.tolist()}))
    d = json.loads(path.read_text())
    return np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32)


def clips(
    split: str,
    context_s: float,
    mean: np.ndarray,
    std: np.ndarray,
    seed: int = 0,
    kind: str = "mfcc",
) -> seg.Clips:
    """Clips of one split: train/val overlap (hop so each class gives about MAX_CLIPS), test
    non-overlapping."""
    frames = round(context_s * FPS)
    rng = np.random.default_rng(seed)
    parts = []
    for k, cls in enumerate(CLASSES):
        d = stream(split, cls, kind)
        x = (d["mfcc"] - mean) / std
        hop = frames if split == "test" else max(4, min(frames // 2, len(x) // MAX_CLIPS))
        c = seg.cut_clips(x, d["silent"], d["teacher"], k, frames, hop)
        if split != "test" and len(c.y) > MAX_CLIPS:
            keep = np.sort(rng.choice(len(c.y), MAX_CLIPS, replace=False))
            c = seg.Clips(c.x[keep], c.y[keep], c.teacher[keep], c.start[keep])
        parts.append(c)
    return seg.concat(parts)


def model_name(width: int, context: float, distill: bool, augment: bool = False) -> str:
    kind = "kd" if distill else "hard"
    return f"seg_{'wide' if width == 2 else 'slim'}_{kind}_{context:g}s" + (
        "_aug" if augment else ""
    )


def detector_card(
    a: argparse.Namespace,
    model: SwishNet | MelCnn,
    name: str,
    mean: np.ndarray,
    std: np.ndarray,
    train_clips: int,
    epoch: int,
    acc: float,
    seconds: float,
) -> ModelCard:
    """The card of a trained detector (or of one epoch's state, `--keep-epochs`)."""
    alpha = a.alpha if a.distill else 0.0
    mel = isinstance(model, MelCnn)
    return ModelCard(
        name=name,
        arch="melcnn" if mel else "swishnet",
        labels=list(CLASSES),
        arch_args=dict(cast(dict[str, Any], model.config)),
        preprocessing={
            # not a patch input: no genre tagger (catalog.card_kind)
            "input": "log_mel_frames" if mel else "mfcc_frames",
            "features": "mgctag.segments.detector." + ("telephone_mel" if mel else "mfcc"),
            "sample_rate": 16000,
            "hop": 256,
            "context_seconds": a.context,
            "median_seconds": 1.0,
            "silence_db": SILENCE_DB,
            "standardize": {
                "mean": [round(float(v), 5) for v in mean],
                "std": [round(float(v), 5) for v in std],
            },
        },
        outputs={
            "activation": "softmax over speech / music / noise per context window",
            "embedding_dim": model.classifier.in_features,
        },
        source={
            "trained_by": "mgctag (tools/experiments/train_segmenter.py)",
            "paper": "a log-mel 2-D CNN, issue 27's stronger option"
            if mel
            else "SwishNet (Hussain & Haque 2018): speech / music / noise",
            "distillation": {"teacher": "audioset_mn04", "T": a.T, "alpha": alpha}
            if a.distill
            else None,
            "train_clips": train_clips,
            "best_epoch": epoch,
            "val_clip_accuracy": round(acc, 4),
            "train_seconds": round(seconds, 1),
            "data": "docs/segments.md (data card)",
            "command": f"MGCTAG_SEG_CLIPS={MAX_CLIPS}"
            + f" python -m tools.experiments.train_segmenter {a.cmd}"
            + f" --width {a.width} --context {a.context:g}"
            + (f" --distill --T {a.T:g} --alpha {a.alpha:g}" if a.distill else "")
            + (" --augment" if a.augment else "")
            + (f" --gain-db {a.gain_db:g}" if getattr(a, "gain_db", 0) else "")
            + f" --epochs {a.epochs}"
            + (" --keep-epochs" if a.keep_epochs else ""),
        },
        licence={"weights": "MIT (mgctag)", "data": "see docs/segments.md"},
    )


def train_detector(a: argparse.Namespace) -> None:
    """SwishNet on MFCC clips (`swishnet`) or the mel-CNN on log-mel clips (`melcnn`)."""
    torch.set_num_threads(a.threads)
    kind = "mel" if a.cmd == "melcnn" else "mfcc"
    mean, std = standardisation(kind)
    train = clips("train", a.context, mean, std, kind=kind)
    val = clips("val", a.context, mean, std, kind=kind)
    model: SwishNet | MelCnn
    if a.seed:  # seed 0 is the bundled detectors' runs: their initial weights came unseeded
        torch.manual_seed(a.seed)
    if kind == "mel":
        model = MelCnn(n_classes=3, n_mels=N_MELS, width=a.width)
        name = f"seg_mel{a.width}_{'kd' if a.distill else 'hard'}_{a.context:g}s"
        name += ("_aug" if a.augment else "") + (f"_g{a.gain_db:g}" if a.gain_db else "")
    else:
        model = SwishNet(n_classes=3, n_mfcc=N_MFCC, width=a.width)
        name = model_name(a.width, a.context, a.distill, a.augment)
    name += f"_s{a.seed}" if a.seed else ""
    best: dict[str, Any] = {"acc": -1.0}
    t0 = time.time()
    alpha = a.alpha if a.distill else 0.0

    def card(label: str, epoch: int, acc: float) -> ModelCard:
        return detector_card(a, model, label, mean, std, len(train.y), epoch, acc, time.time() - t0)

    def on_epoch(epoch: int, loss: float) -> None:
        pred = seg.clip_predict(model, val.x).argmax(1)
        acc = float((pred == val.y).mean())
        rec = " ".join(f"{c} {(pred[val.y == k] == k).mean():.3f}" for k, c in enumerate(CLASSES))
        print(
            f"{name} epoch {epoch} loss {loss:.4f} val {acc:.4f} ({rec}) {time.time() - t0:.0f}s",
            flush=True,
        )
        if a.keep_epochs:  # every epoch's state, to choose on the validation broadcast set
            save_model(model, card(f"{name}_e{epoch}", epoch, acc), DATA / "models")
        if acc > best["acc"]:
            best.update(
                acc=acc, epoch=epoch, state={k: v.clone() for k, v in model.state_dict().items()}
            )
        model.train()

    aug = DistillConfig(augment="frames", tempo=0.06, mixup=0.3) if a.augment else None
    gain = (a.gain_db, 1.0 / std) if getattr(a, "gain_db", 0) else None
    seg.train_clips(
        model,
        train,
        epochs=a.epochs,
        T=a.T,
        alpha=alpha,
        lr=a.lr,
        seed=a.seed,
        on_epoch=on_epoch,
        augment=aug,
        gain=gain,
    )
    model.load_state_dict(best["state"])
    model.eval()
    save_model(model, card(name, best["epoch"], best["acc"]), DATA / "models")
    print(f"saved {name}: val {best['acc']:.4f} at epoch {best['epoch']}")


def train_baselines(a: argparse.Namespace) -> None:
    """GMM (16 diagonal components per class) and FNN on MFCC + deltas of non-silent frames."""
    torch.set_num_threads(a.threads)
    rng = np.random.default_rng(0)
    frames, labels = [], []
    for k, cls in enumerate(CLASSES):
        d = stream("train", cls)
        f = seg.with_deltas(d["mfcc"])[~d["silent"]]
        f = f[rng.choice(len(f), min(len(f), a.frames), replace=False)]
        frames.append(f)
        labels.append(np.full(len(f), k))
    mean = np.concatenate(frames).mean(0)
    std = np.concatenate(frames).std(0) + 1e-6
    frames = [((f - mean) / std).astype(np.float32) for f in frames]
    t0 = time.time()
    gmm = seg.GmmBaseline(a.components).fit(frames)
    print(f"gmm fitted in {time.time() - t0:.0f}s, {gmm.params()} params", flush=True)
    fnn = seg.FrameMlp(n_in=frames[0].shape[1])
    hist = seg.train_frames(fnn, np.concatenate(frames), np.concatenate(labels), epochs=a.epochs)
    print(f"fnn losses {[round(h, 4) for h in hist]}")
    with open(DATA / "models" / "baselines.pkl", "wb") as fh:  # outside the repository
        pickle.dump({"gmm": gmm, "fnn": fnn.state_dict(), "mean": mean, "std": std}, fh)


def bundle(a: argparse.Namespace) -> None:
    """Copy a trained model to weights/AS.* (a `segments --model` name of `options.SEGMENTERS`)
    with the chosen median filter."""
    src = DATA / "models" / f"{a.name}.json"
    card = json.loads(src.read_text())
    card["name"] = a.as_name
    card["preprocessing"]["median_seconds"] = a.median
    card["source"]["trained_as"] = a.name
    if a.metrics:
        card["metrics"] = json.loads(Path(a.metrics).read_text())
    shutil.copy(DATA / "models" / f"{a.name}.safetensors", WEIGHTS / f"{a.as_name}.safetensors")
    (WEIGHTS / f"{a.as_name}.json").write_text(json.dumps(card, indent=2) + "\n")


def detector_parser(s: argparse.ArgumentParser) -> None:
    s.add_argument("--width", type=int, default=1, help="SwishNet 1 / 2; mel-CNN channels (16)")
    s.add_argument("--context", type=float, default=1.0)
    s.add_argument("--distill", action="store_true")
    s.add_argument("--T", type=float, default=2.0)
    s.add_argument("--alpha", type=float, default=0.5)
    s.add_argument("--epochs", type=int, default=5)
    s.add_argument("--augment", action="store_true", help="tempo and mixup of the clips")
    s.add_argument("--gain-db", type=float, default=0.0, help="random level change (mel-CNN)")
    s.add_argument("--lr", type=float, default=3e-3)
    s.add_argument("--threads", type=int, default=1)
    s.add_argument(
        "--keep-epochs", action="store_true", help="save each epoch as NAME_eK (choose on val)"
    )
    s.add_argument(
        "--seed", type=int, default=0, help="another run of the same recipe (names get _sN)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("prepare")
    for arch in ("swishnet", "melcnn"):
        detector_parser(sub.add_parser(arch))
    b = sub.add_parser("baselines")
    b.add_argument("--components", type=int, default=16)
    b.add_argument("--frames", type=int, default=60000)
    b.add_argument("--epochs", type=int, default=5)
    b.add_argument("--threads", type=int, default=1)
    u = sub.add_parser("bundle")
    u.add_argument("name")
    u.add_argument("--median", type=float, default=1.0)
    u.add_argument("--metrics")
    u.add_argument("--as", dest="as_name", choices=SEGMENTERS, default="segmenter_swishnet")
    a = ap.parse_args()
    (DATA / "models").mkdir(parents=True, exist_ok=True)
    if a.cmd == "prepare":
        for split in ("train", "val", "test"):
            for cls in CLASSES:
                d = stream(split, cls)
                print(split, cls, d["mfcc"].shape, f"{d['silent'].mean():.3f} silent", flush=True)
        print(standardisation())
    elif a.cmd in ("swishnet", "melcnn"):
        train_detector(a)
    elif a.cmd == "baselines":
        train_baselines(a)
    else:
        bundle(a)


if __name__ == "__main__":
    main()
