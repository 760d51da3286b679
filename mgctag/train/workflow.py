"""User models end to end: labels → dataset of stored embeddings → evaluation → head → saved model.

The commands `labels`, `train` and `eval` are thin layers over these functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mgctag import config, pipeline
from mgctag.library.db import Library
from mgctag.models.registry import ModelCard, save_model
from mgctag.train.evaluate import EvalReport, evaluate_protocol
from mgctag.train.heads import TrainConfig, train_head
from mgctag.train.labels import (
    Dataset,
    LabelCounts,
    LabelError,
    Pair,
    dataset_from_library,
    label_counts,
    labels_from_tags,
    read_label_csv,
)
from mgctag.train.report import (
    evaluation_summary,
    save_confusion_json,
    save_confusion_png,
    user_model_card,
)
from mgctag.train.splits import find_split_files

AUDIO_SUFFIXES = (".mp3", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".mp4", ".wav", ".aif", ".aiff")


def library_pairs(lib: Library, labels_csv: Path | None = None) -> list[Pair]:
    """(path, genres) labels: from a CSV, or from the genre tags the user put in their files.

    Genres mgctag wrote itself are not labels: training on its own predictions would only teach
    the head to agree with the model it is meant to replace.
    """
    if labels_csv is not None:
        return read_label_csv(labels_csv, known_paths=[t["path"] for t in lib.tracks()])
    ours = lib.tracks_tagged_by_mgctag()
    tracks = ((t["path"], t.get("genres") or []) for t in lib.tracks() if t["id"] not in ours)
    return labels_from_tags(tracks)


def label_summary(lib: Library, labels_csv: Path | None, min_count: int) -> LabelCounts:
    return label_counts(
        [genres for _, genres in library_pairs(lib, labels_csv)], min_count=min_count
    )


def folder_pairs(root: Path) -> list[Pair]:
    """A labelled collection laid out like GTZAN: one subfolder per genre."""
    pairs = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() in AUDIO_SUFFIXES:
                pairs.append((str(path.resolve()), [folder.name]))
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


def dataset(
    lib: Library, pairs: list[Pair] | None, stems: Sequence[str], min_count: int
) -> Dataset:
    return dataset_from_library(
        lib, model=pipeline.DEFAULT_TAGGER, stems=tuple(stems), pairs=pairs, min_count=min_count
    )


def evaluate(
    ds: Dataset,
    *,
    protocol: str = "kfold",
    folds: int = 5,
    trials: int = 50,
    test_size: float = 0.2,
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
        config=TrainConfig(hidden=hidden),
    )


def train_user_model(
    lib: Library,
    name: str,
    *,
    labels_csv: Path | None = None,
    stems: Sequence[str] = ("mix",),
    min_count: int = 5,
    folds: int = 5,
    seed: int = 0,
    hidden: int = 0,
) -> TrainResult:
    """Evaluate by grouped k-fold, then fit the head on every labelled track and save it."""
    ds = dataset(lib, library_pairs(lib, labels_csv), stems, min_count)
    folds = max(2, min(folds, len(set(ds.groups))))
    report = evaluate(ds, protocol="kfold", folds=folds, seed=seed, hidden=hidden)
    head, train_report = train_head(ds.X, ds.Y, ds.labels, hidden=hidden, seed=seed)
    separator = _separator_of(lib, ds) if any(s != "mix" for s in stems) else "none"
    card = user_model_card(
        name,
        head,
        train_report,
        embedding_model=pipeline.DEFAULT_TAGGER,
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
    return TrainResult(name, path, card, ds, report, png, js)


def _separator_of(lib: Library, ds: Dataset) -> str:
    """The separator behind a head's stem embeddings (stems of different separators differ)."""
    seps = {lib.get_predictions(int(i))[pipeline.DEFAULT_TAGGER]["separator"] for i in ds.track_ids}
    if len(seps) > 1:
        raise LabelError(
            f"stem embeddings come from several separators ({', '.join(sorted(seps))})"
        )
    return seps.pop()
