"""Reproduce the bundled seed-paper students: distil musicnn's genre judgement into them.

Three steps, all resumable (re-run the same command after an interruption):

    # 1. features + teacher outputs for the unlabelled corpus and the MUSDB check set, once
    python -m tools.experiments.train_bundled --separator hpss cache
    # 2. train every student (checkpoint per epoch), evaluate, write weights + cards
    python -m tools.experiments.train_bundled --separator hpss train --out weights
    # 3. musicnn alone and a prior-only baseline on the same check data
    python -m tools.experiments.train_bundled --separator hpss teacher

Training audio: the Debian game-soundtrack corpus (/work/corpus, see MANIFEST.tsv; fetched by
../shared/corpus/fetch-debian-music.sh) plus the music among ../shared/audio. Whole packages
(HOLDOUT) are held out to measure agreement with the teacher. The MUSDB18 previews are never
trained on: they are the check (genre hit rates against genres.csv, by
tools.experiments.genre_sanity's rule). The cache lives outside the repo (--cache-dir).
docs/models.md has the numbers.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mgctag.audio import decode
from mgctag.audio.decode import DecodeError
from mgctag.content import ContentGate, decide
from mgctag.genres import (
    GenreMap,
    blend_scores,
    combine_models,
    mean_scores,
    mean_tag_probs,
    select_genres,
)
from mgctag.models.cards import ModelCard
from mgctag.models.catalog import AUDIOSET_MODEL, DEFAULT_TAGGER, selection
from mgctag.models.inputs import select_input
from mgctag.models.registry import ARCHITECTURES, load_model, save_model
from mgctag.models.stemcnn import PAPER_STEMS
from mgctag.models.tagger import MUSICNN_MODELS, prepare_input, student_decision
from mgctag.separate import get_separator
from mgctag.train import distill
from tools.experiments import genre_sanity  # the hit rule, shared
from tools.paths import AUDIO, MUSDB, WEIGHTS

# the Debian music corpus (../shared/corpus/fetch-debian-music.sh DEST full), the music of more
# Debian game-data packages (one folder per package: docs/data/distill-corpus.md says how they
# are fetched) and speech / sound-effect folders for the students' not-music outputs
CORPUS = Path(os.environ.get("MGCTAG_CORPUS", "/work/data/corpus"))  # fetch-debian-music.sh
EXTRA_MUSIC = Path("/work/data/music-x")
NOT_MUSIC = tuple(
    Path("/work/data") / d for d in ("speech-en", "speech", "speech-streams", "noise")
)  # speech-streams: ktuberling's wideband words joined by tools/data/speech_streams.py
AUDIO_SUFFIXES = (".ogg", ".mp3", ".wav", ".flac", ".opus")
MUSIC_PATH = re.compile(r"music|bgm|/mus/|mainzik", re.IGNORECASE)
# the music in ../shared/audio (its librosa folder also holds speech and animal sounds)
SHARED_MUSIC = [
    *sorted((AUDIO / "arcade").glob("*.mp3")),
    AUDIO / "pygame" / "house_lo.mp3",
    *(
        AUDIO / "librosa" / f"{n}.hq.ogg"
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
        "separator": "hpss",
        "train": {"lr": 1e-3, "l1": 1e-6, "l2": 1e-5, "epochs": 5},
        "paper": "music genre classification with source separation and depthwise separable "
        "convolutions",
    },
    "stemcnn_cascade": {  # the same network on the stems of the cascade separator, as the paper
        "arch": "stemcnn",
        "args": {"in_channels": 3, "separable": True},
        "input": "stems",
        "separator": "cascade",
        "train": {"lr": 1e-3, "l1": 1e-6, "l2": 1e-5, "epochs": 5},
        "paper": "music genre classification with source separation and depthwise separable "
        "convolutions",
    },
    "stemcnn_mix": {  # the same network on the mix: the stem paper's baseline
        "arch": "stemcnn",
        "args": {"in_channels": 1, "separable": True},
        "input": "mel",
        "train": {"lr": 1e-3, "l1": 1e-6, "l2": 1e-5, "epochs": 5},
        "paper": "music genre classification with source separation and depthwise separable "
        "convolutions (its one-spectrogram baseline)",
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
        "train": {"lr": 1e-3, "weight_decay": 1e-4, "epochs": 4},
        "paper": "ECAPA-TDNN with convolution channel separation and frequency sub-band "
        "aggregation",
    },
    "swishnet_slim": {
        "arch": "swishnet",
        "args": {"width": 1},
        "input": "mfcc",
        "train": {"lr": 3e-3, "epochs": 15},
        "paper": "SwishNet (Hussain & Haque 2018), trained by knowledge distillation",
    },
    "crnn_small": {
        "arch": "crnn",
        "args": {"channels": [32, 64, 64, 64], "hidden": 64, "lstm_layers": 2},
        "input": "mel",
        "train": {"lr": 1e-3, "weight_decay": 1e-4, "epochs": 4},
        "paper": "CNN/CRNN baselines on mel spectrograms (CNN front end, stacked LSTM)",
    },
    "mobilenetv2_half": {
        "arch": "mobilenetv2",
        "args": {"width": 0.5, "tap": "shallow"},
        "input": "mel",
        "train": {"lr": 1e-3, "weight_decay": 1e-4, "epochs": 4},
        "paper": "MobileNetV2 (Sandler et al. 2018) on log-mels, embeddings at three depths",
    },
}
# the genres a retrained student writes: the default's selection (not tuned for the students)
STUDENT_SELECTION = selection(DEFAULT_TAGGER)
# corpus packages held out of training: teacher agreement is measured on them (grouped by package,
# so no soundtrack is both trained on and tested on)
TEACHERS = MUSICNN_MODELS  # the musicnn pair whose genre judgement the students learn

HOLDOUT = ("nexuiz-music", "singularity-music", "speech-streams/ktuberling-en", "noise/pingus-data")


def training_files(max_tracks: int) -> list[Path]:
    """Shared music, then corpus files from MANIFEST.tsv taken round-robin over the packages.

    Round-robin, so that any prefix of the list (a cache cut short) covers every soundtrack.
    """
    by_package: dict[str, list[Path]] = {}
    manifest = CORPUS / "MANIFEST.tsv"
    if manifest.exists():
        for row in manifest.read_text().splitlines():
            parts = row.split("\t")
            if len(parts) >= 2 and (CORPUS / parts[1]).is_file():
                by_package.setdefault(parts[0], []).append(CORPUS / parts[1])
    for root in (EXTRA_MUSIC, *NOT_MUSIC):
        for package in sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []:
            tracks = sorted(f for f in package.rglob("*") if f.suffix.lower() in AUDIO_SUFFIXES)
            if root in NOT_MUSIC:  # thousands of short prompts and effects: a sample is enough
                # these folders hold whole packages: leave their music to the music folders
                tracks = [f for f in tracks if not MUSIC_PATH.search(str(f.relative_to(root)))]
                longest = sorted(tracks, key=lambda f: f.stat().st_size)[-40:]  # most windows
                by_package[f"{root.name}/{package.name}"] = sorted(longest)
            else:
                by_package[package.name] = tracks
    files = list(SHARED_MUSIC)
    for i in range(max(map(len, by_package.values()), default=0)):
        files += [tracks[i] for tracks in by_package.values() if i < len(tracks)]
    return files[:max_tracks] if max_tracks else files


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


def make_teacher(kind: str) -> distill.Teacher:
    """The default tagger's pair (musicnn + mn04) or, as for the 0.2 students, musicnn alone."""
    return distill.CombinedTeacher() if kind == "combined" else distill.Teacher()


def cache_root(args: argparse.Namespace) -> Path:
    """Each teacher and separator has its own cache (0.2's musicnn caches keep their paths)."""
    base = Path(args.cache_dir)
    return (
        base / args.separator
        if args.teacher == "musicnn"
        else base / f"{args.teacher}-{args.separator}"
    )


def cmd_cache(args: argparse.Namespace) -> None:
    teacher = make_teacher(args.teacher)
    root = cache_root(args)
    if args.part in ("train", "both"):
        files = training_files(args.max_tracks)
        build_cache(files[::-1] if args.reverse else files, root / "train", args, teacher)
    if args.part in ("check", "both"):
        build_cache(musdb_files(args.max_check), root / "check", args, teacher)


def teacher_setup(args: argparse.Namespace, gmap: GenreMap) -> tuple[dict, list[str]]:
    """The teacher's label lists and the students' classes (the content outputs last)."""
    labels = make_teacher(args.teacher).labels
    if args.teacher == "combined":
        return labels, distill.combined_classes(gmap, labels)
    return labels, distill.teacher_classes(gmap, labels)


def cached(root: Path) -> list[Path]:
    """The cache files under root (so a cache still being built can already be trained on)."""
    return sorted(f for f in root.glob("*.npz") if not f.name.endswith(".tmp.npz"))


def package_of(source: str) -> str:
    """The corpus package a training file comes from ('shared' for ../shared/audio music)."""
    path = Path(source)
    for root in (CORPUS, EXTRA_MUSIC):
        if path.is_relative_to(root):
            return path.relative_to(root).parts[0]
    for root in NOT_MUSIC:
        if path.is_relative_to(root):
            return f"{root.name}/{path.relative_to(root).parts[0]}"
    return "shared"


def musdb_labels() -> dict[str, str]:
    with open(MUSDB / "genres.csv", newline="") as f:
        return {r["file"]: r["genre"] for r in csv.DictReader(f)}


def teacher_track_scores(files: list[Path], gmap: GenreMap) -> list[dict[str, float]]:
    """musicnn alone, the pipeline's way: mean tag probabilities per track, then genre scores."""
    teacher_labels = distill.Teacher().labels
    out = []
    for f in files:
        with np.load(f) as z:
            per_model = {
                m: mean_tag_probs(z[f"teacher.{m}"], labels) for m, labels in teacher_labels.items()
            }
        out.append(combine_models(per_model, gmap))
    return out


def hit_rates(sources: list[str], rankings: list[list[str]]) -> dict:
    """Top-1 / top-3 hit rate against genres.csv by genre_sanity's rule."""
    labels = musdb_labels()
    rows = [(labels[Path(s).name], r) for s, r in zip(sources, rankings, strict=True)]
    return {
        "tracks": len(rows),
        "top1": round(float(np.mean([genre_sanity.hit(lab, r[:1]) for lab, r in rows])), 4),
        "top3": round(float(np.mean([genre_sanity.hit(lab, r[:3]) for lab, r in rows])), 4),
    }


def track_probs(model, x: torch.Tensor, data: distill.PatchSet) -> np.ndarray:
    """(tracks, classes): the student's softmax averaged over each track's patches."""
    probs = patch_probs(model, x)
    return np.stack([probs[data.track == t].mean(0) for t in range(len(data.sources))])


def patch_probs(model, x: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        logits = torch.cat([model(x[i : i + 64].float())[0] for i in range(0, len(x), 64)])
    return torch.softmax(logits, dim=1).numpy()


def student_track_scores(probs: np.ndarray, data: distill.PatchSet,
                         classes: list[str]) -> list[dict[str, float]]:  # fmt: skip
    """Each track's genre scores as `mgctag tag` makes them (the student's own content gate)."""
    content = content_classes(classes)
    out = []
    for t in range(len(data.sources)):
        rows = data.track == t
        if not content:
            out.append(dict(zip(classes, probs[rows].mean(0).tolist(), strict=True)))
            continue
        window = data.window[rows] if data.window is not None else np.zeros(rows.sum(), int)
        counts = np.bincount(window)
        _, scores = student_decision(probs[rows], counts, np.arange(len(counts)), classes, content)
        out.append(scores)
    return out


def content_classes(classes: list[str]) -> dict[str, str]:
    """The student's not-music outputs (content class -> label), if it has them."""
    return {c: label for c, label in distill.CONTENT_LABELS.items() if label in classes}


def written_genres(scores: dict[str, float], chosen_by: tuple[int, float, float]) -> list[str]:
    """The genres `mgctag tag` would write from these scores with this selection."""
    most, floor, relative = chosen_by
    chosen = select_genres(scores, max_genres=most, min_confidence=floor, relative_floor=relative)
    return [g for g, _ in chosen]


def written_rates(sources: list[str], scores: list[dict[str, float]],
                  chosen_by: tuple[int, float, float]) -> dict:  # fmt: skip
    """Top-1 / top-3 / precision of the genres `mgctag tag` would write with this selection
    (max genres, floor, relative floor; `catalog.selection`)."""
    labels = musdb_labels()
    top1, top3, right, written = [], [], 0, 0
    for source, sc in zip(sources, scores, strict=True):
        label = labels[Path(source).name]
        chosen = written_genres(sc, chosen_by)
        top1.append(bool(chosen) and genre_sanity.hit(label, chosen[:1]))
        top3.append(genre_sanity.hit(label, chosen[:3]))
        right += sum(genre_sanity.hit(label, [g]) for g in chosen)
        written += len(chosen)
    return {"tracks": len(sources), "written_top1": round(float(np.mean(top1)), 4),
            "written_top3": round(float(np.mean(top3)), 4),
            "genres_per_track": round(written / max(1, len(sources)), 3),
            "precision": round(right / max(1, written), 4)}  # fmt: skip


def check_metrics(model, val: distill.PatchSet, check: distill.PatchSet, prep: dict,
                  classes: list[str]) -> dict:  # fmt: skip
    """Held-out corpus agreement with the teacher (patches and tracks); MUSDB genre hit rates."""
    model.eval()
    metrics: dict = {}
    if len(val):
        x = prepare_input(select_input(val.inputs, prep["input"], PAPER_STEMS), prep)
        agree = distill.teacher_agreement(model, x, val.teacher)
        student = track_probs(model, x, val).argmax(1)  # not-music outputs included
        teacher = np.stack([val.teacher[val.track == t].mean(0).numpy()
                            for t in range(len(val.sources))]).argmax(1)  # fmt: skip
        metrics["heldout"] = {
            "packages": sorted({package_of(s) for s in val.sources}),
            "tracks": len(val.sources),
            "patches": len(val),
            "patch_agreement": agree["agreement"],
            "patch_kl": agree["kl"],
            "track_agreement": round(float((student == teacher).mean()), 4),
        }
    if len(check):
        x = prepare_input(select_input(check.inputs, prep["input"], PAPER_STEMS), prep)
        scores = student_track_scores(patch_probs(model, x), check, classes)
        metrics["musdb"] = {
            **hit_rates(check.sources, _rankings(scores)),
            **written_rates(check.sources, scores, STUDENT_SELECTION),
            "patch_agreement": distill.teacher_agreement(model, x, check.teacher)["agreement"],
        }
    return metrics


def subset(data: distill.PatchSet, mask: np.ndarray) -> distill.PatchSet:
    """The patches under `mask`, their tracks renumbered (sources keep only the tracks left)."""
    idx = torch.from_numpy(np.flatnonzero(mask))
    kept = np.unique(data.track[mask])
    remap = np.full(len(data.sources), -1)
    remap[kept] = np.arange(len(kept))
    return distill.PatchSet(
        {k: v[idx] for k, v in data.inputs.items()},
        data.teacher[idx],
        data.labels[idx],
        remap[data.track[mask]],
        [data.sources[i] for i in kept],
        None if data.window is None else data.window[mask],
    )


def load_split(args: argparse.Namespace, gmap: GenreMap, classes: list[str]):
    """(train, held-out val, MUSDB check) PatchSets from the cache."""
    root = cache_root(args)
    labels, _ = teacher_setup(args, gmap)
    files = training_cache(root, args.min_patches)
    data = distill.load_patches(files, labels, gmap, classes)
    check = distill.load_patches(cached(root / "check"), labels, gmap, classes)
    held = np.array([package_of(s) in args.holdout for s in data.sources])
    return subset(data, ~held[data.track]), subset(data, held[data.track]), check


def training_cache(root: Path, min_patches: int) -> list[Path]:
    """The training cache files of listed tracks (a cache may hold files no longer listed) with
    at least `min_patches` patches."""
    listed = {str(f) for f in training_files(0)}
    out = []
    for f in cached(root / "train"):
        with np.load(f) as z:
            if str(z["source"]) in listed and len(z["mel"]) >= min_patches:
                out.append(f)
    return out


def _source(cache_file: Path) -> str:
    with np.load(cache_file) as z:
        return str(z["source"])


def combined_track_scores(files: list[Path], gmap: GenreMap,
                          labels: dict) -> list[dict[str, float]]:  # fmt: skip
    """The default tagger's genres from the cache, its way: the content gate on mn04's windows,
    then the mean of musicnn's genres (music windows' patches) and mn04's (music windows)."""
    net_labels = labels[AUDIOSET_MODEL]
    gate = ContentGate.for_labels(net_labels, gmap.tags)
    out = []
    for f in files:
        with np.load(f) as z:
            windows = z[f"teacher.window.{AUDIOSET_MODEL}"]
            decision = decide(gate, windows, np.arange(len(windows)))
            rows = np.isin(z["window"], decision.genre_windows)
            musicnn = combine_models({m: mean_tag_probs(z[f"teacher.{m}"][rows], labels[m])
                                      for m in TEACHERS}, gmap)  # fmt: skip
            mn04 = gmap.genre_scores(mean_tag_probs(windows[decision.genre_windows], net_labels))
        out.append(mean_scores([musicnn, mn04]))
    return out


def cmd_stemtest(args: argparse.Namespace) -> None:
    """The stem paper's claim on this data: does the stem CNN on cascade stems beat the same
    network on the mix? Same patches, same folds (grouped by package), same epochs and settings;
    per fold: agreement with the teacher on the held-out packages, and MUSDB top-1/top-3."""
    from sklearn.model_selection import GroupKFold

    torch.set_num_threads(args.threads)
    gmap = GenreMap.load()
    labels, classes = teacher_setup(args, gmap)
    root = cache_root(args)
    files = training_cache(root, 2)
    data = distill.load_patches(files, labels, gmap, classes)
    check = distill.load_patches(cached(root / "check"), labels, gmap, classes)
    packages = np.array([package_of(s) for s in data.sources])
    folds = list(GroupKFold(n_splits=args.folds).split(packages, groups=packages))
    variants = {"stems": ("stems", 3), "mix": ("mel", 1)}
    results: dict[str, list[dict]] = {v: [] for v in variants}
    rng = np.random.default_rng(0)
    for i, (train_idx, test_idx) in enumerate(folds):
        train = subset(data, np.isin(data.track, train_idx))
        if args.train_patches and len(train) > args.train_patches:  # the limited-data setting
            keep = np.zeros(len(train), bool)
            keep[rng.choice(len(train), args.train_patches, replace=False)] = True
            train = subset(train, keep)
        test = subset(data, np.isin(data.track, test_idx))
        for variant, (kind, channels) in variants.items():
            prep = preprocessing(kind, train, "cascade")
            model = ARCHITECTURES["stemcnn"](n_classes=len(classes), in_channels=channels,
                                             separable=True)  # fmt: skip
            cfg = distill.DistillConfig(epochs=args.epochs, lr=1e-3, l1=1e-6, l2=1e-5, seed=i)
            x = prepare_input(select_input(train.inputs, kind, PAPER_STEMS), prep)
            distill.train_student(model, (x, train.teacher, train.labels), None, cfg,
                                  log=lambda _: None)  # fmt: skip
            x_test = prepare_input(select_input(test.inputs, kind, PAPER_STEMS), prep)
            x_check = prepare_input(select_input(check.inputs, kind, PAPER_STEMS), prep)
            scores = student_track_scores(patch_probs(model, x_check), check, classes)
            row = {"fold": i, "variant": variant, "train_patches": len(train),
                   "test_packages": sorted({package_of(s) for s in test.sources}),
                   **distill.teacher_agreement(model, x_test, test.teacher),
                   **hit_rates(check.sources, _rankings(scores))}  # fmt: skip
            results[variant].append(row)
            print(json.dumps(row), flush=True)
    summary = {}
    for key in ("agreement", "kl", "top1", "top3"):
        stems = np.array([r[key] for r in results["stems"]])
        mix = np.array([r[key] for r in results["mix"]])
        summary[key] = {"stems": [round(stems.mean(), 4), round(stems.std(), 4)],
                        "mix": [round(mix.mean(), 4), round(mix.std(), 4)],
                        "stems_minus_mix": [round((stems - mix).mean(), 4),
                                            round((stems - mix).std(), 4)]}  # fmt: skip
    print(json.dumps({"folds": args.folds, "epochs": args.epochs, "summary": summary}))


def cmd_datacard(args: argparse.Namespace) -> None:
    """The training data per package (tracks, hours of source audio, cached patches), as markdown.

    Licences come from each package's debian/copyright (`--licences DIR` holds them, one
    PACKAGE.copyright each): the distinct `License:` fields, most frequent first.
    """
    rows: dict[str, list[Any]] = {}  # tracks, hours, patches
    listed = {str(f) for f in training_files(0)}
    for f in cached(cache_root(args) / "train"):
        with np.load(f) as z:
            source, patches = str(z["source"]), len(z["mel"])
        if source not in listed:
            continue
        row = rows.setdefault(package_of(source), [0, 0.0, 0])
        row[0] += 1
        row[1] += decode.probe(Path(source)).duration / 3600 if Path(source).exists() else 0.0
        row[2] += patches
    print("| package | tracks | hours | patches | licences (debian/copyright) |")
    print("|---|---:|---:|---:|---|")
    for package, (tracks, hours, patches) in sorted(rows.items()):
        print(f"| {package} | {tracks} | {hours:.2f} | {patches} | {licences(args, package)} |")
    total = np.sum([r for r in rows.values()], axis=0)
    print(f"| **all** | {int(total[0])} | {total[1]:.2f} | {int(total[2])} | |")


def licences(args: argparse.Namespace, package: str) -> str:
    name = package.split("/")[-1]
    path = Path(args.licences) / f"{name}.copyright"
    if not path.exists():
        return "see the package"
    found: dict[str, int] = {}
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(("License:", "Licence:")):
            key = line.split(":", 1)[1].strip()
            found[key] = found.get(key, 0) + 1
    return ", ".join(sorted(found, key=lambda k: -found[k])[:4]) or "free-form: see the package"


def cmd_teacher(args: argparse.Namespace) -> None:
    """musicnn alone on the MUSDB check set, and a prior-only baseline for every metric.

    The baseline always answers with the genres in order of how often the teacher chose them on
    the training patches: a student has learnt something only where it beats that.
    """
    gmap = GenreMap.load(Path(args.genre_map)) if args.genre_map else GenreMap.load()
    labels, classes = teacher_setup(args, gmap)
    files = cached(cache_root(args) / "check")
    sources = [str(np.load(f)["source"]) for f in files]
    if args.teacher == "combined":
        scores = combined_track_scores(files, gmap, labels)
        name, chosen_by = DEFAULT_TAGGER, selection(DEFAULT_TAGGER)
    else:
        scores = teacher_track_scores(files, gmap)
        name, chosen_by = "+".join(TEACHERS), selection("musicnn")
    print(json.dumps({"teacher": name, **hit_rates(sources, _rankings(scores)),
                      **written_rates(sources, scores, chosen_by)}))  # fmt: skip
    train, val, check = load_split(args, gmap, classes)
    prior = np.bincount(train.labels, minlength=len(classes))
    order = [classes[i] for i in np.argsort(-prior, kind="stable")]
    held = float((val.labels == int(prior.argmax())).float().mean()) if len(val) else None
    musdb = hit_rates(check.sources, [order] * len(check.sources))
    print(json.dumps({"baseline": "training-label prior", "ranking": order[:3],
                      "heldout_patch_agreement": held, "musdb": musdb}))  # fmt: skip


def cmd_choose(args: argparse.Namespace) -> None:
    """Which student is `--model fast`, chosen by cross-validation on the MUSDB previews.

    Each student's written genres (its own content gate, `STUDENT_SELECTION`) per preview, from
    the weights in --weights (a cache per separator for the stem students); then N halvings
    grouped by artist: the student with the best written top-1 + top-3 on one half is scored on the
    other, beside the default tagger on the same half. Only students at least --min-speedup times
    cheaper per window than the default (their cards' `cost`) are candidates.
    """
    gmap = GenreMap.load()
    labels, classes = teacher_setup(args, gmap)
    default_cost = sum(DEFAULT_MS.values())
    hits: dict[str, list[tuple[bool, bool, float]]] = {}
    sources: list[str] = []
    for name in args.only or list(STUDENTS):
        path = Path(args.weights) / f"{name}.safetensors"
        if not path.exists():
            continue
        model, card = load_model(path)
        cost = float(card.extra.get("cost", {}).get("ms_per_10s_window_min", 0.0)) or None
        if cost is not None and default_cost / cost < args.min_speedup:
            print(json.dumps({"student": name, "skipped": f"{default_cost / cost:.1f}x"}))
            continue
        prep = card.preprocessing
        sep = prep.get("separator", "none") if prep["input"] == "stems" else "none"
        root = Path(args.cache_dir) / f"{args.teacher}-{sep}" / "check"
        check = distill.load_patches(cached(root), labels, gmap, classes)
        x = prepare_input(select_input(check.inputs, prep["input"], PAPER_STEMS), prep)
        scores = student_track_scores(patch_probs(model.eval(), x), check, classes)
        hits[name] = track_hits(check.sources, scores, STUDENT_SELECTION)
        sources = check.sources
    files = cached(Path(args.cache_dir) / f"{args.teacher}-none" / "check")
    by_source = dict(zip([_source(f) for f in files],
                         combined_track_scores(files, gmap, labels), strict=True))  # fmt: skip
    teacher = [by_source[s] for s in sources]
    hits["(default)"] = track_hits(sources, teacher, selection(DEFAULT_TAGGER))
    artists = np.array([Path(s).name.split(" - ")[0] for s in sources])
    names, rng = np.unique(artists), np.random.default_rng(0)
    picked: dict[str, int] = {}
    chosen, default = [], []
    for _ in range(args.halvings):
        half = np.isin(artists, rng.choice(names, len(names) // 2, replace=False))
        pick, rest = np.flatnonzero(half), np.flatnonzero(~half)
        best = max((n for n in hits if n != "(default)"),
                   key=lambda n: sum(_rates(hits[n], pick)[:2]))  # fmt: skip
        picked[best] = picked.get(best, 0) + 1
        chosen.append(_rates(hits[best], rest))
        default.append(_rates(hits["(default)"], rest))
    for name, h in hits.items():
        print(json.dumps({"model": name, "all_previews_top1_top3_precision": _rates(h)}))
    diff = np.array(chosen) - np.array(default)
    print(json.dumps({"halvings": args.halvings, "picked": picked,
                      "chosen_top1_top3_precision": np.round(np.mean(chosen, 0), 4).tolist(),
                      "chosen_sd": np.round(np.std(chosen, 0), 4).tolist(),
                      "default_top1_top3_precision": np.round(np.mean(default, 0), 4).tolist(),
                      "chosen_minus_default": np.round(diff.mean(0), 4).tolist(),
                      "chosen_minus_default_sd": np.round(diff.std(0), 4).tolist()}))  # fmt: skip


# the default's networks, float32 ms per 10 s window, one thread (docs/benchmarks.md, "mn04
# (AudioSet) beside musicnn": tools/bench/mn04.py), against a student card's `cost`
DEFAULT_MS = {"musicnn MSD+MTT": 94.1, "audioset_mn04": 16.7}


def track_hits(sources: list[str], scores: list[dict[str, float]],
               chosen_by: tuple[int, float, float]) -> list[tuple[bool, bool, float]]:  # fmt: skip
    """Per track: (first written genre right, some written genre right, share written right)."""
    labels = musdb_labels()
    out = []
    for source, sc in zip(sources, scores, strict=True):
        label = labels[Path(source).name]
        written = written_genres(sc, chosen_by)
        right = [genre_sanity.hit(label, [g]) for g in written]
        out.append(
            (bool(right[:1]) and right[0], any(right), float(np.mean(right)) if right else 0.0)
        )
    return out


def _rates(hits: list[tuple[bool, bool, float]], idx: np.ndarray | None = None) -> list[float]:
    rows = [hits[i] for i in idx] if idx is not None else hits
    return [round(float(np.mean([r[k] for r in rows])), 4) for k in range(3)]


def cmd_ensemble(args: argparse.Namespace) -> None:
    """musicnn averaged with each bundled student on the MUSDB check set, at several weights.

    The blend is `genres.blend_scores`, what `mgctag tag --model musicnn+crnn` stores: musicnn's
    genre scores with (1 - weight) of their mass shared out as the student's softmax; weight 1.0
    is musicnn alone. With --halvings N the choice of (student, weight) is cross-validated: picked
    on half the artists, scored on the other half, N times.
    """
    gmap = GenreMap.load(Path(args.genre_map)) if args.genre_map else GenreMap.load()
    teacher_labels = distill.Teacher().labels
    classes = distill.teacher_classes(gmap, teacher_labels)
    files = cached(cache_root(args) / "check")
    check = distill.load_patches(files, teacher_labels, gmap, classes)
    by_source = dict(zip([str(np.load(f)["source"]) for f in files],
                         teacher_track_scores(files, gmap), strict=True))  # fmt: skip
    musicnn = [by_source[s] for s in check.sources]
    blends: dict[tuple[str, float], list[dict[str, float]]] = {("musicnn", 1.0): musicnn}
    for name in args.only or list(STUDENTS):
        model, card = load_model(name)
        prep = card.preprocessing
        if prep.get("separator", args.separator) != args.separator:
            continue  # its stems are another separator's
        x = prepare_input(select_input(check.inputs, prep["input"], PAPER_STEMS), prep)
        student = [dict(zip(classes, p.tolist(), strict=True))
                   for p in track_probs(model.eval(), x, check)]  # fmt: skip
        for w in args.weights:
            blends[(name, w)] = [
                blend_scores(m, p, w) for m, p in zip(musicnn, student, strict=True)
            ]
            rates = hit_rates(check.sources, _rankings(blends[(name, w)]))
            print(json.dumps({"student": name, "musicnn_weight": w, **rates}))
    if args.halvings:
        print(json.dumps(_cross_validate(blends, check.sources, args.halvings)))


def _rankings(scores: list[dict[str, float]]) -> list[list[str]]:
    """Each track's genres, best first."""
    return [sorted(track, key=lambda g: -track[g]) for track in scores]


def _cross_validate(blends: dict, sources: list[str], halvings: int) -> dict:
    """Pick the blend with the best top-1 + top-3 on half the artists; score it on the rest."""
    artists = np.array([Path(s).name.split(" - ")[0] for s in sources])
    names = np.unique(artists)
    rng = np.random.default_rng(0)

    def score(key: tuple, idx: np.ndarray) -> tuple[float, float]:
        rates = hit_rates([sources[i] for i in idx], _rankings([blends[key][i] for i in idx]))
        return rates["top1"], rates["top3"]

    picked, chosen, alone = [], [], []
    for _ in range(halvings):
        half = np.isin(artists, rng.choice(names, len(names) // 2, replace=False))
        pick, rest = np.flatnonzero(half), np.flatnonzero(~half)
        best = max(blends, key=lambda k: sum(score(k, pick)))
        picked.append(best)
        chosen.append(score(best, rest))
        alone.append(score(("musicnn", 1.0), rest))
    diff = np.array(chosen) - np.array(alone)
    counts: dict[str, int] = {}
    for name, w in picked:
        counts[f"{name}@{w}"] = counts.get(f"{name}@{w}", 0) + 1
    return {
        "halvings": halvings,
        "picked": dict(sorted(counts.items(), key=lambda kv: -kv[1])),
        "picked_top1_top3": np.round(np.mean(chosen, axis=0), 4).tolist(),
        "musicnn_alone_top1_top3": np.round(np.mean(alone, axis=0), 4).tolist(),
        "difference_mean": np.round(diff.mean(axis=0), 4).tolist(),
        "difference_std": np.round(diff.std(axis=0), 4).tolist(),
    }


def cmd_train(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    gmap = GenreMap.load(Path(args.genre_map)) if args.genre_map else GenreMap.load()
    _, classes = teacher_setup(args, gmap)
    train, val, check = load_split(args, gmap, classes)
    sizes = [f"{k} {len(d)} patches / {len(d.sources)} tracks" for k, d in
             (("train", train), ("held-out", val), ("check", check))]  # fmt: skip
    print(f"{len(classes)} classes; {', '.join(sizes)}")
    counts = np.bincount(train.labels, minlength=len(classes)).tolist()
    print("teacher label counts:", dict(zip(classes, counts, strict=True)))
    for name in args.only or list(STUDENTS):
        spec = STUDENTS[name]
        if spec["input"] not in train.inputs:
            print(f"{name}: skipped, the cache has no {spec['input']} (use --separator hpss)")
            continue
        if spec.get("separator", args.separator) != args.separator:
            print(f"{name}: skipped, it is trained on {spec['separator']} stems")
            continue
        model = ARCHITECTURES[spec["arch"]](**{"n_classes": len(classes), **spec["args"]})
        settings = {**spec["train"], **({"epochs": args.epochs} if args.epochs else {})}
        if args.augment:
            settings["augment"] = "frames" if spec["input"] == "mfcc" else "mel"
        if args.epoch_patches:
            settings["epoch_patches"] = args.epoch_patches
        cfg = distill.DistillConfig(**settings)
        prep = preprocessing(spec["input"], train, args.separator)
        x_train = prepare_input(select_input(train.inputs, spec["input"], PAPER_STEMS), prep)
        x_val = prepare_input(select_input(val.inputs, spec["input"], PAPER_STEMS), prep)
        val_set = (x_val, val.teacher) if len(val) else None
        ckpt = Path(args.cache_dir) / "checkpoints" / f"{name}-{cache_root(args).name}.safetensors"
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()

        def log(s: str, n: str = name) -> None:
            print(f"{n}: {s}", flush=True)

        history = distill.train_student(
            model, (x_train, train.teacher, train.labels), val_set, cfg, ckpt, log=log
        )
        metrics = check_metrics(model, val, check, prep, classes)
        metrics["train_seconds"] = round(time.perf_counter() - t0)
        print(f"{name}: {json.dumps(metrics)}")
        card = make_card(name, spec, model, classes, cfg, train, prep, metrics, history, args)
        outputs = {**card.outputs, "embedding_dim": _embedding_dim(model, x_train)}
        if content := content_classes(classes):
            outputs["content_classes"] = content
            outputs["activation"] = ("softmax over genres and not-music outputs; per window, "
                                     "music when the not-music outputs hold < 0.5")  # fmt: skip
        card = ModelCard(**{**card.__dict__, "outputs": outputs})
        print(f"{name}: wrote {save_model(model, card, Path(args.out))}")


def preprocessing(kind: str, train: distill.PatchSet, separator: str) -> dict:
    """What the pipeline must compute for a student (`models.tagger.prepare_input` applies it)."""
    shape = {"mel": "(batch, 187, 96)", "mfcc": "(batch, 187, 20)",
             "stems": "(batch, 3, 187, 96)"}[kind]  # fmt: skip
    prep: dict = {
        "input": kind,
        "input_shape": shape,
        "features": "mgctag.audio.features.mfcc" if kind == "mfcc"
        else "mgctag.audio.features.log_mel",
        "sample_rate": 16000,
        "patch_frames": 187,
        "patches": "mgctag.audio.features.patches",
    }  # fmt: skip
    if kind == "stems":
        prep.update({
            "stems": list(PAPER_STEMS),
            "separator": separator,
            "stem_features": "separated at 44.1 kHz, each stem resampled to 16 kHz, then log-mel",
        })  # fmt: skip
    if kind == "mfcc":
        prep["standardize"] = distill.standardizer(select_input(train.inputs, kind, PAPER_STEMS))
    return prep


def make_card(name: str, spec: dict, model, classes: list[str], cfg, train: distill.PatchSet,
              prep: dict, metrics: dict, history: list[dict], args) -> ModelCard:  # fmt: skip
    """The model card: what to feed the student, where it came from, how well it agrees."""
    return ModelCard(
        name=name,
        arch=spec["arch"],
        labels=classes,
        arch_args=model.config,
        preprocessing=prep,
        outputs={"activation": "softmax over labels, averaged over a track's patches"},
        source={
            "trained_by": "mgctag, by knowledge distillation (no human genre labels)",
            **teacher_card(args),
            "paper": spec["paper"],
            "train_packages": sorted({package_of(s) for s in train.sources}),
            "heldout_packages": list(args.holdout),
            "train_tracks": len(train.sources),
            "train_patches": len(train),
            "windows_per_track": f"up to {args.windows} x 10 s (mgctag.audio.segment.plan_windows)",
            "script": "tools/experiments/train_bundled.py",
            "command": " ".join(["python -m tools.experiments.train_bundled", *sys.argv[1:]]),
            "train_config": cfg.__dict__,
        },
        licence={
            "weights": "MIT (mgctag)",
            "teacher": "musicnn weights, ISC",
            "data": "Debian main (DFSG-free) game-soundtrack packages "
            + ", ".join(sorted({package_of(s) for s in train.sources} - {"shared"}))
            + "; each package's licence is in its debian/copyright; plus CC/public-domain "
            "example music from ../shared/audio (arcade, pygame, librosa examples)",
        },  # fmt: skip
        extra={"metrics": {**metrics, **epoch_record(history, cfg)},
               **({"selection": list(STUDENT_SELECTION)} if args.teacher == "combined" else {})},
    )  # fmt: skip


def teacher_card(args: argparse.Namespace) -> dict:
    """The card's account of the teacher and its targets."""
    if args.teacher == "musicnn":
        return {
            "teachers": list(TEACHERS),
            "teacher_targets": "musicnn tag probabilities -> canonical genres (mgctag.genres)",
        }
    return {"teachers": [*TEACHERS, AUDIOSET_MODEL], "teacher_tagger": DEFAULT_TAGGER,
            "teacher_targets": "per 3 s patch: genres.mean_scores of musicnn's genre scores (the "
            "patch) and mn04's (its 10 s window), normalised; windows the content gate calls "
            f"speech or other sound put {distill.NOT_MUSIC_TARGET} of the mass on "
            "(speech) / (other sound)"}  # fmt: skip


def epoch_record(history: list[dict], cfg) -> dict:
    """The last epoch's figures, and with keep_best the epoch whose weights were kept."""
    if not history:
        return {}
    record = {"final_epoch": history[-1]}
    if cfg.keep_best and any("val_kl" in h for h in history):
        record["kept_epoch"] = min(history, key=lambda h: h.get("val_kl", float("inf")))
    return record


def _embedding_dim(model, x: torch.Tensor) -> int:
    with torch.inference_mode():
        return int(model.eval()(x[:1].float())[1].shape[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache-dir", default="/work/cache/distill")
    ap.add_argument("--separator", default="cascade", choices=["cascade", "hpss", "demucs", "none"])
    ap.add_argument("--teacher", default="combined", choices=["combined", "musicnn"],
                    help="the default tagger (musicnn + mn04) or musicnn alone (0.2)")  # fmt: skip
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cache", help="features + teacher outputs, once per file")
    c.add_argument("--max-tracks", type=int, default=0, help="the first N files (0: all)")
    c.add_argument("--max-check", type=int, default=0, help="subsample MUSDB (0: all 70)")
    c.add_argument("--windows", type=int, default=3, help="10 s windows per track")
    c.add_argument("--part", default="both", choices=["train", "check", "both"],
                   help="cache only the training files or only the MUSDB check set")  # fmt: skip
    c.add_argument("--reverse", action="store_true",
                   help="from the end of the list (a 2nd process beside the 1st)")  # fmt: skip
    t = sub.add_parser("train", help="distil every student, evaluate, write weights + cards")
    t.add_argument("--out", default=str(WEIGHTS))
    t.add_argument("--epochs", type=int, default=0, help="override every student's epochs")
    t.add_argument("--min-patches", type=int, default=3,
                   help="skip files with fewer 3 s patches (sound effects)")  # fmt: skip
    t.add_argument("--holdout", nargs="*", default=list(HOLDOUT), help="held-out packages")
    t.add_argument("--only", nargs="*", choices=list(STUDENTS))
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--epoch-patches", type=int, default=0,
                   help="patches drawn per epoch (0: all), to fit a CPU budget")  # fmt: skip
    t.add_argument("--augment", action="store_true",
                   help="gain, pitch, tempo, mixup per batch (distill.augment)")  # fmt: skip
    t.add_argument("--genre-map", default=None)
    t.add_argument("--windows", type=int, default=3,
                   help="windows per track the cache was built with (for the card)")  # fmt: skip
    e = sub.add_parser("ensemble", help="musicnn averaged with each student on MUSDB")
    e.add_argument("--only", nargs="*", choices=list(STUDENTS))
    e.add_argument("--weights", nargs="+", type=float, default=[0.75, 0.5, 0.25])
    e.add_argument("--halvings", type=int, default=0, help="cross-validate the choice N times")
    e.add_argument("--genre-map", default=None)
    m = sub.add_parser("teacher", help="musicnn alone on MUSDB, and a prior-only baseline")
    m.add_argument("--genre-map", default=None)
    m.add_argument("--min-patches", type=int, default=3)
    m.add_argument("--holdout", nargs="*", default=list(HOLDOUT))
    ch = sub.add_parser("choose", help="pick `--model fast` by grouped CV on the MUSDB previews")
    ch.add_argument("--weights", default=str(WEIGHTS))
    ch.add_argument("--only", nargs="*", choices=list(STUDENTS))
    ch.add_argument("--halvings", type=int, default=50)
    ch.add_argument("--min-speedup", type=float, default=5.0,
                    help="candidates: at least this many times cheaper per window")  # fmt: skip
    st = sub.add_parser("stemtest", help="stem CNN on cascade stems vs on the mix, grouped CV")
    st.add_argument("--folds", type=int, default=3)
    st.add_argument("--epochs", type=int, default=5)
    st.add_argument("--train-patches", type=int, default=800,
                    help="patches each fold trains on (0: all its packages' patches)")  # fmt: skip
    st.add_argument("--threads", type=int, default=1)
    d = sub.add_parser("datacard", help="the training data per package, as a markdown table")
    d.add_argument("--licences", default="/work/data/licences",
                   help="folder of PACKAGE.copyright files")  # fmt: skip
    args = ap.parse_args()
    commands = {
        "choose": cmd_choose,
        "datacard": cmd_datacard,
        "stemtest": cmd_stemtest,
        "cache": cmd_cache,
        "train": cmd_train,
        "teacher": cmd_teacher,
        "ensemble": cmd_ensemble,
    }
    commands[args.cmd](args)


if __name__ == "__main__":
    main()
