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
from functools import cache, cached_property
from importlib.resources import files
from pathlib import Path

import numpy as np

from mgctag.errors import ConfigError, reason_of
from mgctag.options import TAG, Mode

DEFAULT_MAX_GENRES = 3
DEFAULT_MIN_CONFIDENCE = 0.15
# A genre far below the track's best one is noise, whatever its absolute score.
RELATIVE_FLOOR = 0.35
# The default tagger's AudioSet model (mgctag.models.names.AUDIOSET_MODEL): its genre scores are
# stored beside musicnn's MSD and MTT ones in the default's row.
AUDIOSET_VOCABULARY = "audioset_mn04"


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
    lone: LoneRule = field(default_factory=lambda: LoneRule())

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
        check_tree({g.name: g.parent for g in genres.values()})
        return cls(genres, tags, lookup, LoneRule.from_data(data.get("lone_thresholds")))

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
                data["lone_thresholds"] = user.get("lone_thresholds", data["lone_thresholds"])
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
    return average_known([gmap.genre_scores(tags) for tags in per_model.values()])


def average_known(per_model: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Each genre's mean over the models that score it (musicnn's MSD + MTT rule)."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for scores in per_model:
        for genre, score in scores.items():
            sums[genre] = sums.get(genre, 0.0) + score
            counts[genre] = counts.get(genre, 0) + 1
    return {g: sums[g] / counts[g] for g in sums}


def default_scores(per_vocabulary: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """The default tagger's genre scores from its models' genre scores: musicnn's (its MSD and MTT
    vocabularies averaged where both know a genre) and mn04's (`AUDIOSET_VOCABULARY`), then
    `mean_scores` of the two."""
    musicnn = [s for name, s in per_vocabulary.items() if name != AUDIOSET_VOCABULARY]
    return mean_scores([average_known(musicnn), per_vocabulary.get(AUDIOSET_VOCABULARY, {})])


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


# --- the genre tree at work ------------------------------------------------------------------
#
# Planning, not analysis, reads the tree: the stored scores stay per genre (as the models gave
# them), so another tree, depth or whitelist needs no new analysis. Cross-validated choices
# (docs/models.md, tools/experiments/genre_cv.py): how children's evidence reaches a parent
# ("max": the parent is as strong as its strongest part; "noisy_or", which adds the parts up,
# was chosen in none of the 25 folds at depth leaf or parent), and how much of a parent's evidence
# a child needs to be written instead of it.
AGGREGATE = "max"
DESCEND_SHARE = 0.5


@dataclass(frozen=True)
class GenreTree:
    """Which genres may be written, how they nest, and where each scored genre's evidence goes.

    `parents`: every writable genre and its parent (None for a root). `fold`: a genre the models
    score -> the writable genre its evidence counts for (itself, or its nearest listed ancestor
    under a whitelist); a known genre missing from `fold` has no place in this tree and is never
    written. `known`: the genres of the analysis map; any other name (a user's own genre from
    the library vocabulary) is a root of its own, unless a whitelist leaves it out.
    """

    parents: Mapping[str, str | None]
    fold: Mapping[str, str]
    known: frozenset[str]
    allowed: frozenset[str] | None = None

    @classmethod
    def of_map(cls, gmap: GenreMap) -> GenreTree:
        """The map's own tree (genres.json's parents, with the user's changes)."""
        parents = {g.name: g.parent for g in gmap.genres.values()}
        return cls(parents, {g: g for g in parents}, frozenset(parents))

    @cached_property
    def children(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for genre, parent in self.parents.items():
            if parent is not None:
                out.setdefault(parent, []).append(genre)
        return out

    @cached_property
    def bottom_up(self) -> list[str]:
        """The tree's genres, deepest first: each comes before its parent."""
        depth: dict[str, int] = {}
        for genre in self.parents:
            node, n = genre, 0
            while (node := self.parents.get(node)) is not None:  # type: ignore[assignment]
                n += 1
            depth[genre] = n
        return sorted(self.parents, key=lambda g: -depth[g])

    def place(self, genre: str) -> str | None:
        """The writable genre a scored genre's evidence counts for (None: nowhere)."""
        if genre in self.fold:
            return self.fold[genre]
        if genre in self.known or (self.allowed is not None and genre not in self.allowed):
            return None
        return genre

    def parent(self, genre: str) -> str | None:
        return self.parents.get(genre)

    def root(self, genre: str) -> str:
        while (up := self.parents.get(genre)) is not None:
            genre = up
        return genre

    def restricted(self, allowed: Iterable[str]) -> GenreTree:
        """Only `allowed` genres written (a lastgenre whitelist): any other genre's evidence goes
        to its nearest allowed ancestor, as lastgenre canonicalises a tag it does not list."""
        keep = frozenset(allowed)

        def nearest(genre: str | None) -> str | None:
            while genre is not None and genre not in keep:
                genre = self.parents.get(genre)
            return genre

        parents = {g: nearest(p) for g, p in self.parents.items() if g in keep}
        fold = {s: n for s, t in self.fold.items() if (n := nearest(t)) is not None}
        return GenreTree(parents, fold, self.known, keep)


def check_tree(parents: Mapping[str, str | None]) -> None:
    """ValueError unless every parent is a genre of the tree and no genre is its own ancestor."""
    for genre, parent in parents.items():
        if parent is not None and parent not in parents:
            raise ValueError(f"{genre}: its parent {parent!r} is not a genre of the tree")
    for genre in parents:
        path = [genre]
        while (up := parents.get(path[-1])) is not None:
            if up in path:
                cycle = path[path.index(up) :] + [up]
                raise ValueError(f"the genre tree has a cycle: {' > '.join(cycle)}")
            path.append(up)


def load_tree(gmap: GenreMap, tree: Path | None = None, whitelist: Path | None = None) -> GenreTree:
    """The tree planning uses: the map's own, or the one in `tree` (beets lastgenre's
    genres-tree.yaml, or the "genres" of a genres.json) in its place; then only the genres of
    `whitelist` (lastgenre's genres.txt form), if given. A file that cannot be read, or a tree
    with a cycle, is a ConfigError naming the file (one line)."""
    result = GenreTree.of_map(gmap) if tree is None else _read_tree(gmap, tree)
    if whitelist is not None:
        result = result.restricted(_read_whitelist(gmap, whitelist))
    return result


def planning_tree(tree: str | None = None, whitelist: str | None = None) -> GenreTree:
    """The tree planning uses for `--genre-tree` / `--genre-whitelist` (paths as the user gave
    them, ~ expanded): mgctag's own when neither is given; read once per state of the files."""
    return _planning_tree(tree, whitelist, tuple(_stamp(p) for p in (tree, whitelist)))


@cache
def _planning_tree(tree: str | None, whitelist: str | None, stamp: tuple) -> GenreTree:
    def path(p: str | None) -> Path | None:
        return Path(p).expanduser() if p else None

    return load_tree(default_map(), path(tree), path(whitelist))


def _stamp(path: str | None) -> tuple[int, int] | None:
    try:
        st = Path(path).expanduser().stat() if path else None
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size) if st else None


def _read_tree(gmap: GenreMap, path: Path) -> GenreTree:
    import yaml  # PyYAML: only when a user's tree is given

    try:
        data = yaml.safe_load(path.read_text("utf-8"))  # JSON is YAML too
        if isinstance(data, Mapping) and isinstance(data.get("genres"), Mapping):
            edges = [(name, (spec or {}).get("parent")) for name, spec in data["genres"].items()]
            for name, parent in edges:
                if parent is not None and not isinstance(parent, str):
                    raise ValueError(f"{name}: its parent must be a genre name, not {parent!r}")
        elif isinstance(data, list):
            edges = list(_lastgenre_edges(data, None))
        else:
            raise ValueError("expected lastgenre's nested list of genres or a genres.json")
        parents: dict[str, str | None] = {}
        for name, parent in edges:
            genre, up = _tree_name(gmap, name), _tree_name(gmap, parent) if parent else None
            if genre == up:  # lastgenre's "classical music" under "classical": one genre here
                up = None
            parents.setdefault(genre, up)  # a genre listed twice stays where it came first
        for up in [p for p in parents.values() if p is not None]:
            parents.setdefault(up, None)
        check_tree(parents)
    except OSError as exc:
        raise ConfigError(f"cannot read the genre tree ({reason_of(exc)})", path) from exc
    except (yaml.YAMLError, ValueError, TypeError, AttributeError) as exc:
        raise ConfigError(f"not a genre tree ({_one_reason(exc)})", path) from exc
    known = frozenset(gmap.genres)
    return GenreTree(parents, {g: g for g in known if g in parents}, known)


def _lastgenre_edges(items: object, parent: str | None) -> Iterable[tuple[str, str | None]]:
    """(genre, parent) pairs of lastgenre's tree: a list whose items are a name or {name: list}."""
    if not isinstance(items, list):
        raise ValueError(f"under {parent!r}: expected a list, got {type(items).__name__}")
    for item in items:
        if isinstance(item, str | int | float):
            yield str(item), parent
        elif isinstance(item, Mapping) and len(item) == 1:
            ((name, sub),) = item.items()
            yield str(name), parent
            yield from _lastgenre_edges(sub if sub is not None else [], str(name))
        else:
            raise ValueError(f"under {parent or 'the top'!r}: {str(item)[:60]!r} is not a genre")


def _tree_name(gmap: GenreMap, name: str) -> str:
    """A tree file's genre as mgctag spells it: a known genre or alias -> its canonical name; an
    unknown all-lowercase one (lastgenre's style) title-cased, as lastgenre writes it."""
    genre = gmap.normalize(str(name))
    return genre.title() if genre not in gmap.genres and genre.islower() else genre


def _read_whitelist(gmap: GenreMap, path: Path) -> set[str]:
    try:
        lines = path.read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the genre whitelist ({reason_of(exc)})", path) from exc
    names = {_tree_name(gmap, line.strip()) for line in lines}
    return {n for n in names if n and not n.startswith("#")}


def _one_reason(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def tree_scores(
    scores: Mapping[str, float], tree: GenreTree, how: str = AGGREGATE
) -> dict[str, float]:
    """Each writable genre's evidence: its own score (the best of the genres folded into it)
    with its children's added, so a parent whose children share the evidence can win.

    how: "noisy_or" (1 - the product of 1 - each part: evidence adds but stays below 1) or
    "max" (a parent is as strong as its strongest part).
    """
    if how not in ("max", "noisy_or"):
        raise ValueError(f"unknown aggregation {how!r}")
    total: dict[str, float] = {}
    for genre, score in scores.items():
        node = tree.place(genre)
        if node is not None and score > 0:
            total[node] = max(total.get(node, 0.0), min(float(score), 1.0))
    for node in tree.bottom_up:  # a child's total is complete before it joins its parent's
        part = total.get(node)
        parent = tree.parents[node]
        if part is None or parent is None:
            continue
        have = total.get(parent, 0.0)
        total[parent] = max(have, part) if how == "max" else 1.0 - (1.0 - have) * (1.0 - part)
    return total


def select_in_tree(
    scores: Mapping[str, float],
    tree: GenreTree,
    depth: str,
    *,
    max_genres: int = DEFAULT_MAX_GENRES,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    relative_floor: float = RELATIVE_FLOOR,
    how: str = AGGREGATE,
    descend: float = DESCEND_SHARE,
) -> list[tuple[str, float]]:
    """The genres to write with the tree: the broad genres (roots) are chosen on their whole
    branch's evidence, then each is written as `depth` says: "parent" the root, "leaf" the most
    specific genre below it that holds at least `descend` of its parent's evidence (and the
    floor), "both" the root and that genre. At most `max_genres` in all."""
    total = tree_scores(scores, tree, how)
    roots = {g: s for g, s in total.items() if tree.parents.get(g) is None}
    chosen = select_genres(
        roots, max_genres=max_genres, min_confidence=min_confidence, relative_floor=relative_floor
    )
    out: list[tuple[str, float]] = []
    for root, _ in chosen:
        leaf = root
        while True:
            kids = [(total[c], c) for c in tree.children.get(leaf, ()) if c in total]
            best = max(kids, default=None)
            if best is None or best[0] < max(min_confidence, descend * total[leaf]):
                break
            leaf = best[1]
        picks = {"parent": [root], "leaf": [leaf], "both": [root, leaf]}[depth]
        out += [(g, round(total[g], 4)) for g in dict.fromkeys(picks)]
    return out[:max_genres]


# --- one model's word alone -------------------------------------------------------------------


@dataclass(frozen=True)
class LoneRule:
    """A genre only one of the default's models backs (MTT's "indian", with neither MSD nor mn04
    near it) is written only on stronger evidence. `support`: the score at which a model backs a
    genre (or a child of it); `default`: the combined score a lone genre needs; `genres`: the
    per-genre needs that grouped cross-validation chose (docs/models.md)."""

    support: float = 0.1
    default: float = 0.0
    genres: Mapping[str, float] = field(default_factory=dict)
    weight: float = 0.0  # a lone genre below its need: dropped (0) or its score times this

    @classmethod
    def from_data(cls, data: Mapping | None) -> LoneRule:
        if not data:
            return cls()
        return cls(
            float(data.get("support", 0.1)),
            float(data.get("default", 0.0)),
            {str(g): float(t) for g, t in (data.get("genres") or {}).items()},
            float(data.get("weight", 0.0)),
        )

    def needs(self, genre: str) -> float:
        return self.genres.get(genre, self.default)


def backed_genres(
    per_model: Iterable[Mapping[str, float]], tree: GenreTree, support: float
) -> set[str]:
    """The writable genres at least two models back: each scores at least `support` for the
    genre or for a genre below it. Any other genre is lone (one model's word, or none's)."""
    backers: dict[str, int] = {}
    for scores in per_model:
        for genre, score in tree_scores(scores, tree, "max").items():
            if score >= support:
                backers[genre] = backers.get(genre, 0) + 1
    return {g for g, n in backers.items() if n >= 2}


def drop_lone(
    scores: Mapping[str, float], backed: set[str], tree: GenreTree, rule: LoneRule
) -> dict[str, float]:
    """`scores` with the genres outside `backed` (`backed_genres`) whose score is below the
    rule's need for them dropped (weight 0: they then lend their parents nothing either) or
    weighed down (their score times the rule's weight: a need of 1 makes that a plain penalty,
    which moves the choice gradually rather than at a threshold)."""
    out = {}
    for genre, score in scores.items():
        node = tree.place(genre)
        if node is not None and node not in backed and score < rule.needs(node):
            if rule.weight <= 0:
                continue
            score *= rule.weight
        out[genre] = score
    return out


# --- the user's own vocabulary -----------------------------------------------------------------


def blend_neighbours(
    scores: Mapping[str, float], neighbours: Sequence[tuple[float, Sequence[str]]], weight: float
) -> dict[str, float]:
    """The models' scores blended with the genres of the track's nearest neighbours in the
    library (those whose genres the user wrote): `weight` of each genre's score is the
    neighbours' similarity-weighted vote for it. No neighbours: the models' scores as they are.
    Only genres a model or a neighbour gives can come out."""
    total = sum(max(sim, 0.0) for sim, _ in neighbours)
    if total <= 0:
        return dict(scores)
    votes: dict[str, float] = {}
    for sim, genres in neighbours:
        for genre in dict.fromkeys(genres):
            votes[genre] = votes.get(genre, 0.0) + max(sim, 0.0) / total
    return {
        g: (1 - weight) * scores.get(g, 0.0) + weight * votes.get(g, 0.0)
        for g in set(scores) | set(votes)
    }


@dataclass(frozen=True)
class Planning:
    """Everything besides the scores that decides what is written: the tree and the depth
    written at, a tagger's count and floors, the lone-tag rule. One value, so the planning rule
    and its margin (`decide_genres`, `decision_gaps`) always read the same settings."""

    tree: GenreTree
    depth: str
    max_genres: int
    min_confidence: float
    relative_floor: float
    lone: LoneRule | None = None

    @classmethod
    def shipped(cls, selection: tuple[int, float, float]) -> Planning:
        """The default's planning — mgctag's own tree at the default depth, the genre map's
        lone-tag rule — with a tagger's (count, absolute floor, relative floor)."""
        most, floor, relative = selection
        depth = TAG["genre_depth"].default
        return cls(planning_tree(), depth, most, floor, relative, default_map().lone)


def decide_genres(
    scores: Mapping[str, float],
    plan: Planning,
    *,
    per_model: Sequence[Mapping[str, float]] = (),
    neighbours: Sequence[tuple[float, Sequence[str]]] = (),
    weight: float = 0.0,
) -> list[tuple[str, float]]:
    """The one planning rule, in order: genres only one model backs are dropped below their
    need (`drop_lone`, when the tagger's models' own scores are known), the library's vocabulary
    is blended in (`blend_neighbours`, when neighbours are given), and the tree chooses and
    writes at the plan's depth (`select_in_tree`)."""
    tree, lone = plan.tree, plan.lone
    if per_model and lone is not None:
        scores = drop_lone(scores, backed_genres(per_model, tree, lone.support), tree, lone)
    if neighbours and weight > 0:
        scores = blend_neighbours(scores, neighbours, weight)
    return select_in_tree(
        scores,
        tree,
        plan.depth,
        max_genres=plan.max_genres,
        min_confidence=plan.min_confidence,
        relative_floor=plan.relative_floor,
    )


def _lone_gaps(
    genre: str,
    score: float,
    per_model: Sequence[Mapping[str, float]],
    backed: set[str],
    tree: GenreTree,
    lone: LoneRule,
) -> tuple[float, float]:
    """How far whether `drop_lone` keeps one genre is from changing: (its combined score against
    its need, the nearest model total for it against the support); a gap that cannot change the
    outcome on its own is infinite."""
    node = tree.place(genre)
    if node is None:
        return float("inf"), float("inf")
    need = lone.needs(node)
    totals = [tree_scores(m, tree, "max").get(node, 0.0) for m in per_model]
    own, backing, inf = abs(score - need), min(abs(t - lone.support) for t in totals), float("inf")
    if node not in backed:  # kept by its need alone; both changing it would write or drop it
        return (own, inf) if score >= need else (own, backing)
    if score < need:  # kept for its backing alone
        return inf, backing
    return (own, inf) if own >= backing else (inf, backing)  # kept either way: the surer one


# --- how far a decision is from changing (the guarded bfloat16 rule, models/audioset.py) ------


def selection_margin(
    scores: Mapping[str, float], max_genres: int, min_confidence: float, relative_floor: float
) -> float:
    """How far `select_genres`' choice is from changing: the smallest gap that decides it —
    between the written genres in turn, from each to the floor, and from the best unwritten genre
    to what it would have to beat. Moving every score by less than half of it (the floor moves at
    most `relative_floor` times as much) cannot change what is written."""
    top = sorted(scores.values(), reverse=True)[: max_genres + 1]
    if not top:
        return float("inf")
    cut = max(min_confidence, relative_floor * top[0])
    kept = [s for s in top[:max_genres] if s >= cut]
    gaps = [a - b for a, b in zip(kept, kept[1:], strict=False)] + [s - cut for s in kept]
    if len(top) > len(kept):  # the first genre left out: below the floor, or past the count
        rival = top[len(kept)]
        gaps.append((kept[-1] if len(kept) == max_genres else cut) - rival)
    return min(gaps, default=float("inf"))


@dataclass(frozen=True)
class DecisionGaps:
    """How far `decide_genres`' choice is from changing, split by what moves: `scores`, the
    smallest gap of a comparison between the combined scores (or one of them and a threshold
    that follows them); `models`, the smallest gap of one model's own total to the lone-tag
    support. Moving every combined score by less than half of `scores` and every model's score by
    less than `models` cannot change what is written."""

    scores: float
    models: float

    @property
    def least(self) -> float:
        return min(self.scores, self.models)


def decision_gaps(
    scores: Mapping[str, float], plan: Planning, *, per_model: Sequence[Mapping[str, float]] = ()
) -> DecisionGaps:
    """The gaps of every comparison `decide_genres` makes (no vocabulary, the shipped `max`
    aggregation): each lone genre's score to its need and the models' totals for it to the
    support, the roots' choice (`selection_margin`), and each step down to a leaf (the best child
    to the share of its parent it needs and, where it descends, to the next child). With `max`, a
    total moves no more than the scores under it."""
    tree, depth, lone = plan.tree, plan.depth, plan.lone
    max_genres, min_confidence = plan.max_genres, plan.min_confidence
    relative_floor = plan.relative_floor
    gaps, model_gaps = [float("inf")], [float("inf")]
    lone_gaps: list[tuple[float, float, float]] = []  # (score, its own gap, its backing gap)
    if per_model and lone is not None:
        backed = backed_genres(per_model, tree, lone.support)
        lone_gaps = [(s, *_lone_gaps(g, s, per_model, backed, tree, lone))
                     for g, s in scores.items() if s >= min_confidence]  # fmt: skip
        scores = drop_lone(scores, backed, tree, lone)
    total = tree_scores(scores, tree, "max")
    roots = {g: s for g, s in total.items() if tree.parents.get(g) is None}
    gaps.append(selection_margin(roots, max_genres, min_confidence, relative_floor))
    chosen = select_genres(
        roots, max_genres=max_genres, min_confidence=min_confidence, relative_floor=relative_floor
    )
    # the lowest bar a genre must clear to be written or to change a choice: the roots' floor,
    # or the share of a chosen parent a child needs to be written below it
    lowest = max(min_confidence, relative_floor * max(roots.values(), default=0.0))
    for node, _ in chosen if depth != "parent" else []:
        while kids := sorted((total[c] for c in tree.children.get(node, ()) if c in total),
                             reverse=True):  # fmt: skip
            need = max(min_confidence, DESCEND_SHARE * total[node])
            lowest = min(lowest, need)
            gaps.append(abs(kids[0] - need))
            if kids[0] < need:  # not descending: which child is best does not matter
                break
            if len(kids) > 1:
                gaps.append(kids[0] - kids[1])
            node = max(
                (c for c in tree.children.get(node, ()) if c in total), key=total.__getitem__
            )
    for score, own, backing in lone_gaps:
        # whether a genre is dropped as lone matters only once it could clear the lowest bar:
        # below it, that distance is a gap too (the surer of the two ways of staying unchanged)
        below = lowest - score
        if below > 0 and below >= min(own, backing):
            own, backing = below, float("inf")
        gaps.append(own)
        model_gaps.append(backing)
    return DecisionGaps(min(gaps), min(model_gaps))
