"""bfloat16 musicnn inside the default tagger: the float32 re-run near a decision keeps the written
genres float32's (issue 12, "Speed"), and the margin that triggers it means what it says — for
the planned genres too (tree, depth, lone-tag rule: issue 29)."""

from __future__ import annotations

import random
from pathlib import Path

import media
import pytest

from mgctag.genres import Planning, decide_genres, default_map, select_genres
from mgctag.library.rows import Track
from mgctag.models import audioset, catalog
from mgctag.models.audioset import CombinedTagger, choice_margin
from mgctag.models.inputs import InputPlan, prepare
from mgctag.models.protocol import Prediction

MUSDB = media.MUSDB / "train"  # optional (research use): these clips' decisions are known
# Milk Cow Blues: raw bfloat16 swaps the two written genres (tools/bench/compare_precision.py)
CLIPS = ["Angela Thomas Wade - Milk Cow Blues", "Music Delta - Grunge", "ANiMAL - Clinic A"]


def written(scores: dict[str, float], name: str) -> list[str]:
    most, floor, relative = catalog.selection(name)
    chosen = select_genres(scores, max_genres=most, min_confidence=floor, relative_floor=relative)
    return [g for g, _ in chosen]


def planned(row: Prediction) -> list[str]:
    """What planning writes from the default's row by default: tree, depth, lone-tag rule."""
    plan = Planning.shipped(catalog.selection(row.model))
    chosen = decide_genres(dict(row.genres), plan, per_model=list(row.tags.values()))
    return [g for g, _ in chosen]


@pytest.mark.parametrize("name", [catalog.DEFAULT_TAGGER, catalog.MUSICNN_TAGGER])
def test_moves_under_half_the_margin_never_change_what_is_written(name: str) -> None:
    rng = random.Random(12)
    genres = [f"g{i}" for i in range(8)]
    for _ in range(2000):
        scores = {g: rng.random() ** 3 for g in genres}
        margin = choice_margin(scores, name)
        step = 0.49 * margin / 1.6  # the floor moves up to 0.6x as much as the top score
        moved = {g: s + rng.uniform(-step, step) for g, s in scores.items()}
        assert written(moved, name) == written(scores, name)


def test_margin_is_the_closest_decision() -> None:
    # default: two genres, floor max(0.05, 0.6 x top); Pop-Rock 0.1 apart decides the order
    scores = {"Rock": 0.5, "Pop": 0.4, "Jazz": 0.1}
    assert choice_margin(scores, catalog.DEFAULT_TAGGER) == pytest.approx(0.1)
    # musicnn: three genres, floor max(0.15, 0.35 x top) = 0.175; Jazz 0.005 under it decides
    scores["Jazz"] = 0.17
    assert choice_margin(scores, catalog.MUSICNN_TAGGER) == pytest.approx(0.005)
    assert choice_margin({}, catalog.DEFAULT_TAGGER) == float("inf")


@pytest.mark.slow
def test_guarded_bf16_writes_the_float32_genres_on_real_clips(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tagger, gmap = CombinedTagger(), default_map()
    plan = InputPlan((tagger.inputs,))
    monkeypatch.setattr(audioset, "BF16_MARGIN", 0.012)
    media.need(MUSDB)
    for clip in CLIPS:
        item = prepare(Track.of_file(MUSDB / f"{clip}.stem.mp4"), plan)
        got = {}
        for bf16 in (False, True):
            tagger.musicnn.bf16 = bf16
            (out,) = tagger.analyse([item])
            rows = tagger.predictions(out, gmap)
            got[bf16] = planned(rows[-1])
        assert got[True] == got[False], clip


@pytest.mark.slow
def test_bf16_musicnn_row_is_stored_but_not_reused_by_musicnn_alone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The default's bf16 musicnn row is kept, but `--model musicnn` analyses the track again."""
    import shutil

    from mgctag import pipeline
    from mgctag.library.db import Library
    from mgctag.options import TagOptions

    music = tmp_path / "music"
    music.mkdir()
    media.need(MUSDB)
    for clip in CLIPS[1:]:
        shutil.copy(MUSDB / f"{clip}.stem.mp4", music / f"{clip}.m4a")
    monkeypatch.setattr(audioset, "BF16_MUSICNN", True)
    lib = Library(tmp_path / "lib.db")
    opts = TagOptions(dry_run=True)
    pipeline.tag_paths(lib, [music], opts)
    assert not lib.tracks_needing_analysis(catalog.DEFAULT_TAGGER)
    stale = lib.tracks_needing_analysis(catalog.MUSICNN_TAGGER)
    # Clinic A is far from any decision: its musicnn row stays bf16 (Grunge is re-run in float32)
    assert "ANiMAL - Clinic A.m4a" in {Path(t["path"]).name for t in stale}
    for track in stale:
        assert catalog.MUSICNN_TAGGER in lib.get_predictions(track["id"])
    monkeypatch.setattr(audioset, "BF16_MUSICNN", False)
    pipeline.tag_paths(lib, [music], TagOptions(dry_run=True, model=catalog.MUSICNN_TAGGER))
    assert not lib.tracks_needing_analysis(catalog.MUSICNN_TAGGER)


@pytest.mark.parametrize("depth", ["parent", "leaf", "both"])
def test_moves_under_half_the_planned_margin_never_change_what_planning_writes(depth: str) -> None:
    """The default's written genres go through the tree and the lone-tag rule (issue 29): the
    margin the bfloat16 guard reads covers every comparison they make, the models' own scores
    included."""
    from mgctag.genres import GenreTree, LoneRule, Planning, decide_genres, decision_gaps

    rng = random.Random(29)
    tree = GenreTree.of_map(default_map())
    genres = ["Rock", "Indie", "Alternative", "Grunge", "Electronic", "Techno", "House",
              "Ambient", "Indian", "Carnatic", "Bollywood", "Pop", "Jazz", "Metal"]  # fmt: skip
    plan = Planning(tree, depth, 2, 0.05, 0.6, LoneRule(0.1, 0.2, {"Pop": 0.0, "Jazz": 0.15}))

    def written(scores: dict[str, float], per_model: list[dict[str, float]]) -> list[str]:
        picked = decide_genres(scores, plan, per_model=per_model)
        return [g for g, _ in picked]

    for _ in range(1500):
        scores = {g: rng.random() ** 3 for g in rng.sample(genres, 8)}
        per_model = [{g: rng.random() ** 2 for g in rng.sample(genres, 6)} for _ in range(3)]
        margin = decision_gaps(scores, plan, per_model=per_model).least
        step = 0.49 * margin / 1.6

        def moved(d: dict[str, float], step: float = step) -> dict[str, float]:
            return {g: s + rng.uniform(-step, step) for g, s in d.items()}

        assert written(moved(scores), [moved(m) for m in per_model]) == written(scores, per_model)


@pytest.mark.parametrize("depth", ["parent", "leaf", "both"])
def test_the_two_gaps_bound_what_each_kind_of_score_may_move(depth: str) -> None:
    """The guard reads `decision_gaps` split by what moves: the combined scores by less than half
    of `scores` (their thresholds follow them, at most 1.6x) and each model's own scores by less
    than `models` together never change what planning writes."""
    from mgctag.genres import GenreTree, LoneRule, decision_gaps

    rng = random.Random(2912)
    tree = GenreTree.of_map(default_map())
    genres = ["Rock", "Indie", "Alternative", "Grunge", "Electronic", "Techno", "House",
              "Ambient", "Indian", "Carnatic", "Bollywood", "Pop", "Jazz", "Metal"]  # fmt: skip
    lone = LoneRule(0.1, 0.05, {"Indian": 0.3, "Jazz": 0.15, "Pop": 0.0})
    plan = Planning(tree, depth, 2, 0.05, 0.6, lone)
    for _ in range(1500):
        scores = {g: rng.random() ** 3 for g in rng.sample(genres, 8)}
        per_model = [{g: rng.random() ** 2 for g in rng.sample(genres, 6)} for _ in range(3)]
        gaps = decision_gaps(scores, plan, per_model=per_model)
        step, model_step = 0.49 * gaps.scores / 1.6, 0.99 * gaps.models

        def moved(d: dict[str, float], step: float) -> dict[str, float]:
            return {g: s + rng.uniform(-step, step) for g, s in d.items()}

        before = decide_genres(scores, plan, per_model=per_model)
        after = decide_genres(
            moved(scores, step), plan, per_model=[moved(m, model_step) for m in per_model]
        )
        assert [g for g, _ in after] == [g for g, _ in before]


def test_gaps_leave_out_comparisons_that_decide_nothing() -> None:
    """Two children far below the share of their parent that either needs are not a near
    decision however close they are to each other; nor is a lone genre far below what anything
    written needs, however near a model is to backing it. (Counting them made 62 % of the Debian
    corpus 'borderline' and kept bf16 off: docs/benchmarks.md, issue 29.)"""
    from mgctag.genres import GenreTree, LoneRule, decision_gaps

    tree = GenreTree.of_map(default_map())
    plan = Planning(tree, "leaf", 2, 0.05, 0.6, LoneRule(0.1, 0.0, {"Indian": 0.3}))
    siblings = {"Electronic": 0.5, "Techno": 0.1, "House": 0.1001}
    assert decision_gaps(siblings, plan).scores == pytest.approx(0.1499)
    descending = {"Electronic": 0.5, "Techno": 0.3, "House": 0.3001}  # here the order decides
    assert decision_gaps(descending, plan).scores == pytest.approx(0.0001)
    models = [{"Electronic": 0.5, "Indian": 0.1001}, {"Electronic": 0.4}, {"Electronic": 0.6}]
    far = {"Electronic": 0.5, "Indian": 0.06}  # lone, dropped; below the 0.3 any genre needs
    assert decision_gaps(far, plan, per_model=models).models == float("inf")
    near = {"Electronic": 0.4, "Indian": 0.25}  # above the 0.24 floor: written if backed
    assert decision_gaps(near, plan, per_model=models).models == pytest.approx(0.0001)


def test_bf16_stops_once_too_many_recent_tracks_were_borderline() -> None:
    """Each borderline track costs a bf16 and a float32 pass: past the break-even share of
    recent tracks, float32 alone is cheaper; too few tracks seen decide nothing."""
    n = audioset.BF16_RECENT
    assert audioset.bf16_pays([])
    assert audioset.bf16_pays([True] * (audioset.BF16_MIN_SEEN - 1))
    few = int(audioset.BF16_BREAK_EVEN * n)
    assert audioset.bf16_pays([True] * few + [False] * (n - few))
    assert not audioset.bf16_pays([True] * (few + 1) + [False] * (n - few - 1))


@pytest.mark.slow
def test_float32_by_choice_writes_exact_rows_and_keeps_judging(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a run of borderline tracks the default runs musicnn in float32: its rows are exact
    (reusable by `--model musicnn`), the same as a float32 tagger's, and each track's margin is
    still judged, so bf16 comes back when tracks are far from a decision again."""
    monkeypatch.setattr(audioset, "BF16_MUSICNN", True)
    tagger, gmap = CombinedTagger(), default_map()
    plan = InputPlan((tagger.inputs,))
    item = prepare(Track.of_file(media.MUSIC / "metal" / sorted(
        p.name for p in (media.MUSIC / "metal").glob("*.ogg"))[0]), plan)  # fmt: skip
    tagger.recent.extend([True] * (audioset.BF16_RECENT - 1))
    (out,) = tagger.analyse([item])
    assert "mel" not in out.extra  # no bf16 pass to re-run
    rows = tagger.predictions(out, gmap)
    assert not any(r.approximate for r in rows)
    assert len(tagger.recent) == audioset.BF16_RECENT  # judged: one more entry
    assert tagger.musicnn.bf16  # bf16 stays allowed for later batches
    reference = CombinedTagger()
    reference.musicnn.bf16 = False
    (ref_out,) = reference.analyse([item])
    assert [r.genres for r in reference.predictions(ref_out, gmap)] == [r.genres for r in rows]
