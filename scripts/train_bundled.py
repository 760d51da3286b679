"""Reproduce the bundled seed-paper students: distil musicnn's genre judgement into them.

Two steps, both resumable (re-run the same command after an interruption):

    # 1. features + teacher outputs for the unlabelled corpus and the MUSDB check set, once
    python scripts/train_bundled.py cache --separator cascade --max-tracks 0
    # 2. train every student (checkpoint per epoch), evaluate on MUSDB, write weights + cards
    python scripts/train_bundled.py train --out weights

Training audio: the Debian game-soundtrack corpus (/work/corpus, see MANIFEST.tsv; fetched by
../shared/corpus/fetch-debian-music.sh) plus the music among ../shared/audio. The MUSDB18 previews
are never trained on: they are the check (teacher agreement, and accuracy against genres.csv where
its genre is one of the students' classes). The cache lives outside the repo (--cache-dir).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mgctag.audio.decode import DecodeError
from mgctag.genres import GenreMap
from mgctag.models.registry import ARCHITECTURES, ModelCard, save_model
from mgctag.separate import get_separator
from mgctag.train import distill

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "audio"
CORPUS = Path("/work/corpus")
MUSDB = SHARED / "musdb18-7s"
# the music in ../shared/audio (its librosa folder also holds speech and animal sounds)
SHARED_MUSIC = [
    *sorted((SHARED / "arcade").glob("*.mp3")),
    SHARED / "pygame" / "house_lo.mp3",
    *(
        SHARED / "librosa" / f"{n}.hq.ogg"
        for n in (
            "Kevin_MacLeod_-_Vibe_Ace",
            "Kevin_MacLeod_-_P_I_Tchaikovsky_Dance_of_the_Sugar_Plum_Fairy",
            "Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra)",
            "442789__lena-orsa__happy-music-pistachio-ice-cream-ragtime",
            "147793__setuniman__sweet-waltz-0i-22mi",
            "admiralbob77_-_Choice_-_Drum-bass",
            "Karissa_Hobbs_-_Let's_Go_Fishin'",
            "sorohanro_-_solo-trumpet-06",
        )
    ),
]

# name -> architecture, its arguments (n_classes is added), input, training settings.
STUDENTS: dict[str, dict] = {
    "stemcnn_sep": {
        "arch": "stemcnn",
        "args": {"in_channels": 3, "separable": True},
        "input": "stems",
        "train": {"lr": 1e-3, "l1": 1e-6, "l2": 1e-5},
        "paper": "music genre classification with source separation and depthwise separable "
        "convolutions",
    },
    "ecapa_ccs_fsa": {
        "arch": "ecapa_tdnn",
        "args": {
            "cont": 128,
            "stop": 32,
            "mfa_channels": 384,
            "embedding_dim": 128,
            "n_bands": 3,
            "shared_frontend": True,
        },  # fmt: skip
        "input": "mel",
        "train": {"lr": 1e-3, "weight_decay": 1e-4},
        "paper": "ECAPA-TDNN with convolution channel separation and frequency sub-band "
        "aggregation",
    },
    "swishnet_slim": {
        "arch": "swishnet",
        "args": {"width": 1},
        "input": "mfcc",
        "train": {"lr": 3e-3},
        "paper": "SwishNet (Hussain & Haque 2018), trained by knowledge distillation",
    },
}


def training_files(max_tracks: int) -> list[Path]:
    """Corpus files from MANIFEST.tsv plus the shared music; every k-th one when subsampling."""
    files = list(SHARED_MUSIC)
    manifest = CORPUS / "MANIFEST.tsv"
    if manifest.exists():
        for row in manifest.read_text().splitlines():
            parts = row.split("\t")
            if len(parts) >= 2 and (CORPUS / parts[1]).is_file():
                files.append(CORPUS / parts[1])
    if max_tracks and len(files) > max_tracks:
        step = len(files) / max_tracks
        files = [files[int(i * step)] for i in range(max_tracks)]
    return files


def musdb_files(limit: int = 0) -> list[Path]:
    """The MUSDB18 previews (their mixture stream), every k-th one when `limit` is set."""
    files = sorted((MUSDB / "train").glob("*.stem.mp4"))
    return files[:: max(1, len(files) // limit)][:limit] if limit else files


def build_cache(files: list[Path], dest: Path, args: argparse.Namespace, teacher) -> list[Path]:
    """Cache every file (skipping those already cached); returns the cache files made."""
    dest.mkdir(parents=True, exist_ok=True)
    separator = None if args.separator == "none" else get_separator(args.separator, "cpu")
    out, t0 = [], time.perf_counter()
    for i, path in enumerate(files, 1):
        try:
            cached = distill.cache_track(path, dest, teacher, separator, windows=args.windows)
        except DecodeError as exc:
            print(f"skip: {exc}", file=sys.stderr)
            continue
        if cached:
            out.append(cached)
        print(f"[{i}/{len(files)}] {time.perf_counter() - t0:.0f}s {path.name}", flush=True)
    (dest / "index.json").write_text(json.dumps([str(p) for p in out], indent=1))
    return out


def cmd_cache(args: argparse.Namespace) -> None:
    teacher = distill.Teacher()
    root = Path(args.cache_dir) / args.separator
    build_cache(training_files(args.max_tracks), root / "train", args, teacher)
    build_cache(musdb_files(args.max_check), root / "check", args, teacher)


def musdb_truth(sources: list[str], gmap: GenreMap, classes: list[str]) -> np.ndarray:
    """Class index of each MUSDB preview's genres.csv genre, -1 where it is not a class."""
    with open(MUSDB / "genres.csv", newline="") as f:
        genre = {r["file"]: gmap.normalize(r["genre"]) for r in csv.DictReader(f)}
    return np.array([classes.index(g) if (g := genre.get(Path(s).name)) in classes else -1
                     for s in sources])  # fmt: skip


def check_metrics(model, data: distill.PatchSet, kind: str, truth: np.ndarray) -> dict:
    """MUSDB check: patch agreement with the teacher; track accuracy, student and teacher."""
    x = distill.student_input(data, kind)
    metrics = distill.evaluate(model, x, data.teacher)
    with torch.inference_mode():
        probs = torch.softmax(model(x.float())[0], dim=1).numpy()
    tracks = np.arange(len(data.sources))
    student = np.array([probs[data.track == t].mean(0).argmax() for t in tracks])
    teacher = np.array([data.teacher[data.track == t].mean(0).argmax() for t in tracks])
    known = truth >= 0
    metrics.update(
        {
            "tracks_with_known_genre": int(known.sum()),
            "student_accuracy": round(float((student == truth)[known].mean()), 4),
            "teacher_accuracy": round(float((teacher == truth)[known].mean()), 4),
        }
    )
    return metrics


def cmd_train(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    gmap = GenreMap.load(Path(args.genre_map)) if args.genre_map else GenreMap.load()
    teacher_labels = distill.Teacher().labels
    classes = distill.teacher_classes(gmap, teacher_labels)
    root = Path(args.cache_dir) / args.separator
    load = lambda d: distill.load_patches(  # noqa: E731
        [Path(p) for p in json.loads((root / d / "index.json").read_text())],
        teacher_labels, gmap, classes,
    )  # fmt: skip
    data, check = load("train"), load("check")
    rng = np.random.default_rng(0)
    val_tracks = rng.random(len(data.sources)) < 0.1  # split by track, not by patch
    train, val = data.subset(~val_tracks[data.track]), data.subset(val_tracks[data.track])
    truth = musdb_truth(check.sources, gmap, classes)
    sizes = [f"{k} {len(d)} patches / {len(d.sources)} tracks" for k, d in
             (("train", train), ("val", val), ("check", check))]  # fmt: skip
    print(f"{len(classes)} classes; {', '.join(sizes)}")
    counts = np.bincount(train.labels, minlength=len(classes)).tolist()
    print("teacher label counts:", dict(zip(classes, counts, strict=True)))
    names = args.only or list(STUDENTS)
    for name in names:
        spec = STUDENTS[name]
        if spec["input"] not in train.inputs:
            print(f"{name}: skipped, the cache has no {spec['input']} (use --separator cascade)")
            continue
        arch_args = {"n_classes": len(classes), **spec["args"]}
        model = ARCHITECTURES[spec["arch"]](**arch_args)
        cfg = distill.TrainConfig(epochs=args.epochs, **spec["train"])
        x_train = distill.student_input(train, spec["input"])
        val_set = (distill.student_input(val, spec["input"]), val.teacher) if len(val) else None
        ckpt = Path(args.cache_dir) / "checkpoints" / f"{name}-{args.separator}.safetensors"
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        history = distill.train_student(
            model, (x_train, train.teacher, train.labels), val_set, cfg, ckpt,
            log=lambda s, n=name: print(f"{n}: {s}", flush=True),
        )  # fmt: skip
        metrics = check_metrics(model, check, spec["input"], truth)
        print(f"{name}: MUSDB check {json.dumps(metrics)}")
        card = ModelCard(
            name=name,
            arch=spec["arch"],
            labels=classes,
            arch_args=model.config,
            preprocessing={
                "input": spec["input"],
                "features": "mfcc" if spec["input"] == "mfcc" else "log_mel",
                "sample_rate": 16000,
                "patch_frames": 187,
                **(
                    {"stems": list(distill.STEMS[:3]), "separator": args.separator}
                    if spec["input"] == "stems"
                    else {}
                ),  # fmt: skip
            },
            outputs={"activation": "softmax", "embedding_dim": _embedding_dim(model, x_train)},
            source={
                "method": "knowledge distillation from musicnn genre outputs",
                "teachers": list(distill.TEACHERS),
                "paper": spec["paper"],
                "train_tracks": len(train.sources),
                "train_patches": len(train),
                "script": "scripts/train_bundled.py",
                "command": " ".join(sys.argv),
                "train_config": cfg.__dict__,
            },
            licence={
                "weights": "MIT (mgctag)",
                "teacher": "musicnn, ISC",
                "data": "Debian-free game soundtracks + shared example music",
            },  # fmt: skip
            extra={
                "metrics": {"musdb_check": metrics, "final_epoch": history[-1] if history else {}}
            },
        )
        print(f"{name}: wrote {save_model(model, card, Path(args.out))}")


def _embedding_dim(model, x: torch.Tensor) -> int:
    with torch.inference_mode():
        return int(model.eval()(x[:1].float())[1].shape[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache-dir", default="/work/cache/distill")
    ap.add_argument("--separator", default="cascade", choices=["cascade", "hpss", "none"])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cache", help="features + teacher outputs, once per file")
    c.add_argument("--max-tracks", type=int, default=0, help="subsample the corpus (0: all)")
    c.add_argument("--max-check", type=int, default=0, help="subsample MUSDB (0: all 70)")
    c.add_argument("--windows", type=int, default=3, help="10 s windows per track")
    t = sub.add_parser("train", help="distil every student, evaluate, write weights + cards")
    t.add_argument("--out", default=str(REPO / "weights"))
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--only", nargs="*", choices=list(STUDENTS))
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--genre-map", default=None)
    args = ap.parse_args()
    {"cache": cmd_cache, "train": cmd_train}[args.cmd](args)


if __name__ == "__main__":
    main()
