"""The default tagger (musicnn + mn04, content-gated) end to end through the CLI, on real clips:
speech is skipped with its reason, music is tagged, `--content all` and `--model musicnn` keep
the old behaviour, and what is stored follows the documented rule."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import media
import pytest
from typer.testing import CliRunner

from mgctag import tags
from mgctag.cli import app
from mgctag.genres import mean_scores
from mgctag.library.db import Library

SPEECH = media.LIBROSA / "198-209-0000.hq.ogg"  # LibriSpeech: a woman reading Jane Austen
SONG = "Karissa_Hobbs_-_Lets_Go_Fishin"  # a sung folk song: a voice over guitar, still music

runner = CliRunner()


def mgctag(*args: str | Path) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


@pytest.fixture
def clips(tmp_path: Path) -> Path:
    folder = tmp_path / "Music"
    folder.mkdir()
    shutil.copyfile(SPEECH, folder / "speech.ogg")  # copyfile: not the read-only mode
    y, sr = media.real_clip(SONG, seconds=30.0)
    media.encode(y, sr, folder / "song.m4a")
    return folder


def _speech_skipped_and_found_again(db: Path, clips: Path, *model: str) -> None:
    """Tag the two clips: the song is tagged, the speech skipped as speech, and a later `scan`
    lists the speech as heard no music."""
    code, output = mgctag("--db", db, "tag", clips, *model, "--json")
    assert code == 0, output
    report = json.loads(output)
    assert report["counts"]["analysed"] == 2 and report["counts"]["tagged"] == 1
    (skip,) = report["skips"]
    assert Path(skip["path"]).name == "speech.ogg" and "speech" in skip["reason"]
    assert skip["content"] == "speech"
    code, output = mgctag("--db", db, "scan", clips, "--json")  # finds the talk again later
    assert [Path(r["path"]).name for r in json.loads(output)["not_music"]] == ["speech.ogg"]


@pytest.mark.slow
def test_speech_is_skipped_and_music_tagged(clips: Path, tmp_path: Path) -> None:
    db = tmp_path / "lib.db"
    _speech_skipped_and_found_again(db, clips)
    assert tags.read_tags(clips / "speech.ogg").genres == []
    written = tags.read_tags(clips / "song.m4a").genres
    assert 1 <= len(written) <= 2  # the default writes at most two genres

    code, output = mgctag("--db", db, "info", clips / "speech.ogg", "--json")
    pred = json.loads(output)["predictions"]["musicnn+mn04"]
    assert pred["content"] == "speech"
    assert pred["windows"] and all(w["content"] == "speech" for w in pred["windows"])
    code, output = mgctag("--db", db, "info", clips / "song.m4a")
    assert "content: music" in output

    # the combined genres are the mean of musicnn's and mn04's (all windows are music here)
    lib = Library(db)
    song = lib.track_by_path(clips / "song.m4a")
    assert song is not None
    preds = lib.get_predictions(song["id"])
    expected = mean_scores(
        [dict(preds["musicnn"]["genres"]), dict(preds["audioset_mn04"]["genres"])]
    )
    stored = dict(preds["musicnn+mn04"]["genres"])
    assert stored.keys() == expected.keys()
    assert all(abs(stored[g] - expected[g]) < 1e-5 for g in expected)
    assert written[0] == max(expected, key=expected.__getitem__)

    # --content all tags the speech too, from the stored analysis (nothing re-analysed)
    code, output = mgctag("--db", db, "tag", clips, "--content", "all", "--json")
    report = json.loads(output)
    assert code == 0 and report["counts"]["analysed"] == 0 and report["counts"]["tagged"] == 1
    assert tags.read_tags(clips / "speech.ogg").genres


@pytest.mark.slow
def test_model_musicnn_keeps_the_old_behaviour(clips: Path, tmp_path: Path) -> None:
    db = tmp_path / "lib.db"
    code, output = mgctag("--db", db, "tag", clips, "--model", "musicnn", "--json")
    assert code == 0, output
    report = json.loads(output)
    assert report["counts"]["tagged"] == 2 and report["skips"] == []  # no content gate
    preds = Library(db).get_predictions(Library(db).track_by_path(clips / "speech.ogg")["id"])
    assert set(preds) == {"musicnn"} and preds["musicnn"]["content"] is None


def test_bad_content_value_is_a_usage_error(tmp_path: Path) -> None:
    code, output = mgctag("--db", tmp_path / "lib.db", "tag", tmp_path, "--content", "some")
    assert code == 2 and "music or all" in output


def test_similar_uses_the_concatenated_embedding_once_every_track_has_it(tmp_path: Path) -> None:
    import numpy as np

    from mgctag.search.similar import default_embedding_model

    lib = Library(tmp_path / "lib.db")
    ids = [lib.upsert_track({"path": f"/m/{i}.flac", "size": 1, "mtime": 1}) for i in range(2)]
    v = np.ones(4, np.float32) / 2
    for i in ids:
        lib.save_analysis(i, "musicnn", "none", {}, [], {"mix": v, "drums": v})
    assert default_embedding_model(lib) == "musicnn"  # tagged before the new default
    lib.save_analysis(ids[0], "musicnn+mn04", "none", {}, [], {"mix": v})
    assert default_embedding_model(lib) == "musicnn"  # not every track has it yet
    lib.save_analysis(ids[1], "musicnn+mn04", "none", {}, [], {"mix": v})
    assert default_embedding_model(lib) == "musicnn+mn04"
    assert default_embedding_model(lib, "drums") == "musicnn"  # stems: musicnn's only


@pytest.mark.slow
def test_fast_student_gates_and_tags_in_one_pass(clips: Path, tmp_path: Path) -> None:
    """`--model fast`: the student's own not-music outputs skip the speech, the song is tagged
    with at most two genres, and the results are stored under the student's real name."""
    from mgctag.models.catalog import ALIASES, canonical

    db = tmp_path / "lib.db"
    _speech_skipped_and_found_again(db, clips, "--model", "fast")
    assert 1 <= len(tags.read_tags(clips / "song.m4a").genres) <= 2
    code, output = mgctag("--db", db, "info", clips / "speech.ogg", "--json")
    pred = json.loads(output)["predictions"][canonical("fast")]
    assert pred["content"] == "speech" and pred["windows"]
    code, output = mgctag("models", "show", "fast", "--json")
    assert json.loads(output)["stands_for"] == ALIASES["fast"]


@pytest.mark.slow
def test_spoken_digits_and_outdoor_noise_get_no_genres(tmp_path: Path) -> None:
    """Issue 27: a spoken number list, thunder, rain and wind (from packages no model here
    learnt from) are skipped by the content gate; the song beside them is tagged."""
    folder = tmp_path / "Music"
    folder.mkdir()
    names = ("speech_italian_digits", "thunder", "rain", "wind")
    for name in names:
        shutil.copyfile(media.SOUNDS / f"{name}.ogg", folder / f"{name}.ogg")
    y, sr = media.real_clip(SONG, seconds=30.0)
    media.encode(y, sr, folder / "song.m4a")
    code, output = mgctag("--db", tmp_path / "lib.db", "tag", folder, "--json")
    assert code == 0, output
    report = json.loads(output)
    assert report["counts"]["tagged"] == 1, report
    skipped = {Path(s["path"]).stem: s for s in report["skips"]}
    assert set(skipped) == set(names), report["skips"]
    assert skipped["speech_italian_digits"]["content"] == "speech"
    for name in names:
        assert tags.read_tags(folder / f"{name}.ogg").genres == []
