"""One genre split-and-normalise: a tag value 'Rock|Pop' is two genres for training labels, for
merge mode and for the map alike."""

from __future__ import annotations

from mgctag.genres import plan_genres, split_and_normalise, split_genres
from mgctag.library.rows import Track
from mgctag.search.similar import track_genres
from mgctag.train.labels import labels_from_tags


def test_split_keeps_slash_genres_whole() -> None:
    assert split_genres("Rock|Pop; Jazz\x00Blues") == ["Rock", "Pop", "Jazz", "Blues"]
    assert split_genres("Pop/Rock") == ["Pop/Rock"]
    assert split_genres(" | ;") == []


def test_the_same_value_means_the_same_genres_everywhere() -> None:
    value = "rock|hip hop; Rock"
    expected = ["Rock", "Hip-Hop"]
    assert split_and_normalise([value]) == expected
    ((_, labels),) = labels_from_tags([("/m/a.flac", [value])])
    assert labels == expected
    assert track_genres(Track(1, "/m/a.flac", genres=[value])) == expected
    assert track_genres(Track(1, "/m/a.flac", genres=value)) == expected  # a raw string, not JSON


def test_merge_does_not_add_a_genre_already_inside_a_joined_value() -> None:
    assert plan_genres(["Rock|Pop"], ["Pop", "Jazz"], "merge") == ["Rock|Pop", "Jazz"]
    assert plan_genres(["Rock|Pop"], ["rock"], "merge") is None
