"""Labels a user teaches mgctag: from the genre tags already in the library, or from a CSV.

Every source ends as (path, [genre, ...]) pairs, normalised with the same genre normaliser the
tagger uses, so "hip hop", "Hip-Hop" and "HIPHOP" are one class. Classes with too few examples are
reported and left out rather than silently trained on: a head cannot learn a genre from two tracks.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mgctag.errors import UsageError
from mgctag.genres import split_and_normalise
from mgctag.options import TRAIN

if TYPE_CHECKING:
    from mgctag.library.db import Library

DEFAULT_MIN_COUNT = TRAIN.min_count
_PATH_COLUMNS = ("path", "file", "filename", "track")
_GENRE_COLUMNS = ("genre", "genres", "label", "labels")

Pair = tuple[str, list[str]]


class TrainingDataError(UsageError, ValueError):
    """Labels or splits the user gave cannot be used; the message names the file and the reason."""


class LabelError(TrainingDataError):
    """A bad label source: unreadable CSV, unknown path, empty genre (message has file:line)."""


def require_two_genres(labels: Sequence[str], min_count: int) -> None:
    """A model that can only answer one genre learns nothing (its accuracy, 1.000, says nothing):
    refused before anything is trained or saved."""
    if len(labels) == 1:
        raise LabelError(
            f"only one genre ({labels[0]}) has {min_count} or more labelled tracks; a model needs"
            " two or more to choose between: label tracks of another genre or lower --min-count"
        )


def normalize_genres(
    values: Iterable[str], normalizer: Callable[[str], str] | None = None
) -> list[str]:
    """Split, normalise and de-duplicate a track's genres (`genres.split_and_normalise`)."""
    return split_and_normalise(values, normalizer)


@dataclass
class LabelCounts:
    """How many tracks carry each genre, and which genres are numerous enough to train on."""

    counts: dict[str, int]
    min_count: int
    n_tracks: int
    n_labelled: int

    @property
    def kept(self) -> list[str]:
        return sorted(g for g, n in self.counts.items() if n >= self.min_count)

    @property
    def dropped(self) -> dict[str, int]:
        return {g: n for g, n in self.counts.items() if n < self.min_count}

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "min_count": self.min_count,
            "n_tracks": self.n_tracks,
            "n_labelled": self.n_labelled,
            "kept": self.kept,
            "dropped": self.dropped,
        }


def _canonical_spellings(genre_lists: Sequence[Sequence[str]]) -> dict[str, str]:
    """casefold key -> the most frequent spelling, so case never splits a class."""
    spellings: dict[str, Counter[str]] = {}
    for genres in genre_lists:
        for g in genres:
            spellings.setdefault(g.casefold(), Counter())[g] += 1
    return {key: c.most_common(1)[0][0] for key, c in spellings.items()}


def _canonicalise(genre_lists: Sequence[Sequence[str]]) -> list[list[str]]:
    spelling = _canonical_spellings(genre_lists)
    return [list(dict.fromkeys(spelling[g.casefold()] for g in genres)) for genres in genre_lists]


def label_counts(
    genre_lists: Sequence[Sequence[str]], *, min_count: int = DEFAULT_MIN_COUNT
) -> LabelCounts:
    """Per-genre track counts over already-normalised genre lists (for `mgctag labels`)."""
    lists = _canonicalise(genre_lists)
    counter = Counter(g for genres in lists for g in genres)
    counts = dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))
    return LabelCounts(counts, min_count, len(lists), sum(1 for g in lists if g))


@dataclass
class LabelSet:
    """Tracks with at least one trainable genre, and the class list a head will predict."""

    paths: list[str]
    genres: list[list[str]]
    labels: list[str]
    counts: LabelCounts
    n_unlabelled: int = 0

    @property
    def multi_label(self) -> bool:
        """Sigmoid + BCE when any track has several genres, softmax otherwise."""
        return any(len(g) > 1 for g in self.genres)

    def matrix(self) -> np.ndarray:
        """Multi-hot targets (n_tracks, n_labels) float32 in `labels` order."""
        index = {g: i for i, g in enumerate(self.labels)}
        y = np.zeros((len(self.genres), len(self.labels)), np.float32)
        for row, genres in enumerate(self.genres):
            y[row, [index[g] for g in genres]] = 1.0
        return y

    def __len__(self) -> int:
        return len(self.paths)


def build_label_set(pairs: Iterable[Pair], *, min_count: int = DEFAULT_MIN_COUNT) -> LabelSet:
    """Keep genres with at least `min_count` tracks; drop tracks left with none (and count them)."""
    pairs = list(pairs)
    lists = _canonicalise([g for _, g in pairs])
    counts = label_counts(lists, min_count=min_count)
    kept = set(counts.kept)
    paths, genres, unlabelled = [], [], 0
    for (path, _), track_genres in zip(pairs, lists, strict=True):
        keep = [g for g in track_genres if g in kept]
        if keep:
            paths.append(path)
            genres.append(keep)
        else:
            unlabelled += 1
    return LabelSet(paths, genres, counts.kept, counts, n_unlabelled=unlabelled)


def _default_parent(genre: str) -> str | None:
    try:
        from mgctag.genres import default_map
    except ImportError:
        return None
    return default_map().parent(genre)


def merge_rare(
    pairs: Iterable[Pair],
    *,
    min_count: int = DEFAULT_MIN_COUNT,
    parent: Callable[[str], str | None] | None = None,
    other: str = "Other",
) -> list[Pair]:
    """Fold genres with fewer than `min_count` tracks into their taxonomy parent (or `other` when
    they have none), repeating while a parent is itself rare: keeps the tracks, loses detail."""
    parent = parent or _default_parent
    pairs = [(p, list(g)) for p, g in pairs]
    for _ in range(16):  # taxonomies are shallow; this bounds a cycle in a user's map
        rare = set(label_counts([g for _, g in pairs], min_count=min_count).dropped) - {other}
        # Children first: a rare parent may become common once its rare children join it.
        lift = {g: up for g in rare if (up := parent(g)) and up.casefold() != g.casefold()}
        lift = lift or dict.fromkeys(rare, other)
        if not lift:
            break
        pairs = [(p, list(dict.fromkeys(lift.get(x, x) for x in g))) for p, g in pairs]
    return pairs


def labels_from_tags(
    tracks: Iterable[tuple[str, Sequence[str] | None]],
    *,
    normalizer: Callable[[str], str] | None = None,
) -> list[Pair]:
    """(path, genres-as-in-the-file) -> normalised pairs; untagged tracks are skipped."""
    norm = normalizer
    out = []
    for path, raw in tracks:
        genres = normalize_genres(raw or [], norm)
        if genres:
            out.append((path, genres))
    return out


def _header_columns(row: list[str]) -> tuple[int, int] | None:
    """Indices of the path and genre columns if `row` is a header, else None."""
    names = [c.strip().casefold() for c in row]
    path_col = next((names.index(c) for c in _PATH_COLUMNS if c in names), None)
    genre_col = next((names.index(c) for c in _GENRE_COLUMNS if c in names), None)
    if path_col is None or genre_col is None:
        return None
    return path_col, genre_col


class _PathResolver:
    """Match a CSV path to a library path: exact (absolute or CSV-relative), else unique suffix."""

    def __init__(self, known: Iterable[str] | None, base_dir: Path):
        self.base_dir = base_dir
        self.known = None if known is None else {os.path.normpath(p): p for p in known}
        self._by_name: dict[str, list[str]] = {}
        for norm in self.known or {}:
            self._by_name.setdefault(os.path.basename(norm), []).append(norm)

    def resolve(self, cell: str) -> str | None:
        raw = os.path.expanduser(cell)
        path = os.path.normpath(raw if os.path.isabs(raw) else self.base_dir / raw)
        if self.known is None:
            return path
        if path in self.known:
            return self.known[path]
        rel = os.path.normpath(raw)
        tail = os.sep + rel.lstrip(os.sep)
        hits = [p for p in self._by_name.get(os.path.basename(rel), []) if p.endswith(tail)]
        return self.known[hits[0]] if len(hits) == 1 else None


def read_label_csv(
    csv_path: str | Path,
    *,
    known_paths: Iterable[str] | None = None,
    base_dir: str | Path | None = None,
    normalizer: Callable[[str], str] | None = None,
) -> list[Pair]:
    """Read `path,genre` rows; several genres per track by repeated rows or a ';'-joined cell.

    A header row naming the columns (path/file, genre) is optional; without one the first two
    columns are used. Relative paths are taken from `base_dir` (default: the CSV's folder) and,
    when `known_paths` (the library) is given, must name a track in it.
    """
    csv_path = Path(csv_path)
    norm = normalizer
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelError(f"{csv_path}: cannot read labels CSV ({exc})") from exc
    resolver = _PathResolver(known_paths, Path(base_dir) if base_dir else csv_path.parent)
    merged: dict[str, list[str]] = {}
    rows = csv.reader(text.splitlines())
    columns, first = (0, 1), True
    for line_no, row in enumerate(rows, start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if first and (header := _header_columns(row)) is not None:
            columns, first = header, False
            continue
        first = False
        merged_path, genres = _parse_row(csv_path, line_no, row, columns, resolver, norm)
        merged.setdefault(merged_path, [])
        merged[merged_path] = normalize_genres([*merged[merged_path], *genres], norm)
    if not merged:
        raise LabelError(f"{csv_path}: no label rows found")
    return list(merged.items())


def _parse_row(
    csv_path: Path,
    line_no: int,
    row: list[str],
    columns: tuple[int, int],
    resolver: _PathResolver,
    norm: Callable[[str], str] | None,
) -> Pair:
    where = f"{csv_path}:{line_no}"
    path_col, genre_col = columns
    if len(row) <= max(path_col, genre_col):
        raise LabelError(f"{where}: expected a path and a genre, got {len(row)} column(s)")
    cell = row[path_col].strip()
    if not cell:
        raise LabelError(f"{where}: empty path")
    genres = normalize_genres([row[genre_col]], norm)
    if not genres:
        raise LabelError(f"{where}: empty genre for {cell!r}")
    path = resolver.resolve(cell)
    if path is None:
        raise LabelError(
            f"{where}: unknown path {cell!r} (not in the library: run `mgctag scan` on its folder)"
        )
    return path, genres


@dataclass
class Dataset:
    """What a head trains on: features, multi-hot targets, leak-free groups, and their origin."""

    X: np.ndarray
    Y: np.ndarray
    labels: list[str]
    groups: np.ndarray
    paths: list[str]
    track_ids: list[int]
    embedding_model: str
    stems: tuple[str, ...]
    label_set: LabelSet
    n_without_embedding: int = 0

    @property
    def multi_label(self) -> bool:
        return bool((self.Y.sum(axis=1) > 1).any())


def group_key(artist: str | None, album: str | None, path: str) -> str:
    """Artist, else album, else an "Artist - Title" file name, else the folder.

    Tracks sharing one must never straddle a split; untagged files are often named
    "Artist - Title.ext", which names the artist as well as a tag would.
    """
    if artist and artist.strip():
        return "artist:" + artist.strip().casefold()
    if album and album.strip():
        return "album:" + album.strip().casefold()
    name = os.path.basename(path)
    if " - " in name:
        return "artist:" + name.split(" - ", 1)[0].strip().casefold()
    return "dir:" + os.path.dirname(os.path.normpath(path))


def _genres_field(value: Any) -> list[str]:
    """The tracks.genres column: a JSON list as in the file (already decoded by Library)."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _stacked_embeddings(lib: Library, model: str, stems: Sequence[str]) -> dict[int, np.ndarray]:
    """track id -> the stems' embeddings concatenated in `stems` order (tracks with all stems)."""
    per_stem = []
    for stem in stems:
        ids, matrix = lib.embedding_matrix(model, stem)
        per_stem.append(
            {int(i): row for i, row in zip(ids, np.asarray(matrix, np.float32), strict=True)}
        )
    common = set(per_stem[0]).intersection(*per_stem[1:])
    return {i: np.concatenate([m[i] for m in per_stem]) for i in common}


def dataset_from_library(
    lib: Library,
    *,
    model: str,
    stems: Sequence[str] = ("mix",),
    pairs: Iterable[Pair] | None = None,
    min_count: int = DEFAULT_MIN_COUNT,
    normalizer: Callable[[str], str] | None = None,
) -> Dataset:
    """Join labels (`pairs`, e.g. from a CSV, else the library's genre tags) with stored embeddings.

    Only tracks that have an embedding for every requested stem count towards `min_count`, so the
    classes reported are the classes the head can actually learn.
    """
    rows = lib.tracks()
    by_path = {r.path: r for r in rows}
    if pairs is None:
        tracks = ((r.path, _genres_field(r.genres)) for r in rows)
        pairs = labels_from_tags(tracks, normalizer=normalizer)
    vectors = _stacked_embeddings(lib, model, tuple(stems))
    usable, missing = [], 0
    for path, genres in pairs:
        row = by_path.get(path)
        if row is None:
            raise LabelError(f"{path}: not a track in the library")
        if row.id in vectors:
            usable.append((path, genres))
        else:
            missing += 1
    label_set = build_label_set(usable, min_count=min_count)
    if not label_set.labels:
        raise LabelError(
            f"no genre has {min_count} or more analysed tracks (labelled tracks with embeddings: "
            f"{len(usable)}); analyse more tracks or lower --min-count"
        )
    require_two_genres(label_set.labels, min_count)
    chosen = [by_path[p] for p in label_set.paths]
    ids = [r.id for r in chosen]
    groups = [group_key(r.artist, r.album, r.path) for r in chosen]
    return Dataset(
        X=np.stack([vectors[i] for i in ids]).astype(np.float32),
        Y=label_set.matrix(),
        labels=label_set.labels,
        groups=np.asarray(groups),
        paths=label_set.paths,
        track_ids=ids,
        embedding_model=model,
        stems=tuple(stems),
        label_set=label_set,
        n_without_embedding=missing,
    )
