"""Train/test splits that do not leak: one artist (or album) is never on both sides.

Songs by one artist share production, voice and mastering; a split that puts them on both sides
measures artist recognition, not genre recognition (Sturm 2013; the GTZAN fault-filtered split).
Every split here is grouped, stratified where the data allow, and seeded so a number can be rerun.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from mgctag.options import TRAIN
from mgctag.train.labels import TrainingDataError

_EMPTY = np.zeros(0, dtype=np.int64)


class SplitError(TrainingDataError):
    """The labelled data cannot be split as asked (too few groups, bad split file...)."""


@dataclass(frozen=True)
class Split:
    """Row indices into one dataset; `valid` may be empty."""

    name: str
    train: np.ndarray
    test: np.ndarray
    valid: np.ndarray = field(default_factory=lambda: _EMPTY)
    seed: int | None = None
    unmatched: int = 0

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "n_train": len(self.train),
            "n_valid": len(self.valid),
            "n_test": len(self.test),
            "seed": self.seed,
            "unmatched": self.unmatched,
        }


def stratify_labels(Y: np.ndarray) -> np.ndarray:
    """One class per row to stratify on: its rarest genre, so small classes get spread out."""
    Y = np.asarray(Y)
    freq = Y.sum(axis=0)
    masked = np.where(Y > 0, freq[None, :], np.inf)
    return masked.argmin(axis=1)


def leaked_groups(split: Split, groups: Sequence[str] | np.ndarray) -> set[str]:
    """Groups that appear on more than one side of a split (empty for a clean split)."""
    g = np.asarray(groups)
    sides = [set(g[idx]) for idx in (split.train, split.valid, split.test) if len(idx)]
    leaked: set[str] = set()
    for i, a in enumerate(sides):
        for b in sides[i + 1 :]:
            leaked |= a & b
    return leaked


def _check_groups(groups: np.ndarray, needed: int, what: str) -> None:
    n = len(np.unique(groups))
    if n < needed:
        raise SplitError(
            f"only {n} artist/album group(s) among the labelled tracks; {what} needs at least "
            f"{needed} (label tracks by more artists, or use fewer folds)"
        )


def _folds(Y: np.ndarray, groups: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, ...]]:
    """StratifiedGroupKFold on rarest-genre labels; its 'too few members' warning is expected."""
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return list(cv.split(np.zeros(len(groups)), stratify_labels(Y), groups))


def kfold_splits(
    Y: np.ndarray, groups: Sequence[str] | np.ndarray, *, k: int = TRAIN.folds, seed: int = 0
) -> list[Split]:
    """k grouped, stratified folds; each row is tested exactly once."""
    if k < 2:
        raise SplitError(f"k-fold needs k >= 2, got {k}")
    groups = np.asarray(groups)
    _check_groups(groups, k, f"{k}-fold evaluation")
    folds = _folds(np.asarray(Y), groups, k, seed)
    return [Split(f"fold{i + 1}", tr, te, seed=seed) for i, (tr, te) in enumerate(folds)]


def trial_splits(
    Y: np.ndarray,
    groups: Sequence[str] | np.ndarray,
    *,
    n_trials: int = 10,
    test_size: float = 0.2,
    seed: int = 0,
) -> list[Split]:
    """`n_trials` random grouped splits holding out about `test_size` of the rows each.

    Trial i is the first fold of a StratifiedGroupKFold shuffled with seed + i, so trials are
    stratified like folds but independent of one another.
    """
    if not 0.0 < test_size < 1.0:
        raise SplitError(f"test size must be between 0 and 1, got {test_size}")
    groups = np.asarray(groups)
    n_splits = max(2, round(1.0 / test_size))
    _check_groups(groups, n_splits, f"a {test_size:.0%} grouped hold-out")
    out = []
    for i in range(n_trials):
        train, test = _folds(np.asarray(Y), groups, n_splits, seed + i)[0]
        out.append(Split(f"trial{i + 1}", train, test, seed=seed + i))
    return out


# --- fixed split files (e.g. the GTZAN fault-filtered split: "blues/blues.00012.wav" per line) ---


def read_split_file(path: str | Path) -> list[str]:
    """Entries of a split list: one relative file name per line; blanks and '#' comments skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SplitError(f"{path}: cannot read split file ({exc})") from exc
    entries = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not entries:
        raise SplitError(f"{path}: split file lists no files")
    return entries


def find_split_files(folder: str | Path, variant: str | None = None) -> dict[str, Path]:
    """{'train': ..., 'valid': ..., 'test': ...} from a folder of `train*.txt` etc.

    `variant` picks among several sets (e.g. "filtered" or "stratified" in kereliuk-dnn-mgr/gtzan).
    """
    folder = Path(folder)
    found: dict[str, Path] = {}
    for part in ("train", "valid", "test"):
        hits = sorted(folder.glob(f"{part}*.txt"))
        if variant:
            hits = [h for h in hits if variant in h.stem]
        if len(hits) > 1:
            names = ", ".join(h.name for h in hits)
            raise SplitError(f"{folder}: several {part} lists ({names}); choose a variant")
        if hits:
            found[part] = hits[0]
    if "train" not in found or "test" not in found:
        raise SplitError(f"{folder}: needs at least a train*.txt and a test*.txt list")
    return found


def _path_key(parts: Sequence[str]) -> tuple[str, ...]:
    """Path parts, case-folded, the last without extension (a list's .wav may be a .flac here)."""
    *head, name = parts
    return (*(p.casefold() for p in head), os.path.splitext(name)[0].casefold())


def _parts(path: str) -> list[str]:
    return [p for p in Path(os.path.normpath(path)).parts if p not in ("/", "")]


def _suffix_index(paths: Sequence[str], depth: int) -> dict[tuple[str, ...], list[int]]:
    index: dict[tuple[str, ...], list[int]] = {}
    for row, path in enumerate(paths):
        parts = _parts(path)
        for n in range(1, min(depth, len(parts)) + 1):
            index.setdefault(_path_key(parts[-n:]), []).append(row)
    return index


def _match(entries: list[str], index: dict, source: Path) -> tuple[list[int], int]:
    rows, unmatched = [], 0
    for entry in entries:
        hits = index.get(_path_key(_parts(entry)), [])
        if len(hits) > 1:
            raise SplitError(f"{source}: {entry!r} matches {len(hits)} labelled tracks")
        if hits:
            rows.append(hits[0])
        else:
            unmatched += 1
    return rows, unmatched


def split_from_files(
    paths: Sequence[str],
    files: dict[str, str | Path],
    *,
    name: str = "split",
) -> Split:
    """A fixed split: each list's entries matched to `paths` by their trailing path components.

    Entries not in the labelled set are counted (`unmatched`), not fatal: a user may own only part
    of a dataset. A track listed on two sides, or a list that matches nothing, is an error.
    """
    if "train" not in files or "test" not in files:
        raise SplitError("a fixed split needs at least train and test lists")
    entries = {part: read_split_file(f) for part, f in files.items()}
    depth = max(len(_parts(e)) for lst in entries.values() for e in lst)
    index = _suffix_index(paths, depth)
    sides: dict[str, np.ndarray] = {}
    unmatched = 0
    for part, lst in entries.items():
        rows, missing = _match(lst, index, Path(files[part]))
        if not rows:
            raise SplitError(f"{files[part]}: none of its {len(lst)} files are labelled tracks")
        sides[part] = np.asarray(rows, dtype=np.int64)
        unmatched += missing
    seen: dict[int, str] = {}
    for part, side in sides.items():
        for r in side.tolist():
            if r in seen and seen[r] != part:
                raise SplitError(f"{files[part]}: {paths[r]} is also in the {seen[r]} list")
            seen[r] = part
    return Split(
        name,
        sides["train"],
        sides["test"],
        sides.get("valid", _EMPTY),
        unmatched=unmatched,
    )
