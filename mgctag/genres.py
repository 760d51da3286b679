"""Canonical genres: the one place that turns model tags and users' spellings into genre names.

The taxonomy is data (mgctag/data/genres.json), readable and overridable by the user, because every
library has its own idea of genres. Model tags that are not genres (decades, moods, voices,
instruments) never become GENRE values; they stay in the database only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from pathlib import Path

import numpy as np

from mgctag.errors import ConfigError, reason_of
from mgctag.options import Mode

DEFAULT_MAX_GENRES = 3
DEFAULT_MIN_CONFIDENCE = 0.15
# A genre far below the track's best one is noise, whatever its absolute score.
RELATIVE_FLOOR = 0.35


def genre_key(name: str) -> str:
    """Case- and separator-insensitive key: 'Hip-Hop', 'hip hop' and 'HIP_HOP' are one genre."""
    return re.sub(r"[\s_\-.]+", " ", name.strip().lower()).strip()


# One tag value may hold several genres joined by ';', '|' or NUL (ID3v2.4's separator).
# '/' is kept: "Pop/Rock" is itself a genre name in ID3v1 and many libraries.
_VALUE_SPLIT = re.compile(r"[;|\x00]")


def split_genres(value: str) -> list[str]:
    """The genres one tag value or CSV cell holds: 'Rock|Pop' and 'Rock; Pop' are two."""
    return [part.strip() for part in _VALUE_SPLIT.split(value) if part.strip()]


def split_and_normalise(
    values: Iterable[str], normalize: Callable[[str], str] | None = None
) -> list[str]:
    """A track's genres, the one way everywhere (labels, merge, map): each value split, each
    part spelled canonically (`normalize_genre` by default), duplicates dropped, order kept."""
    norm = normalize or normalize_genre
    out: list[str] = []
    seen: set[str] = set()
    for value in values:
        for part in split_genres(value):
            genre = norm(part).strip()
            if genre and genre.casefold() not in seen:
                seen.add(genre.casefold())
                out.append(genre)
    return out


@dataclass(frozen=True)
class Genre:
    name: str
    parent: str | None = None
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class GenreMap:
    """Canonical genres plus the model-tag → genre table."""

    genres: Mapping[str, Genre]
    tags: Mapping[str, str]
    _lookup: Mapping[str, str] = field(repr=False, default_factory=dict)

    @classmethod
    def from_data(cls, data: Mapping) -> GenreMap:
        genres = {
            name: Genre(name, spec.get("parent"), tuple(spec.get("aliases", ())))
            for name, spec in data.get("genres", {}).items()
        }
        lookup = {genre_key(alias): g.name for g in genres.values() for alias in g.aliases}
        lookup.update({genre_key(g.name): g.name for g in genres.values()})
        tags = {genre_key(tag): genre for tag, genre in data.get("tags", {}).items() if genre}
        unknown = sorted(set(tags.values()) - set(genres))
        if unknown:
            raise ValueError(f"genre map: tags point to unknown genres: {', '.join(unknown)}")
        return cls(genres, tags, lookup)

    @classmethod
    def load(cls, override: Path | None = None) -> GenreMap:
        """The bundled map, updated key by key from the user's file (if any)."""
        data = json.loads(files("mgctag").joinpath("data/genres.json").read_text("utf-8"))
        path = override or _user_map_path()
        if path and path.is_file():
            try:
                user = json.loads(path.read_text("utf-8"))
                data["genres"] = {**data["genres"], **user.get("genres", {})}
                data["tags"] = {**data["tags"], **user.get("tags", {})}
                return cls.from_data(data)
            except (OSError, ValueError, TypeError, AttributeError, LookupError) as exc:
                raise ConfigError(f"not a readable genre map ({reason_of(exc)})", path) from exc
        return cls.from_data(data)

    def normalize(self, name: str) -> str:
        """The canonical spelling of a genre name; unknown genres keep the user's words, trimmed."""
        cleaned = " ".join(name.split())
        return self._lookup.get(genre_key(cleaned), cleaned)

    def parent(self, genre: str) -> str | None:
        g = self.genres.get(self.normalize(genre))
        return g.parent if g else None

    def genre_scores(self, tag_probs: Mapping[str, float]) -> dict[str, float]:
        """Model tag probabilities → genre scores (a genre is as strong as its strongest tag)."""
        scores: dict[str, float] = {}
        for tag, p in tag_probs.items():
            genre = self.tags.get(genre_key(tag))
            if genre is not None:
                scores[genre] = max(scores.get(genre, 0.0), float(p))
        return scores


def _user_map_path() -> Path | None:
    from mgctag.config import genre_map_path

    return genre_map_path()


@cache
def default_map() -> GenreMap:
    return GenreMap.load()


def normalize_genre(name: str) -> str:
    """Canonical spelling of one genre name under the default (user-overridable) map."""
    return default_map().normalize(name)


def mean_tag_probs(probs: np.ndarray, labels: Iterable[str]) -> dict[str, float]:
    """Average per-patch tag probabilities (patches, tags) over the whole track."""
    mean = np.asarray(probs, dtype=np.float64).mean(axis=0)
    return {label: round(float(p), 6) for label, p in zip(labels, mean, strict=True)}


def combine_models(
    per_model: Mapping[str, Mapping[str, float]], gmap: GenreMap
) -> dict[str, float]:
    """Genre confidences from several taggers: each genre averages the models that know it.

    MSD knows jazz but not classical, MTT the reverse; averaging a genre with a model that has
    no tag for it would halve it for no reason.
    """
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for tags in per_model.values():
        for genre, score in gmap.genre_scores(tags).items():
            sums[genre] = sums.get(genre, 0.0) + score
            counts[genre] = counts.get(genre, 0) + 1
    return {g: sums[g] / counts[g] for g in sums}


def mean_scores(per_model: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Each genre's mean over all the models, a model without the genre counting 0.

    The new default's rule (docs/models.md): musicnn and mn04 speak on similar enough scales
    that no calibration won the cross-validation, and counting a missing genre as 0 keeps a genre
    only one model knows (Reggae, Latin, ...) from winning on one model's word alone unless that
    model is sure of it.
    """
    genres = {g for scores in per_model for g in scores}
    n = len(per_model) or 1
    return {g: sum(scores.get(g, 0.0) for scores in per_model) / n for g in genres}


def blend_scores(
    musicnn: Mapping[str, float], student: Mapping[str, float], weight: float
) -> dict[str, float]:
    """musicnn's genre scores with (1 - weight) of their mass shared out as a student's softmax.

    The ranking is that of weight * m / sum(m) + (1 - weight) * p, the blend measured in
    docs/models.md; keeping musicnn's scale keeps the confidence floors meaning what they did.
    """
    total = sum(musicnn.values())
    genres = set(musicnn) | set(student)
    return {
        g: weight * musicnn.get(g, 0.0) + (1 - weight) * total * student.get(g, 0.0) for g in genres
    }


def select_genres(
    scores: Mapping[str, float],
    *,
    max_genres: int = DEFAULT_MAX_GENRES,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    relative_floor: float = RELATIVE_FLOOR,
) -> list[tuple[str, float]]:
    """The genres worth writing: strongest first, above the absolute and the relative floor."""
    ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    if not ranked:
        return []
    floor = max(min_confidence, relative_floor * ranked[0][1])
    return [(g, round(s, 4)) for g, s in ranked[:max_genres] if s >= floor]


def plan_genres(
    existing: list[str], predicted: list[str], mode: Mode, max_genres: int | None = None
) -> list[str] | None:
    """The genre values a file should end with, or None when it should not be touched.

    fill: only files without a genre; merge: keep the file's genres and add new ones, while the
    file holds at most `max_genres` genres (the user's own are never dropped, so a file that
    already has that many gets none added); replace: the prediction wins. Nothing to write when
    the result equals what is there.
    """
    if mode == "fill":
        new = [] if existing else list(predicted)
    elif mode == "merge":
        seen = {genre_key(g) for value in existing for g in split_genres(value)}
        room = len(predicted) if max_genres is None else max(0, max_genres - len(seen))
        new = list(existing) + [g for g in predicted if genre_key(g) not in seen][:room]
    elif mode == "replace":
        new = list(predicted)
    else:
        raise ValueError(f"unknown mode {mode!r}: use fill, merge or replace")
    if not new or new == list(existing):
        return None
    return new
