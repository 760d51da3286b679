"""The one shape every tagger has, whatever network is behind it.

A tagger says what it reads (`inputs`, an `InputSpec`: feature kind, sample rate, window length,
stems, separator), turns a batch of prepared tracks into per-unit outputs (`analyse`), and turns
one track's outputs into the rows the library stores (`predictions`). The pipeline only ever
calls these three things, so a new kind of model (an AudioSet tagger, a speech/music detector)
is one class here and one entry in `catalog.py`, never a branch in the pipeline.

This module imports neither torch nor the networks: the CLI and docs can read it cheaply.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from mgctag.models.inputs import InputSpec, TrackInput

if TYPE_CHECKING:
    from mgctag.genres import GenreMap

__all__ = [
    "InputSpec",
    "Prediction",
    "Tagger",
    "TaggerOutput",
    "TrackInput",
    "ranked",
    "unit_mean",
]


@dataclass
class TaggerOutput:
    """One track's output from one tagger, per analysis unit (a 3 s patch, a 10 s window).

    `tags[vocabulary]` is (units, len(labels)) probabilities, one entry per label set the tagger
    has (musicnn: "MSD_musicnn" and "MTT_musicnn"; a student: its genres); `embeddings[stem]` is
    (units, dim) for "mix" and any stem it embedded; `extra` holds any other per-unit output by
    name (an AudioSet tagger's "speech" and "music" probabilities for a content gate).
    """

    tags: dict[str, np.ndarray] = field(default_factory=dict)
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)
    extra: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Prediction:
    """One row of the library's `predictions` (and its embeddings): a track-level result.

    `tags` is stored as is (vocabulary → {tag: p}, or {} for a tagger whose labels are genres);
    `genres` is ranked best first; `embeddings` maps stem → unit-length vector. `separator` is
    the separator behind the result when it is not the run's (a user head records its card's).
    `content` / `windows` are a content gate's track class and per-window decisions
    (mgctag/content.py), for taggers that have one. `approximate` marks a row computed in
    reduced precision for another tagger's sake: it is kept (embeddings, heads) but a run of
    this model alone analyses the track again, so its own written genres stay exact.
    """

    model: str
    tags: dict[str, dict[str, float]]
    genres: list[tuple[str, float]]
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)
    separator: str | None = None
    content: str | None = None
    windows: list[dict] | None = None
    approximate: bool = False


@runtime_checkable
class Tagger(Protocol):
    """What the pipeline needs of any tagger.

    `name` is what `--model` and the library know it by (predictions are stored under it).
    `requires` names taggers whose stored results this one reads; the pipeline runs them first.
    `labels[vocabulary]` are the label names of each of its outputs.
    """

    name: str
    inputs: InputSpec
    requires: tuple[str, ...]
    labels: dict[str, list[str]]

    def analyse(self, batch: Sequence[TrackInput]) -> list[TaggerOutput]:
        """Per track of the batch (same order): per-unit tag probabilities, embeddings, extras."""
        ...

    def predictions(self, output: TaggerOutput, gmap: GenreMap) -> list[Prediction]:
        """One track's output → the rows to store (a blend stores its base tagger's row too)."""
        ...


def unit_mean(rows: np.ndarray) -> np.ndarray:
    """A track's embedding: the mean over its units, L2-normalised (cosine = dot product)."""
    v = rows.mean(axis=0)
    return (v / (np.linalg.norm(v) or 1.0)).astype(np.float32)


def ranked(scores: dict[str, float] | Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
    """Genres best first (a stable sort: ties keep their order)."""
    items = scores.items() if isinstance(scores, dict) else scores
    return sorted(items, key=lambda kv: -kv[1])


def split_rows(rows: np.ndarray, counts: Sequence[int]) -> list[np.ndarray]:
    """Rows of one batched forward pass, given back to their tracks (`counts` units each)."""
    return np.split(rows, np.cumsum(counts)[:-1])
