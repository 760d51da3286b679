"""How well a head would do on tracks it has not seen: metrics, protocols, learning curves.

Protocols: `kfold` (every track tested once), `trials` (N random grouped hold-outs, mean ± std),
`split_files` (a fixed published split such as GTZAN's fault-filtered one). All of them train a
fresh head per split on the training side only, so the standardisation never sees test rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import f1_score, precision_recall_fscore_support

from mgctag.options import TRAIN
from mgctag.train.heads import HeadConfig, predict_proba, train_head
from mgctag.train.splits import (
    Split,
    SplitError,
    kfold_splits,
    leaked_groups,
    split_from_files,
    trial_splits,
)

PROTOCOLS = ("kfold", "trials", "split_files")


@dataclass
class Metrics:
    """Accuracy (top genre is one of the track's), macro-F1, per-genre P/R/F1, confusion counts."""

    n: int
    accuracy: float
    macro_f1: float
    per_genre: dict[str, dict[str, float]]
    confusion: list[list[int]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def predicted_sets(P: np.ndarray, multi_label: bool, threshold: float = 0.5) -> np.ndarray:
    """0/1 predictions: the top genre, plus (multi-label) every other genre above `threshold`."""
    pred = np.zeros_like(P, dtype=np.int64)
    pred[np.arange(len(P)), P.argmax(axis=1)] = 1
    if multi_label:
        pred |= (threshold <= P).astype(np.int64)
    return pred


def confusion_counts(Y: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Rows: true genre, columns: top predicted genre. A hit counts once on the diagonal; a miss
    counts once under each of the track's true genres (so multi-label tracks fit one matrix)."""
    n_classes = Y.shape[1]
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    top = P.argmax(axis=1)
    for truth, guess in zip(Y > 0, top, strict=True):
        if truth[guess]:
            cm[guess, guess] += 1
        else:
            cm[np.flatnonzero(truth), guess] += 1
    return cm


def compute_metrics(
    Y: np.ndarray,
    P: np.ndarray,
    labels: Sequence[str],
    *,
    multi_label: bool,
    threshold: float = 0.5,
) -> Metrics:
    """Metrics of probabilities P against multi-hot truth Y; macro-F1 over genres present in Y."""
    Y = (np.asarray(Y) > 0).astype(np.int64)
    pred = predicted_sets(np.asarray(P), multi_label, threshold)
    present = np.flatnonzero(Y.sum(axis=0) > 0)
    accuracy = float(Y[np.arange(len(Y)), np.asarray(P).argmax(axis=1)].mean()) if len(Y) else 0.0
    prec, rec, f1, support = precision_recall_fscore_support(
        Y, pred, labels=np.arange(len(labels)), average=None, zero_division=0
    )
    macro = (
        f1_score(Y, pred, labels=present, average="macro", zero_division=0) if len(present) else 0.0
    )
    per_genre = {
        g: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for g, p, r, f, s in zip(labels, prec, rec, f1, support, strict=True)
    }
    cm = confusion_counts(Y, np.asarray(P))
    return Metrics(len(Y), accuracy, float(macro), per_genre, cm.tolist())


@dataclass
class FoldResult:
    split: dict[str, Any]
    test: Metrics
    valid: Metrics | None = None
    leaked_groups: int = 0


@dataclass
class EvalReport:
    """One protocol's results; `to_dict()` is the stable `--json` schema."""

    protocol: str
    labels: list[str]
    multi_label: bool
    seed: int
    n_tracks: int
    n_groups: int
    folds: list[FoldResult]
    pooled: Metrics
    train_config: HeadConfig = field(default_factory=HeadConfig)
    params: dict[str, Any] = field(default_factory=dict)

    def _values(self, name: str) -> np.ndarray:
        return np.array([getattr(f.test, name) for f in self.folds], dtype=np.float64)

    @property
    def accuracy(self) -> tuple[float, float]:
        """Mean and standard deviation over folds/trials."""
        v = self._values("accuracy")
        return float(v.mean()), float(v.std())

    @property
    def macro_f1(self) -> tuple[float, float]:
        v = self._values("macro_f1")
        return float(v.mean()), float(v.std())

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["accuracy"] = dict(zip(("mean", "std"), self.accuracy, strict=True))
        out["macro_f1"] = dict(zip(("mean", "std"), self.macro_f1, strict=True))
        return out


def make_splits(
    Y: np.ndarray,
    groups: np.ndarray,
    *,
    protocol: str,
    k: int = TRAIN.folds,
    n_trials: int = 10,
    test_size: float = 0.2,
    split_files: dict[str, Any] | None = None,
    paths: Sequence[str] | None = None,
    seed: int = 0,
) -> list[Split]:
    """The splits a protocol evaluates on."""
    if protocol == "kfold":
        return kfold_splits(Y, groups, k=k, seed=seed)
    if protocol == "trials":
        return trial_splits(Y, groups, n_trials=n_trials, test_size=test_size, seed=seed)
    if protocol == "split_files":
        if not split_files or paths is None:
            raise SplitError("the split_files protocol needs the split lists and the track paths")
        return [split_from_files(paths, split_files)]
    raise SplitError(f"unknown protocol {protocol!r} (one of {', '.join(PROTOCOLS)})")


def evaluate_splits(
    X: np.ndarray,
    Y: np.ndarray,
    labels: Sequence[str],
    groups: Sequence[str] | np.ndarray,
    splits: Sequence[Split],
    *,
    protocol: str = "custom",
    config: HeadConfig | None = None,
    params: dict[str, Any] | None = None,
) -> EvalReport:
    """Train a fresh head per split and score it on that split's test (and valid) rows."""
    X, Y, groups = np.asarray(X, np.float32), np.asarray(Y, np.float32), np.asarray(groups)
    config = config or HeadConfig()
    multi = bool((Y.sum(axis=1) > 1).any())
    folds, Ys, Ps = [], [], []
    for split in splits:
        head, _ = train_head(
            X[split.train], Y[split.train], list(labels), config=config, multi_label=multi
        )
        P = predict_proba(head, X[split.test])
        Ys.append(Y[split.test])
        Ps.append(P)
        valid = None
        if len(split.valid):
            valid = compute_metrics(
                Y[split.valid], predict_proba(head, X[split.valid]), labels, multi_label=multi
            )
        test = compute_metrics(Y[split.test], P, labels, multi_label=multi)
        folds.append(FoldResult(split.to_dict(), test, valid, len(leaked_groups(split, groups))))
    return EvalReport(
        protocol=protocol,
        labels=list(labels),
        multi_label=multi,
        seed=config.seed,
        n_tracks=len(X),
        n_groups=len(np.unique(groups)),
        folds=folds,
        pooled=compute_metrics(np.concatenate(Ys), np.concatenate(Ps), labels, multi_label=multi),
        train_config=config,
        params=params or {},
    )


def evaluate_protocol(
    X: np.ndarray,
    Y: np.ndarray,
    labels: Sequence[str],
    groups: Sequence[str] | np.ndarray,
    *,
    protocol: str = "kfold",
    k: int = TRAIN.folds,
    n_trials: int = 10,
    test_size: float = 0.2,
    split_files: dict[str, Any] | None = None,
    paths: Sequence[str] | None = None,
    seed: int = 0,
    config: HeadConfig | None = None,
) -> EvalReport:
    """Evaluate a head the way `mgctag eval` does: grouped splits by `protocol`, one head per split.

    `seed` fixes both the splits and the head initialisation (it overrides config.seed).
    """
    groups = np.asarray(groups)
    config = HeadConfig(**{**asdict(config or HeadConfig()), "seed": seed})
    splits = make_splits(
        np.asarray(Y),
        groups,
        protocol=protocol,
        k=k,
        n_trials=n_trials,
        test_size=test_size,
        split_files=split_files,
        paths=paths,
        seed=seed,
    )
    params: dict[str, Any] = {"k": k} if protocol == "kfold" else {}
    if protocol == "trials":
        params = {"n_trials": n_trials, "test_size": test_size}
    if protocol == "split_files":
        params = {"files": {part: str(f) for part, f in (split_files or {}).items()}}
    return evaluate_splits(
        X, Y, labels, groups, splits, protocol=protocol, config=config, params=params
    )


# --- learning curve: how many labelled tracks per genre does a user need? ---


@dataclass
class CurvePoint:
    per_class: int | None
    n_train_mean: float
    accuracy: tuple[float, float]
    macro_f1: tuple[float, float]
    repeats: int


@dataclass
class LearningCurve:
    labels: list[str]
    seed: int
    test_size: float
    points: list[CurvePoint]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def subsample_per_class(
    Y: np.ndarray, rows: np.ndarray, per_class: int | None, rng: np.random.Generator
) -> np.ndarray:
    """Up to `per_class` rows for each genre (all rows when None), drawn from `rows`."""
    if per_class is None:
        return np.asarray(rows)
    primary = Y[rows].argmax(axis=1)
    chosen = []
    for c in np.unique(primary):
        members = rows[primary == c]
        chosen.append(rng.choice(members, size=min(per_class, len(members)), replace=False))
    return np.sort(np.concatenate(chosen))


def learning_curve(
    X: np.ndarray,
    Y: np.ndarray,
    labels: Sequence[str],
    groups: Sequence[str] | np.ndarray,
    *,
    sizes: Sequence[int | None] = (1, 2, 5, 10, 20, None),
    repeats: int = 10,
    test_size: float = 0.3,
    seed: int = 0,
    config: HeadConfig | None = None,
) -> LearningCurve:
    """Accuracy and macro-F1 (mean ± std over `repeats` grouped hold-outs) vs labelled tracks per
    genre. The same hold-out is used for every size within a repeat, so sizes compare fairly."""
    X, Y = np.asarray(X, np.float32), np.asarray(Y, np.float32)
    config = HeadConfig(**{**asdict(config or HeadConfig()), "seed": seed})
    splits = trial_splits(Y, groups, n_trials=repeats, test_size=test_size, seed=seed)
    multi = bool((Y.sum(axis=1) > 1).any())
    points = []
    for size in sizes:
        acc, f1, n_train = [], [], []
        for split in splits:
            rng = np.random.default_rng([seed, split.seed or 0, size or 0])
            train = subsample_per_class(Y, split.train, size, rng)
            head, _ = train_head(X[train], Y[train], list(labels), config=config, multi_label=multi)
            m = compute_metrics(
                Y[split.test], predict_proba(head, X[split.test]), labels, multi_label=multi
            )
            acc.append(m.accuracy)
            f1.append(m.macro_f1)
            n_train.append(len(train))
        points.append(
            CurvePoint(
                size,
                float(np.mean(n_train)),
                (float(np.mean(acc)), float(np.std(acc))),
                (float(np.mean(f1)), float(np.std(f1))),
                len(splits),
            )
        )
    return LearningCurve(list(labels), seed, test_size, points)
