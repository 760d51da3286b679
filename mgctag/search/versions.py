"""Versions of one recording: what `similar` folds into one result and `mgctag dupes` lists.

Two tracks are versions of each other when their tags name the same song (the same artist and
title once both are normalised: case, accents, punctuation, "(Remastered 2011)", "- Radio Edit",
"feat. X" removed), or, when the tags of one or both do not name a song, when their embeddings
are closer than `DUPLICATE_COSINE`, which catches the same audio with no tags or a file name for
a title: a transcode, a re-master, an edit. Two tracks whose tags name different songs are not
versions however close they sound: in a big catalogue many different recordings sit that close
(a million real-ish vectors, docs/scale.md), and a cover is not the original.

`DUPLICATE_COSINE` was chosen on real audio (tools/bench/dupes.py; docs/similar.md, "Versions"):
94 real recordings and their transcodes, EQ changes and edits (464 tracks) tagged by the default
tagger; the lowest cosine whose pair precision is at least 0.99. Leave-one-source-out over 37
sources chose 0.937 ± 0.003, and `similar` then dropped the held-out seeds' versions with
precision 0.99 ± 0.07 and recall 0.78 ± 0.24 (edits are the hard case).
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
DUPLICATE_COSINE = 0.937

LINKED = 16  # members of a group whose vectors a candidate is compared with

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
    keys: set[tuple[str, str]]  # the songs its members' tags name
    vectors: np.ndarray  # the members' unit vectors, one row each
    versions: list[Any] = field(default_factory=list)

    def holds(self, key: tuple[str, str] | None, vector: np.ndarray, threshold: float) -> bool:
        """Whether a track is a version of the group: its tags name the group's song; or, when
        its tags or all the group's name no song, it is close in sound to a member (single
        linkage: an edit close to the original is folded even when it is further from a
        transcode of it). A track named otherwise than a named group is not one of its versions
        however close it sounds. Only the first `LINKED` members' vectors are compared: a dense
        region of near-identical tracks must not make each comparison grow with the group."""
        if key is not None and self.keys:
            return key in self.keys
        return bool(len(self.vectors) and float(np.max(self.vectors @ vector)) >= threshold)

    def add(self, track: Any, key: tuple[str, str] | None, vector: np.ndarray) -> None:
        self.versions.append(track)
        if key is not None:
            self.keys.add(key)
        if len(self.vectors) < LINKED:
            self.vectors = np.vstack([self.vectors, vector[None, :]])


class Folding:
    """Results taken one at a time in rank order: a version of a seed is dropped (and a version
    of a dropped version too), and, with `fold`, a later version of an earlier result is folded
    into it."""

    def __init__(
        self,
        seeds: Sequence[Any],
        seed_vectors: np.ndarray,
        *,
        fold: bool = True,
        threshold: float = DUPLICATE_COSINE,
    ) -> None:
        """`seeds`: the seed tracks (rows, or anything with .get), one per row of `seed_vectors`."""
        vectors = np.asarray(seed_vectors, np.float32)
        vectors = vectors if vectors.ndim == 2 else vectors.reshape(1, -1)
        named = {k for t in seeds if (k := version_key(t)) is not None}
        self.seeds = Group(None, named, vectors)
        self.fold, self.threshold = fold, threshold
        self.groups: list[Group] = []

    def offer(self, track: Any, vector: np.ndarray) -> None:
        key = version_key(track)
        if self.seeds.holds(key, vector, self.threshold):
            self.seeds.add(track, key, vector)
            return
        home = None
        if self.fold:
            home = next((g for g in self.groups if g.holds(key, vector, self.threshold)), None)
        if home is None:
            self.groups.append(Group(track, {key} if key else set(), vector[None, :]))
        else:
            home.add(track, key, vector)


def fold(
    tracks: Sequence[Any],
    vectors: np.ndarray,
    seeds: Sequence[Any],
    seed_vectors: np.ndarray,
    *,
    fold: bool = True,
    threshold: float = DUPLICATE_COSINE,
) -> list[Group]:
    """Ranked tracks (unit `vectors`, one row each) as results (see `Folding`)."""
    folding = Folding(seeds, seed_vectors, fold=fold, threshold=threshold)
    for track, vector in zip(tracks, vectors, strict=True):
        folding.offer(track, vector)
    return folding.groups


def version_groups(
    ids: Sequence[int],
    keys: Sequence[tuple[str, str] | None],
    pairs: Iterable[tuple[int, int]],
) -> list[list[int]]:
    """Tracks joined into groups by equal keys and by the given close pairs (ids), as `Folding`
    joins them: never two groups whose tags name different songs. Groups of two or more,
    largest first, each sorted by id."""
    parent = {i: i for i in ids}
    names: dict[int, set[tuple[str, str]]] = {
        i: ({k} if k is not None else set()) for i, k in zip(ids, keys, strict=True)
    }

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(a: int, b: int, by_sound: bool) -> None:
        ra, rb = root(a), root(b)
        if ra == rb or (by_sound and names[ra] and names[rb] and names[ra] != names[rb]):
            return
        keep, gone = min(ra, rb), max(ra, rb)
        parent[gone] = keep
        names[keep] |= names.pop(gone)

    first: dict[tuple[str, str], int] = {}
    for i, key in zip(ids, keys, strict=True):
        if key is not None:
            join(i, first.setdefault(key, i), by_sound=False)
    for a, b in pairs:
        if a in parent and b in parent:
            join(a, b, by_sound=True)
    groups: dict[int, list[int]] = {}
    for i in ids:
        groups.setdefault(root(i), []).append(i)
    found = [sorted(g) for g in groups.values() if len(g) > 1]
    return sorted(found, key=lambda g: (-len(g), g[0]))
