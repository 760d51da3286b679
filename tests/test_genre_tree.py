"""The genre tree at work (issue #29): it loads and is complete, a user's tree or beets lastgenre's
YAML / whitelist replaces it, a malformed one is one line and a cycle is refused, parents gather
their children's evidence, a genre one model alone backs needs its threshold, and the library's
vocabulary learns only from genres the user wrote and never invents one."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import cli

from mgctag.errors import ConfigError
from mgctag.genres import (
    GenreMap,
    GenreTree,
    LoneRule,
    Planning,
    backed_genres,
    decide_genres,
    default_map,
    load_tree,
    select_genres,
    select_in_tree,
    tree_scores,
)
from mgctag.library.db import Library
from mgctag.options import DEFAULT_TAGGER
from mgctag.tags import read_tags, write_genres

MUSIC = Path(__file__).resolve().parent / "data" / "music"
LASTGENRE_YAML = """\
- rock:
    - heavy metal
    - indie rock
- electronic:
    - techno
    - house
- jazz
"""


def _tree() -> GenreTree:
    return GenreTree.of_map(default_map())


def test_the_bundled_tree_loads_and_every_genre_reaches_a_root():
    tree = _tree()
    for genre in default_map().genres:
        path, node = [genre], genre
        while (node := tree.parent(node)) is not None:
            assert node not in path, path
            path.append(node)
        assert tree.parent(path[-1]) is None
    # where listeners look for them
    assert tree.parent("Metal") is None and tree.parent("Reggae") is None
    assert tree.parent("Latin") is None and tree.parent("World") is None
    assert tree.root("Ska") == "Reggae" and tree.root("Salsa") == "Latin"
    assert tree.root("Carnatic") == "World" and tree.parent("Indian") == "Asian"
    assert tree.root("Afrobeat") == "World" and tree.root("Disco") == "Electronic"
    assert tree.parent("Soul") == "R&B" and tree.root("Grunge") == "Rock"


def test_parents_gather_their_childrens_evidence():
    scores = {"Rock": 0.4, "Techno": 0.3, "House": 0.3, "Ambient": 0.2}
    assert select_genres(scores, max_genres=1)[0][0] == "Rock"  # flat: the strongest single genre
    total = tree_scores(scores, _tree(), "noisy_or")
    assert total["Electronic"] == pytest.approx(1 - 0.7 * 0.7 * 0.8)
    assert tree_scores(scores, _tree(), "max")["Electronic"] == pytest.approx(0.3)
    kw = {"max_genres": 2, "min_confidence": 0.05, "relative_floor": 0.6, "how": "noisy_or"}
    assert select_in_tree(scores, _tree(), "parent", **kw) == [
        ("Electronic", pytest.approx(0.608, abs=1e-3)),
        ("Rock", 0.4),
    ]
    # leaf: the child written instead of its parent only when it holds `descend` of its evidence
    assert select_in_tree(scores, _tree(), "leaf", descend=0.4, **kw)[0][0] == "Techno"
    assert select_in_tree(scores, _tree(), "leaf", descend=0.6, **kw)[0][0] == "Electronic"
    assert [g for g, _ in select_in_tree(scores, _tree(), "both", descend=0.4, **kw)] == [
        "Electronic",
        "Techno",
    ]


def test_a_lastgenre_yaml_replaces_the_tree(tmp_path):
    path = tmp_path / "genres-tree.yaml"
    path.write_text(LASTGENRE_YAML, "utf-8")
    tree = load_tree(default_map(), path)
    assert tree.parent("Metal") == "Rock"  # "heavy metal" is mgctag's Metal, under rock there
    assert tree.parent("Indie") == "Rock" and tree.root("House") == "Electronic"
    assert tree.place("Pop") is None  # not in the user's tree: never written
    kw = {"max_genres": 2, "min_confidence": 0.05, "relative_floor": 0.3}
    picked = select_in_tree({"Pop": 0.6, "Metal": 0.3}, tree, "both", **kw)
    assert [g for g, _ in picked] == ["Rock", "Metal"]


def test_beets_own_genre_tree_loads_as_a_user_tree():
    pytest.importorskip("beets")
    import beetsplug

    found = [Path(p) / "lastgenre" / "genres-tree.yaml" for p in beetsplug.__path__]
    path = next((p for p in found if p.is_file()), None)
    if path is None:
        pytest.skip("beets without its lastgenre plugin's genres-tree.yaml")
    tree = load_tree(default_map(), path)
    assert tree.root("Techno") == "Electronic" and tree.root("Metal") == "Rock"
    assert tree.place("Hip-Hop") == "Hip-Hop"  # lastgenre's "hip hop", mgctag's spelling
    assert len(tree.parents) > 700


def test_a_whitelist_keeps_only_its_genres_and_folds_the_others_into_them(tmp_path):
    path = tmp_path / "genres.txt"
    path.write_text("rock\nElectronic\n\n", "utf-8")
    tree = load_tree(default_map(), whitelist=path)
    assert set(tree.parents) == {"Rock", "Electronic"}
    assert tree.place("Techno") == "Electronic" and tree.place("Jazz") is None
    kw = {"max_genres": 2, "min_confidence": 0.05, "relative_floor": 0.3}
    assert select_in_tree({"Techno": 0.5, "Jazz": 0.9}, tree, "leaf", **kw) == [("Electronic", 0.5)]


def test_a_user_genres_json_moves_a_genre(tmp_path):
    path = tmp_path / "genres.json"
    path.write_text(json.dumps({"genres": {"Metal": {"parent": "Rock"}}}), "utf-8")
    tree = GenreTree.of_map(GenreMap.load(path))
    assert tree.parent("Metal") == "Rock"
    # the same file given as --genre-tree replaces the whole tree: only its genres are written
    only = load_tree(default_map(), path)
    assert set(only.parents) == {"Metal", "Rock"}


@pytest.mark.parametrize(
    ("name", "text", "reason"),
    [
        ("cycle.json", json.dumps({"genres": {"Rock": {"parent": "Metal"}, "Metal": {"parent": "Rock"}}}), "cycle"),  # noqa: E501
        ("cycle.yaml", "genres:\n  Rock: {parent: Punk}\n  Punk: {parent: Rock}\n", "cycle: "),
        ("orphan.json", json.dumps({"genres": {"Rock": {"parent": 3}}}), "not a genre tree"),
        ("bad.yaml", "- rock:\n  - [unclosed\n", "not a genre tree"),
        ("scalar.yaml", "just words\n", "not a genre tree"),
        ("nested.yaml", "- rock:\n    - {a: 1, b: 2}\n", "is not a genre"),
    ],
)  # fmt: skip
def test_a_malformed_tree_or_a_cycle_is_refused(tmp_path, name, text, reason):
    path = tmp_path / name
    path.write_text(text, "utf-8")
    with pytest.raises(ConfigError, match=reason) as info:
        load_tree(default_map(), path)
    assert info.value.path == path or str(path) in str(info.value)


def test_a_user_map_with_a_cycle_is_refused(tmp_path):
    path = tmp_path / "genres.json"
    path.write_text(json.dumps({"genres": {"Rock": {"parent": "Punk"}}}), "utf-8")
    with pytest.raises(ConfigError, match="cycle: Rock > Punk > Rock"):
        GenreMap.load(path)


def test_the_command_line_says_a_bad_tree_in_one_line(home, tmp_path):
    bad = tmp_path / "tree.yaml"
    bad.write_text("- rock:\n    - {a: 1, b: 2}\n", "utf-8")
    (tmp_path / "empty").mkdir()
    result = cli("tag", tmp_path / "empty", "--db", tmp_path / "lib.db", "--genre-tree", bad)
    assert result.code == 2 and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "not a genre" in lines[0], lines


def test_a_genre_one_model_alone_backs_is_dropped_below_its_need():
    per_model = [{"Rock": 0.4, "Indian": 0.5}, {"Rock": 0.3}, {"Rock": 0.2}]  # MTT, MSD, mn04
    scores = {"Rock": 0.3, "Indian": 0.25}
    backed = backed_genres(per_model, _tree(), 0.1)
    assert "Rock" in backed and not {"Indian", "Asian", "World"} & backed

    def written(rule: LoneRule) -> list[str]:
        plan = Planning(_tree(), "leaf", 2, 0.05, 0.6, rule)
        return [g for g, _ in decide_genres(scores, plan, per_model=per_model)]

    assert written(LoneRule(0.1, 0.0)) == ["Rock", "Indian"]
    assert written(LoneRule(0.1, 0.3)) == ["Rock"]
    assert written(LoneRule(0.1, 0.0, {"Indian": 0.3})) == ["Rock"]
    # mn04 hearing Bollywood backs Indian too: no longer lone
    per_model[2]["Bollywood"] = 0.2
    assert written(LoneRule(0.1, 0.3)) == ["Rock", "Indian"]


# --- on real analyses (the default tagger, real clips from tests/data) --------------------------

CLIPS = {  # copy name: (tests/data/music file, the genre the user wrote, or None)
    "a1.ogg": ("metal/armygeddon_1.ogg", "Thrash"),  # a user's own word, not in mgctag's map
    "a2.ogg": ("electronic/desert3_1.ogg", "Electronic"),
    "a3.ogg": ("classical/knolls_1.ogg", "Classical"),
    "b1.ogg": ("metal/chaos_god_1.ogg", None),
    "b2.ogg": ("electronic/northern_lights_1.ogg", None),
    "b3.ogg": ("classical/love_theme_1.ogg", None),
}


@pytest.fixture(scope="module")
def labelled_library(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Six real clips, three with the user's genre written in them, analysed by the default
    tagger once (nothing written): (folder, database). Copy before writing."""
    root = tmp_path_factory.mktemp("labelled")
    music, db = root / "Music", root / "lib.db"
    music.mkdir()
    for name, (source, genre) in CLIPS.items():
        shutil.copyfile(MUSIC / source, music / name)
        if genre:
            write_genres(music / name, [genre])
    result = cli("tag", music, "--db", db, "--dry-run", "--stems", "off")
    assert result.code == 0, result.output
    return music, db


@pytest.mark.slow
def test_a_lone_genre_of_a_real_analysis_is_not_written_below_its_need(labelled_library):
    _, db = labelled_library
    lib = Library(db)
    track = lib.track_by_path(str(labelled_library[0] / "b1.ogg"))
    assert track is not None
    pred = lib.get_predictions(track.id)[DEFAULT_TAGGER]
    per_model = [s for s in pred.tags.values()]
    assert len(per_model) == 3  # MSD, MTT and mn04's own genre scores, stored by the default
    scores = {g: p for g, p in pred.genres}
    plan = Planning(_tree(), "leaf", 2, 0.05, 0.6)
    top = decide_genres(scores, plan)[0][0]
    # at support 1.0 no model backs anything: every genre is lone; the top one needs more
    rule = LoneRule(1.0, 0.0, {top: scores[top] + 0.01})
    without = [g for g, _ in decide_genres(scores, replace(plan, lone=rule), per_model=per_model)]
    assert top not in without
    lone = replace(plan, lone=LoneRule(1.0, 0.0))
    assert top in [g for g, _ in decide_genres(scores, lone, per_model=per_model)]


@pytest.mark.slow
def test_library_vocabulary_learns_only_from_the_user_and_invents_nothing(
    labelled_library, tmp_path
):
    from conftest import copy_library

    from mgctag.writes.plan import model_genres
    from mgctag.writes.vocabulary import LibraryVocabulary

    music, db = copy_library(*labelled_library, tmp_path)
    lib = Library(db)
    ids = {name: lib.track_by_path(str(music / name)).id for name in CLIPS}
    user = {ids[n] for n, (_, genre) in CLIPS.items() if genre}
    vocabulary = LibraryVocabulary(lib, DEFAULT_TAGGER)
    assert set(vocabulary.labels) == user
    assert vocabulary.labels[ids["a1.ogg"]] == ["Thrash"]  # the user's word, as written
    allowed = {}
    for name, track_id in ids.items():
        pred = lib.get_predictions(track_id)[DEFAULT_TAGGER]
        neighbours = vocabulary.neighbours(track_id)
        assert track_id not in {n for n in ()} and len(neighbours) == len(user - {track_id})
        allowed[name] = {g for g, p in pred.genres if p > 0} | {
            g for _, genres in neighbours for g in genres
        }
        assert model_genres(pred)
    result = cli("tag", music, "--db", db, "--learn-from-library", "--json", "--stems", "off")
    assert result.code == 0, result.output
    changes = json.loads(result.stdout)["changes"]
    assert {Path(c["path"]).name for c in changes} == {"b1.ogg", "b2.ogg", "b3.ogg"}  # fill
    for change in changes:
        assert set(change["new"]) <= allowed[Path(change["path"]).name], change
        assert read_tags(change["path"]).genres == change["new"]
    # what mgctag wrote is never a neighbour's label, in this run or the next
    lib = Library(db)
    assert set(LibraryVocabulary(lib, DEFAULT_TAGGER).labels) == user
