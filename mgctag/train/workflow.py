"""User models end to end: labels → dataset of stored embeddings → evaluation → head → saved model.

The commands `labels`, `train` and `eval` are thin layers over these functions.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mgctag import config
from mgctag.audio import features
from mgctag.library.db import Library
from mgctag.library.rows import Track
from mgctag.library.scan import ScanReport, iter_audio_files, scan
from mgctag.models.cards import ModelCard
from mgctag.models.inputs import InputPlan, InputSpec, prepare, select_input
from mgctag.models.registry import ARCHITECTURES, NETWORK_INPUTS, save_model
from mgctag.models.stemcnn import PAPER_STEMS
from mgctag.models.tagger import prepare_input
from mgctag.options import MUSICNN_TAGGER, TRAIN, Progress
from mgctag.separate import get_separator
from mgctag.train import distill, transfer
from mgctag.train.eval_protocols import EvalReport, compute_metrics, evaluate_protocol, make_splits
from mgctag.train.heads import HeadConfig, train_head
from mgctag.train.labels import (
    Dataset,
    LabelCounts,
    LabelError,
    Pair,
    build_label_set,
    dataset_from_library,
    group_key,
    label_counts,
    labels_from_tags,
    read_label_csv,
    require_two_genres,
)
from mgctag.train.report import (
    evaluation_summary,
    save_confusion_json,
    save_confusion_png,
    user_model_card,
)
from mgctag.train.splits import find_split_files, trial_splits
from mgctag.train.transfer import Student

_RESCAN_CHUNK = 100  # files per scan() call: each is one term of its WHERE clause


def refresh_retagged(lib: Library) -> ScanReport:
    """Read again, as `scan` does, every track whose file changed since the last scan (its size
    or mtime differs from the library's record: retagged in another program, say), so the
    labels `labels` counts and `train` and `eval` learn from are the tags the files hold now,
    and their artists group them as they are now. mgctag's own writes move the record along, so
    they are not changes. A file that is gone is left to `scan`, which marks it removed only
    when its folder was read. Failures (a file now unreadable) are in the report, one reason
    each; such a track has no labels until it is readable again."""
    changed = [t.path for t in lib.tracks() if _changed_on_disk(t)]
    report = ScanReport()
    for start in range(0, len(changed), _RESCAN_CHUNK):
        part = scan(lib, changed[start : start + _RESCAN_CHUNK])
        for name in ("new", "changed", "unchanged", "removed", "failed"):
            setattr(report, name, getattr(report, name) + getattr(part, name))
        report.failures += part.failures
    return report


def _changed_on_disk(track: Track) -> bool:
    try:
        st = os.stat(track.path)
    except OSError:
        return False
    return (st.st_size, st.st_mtime_ns) != (track.size, track.mtime)


@dataclass(frozen=True)
class LibraryLabels:
    """Labelled tracks, and how many labels were left out because mgctag wrote them."""

    pairs: list[Pair]
    own: int = 0  # tracks whose genres are mgctag's own prediction (never learned from)
    source: str = "tags"  # "tags" (the files' genre tags) or "csv"


def library_labels(lib: Library, labels_csv: Path | None = None) -> LibraryLabels:
    """(path, genres) labels: from a CSV, or from the genre tags the user put in their files.

    Genres mgctag wrote itself are not labels: training on its own predictions would only teach
    the head to agree with the model it is meant to replace. They are counted, so a user who
    tagged their library with mgctag learns why they have few labels.
    """
    tracks = lib.tracks()
    if labels_csv is not None:
        return LibraryLabels(
            read_label_csv(labels_csv, known_paths=[t.path for t in tracks]), 0, "csv"
        )
    ours = lib.tracks_tagged_by_mgctag()
    pairs = labels_from_tags((t.path, t.genres) for t in tracks if t.id not in ours)
    own = labels_from_tags((t.path, t.genres) for t in tracks if t.id in ours)
    return LibraryLabels(pairs, len(own))


def library_pairs(lib: Library, labels_csv: Path | None = None) -> list[Pair]:
    """The labelled tracks of `library_labels`."""
    return library_labels(lib, labels_csv).pairs


@dataclass(frozen=True)
class LabelSummary:
    counts: LabelCounts
    own: int  # labels left out: mgctag's own prediction


def label_summary(lib: Library, labels_csv: Path | None, min_count: int) -> LabelSummary:
    labels = library_labels(lib, labels_csv)
    counts = label_counts([genres for _, genres in labels.pairs], min_count=min_count)
    return LabelSummary(counts, labels.own)


def single_source_genres(
    Y: np.ndarray, labels: Sequence[str], groups: Sequence[str] | np.ndarray
) -> dict[str, str]:
    """genre → the one artist group (`group_key`) all its labelled tracks share, for each genre
    whose tracks all come from one: a model learns that artist's sound, not the genre, and
    grouped splits can test it only on tracks it never saw the like of."""
    groups = np.asarray(groups)
    single = {}
    for j, genre in enumerate(labels):
        owners = set(groups[np.asarray(Y)[:, j] > 0].tolist())
        if len(owners) == 1:
            single[genre] = owners.pop()
    return single


def folder_pairs(root: Path) -> list[Pair]:
    """A labelled collection laid out like GTZAN: one subfolder per genre.

    Audio files are found as `scan` finds them (`iter_audio_files`), so `eval FOLDER` labels
    exactly the files it analyses."""
    pairs = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(iter_audio_files([folder])):
            pairs.append((str(Path(path).resolve()), [folder.name]))
    if not pairs:
        raise LabelError(f"{root}: no genre subfolders with audio files")
    return pairs


@dataclass
class TrainResult:
    name: str
    path: Path
    card: dict
    dataset: Dataset
    report: EvalReport
    confusion_png: Path
    confusion_json: Path
    single_source: dict[str, str]  # genre → the one artist group all its tracks come from


def dataset(
    lib: Library, pairs: list[Pair] | None, stems: Sequence[str], min_count: int
) -> Dataset:
    """Labelled embeddings; without `pairs`, the labels `train` uses (never mgctag's own tags)."""
    pairs = pairs if pairs is not None else library_pairs(lib)
    return dataset_from_library(
        lib, model=MUSICNN_TAGGER, stems=tuple(stems), pairs=pairs, min_count=min_count
    )


def evaluate_head(
    ds: Dataset,
    *,
    protocol: str = "kfold",
    folds: int = TRAIN.folds,
    trials: int = TRAIN.trials,
    test_size: float = TRAIN.test_size,
    split_files: Path | None = None,
    seed: int = 0,
    hidden: int = 0,
) -> EvalReport:
    """The seed papers' protocols over grouped splits (no artist on both sides)."""
    files = find_split_files(split_files) if split_files else None
    return evaluate_protocol(
        ds.X,
        ds.Y,
        ds.labels,
        ds.groups,
        protocol=protocol,
        k=folds,
        n_trials=trials,
        test_size=test_size,
        split_files=files,
        paths=ds.paths,
        seed=seed,
        config=HeadConfig(hidden=hidden),
    )


def train_user_model(
    lib: Library,
    name: str,
    *,
    labels_csv: Path | None = None,
    stems: Sequence[str] = ("mix",),
    min_count: int = TRAIN.min_count,
    folds: int = TRAIN.folds,
    seed: int = 0,
    hidden: int = 0,
) -> TrainResult:
    """Evaluate by grouped k-fold, then fit the head on every labelled track and save it."""
    ds = dataset(lib, library_pairs(lib, labels_csv), stems, min_count)
    single = single_source_genres(ds.Y, ds.labels, ds.groups)
    folds = max(2, min(folds, len(set(ds.groups))))
    report = evaluate_head(ds, protocol="kfold", folds=folds, seed=seed, hidden=hidden)
    head, train_report = train_head(ds.X, ds.Y, ds.labels, hidden=hidden, seed=seed)
    separator = _separator_of(lib, ds) if any(s != "mix" for s in stems) else "none"
    card = user_model_card(
        name,
        head,
        train_report,
        embedding_model=MUSICNN_TAGGER,
        stems=stems,
        separator=separator,
        metrics=evaluation_summary(report),
        label_source="csv" if labels_csv else "tags",
        min_count=min_count,
    )
    dest = config.user_models_dir()
    path = save_model(head, ModelCard.from_dict(card), dest)
    png = save_confusion_png(report.pooled.confusion, ds.labels, dest / f"{name}.confusion.png")
    js = save_confusion_json(report.pooled.confusion, ds.labels, dest / f"{name}.confusion.json")
    return TrainResult(name, path, card, ds, report, png, js, single)


def _separator_of(lib: Library, ds: Dataset) -> str:
    """The separator behind a head's stem embeddings (stems of different separators differ)."""
    seps = {lib.get_predictions(i)[MUSICNN_TAGGER].separator or "none" for i in ds.track_ids}
    if len(seps) > 1:
        raise LabelError(
            f"stem embeddings come from several separators ({', '.join(sorted(seps))})"
        )
    return seps.pop()


# --- spectrogram networks retrained from audio (`mgctag train NAME --arch ARCH`) --------------


@dataclass
class NetworkResult:
    name: str
    path: Path
    card: dict
    metrics: dict
    n_tracks: int
    single_source: dict[str, str]  # genre → the one artist group all its tracks come from


@dataclass
class NetworkData:
    """Patches of every labelled track, as a seed-paper network reads them."""

    arch: str
    kind: str
    x: np.ndarray  # (patches, ...) features, not yet standardised
    y: np.ndarray  # (patches,) class index of the patch's track
    owner: np.ndarray  # (patches,) index of the track each patch came from
    y_track: np.ndarray  # (tracks,) class index per track (its first genre)
    Y: np.ndarray  # (tracks, classes) multi-hot labels, for stratified grouped splits
    labels: list[str]
    groups: list[str]
    separator: str | None
    stems: tuple[str, ...] = PAPER_STEMS  # the channels of "stems" features, in order


def network_data(
    lib: Library,
    arch: str,
    pairs: list[Pair],
    *,
    min_count: int = TRAIN.min_count,
    separator: str = "hpss",
    student: Student | None = None,
    progress: Progress | None = None,
) -> NetworkData:
    """Features from the pipeline's own `prepare`, so tagging later feeds exactly the same.

    From a `student`, its card's features (and separator), whatever the architecture reads by
    default: the weights kept were learned on those.
    """
    progress = progress or Progress()
    if arch not in NETWORK_INPUTS:
        raise LabelError(f"unknown --arch {arch!r}; choose one of {', '.join(NETWORK_INPUTS)}")
    kind, sep_name, stems = transfer.network_input(arch, student, separator)
    label_set = build_label_set(pairs, min_count=min_count)
    if not label_set.labels:
        raise LabelError(f"no genre has {min_count} or more labelled tracks; lower --min-count")
    require_two_genres(label_set.labels, min_count)
    found = {p: lib.track_by_path(p) for p in label_set.paths}
    missing = [p for p, row in found.items() if row is None]
    if missing:
        raise LabelError(
            f"{len(missing)} labelled file(s) are not in the library (first: {missing[0]}); "
            "run `mgctag scan` on their folder first"
        )
    tracks = [row for row in found.values() if row is not None]
    y_track = label_set.matrix().argmax(axis=1)  # several genres on a track: the first one
    sep = get_separator(sep_name) if sep_name else None
    plan = InputPlan((InputSpec(kind),))
    x_parts, y_parts, owner = [], [], []
    progress.stage(f"features ({kind})", total=len(tracks))
    for i, track in enumerate(tracks):
        item = prepare(track, plan, sep)
        progress.advance()
        if item.error or item.skip:
            continue
        x = select_input(item.features, kind, stems)
        x_parts.append(x)
        y_parts.append(np.full(len(x), y_track[i]))
        owner.append(np.full(len(x), i))
    if not x_parts:
        raise LabelError("none of the labelled tracks could be decoded")
    groups = [group_key(t.artist, t.album, t.path) for t in tracks]
    return NetworkData(
        arch,
        kind,
        np.concatenate(x_parts),
        np.concatenate(y_parts),
        np.concatenate(owner),
        y_track,
        label_set.matrix(),
        list(label_set.labels),
        groups,
        sep.name if sep else None,
        stems,
    )


def fit_network(
    data: NetworkData,
    train_tracks: np.ndarray,
    *,
    epochs: int,
    seed: int,
    student: Student | None = None,
) -> tuple[torch.nn.Module, dict, torch.Tensor]:
    """Train on the patches of `train_tracks`; returns the model, its card's preprocessing, and
    every patch prepared the way the model reads it (for measuring the held-out tracks).

    From a `student`: its weights with a new output layer, its card's preprocessing (MFCC
    statistics too: its first layers learned on them, so they are not recomputed) and the smaller
    fine-tuning step (`transfer.FINE_TUNE_LR`, which says why).
    """
    train = np.isin(data.owner, train_tracks)
    n = len(data.labels)
    if student is None:
        model, prep = _new_network(data, train)
        lr = transfer.SCRATCH_LR
    else:
        model = transfer.with_new_output(student, n)
        prep, lr = student.preprocessing, transfer.FINE_TUNE_LR
    x_t = prepare_input(data.x, prep)
    y_t = torch.as_tensor(data.y, dtype=torch.long)
    soft = torch.nn.functional.one_hot(y_t, n).float() * 0.9 + 0.1 / n  # smoothed targets
    mask = torch.as_tensor(train)
    cfg = distill.DistillConfig(epochs=epochs, alpha=0.0, seed=seed, lr=lr)
    distill.train_student(model, (x_t[mask], soft[mask], y_t[mask]), None, cfg, log=lambda _: None)
    return model, prep, x_t


def _new_network(data: NetworkData, train: np.ndarray) -> tuple[torch.nn.Module, dict]:
    """A randomly initialised network and its preprocessing (MFCC statistics of `train` rows)."""
    prep: dict = {"input": data.kind, "patch_frames": 187, "sample_rate": features.SR}
    args = {"n_classes": len(data.labels)}
    if data.kind == "stems":
        prep.update(stems=list(data.stems), separator=data.separator)
        args["in_channels"] = len(data.stems)
    if data.kind == "mfcc":
        prep["standardize"] = distill.standardizer(torch.as_tensor(data.x[train]))
    return ARCHITECTURES[data.arch](**args), prep


def train_network(
    lib: Library,
    name: str,
    arch: str,
    *,
    labels_csv: Path | None = None,
    min_count: int = TRAIN.min_count,
    epochs: int = TRAIN.epochs,
    test_size: float = TRAIN.test_size,
    separator: str = "hpss",
    seed: int = 0,
    student: Student | None = None,
    progress: Progress | None = None,
) -> NetworkResult:
    """Retrain a seed-paper network from the audio of the labelled tracks (one genre per track),
    from random weights or from a distilled `student` (`transfer.load_student`).

    One grouped hold-out (no artist on both sides) measures it; the saved model is the one
    trained on the rest.
    """
    progress = progress or Progress()
    pairs = library_pairs(lib, labels_csv)
    data = network_data(
        lib, arch, pairs, min_count=min_count, separator=separator, student=student,
        progress=progress,
    )  # fmt: skip
    split = trial_splits(data.Y, data.groups, n_trials=1, test_size=test_size, seed=seed)[0]
    progress.stage(_training_stage(arch, student), total=1)
    model, prep, x_t = fit_network(data, split.train, epochs=epochs, seed=seed, student=student)
    progress.advance()
    metrics = _heldout_metrics(model, x_t, data, sorted(split.test.tolist()))
    card = {
        "name": name,
        "arch": arch,
        "arch_args": model.config,
        "labels": data.labels,
        "preprocessing": prep,
        "outputs": {"activation": "softmax"},
        "source": {
            "kind": "user",
            "label_source": "csv" if labels_csv else "tags",
            "n_train_tracks": len(split.train),
            "n_test_tracks": len(split.test),
            "epochs": epochs,
            "seed": seed,
            **_init_record(student),
        },
        "metrics": metrics,
    }
    path = save_model(model, ModelCard.from_dict(card), config.user_models_dir())
    single = single_source_genres(data.Y, data.labels, data.groups)
    return NetworkResult(name, path, card, metrics, len(data.y_track), single)


def evaluate_network(
    lib: Library,
    arch: str,
    pairs: list[Pair] | None,
    *,
    protocol: str = "kfold",
    folds: int = TRAIN.folds,
    trials: int = TRAIN.trials,
    test_size: float = TRAIN.test_size,
    min_count: int = TRAIN.min_count,
    epochs: int = TRAIN.epochs,
    separator: str = "hpss",
    seed: int = 0,
    student: Student | None = None,
    progress: Progress | None = None,
) -> dict:
    """The seed papers' protocols for a network retrained from audio: one fit per split, each
    from random weights or from the same distilled `student`."""
    progress = progress or Progress()
    pairs = pairs if pairs is not None else library_pairs(lib)
    data = network_data(
        lib, arch, pairs, min_count=min_count, separator=separator, student=student,
        progress=progress,
    )  # fmt: skip
    splits = make_splits(
        data.Y,
        np.asarray(data.groups),
        protocol=protocol,
        k=folds,
        n_trials=trials,
        test_size=test_size,
        seed=seed,
    )
    results = []
    progress.stage(f"{_training_stage(arch, student)} ({protocol})", total=len(splits))
    for split in splits:
        model, _, x_t = fit_network(data, split.train, epochs=epochs, seed=seed, student=student)
        metrics = _heldout_metrics(model, x_t, data, sorted(split.test.tolist()))
        if metrics:  # a split whose test tracks all failed to decode measures nothing
            results.append(metrics)
        progress.advance()
    acc = np.array([r["accuracy"] for r in results])
    f1 = np.array([r["macro_f1"] for r in results])
    return {
        "arch": arch,
        "protocol": protocol,
        "splits": len(results),
        "n_tracks": len(data.y_track),
        "labels": data.labels,
        "seed": seed,
        "epochs": epochs,
        "input": data.kind,
        **_init_record(student),
        "accuracy": {"mean": float(acc.mean()), "std": float(acc.std())},
        "macro_f1": {"mean": float(f1.mean()), "std": float(f1.std())},
        "folds": results,
    }


def _training_stage(arch: str, student: Student | None) -> str:
    return f"training {arch}" if student is None else f"fine-tuning {student.name}"


def _init_record(student: Student | None) -> dict:
    """Where the weights started (a card or a result says), and the step size that follows."""
    if student is None:
        return {"init": None, "lr": transfer.SCRATCH_LR}
    return {"init": student.name, "lr": transfer.FINE_TUNE_LR}


def _heldout_metrics(
    model: torch.nn.Module, x: torch.Tensor, data: NetworkData, test_tracks: list[int]
) -> dict:
    """Track-level accuracy and macro-F1 on the held-out tracks (patch softmax averaged)."""
    test_tracks = [t for t in test_tracks if (data.owner == t).any()]
    if not test_tracks:
        return {}
    rows = np.isin(data.owner, test_tracks)
    model.eval()
    with torch.inference_mode():
        probs = torch.softmax(model(x[torch.as_tensor(rows)])[0], dim=-1).numpy()
    owner = data.owner[rows]
    P = np.stack([probs[owner == t].mean(axis=0) for t in test_tracks])
    Y = np.eye(len(data.labels))[[data.y_track[t] for t in test_tracks]]
    m = compute_metrics(Y, P, data.labels, multi_label=False)
    return {
        "protocol": "grouped hold-out",
        "n_test": len(test_tracks),
        "accuracy": m.accuracy,
        "macro_f1": m.macro_f1,
    }
