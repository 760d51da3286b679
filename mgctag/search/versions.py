"""Versions of one recording: what `similar` folds into one result and `mgctag dupes` lists.

Two tracks are versions of each other when their tags name the same song (the same artist and
title once both are normalised: case, accents, punctuation, "(Remastered 2011)", "- Radio Edit",
"feat. X" removed) or when their embeddings are closer than `DUPLICATE_COSINE`, which catches the
same audio under other tags or none: a transcode, a re-master, an edit.

`DUPLICATE_COSINE` was chosen on real audio (tools/bench/dupes.py; docs/similar.md, "Versions"):
real recordings and their transcodes, EQ changes and edits, tagged by the default tagger, the
threshold picked by cross-validation grouped by source and its precision and recall reported.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Embeddings (the default tagger's 584-d musicnn + mn04, unit length) at least this close are
#: taken for versions of one recording (docs/similar.md, "Versions").
DUPLICATE_COSINE = 0.97

_BRACKETS = re.compile(r"\s*[(\[{][^)\]}]*[)\]}]")
_VERSION_WORDS = (
    "remaster|remastered|remix|mix|edit|version|live|mono|stereo|demo|radio|single|album"
    "|extended|instrumental|acoustic|bonus|explicit|clean|re-recorded|rerecorded|original"
)
_SUFFIX = re.compile(rf"\s+[-–—]\s+.*\b({_VERSION_WORDS})\b.*$", re.IGNORECASE)
_FEATURING = re.compile(r"\s+(feat\.?|ft\.?|featuring)\s+.*$", re.IGNORECASE)
_NOT_WORD = re.compile(r"[\W_]+")


def normalise(text: str) -> str:
    """Text as compared for versions: accents, case, punctuation and spacing gone."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _NOT_WORD.sub(" ", bare.casefold()).strip()


def normalised_title(title: str) -> str:
    """A title without what names a version: brackets, "- ... remaster", "feat. ..."."""
    t = _BRACKETS.sub("", title)
    t = _SUFFIX.sub("", t)
    t = _FEATURING.sub("", t)
    return normalise(t or title)


def normalised_artist(artist: str) -> str:
    a = _FEATURING.sub("", artist)
    a = normalise(a)
    return a.removeprefix("the ") if a.startswith("the ") else a


def version_key(track: Mapping[str, Any] | Any) -> tuple[str, str] | None:
    """(artist, title) normalised, or None when the tags do not name both."""
    artist, title = str(track.get("artist") or ""), str(track.get("title") or "")
    key = (normalised_artist(artist), normalised_title(title))
    return key if all(key) else None


@dataclass
class Group:
    """A result and the other versions folded into it (worse-ranked, same recording)."""

    track: Any
    key: tuple[str, str] | None
    vector: np.ndarray
    versions: list[Any] = field(default_factory=list)


def is_version(
    key: tuple[str, str] | None,
    vector: np.ndarray,
    other_key: tuple[str, str] | None,
    other_vectors: np.ndarray,
    threshold: float = DUPLICATE_COSINE,
) -> bool:
    """Same song by the tags, or an embedding at least `threshold` close to any of the others."""
    if key is not None and key == other_key:
        return True
    return bool(len(other_vectors) and float(np.max(other_vectors @ vector)) >= threshold)


def fold(
    tracks: Sequence[Any],
    vectors: np.ndarray,
    seed_vectors: np.ndarray,
    seed_keys: Iterable[tuple[str, str]],
    *,
    fold: bool = True,
    threshold: float = DUPLICATE_COSINE,
) -> list[Group]:
    """Ranked tracks (unit `vectors`, one row each) as results: versions of a seed dropped, and,
    with `fold`, each later version of an earlier result folded into it."""
    seeds = set(seed_keys)
    seed_vectors = np.asarray(seed_vectors, np.float32).reshape(-1, vectors.shape[1])
    groups: list[Group] = []
    for track, vector in zip(tracks, vectors, strict=True):
        key = version_key(track)
        if (key is not None and key in seeds) or is_version(None, vector, None, seed_vectors):
            continue
        home = None
        if fold:
            home = next(
                (g for g in groups if is_version(key, vector, g.key, g.vector[None, :], threshold)),
                None,
            )
        if home is None:
            groups.append(Group(track, key, vector))
        else:
            home.versions.append(track)
    return groups


def version_groups(
    ids: Sequence[int],
    keys: Sequence[tuple[str, str] | None],
    pairs: Iterable[tuple[int, int]],
) -> list[list[int]]:
    """Tracks joined into groups (union-find) by equal keys and by the given close pairs (ids);
    groups of two or more, largest first, each sorted by id."""
    parent = {i: i for i in ids}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(a: int, b: int) -> None:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    first: dict[tuple[str, str], int] = {}
    for i, key in zip(ids, keys, strict=True):
        if key is not None:
            join(i, first.setdefault(key, i))
    for a, b in pairs:
        if a in parent and b in parent:
            join(a, b)
    groups: dict[int, list[int]] = {}
    for i in ids:
        groups.setdefault(root(i), []).append(i)
    found = [sorted(g) for g in groups.values() if len(g) > 1]
    return sorted(found, key=lambda g: (-len(g), g[0]))
