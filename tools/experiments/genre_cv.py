"""What the default writes, cross-validated by artist: today's rule, + the genre tree (each depth),
+ the lone-tag rule, + the library's vocabulary.

    python -m tools.experiments.genre_data        # once: the labelled library, analysed
    python -m tools.experiments.genre_cv [--data /work/data/genres] [--folds 5] [--repeats 10]

Reads the stored rows of the default tagger (genre scores, its models' own genre scores, the
musicnn + mn04 embedding) of the labelled clips `genre_data` analysed, so no model runs here. Each
system is scored with the planning functions mgctag ships (`genres.decide_genres` and its
parts). Repeated grouped k-fold (an artist never straddles folds): in each training part the
system's own settings (the tree's aggregation and descent, the lone-tag needs, the neighbours
and their weight; today's count and floors, except in the row that re-tunes them) are chosen by
the F1 of "some written genre is right" and "share of written genres that are right"; the test
part is then scored. For the library's vocabulary the training part's labels are the user's
genres and the test part's are hidden, so a track never sees its own artist's labels.

A written genre is right when it is the clip's label or a genre below it in mgctag's tree (Metal
for Rock is not: Metal is its own root); "Pop/Rock" accepts Pop or Rock. Printed: mean ± sd over
the test folds of top-1 (first written genre right; nothing written is a miss), any (some written
genre right), genres written per track and precision; then the settings refitted on all clips
(a tuning set: those numbers are not a test).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from sklearn.model_selection import GroupKFold

from mgctag.genres import (
    AGGREGATE,
    DESCEND_SHARE,
    GenreTree,
    LoneRule,
    backed_genres,
    blend_neighbours,
    default_map,
    default_scores,
    drop_lone,
    genre_key,
    select_genres,
    select_in_tree,
    split_and_normalise,
)
from mgctag.library.db import Library
from mgctag.models import catalog
from mgctag.options import DEFAULT_TAGGER, TAG
from tools.experiments.genre_sanity import label_genres

DATA = Path("/work/data/genres")
Scores = dict[str, float]
COUNTS = (1, 2, 3)
FLOORS = (0.05, 0.1, 0.15, 0.2)
RELATIVE = (0.35, 0.6)
SHIPPED = (2, 0.05, 0.6)  # today's selection of the default (mgctag.models.names.SELECTION)
SUPPORTS = (0.05, 0.1, 0.2)
NEEDS = (0.0, 0.1, 0.15, 0.2, 0.3, 1.0)  # 1.0: a lone genre is never written
PER_GENRE_MIN = 3  # lone occurrences in a training part before a genre gets its own need
NEIGHBOURS = (3, 5, 10)
# how children's evidence adds up in a parent, and the share of it a child needs to be written
TREE_CHOICES = (("max", 0.5), ("noisy_or", 0.3), ("noisy_or", 0.5), ("noisy_or", 0.7))
WEIGHTS = (0.25, 0.5, 0.75)
LONE_WEIGHTS = (0.25, 0.5, 0.75)  # the penalty variant: a lone genre's score times this


@dataclass
class Clip:
    path: str
    label: str
    group: str
    collection: str
    scores: Scores
    per_model: list[Scores]
    models: dict[str, Scores]  # the same, by model (the default's row: MSD, MTT, mn04)
    embedding: np.ndarray
    neighbours: list[tuple[float, list[str]]] = field(default_factory=list)
    _backed: dict[float, set[str]] = field(default_factory=dict)

    def backed(self, tree: GenreTree, support: float) -> set[str]:
        """`genres.backed_genres` of this clip (one tree per run), computed once per support."""
        if support not in self._backed:
            self._backed[support] = backed_genres(self.per_model, tree, support)
        return self._backed[support]


@dataclass(frozen=True)
class Setting:
    """One candidate: selection, tree use, lone rule, vocabulary."""

    count: int = SHIPPED[0]
    floor: float = SHIPPED[1]
    relative: float = SHIPPED[2]
    depth: str | None = None  # None: no tree (today's flat selection)
    how: str = AGGREGATE
    descend: float = 0.5
    support: float | None = None  # None: no lone rule
    need: float = 0.0
    lone_weight: float = 0.0  # below its need a lone genre is dropped (0) or weighed down
    per_genre: tuple[tuple[str, float], ...] = ()
    k: int = 0  # 0: no library vocabulary
    weight: float = 0.0

    def describe(self) -> str:
        parts = [f"<= {self.count}, floor {self.floor}, rel {self.relative}"]
        if self.depth:
            parts.append(f"{self.depth}, {self.how}, descend {self.descend}")
        if self.support is not None:
            own = ", ".join(f"{g} {t}" for g, t in self.per_genre)
            weighed = f", else x {self.lone_weight}" if self.lone_weight else ""
            parts.append(
                f"lone: support {self.support}, need {self.need}{weighed}"
                + (f" ({own})" if own else "")
            )
        if self.k:
            parts.append(f"library k={self.k}, w={self.weight}")
        return "; ".join(parts)


def load(data: Path, model: str = DEFAULT_TAGGER) -> list[Clip]:
    """The labelled clips with `model`'s stored analysis."""
    lib = Library(data / "library.db")
    ids, matrix = lib.embedding_matrix(model, "mix")
    row = {int(i): r for r, i in enumerate(ids)}
    clips = []
    with open(data / "labels.csv", newline="") as fh:
        for item in csv.DictReader(fh):
            track = lib.track_by_path(item["path"])
            pred = lib.get_predictions(track.id).get(model) if track else None
            if track is None or pred is None or track.id not in row:
                print(f"not analysed, left out: {item['path']}")
                continue
            clips.append(
                Clip(
                    item["path"],
                    item["label"],
                    item["group"],
                    item["collection"],
                    {g: float(p) for g, p in pred.genres or []},
                    [dict(s) for s in (pred.tags or {}).values() if model == DEFAULT_TAGGER],
                    {n: dict(s) for n, s in (pred.tags or {}).items() if model == DEFAULT_TAGGER},
                    matrix[row[track.id]],
                )
            )
    return clips


# --- judging ---------------------------------------------------------------------------------


def is_right(label: str, genre: str, tree: GenreTree) -> bool:
    """The label itself or a genre below it (more specific is right)."""
    if genre_key(genre) == genre_key(label):  # the user's own word, from the library
        return True
    wanted = label_genres(label)
    node: str | None = default_map().normalize(genre)
    while node is not None:
        if node in wanted:
            return True
        node = tree.parents.get(node)
    return False


def metrics(clips: Sequence[Clip], lists: Sequence[list[str]], tree: GenreTree) -> dict[str, float]:
    right = [[is_right(c.label, g, tree) for g in w] for c, w in zip(clips, lists, strict=True)]
    written = sum(len(w) for w in lists)
    any_right = float(np.mean([any(r) for r in right]))
    precision = sum(sum(r) for r in right) / written if written else 0.0
    f1 = 2 * any_right * precision / (any_right + precision) if any_right + precision else 0.0
    return {
        "top1": float(np.mean([bool(r) and r[0] for r in right])),
        "any": any_right,
        "per_track": written / len(clips),
        "precision": precision,
        "f1": f1,
    }


# --- systems ---------------------------------------------------------------------------------


def written(clip: Clip, s: Setting, tree: GenreTree, lone: LoneRule | None) -> list[str]:
    """What mgctag would write for the clip under setting `s` (the shipped functions)."""
    scores = clip.scores
    if s.support is not None and lone is not None and clip.per_model:
        scores = drop_lone(scores, clip.backed(tree, s.support), tree, lone)
    if s.k:
        scores = blend_neighbours(scores, clip.neighbours[: s.k], s.weight)
    if s.depth is None:
        picked = select_genres(
            scores, max_genres=s.count, min_confidence=s.floor, relative_floor=s.relative
        )
    else:
        picked = select_in_tree(
            scores,
            tree,
            s.depth,
            max_genres=s.count,
            min_confidence=s.floor,
            relative_floor=s.relative,
            how=s.how,
            descend=s.descend,
        )
    return [g for g, _ in picked]


def lone_rule(s: Setting) -> LoneRule | None:
    if s.support is None:
        return None
    return LoneRule(s.support, s.need, dict(s.per_genre), s.lone_weight)


def selections(base: Setting) -> list[Setting]:
    return [
        replace(base, count=n, floor=f, relative=r)
        for n, f, r in itertools.product(COUNTS, FLOORS, RELATIVE)
    ]


def best(train: Sequence[Clip], options: Iterable[Setting], tree: GenreTree) -> Setting:
    """The option with the best F1 on the training clips (ties: the earlier, simpler one)."""
    chosen, top = None, -1.0
    for s in options:
        f1 = score(train, s, tree)["f1"]
        if f1 > top + 1e-9:
            chosen, top = s, f1
    assert chosen is not None
    return chosen


def score(clips: Sequence[Clip], s: Setting, tree: GenreTree) -> dict[str, float]:
    lone = lone_rule(s)
    return metrics(clips, [written(c, s, tree, lone) for c in clips], tree)


def per_genre_needs(train: Sequence[Clip], s: Setting, tree: GenreTree) -> Setting:
    """Own needs for the genres found lone often enough in the training part, one at a time."""
    assert s.support is not None
    counts: dict[str, int] = {}
    for c in train:
        for g in set(c.scores) - c.backed(tree, s.support):
            counts[g] = counts.get(g, 0) + 1
    current = s
    for genre in sorted(g for g, n in counts.items() if n >= PER_GENRE_MIN):
        others = tuple(p for p in current.per_genre if p[0] != genre)
        options = [replace(current, per_genre=(*others, (genre, t))) for t in NEEDS]
        current = best(train, [current, *options], tree)
    return current


def with_neighbours(clips: Sequence[Clip], known: Sequence[Clip]) -> None:
    """Each clip's neighbours among `known` (the labelled part, never itself), nearest first."""
    if not known:
        for c in clips:
            c.neighbours = []
        return
    matrix = np.stack([k.embedding for k in known])
    for c in clips:
        sims = matrix @ c.embedding
        order = np.argsort(-sims, kind="stable")
        c.neighbours = [
            (float(sims[i]), split_and_normalise([known[i].label]))
            for i in order
            if known[i].path != c.path
        ][: max(NEIGHBOURS)]


System = Callable[[Sequence[Clip], GenreTree], Setting]


def systems(depth_for_rules: str) -> dict[str, System]:
    """Each system: the settings it may choose from, given a training part."""

    def today(train: Sequence[Clip], tree: GenreTree) -> Setting:
        return Setting()

    def flat(train: Sequence[Clip], tree: GenreTree) -> Setting:
        return best(train, selections(Setting()), tree)

    def in_tree(depth: str) -> System:
        def choose(train: Sequence[Clip], tree: GenreTree) -> Setting:
            options = [Setting(depth=depth, how=how, descend=d) for how, d in TREE_CHOICES]
            return best(train, options, tree)

        return choose

    def lone(per_genre: bool, soft: bool = False) -> System:
        def choose(train: Sequence[Clip], tree: GenreTree) -> Setting:
            base = in_tree(depth_for_rules)(train, tree)
            options = (
                [
                    replace(base, support=sup, need=1.0, weight=w)
                    for sup in SUPPORTS
                    for w in WEIGHTS
                ]
                if soft
                else [replace(base, support=sup, need=need) for sup in SUPPORTS for need in NEEDS]
            )
            chosen = best(train, options, tree)
            return per_genre_needs(train, chosen, tree) if per_genre else chosen

        return choose

    def library(train: Sequence[Clip], tree: GenreTree) -> Setting:
        base = lone(True)(train, tree)
        with_neighbours(train, train)  # within the training part: the others' labels
        options = [replace(base, k=k, weight=w) for k in NEIGHBOURS for w in WEIGHTS]
        return best(train, [base, *options], tree)

    return {
        "today's default (flat: <= 2, floor 0.05, rel 0.6; untuned)": today,
        "today's default, selection re-tuned": flat,
        "+ tree, depth parent (today's selection)": in_tree("parent"),
        "+ tree, depth leaf (today's selection)": in_tree("leaf"),
        "+ tree, depth both (today's selection)": in_tree("both"),
        f"+ tree ({depth_for_rules}) + lone-tag rule, one need": lone(False),
        f"+ tree ({depth_for_rules}) + lone-tag rule, per-genre needs": lone(True),
        f"+ tree ({depth_for_rules}) + lone-tag penalty (score x weight)": lone(False, True),
        "+ tree + lone-tag rule + library vocabulary": library,
        "as this checkout ships it (tree, lone-tag rule; no vocabulary)": lambda t, tree: shipped(),
    }


def cross_validate(
    clips: list[Clip], system: System, tree: GenreTree, folds: int, repeats: int
) -> tuple[list[dict[str, float]], list[Setting]]:
    groups = sorted({c.group for c in clips})
    rng = np.random.default_rng(0)
    results, chosen = [], []
    for _ in range(repeats):
        ids = dict(zip(groups, rng.permutation(len(groups)), strict=True))
        g = np.array([ids[c.group] for c in clips])
        for tr, te in GroupKFold(n_splits=folds).split(clips, groups=g):
            train, test = [clips[i] for i in tr], [clips[i] for i in te]
            s = system(train, tree)
            if s.k:
                with_neighbours(test, train)  # the test part's labels are hidden
            results.append(score(test, s, tree))
            chosen.append(s)
    return results, chosen


def fmt(results: Sequence[Mapping[str, float]], key: str) -> str:
    values = [r[key] for r in results]
    m, sd = statistics.mean(values), statistics.stdev(values)
    return f"{m:.2f} ± {sd:.2f}" if key == "per_track" else f"{100 * m:.1f} ± {100 * sd:.1f}"


def without(clip: Clip, model: str) -> Clip:
    """The clip as the default would score it without one of its models (its stored per-model
    genre scores, recombined by `genres.default_scores`)."""
    models = {n: s for n, s in clip.models.items() if n != model}
    return replace(clip, scores=default_scores(models), per_model=list(models.values()),
                   models=models, _backed={})  # fmt: skip


def shipped() -> Setting:
    """The default's planning as this checkout ships it (tree, depth, lone-tag rule)."""
    lone = default_map().lone
    return Setting(
        depth=TAG["genre_depth"].default,
        how=AGGREGATE,
        descend=DESCEND_SHARE,
        support=lone.support,
        need=lone.default,
        per_genre=tuple(sorted(lone.genres.items())),
        lone_weight=lone.weight,
    )


FAST_COUNTS = (1, 2)
FAST_FLOORS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6)
FAST_RELATIVE = (0.6, 0.8)


def fast_cv(data: Path, folds: int, repeats: int, alone: str | None = None) -> None:
    """`--model fast` against the shipped default on the MUSDB previews, grouped by artist: in
    each training part the fast student's count and floors with the best top-1 among those whose
    precision is at least the default's there (else the most precise) are chosen. `alone`: one
    of the default's own models (its stored genre scores, no lone-tag rule) in fast's place —
    what a `fast` made of that model alone would write."""
    default = {c.path: c for c in load(data) if c.collection == "MUSDB"}
    if alone is None:
        fast_name = catalog.canonical("fast")
        fast = [c for c in load(data, fast_name) if c.path in default]
        most, floor, relative = catalog.selection(fast_name)
    else:
        fast_name = f"{alone} alone"
        fast = [replace(c, scores=c.models[alone], per_model=[], models={}, _backed={})
                for c in default.values()]  # fmt: skip
        most, floor, relative = 1, 0.05, 0.6
    base = [default[c.path] for c in fast]
    tree = GenreTree.of_map(default_map())
    card = Setting(count=most, floor=floor, relative=relative, depth=TAG["genre_depth"].default)
    options = [
        replace(card, count=n, floor=f, relative=r)
        for n, f, r in itertools.product(FAST_COUNTS, FAST_FLOORS, FAST_RELATIVE)
    ]
    groups = sorted({c.group for c in fast})
    rng = np.random.default_rng(0)
    rows: dict[str, list[dict[str, float]]] = {"default": [], "fast card": [], "fast CV": []}
    chosen: dict[str, int] = {}
    for _ in range(repeats):
        ids = dict(zip(groups, rng.permutation(len(groups)), strict=True))
        g = np.array([ids[c.group] for c in fast])
        for tr, te in GroupKFold(n_splits=folds).split(fast, groups=g):
            want = score([base[i] for i in tr], shipped(), tree)["precision"]
            train = [fast[i] for i in tr]
            tried = [(score(train, o, tree), o) for o in options]
            ok = [(m["top1"], -i, o) for i, (m, o) in enumerate(tried) if m["precision"] >= want]
            pick = max(ok)[2] if ok else max(tried, key=lambda r: r[0]["precision"])[1]
            chosen[pick.describe()] = chosen.get(pick.describe(), 0) + 1
            rows["default"].append(score([base[i] for i in te], shipped(), tree))
            rows["fast card"].append(score([fast[i] for i in te], card, tree))
            rows["fast CV"].append(score([fast[i] for i in te], pick, tree))
    print(f"{len(fast)} MUSDB previews, {len(groups)} artists; {fast_name} vs the default")
    print("| system | top-1 % | any % | written / track | precision % |\n|---|---:|---:|---:|---:|")
    for name, results in rows.items():
        print(f"| {name} | {fmt(results, 'top1')} | {fmt(results, 'any')} "
              f"| {fmt(results, 'per_track')} | {fmt(results, 'precision')} |")  # fmt: skip
    print("most chosen:", sorted(chosen.items(), key=lambda kv: -kv[1])[:3])
    for other in ("fast card", "fast CV"):
        d = [
            100 * (a["top1"] - b["top1"]) for a, b in zip(rows[other], rows["default"], strict=True)
        ]
        p = [100 * (a["precision"] - b["precision"])
             for a, b in zip(rows[other], rows["default"], strict=True)]  # fmt: skip
        print(f"{other} - default: top-1 {statistics.mean(d):+.1f} ± {statistics.stdev(d):.1f}, "
              f"precision {statistics.mean(p):+.1f} ± {statistics.stdev(p):.1f}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--depth", default="leaf", help="the tree depth the later rows build on")
    ap.add_argument("--only", nargs="*", help="systems whose name starts with one of these")
    ap.add_argument("--fast", action="store_true", help="`--model fast` against the default")
    ap.add_argument("--alone", help="with --fast: one of the default's models in fast's place")
    ap.add_argument("--without", help="re-plan as if the default lacked this model (MTT_musicnn)")
    args = ap.parse_args()
    if args.fast:
        fast_cv(args.data, args.folds, args.repeats, args.alone)
        return
    clips = load(args.data)
    if args.without:
        clips = [without(c, args.without) for c in clips]
        print(f"the default's scores re-made without {args.without}")
    tree = GenreTree.of_map(default_map())
    print(f"{len(clips)} labelled clips, {len({c.group for c in clips})} artists/groups")
    print("\n| system (settings chosen in each training part) | top-1 % | any written right % "
          "| written / track | precision % |")  # fmt: skip
    print("|---|---:|---:|---:|---:|")
    per_system = {}
    for name, system in systems(args.depth).items():
        if args.only and not any(name.startswith(o) for o in args.only):
            continue
        results, chosen = cross_validate(clips, system, tree, args.folds, args.repeats)
        per_system[name] = results
        print(f"| {name} | {fmt(results, 'top1')} | {fmt(results, 'any')} "
              f"| {fmt(results, 'per_track')} | {fmt(results, 'precision')} |")  # fmt: skip
        common: dict[str, int] = {}
        for s in chosen:
            common[s.describe()] = common.get(s.describe(), 0) + 1
        top = sorted(common.items(), key=lambda kv: -kv[1])[:2]
        print("|  ↳ most chosen: " + "; ".join(f"{d} ({n}x)" for d, n in top) + " | | | | |")
        refit = system(clips, tree)
        if refit.k:
            with_neighbours(clips, clips)
        m = score(clips, refit, tree)
        print(f"|  ↳ refitted on all clips (tuning set): {refit.describe()}: top-1 "
              f"{100 * m['top1']:.1f}, any {100 * m['any']:.1f}, {m['per_track']:.2f}/track, "
              f"precision {100 * m['precision']:.1f} | | | | |")  # fmt: skip
    names = list(per_system)
    for base in names[:1] + [n for n in names if "lone-tag rule, per-genre" in n]:
        print(f"\nPaired against {base} on the same test folds (points, mean ± sd):")
        for name in [n for n in names if n != base]:
            diffs = {
                k: [
                    100 * (a[k] - b[k])
                    for a, b in zip(per_system[name], per_system[base], strict=True)
                ]
                for k in ("top1", "any", "precision")
            }
            parts = [f"{k} {statistics.mean(v):+.1f} ± {statistics.stdev(v):.1f}"
                     for k, v in diffs.items()]  # fmt: skip
            print(f"- {name}: " + ", ".join(parts))


if __name__ == "__main__":
    main()
