import json

import numpy as np
import pytest

from mgctag.errors import ConfigError
from mgctag.genres import (
    GenreMap,
    combine_models,
    default_map,
    mean_tag_probs,
    normalize_genre,
    plan_genres,
    select_genres,
)


def test_normalize_spellings_and_aliases():
    assert normalize_genre("hip hop") == "Hip-Hop"
    assert normalize_genre("HIP_HOP") == "Hip-Hop"
    assert normalize_genre("rnb") == "R&B"
    assert normalize_genre("Heavy Metal") == "Metal"
    assert normalize_genre("  Singer/Songwriter ") == "Folk"
    assert normalize_genre("Vaporwave  Deluxe") == "Vaporwave Deluxe"  # unknown: user's words kept


def test_non_genre_tags_never_become_genres():
    gmap = default_map()
    scores = gmap.genre_scores({"female vocalists": 0.9, "80s": 0.8, "guitar": 0.7, "rock": 0.2})
    assert scores == {"Rock": 0.2}


def test_genre_is_as_strong_as_its_strongest_tag():
    scores = default_map().genre_scores({"rock": 0.1, "classic rock": 0.4, "hard rock": 0.3})
    assert scores == {"Rock": 0.4}


def test_combine_averages_only_models_that_know_the_genre():
    gmap = default_map()
    msd = {"rock": 0.6, "jazz": 0.3}
    mtt = {"rock": 0.2, "classical": 0.5}
    combined = combine_models({"MSD": msd, "MTT": mtt}, gmap)
    assert combined["Rock"] == pytest.approx(0.4)
    assert combined["Jazz"] == pytest.approx(0.3)
    assert combined["Classical"] == pytest.approx(0.5)


def test_select_applies_floors_and_limit():
    scores = {"Rock": 0.8, "Metal": 0.5, "Pop": 0.2, "Jazz": 0.1, "Folk": 0.3}
    assert select_genres(scores, max_genres=2) == [("Rock", 0.8), ("Metal", 0.5)]
    # relative floor: 0.35 * 0.8 = 0.28 drops Pop (0.2) even with a low absolute threshold
    assert [g for g, _ in select_genres(scores, max_genres=5, min_confidence=0.01)] == [
        "Rock",
        "Metal",
        "Folk",
    ]
    assert select_genres({"Rock": 0.05}) == []


def test_mean_tag_probs():
    probs = np.array([[0.2, 0.4], [0.4, 0.0]])
    assert mean_tag_probs(probs, ["a", "b"]) == pytest.approx({"a": 0.3, "b": 0.2})


@pytest.mark.parametrize(
    ("existing", "predicted", "mode", "expected"),
    [
        ([], ["Rock"], "fill", ["Rock"]),
        (["Jazz"], ["Rock"], "fill", None),
        (["Jazz"], ["Rock", "jazz"], "merge", ["Jazz", "Rock"]),
        (["Rock"], ["rock"], "merge", None),
        (["Jazz"], ["Rock"], "replace", ["Rock"]),
        (["Rock"], ["Rock"], "replace", None),
        (["Rock"], [], "replace", None),
    ],
)
def test_plan_genres(existing, predicted, mode, expected):
    assert plan_genres(existing, predicted, mode) == expected


def test_user_override_file(tmp_path):
    path = tmp_path / "genres.json"
    path.write_text(
        json.dumps(
            {"genres": {"Chiptune": {"aliases": ["8-bit"]}}, "tags": {"electro": "Chiptune"}}
        )
    )
    gmap = GenreMap.load(path)
    assert gmap.normalize("8 bit") == "Chiptune"
    assert gmap.genre_scores({"electro": 0.5}) == {"Chiptune": 0.5}
    assert gmap.normalize("rap") == "Hip-Hop"  # bundled entries still there


def test_override_pointing_to_unknown_genre_is_refused(tmp_path):
    path = tmp_path / "genres.json"
    path.write_text(json.dumps({"tags": {"rock": "Nope"}}))
    with pytest.raises(ConfigError, match="unknown genres: Nope"):
        GenreMap.load(path)


def _audioset_music_classes() -> list[str]:
    """AudioSet's music genre, music role and music mood classes (Pop music ... Scary music)."""
    from mgctag.models.registry import load_model

    labels = load_model("audioset_mn04")[1].labels
    return labels[labels.index("Pop music") : labels.index("Scary music") + 1]


def test_every_audioset_genre_class_is_mapped_or_left_out_with_a_reason():
    from importlib.resources import files

    data = json.loads(files("mgctag").joinpath("data/genres.json").read_text("utf-8"))
    gmap = default_map()
    reasons = {k: v for k, v in data["not_genres"].items() if k != "about"}
    classes = _audioset_music_classes()
    assert len(classes) == 67
    for name in classes:
        mapped = gmap.genre_scores({name: 1.0})
        assert bool(mapped) != (name in reasons), name
        if name in reasons:
            assert len(reasons[name]) > 5
    assert set(reasons) <= set(classes)
    # moods and functions stay out of GENRE
    assert not gmap.genre_scores({"Happy music": 1, "Wedding music": 1, "Background music": 1})


def test_audioset_genres_get_parents():
    gmap = default_map()
    assert gmap.genre_scores({"Salsa music": 0.7}) == {"Salsa": 0.7}
    assert gmap.parent("Salsa") == "Latin"
    assert gmap.parent("Ska") == "Reggae"
    assert gmap.parent("Bluegrass") == "Country"
    assert gmap.parent("Gospel") == "Christian"
    assert gmap.parent("Afrobeat") == "African"
    assert gmap.normalize("drum and bass") == "Drum & Bass"
    for genre in gmap.genres.values():
        assert genre.parent is None or genre.parent in gmap.genres, genre


def test_mean_scores_count_a_missing_genre_as_zero():
    from mgctag.genres import mean_scores

    musicnn = {"Rock": 0.6, "Pop": 0.2}
    audioset = {"Rock": 0.2, "Reggae": 0.3}
    assert mean_scores([musicnn, audioset]) == pytest.approx(
        {"Rock": 0.4, "Pop": 0.1, "Reggae": 0.15}
    )
    assert mean_scores([]) == {}


def test_relative_floor_is_a_parameter():
    scores = {"Rock": 0.5, "Pop": 0.35, "Jazz": 0.2}
    assert [g for g, _ in select_genres(scores, min_confidence=0.0)] == ["Rock", "Pop", "Jazz"]
    kept = select_genres(scores, min_confidence=0.0, relative_floor=0.6, max_genres=2)
    assert [g for g, _ in kept] == ["Rock", "Pop"]
    kept = select_genres(scores, min_confidence=0.0, relative_floor=0.75)
    assert [g for g, _ in kept] == ["Rock"]


def test_blend_scores_with_hand_worked_numbers():
    """musicnn Rock .6, Pop .2 (mass .8); student Rock .25, Jazz .75; weight .5:
    Rock = .5 * .6 + .5 * .8 * .25 = .4; Pop = .5 * .2 = .1; Jazz = .5 * .8 * .75 = .3."""
    from mgctag.genres import blend_scores

    blended = blend_scores({"Rock": 0.6, "Pop": 0.2}, {"Rock": 0.25, "Jazz": 0.75}, 0.5)
    assert blended == pytest.approx({"Rock": 0.4, "Pop": 0.1, "Jazz": 0.3})
    # weight 1 keeps musicnn's scores; weight 0 is the student's softmax at musicnn's scale
    assert blend_scores({"Rock": 0.6}, {"Jazz": 1.0}, 1.0) == pytest.approx(
        {"Rock": 0.6, "Jazz": 0}
    )
    assert blend_scores({"Rock": 0.6}, {"Jazz": 1.0}, 0.0) == pytest.approx(
        {"Rock": 0, "Jazz": 0.6}
    )


@pytest.mark.parametrize(
    ("existing", "predicted", "most", "expected"),
    [
        (["Metal"], ["Techno", "Rock", "Electronic"], 3, ["Metal", "Techno", "Rock"]),
        (["Metal; Punk"], ["Techno", "Rock"], 3, ["Metal; Punk", "Techno"]),
        (
            ["Metal", "Punk", "Folk"],
            ["Techno"],
            3,
            None,
        ),  # full: the user's genres stay, none added
        (["Metal", "Punk", "Folk", "Soul"], ["Techno"], 2, None),  # never drops the user's own
        (["Metal"], ["metal", "Rock"], 2, ["Metal", "Rock"]),  # a repeat takes no room
    ],
)
def test_merge_respects_max_genres(existing, predicted, most, expected):
    """`--mode merge --max-genres N`: the file ends with at most N genres, counting its own."""
    assert plan_genres(existing, predicted, "merge", most) == expected
