"""Retraining on personal labels end to end: tags → train → tag the rest → evaluate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import media
import pytest
from conftest import copy_library
from typer.testing import CliRunner

from mgctag import tags
from mgctag.cli import app
from mgctag.errors import UsageError as UserError

runner = CliRunner()

pytestmark = pytest.mark.slow  # every test here trains or tags real audio


PER_GENRE = 7  # labelled tracks per genre; one more per genre stays unlabelled
USER_SPELLING = {"Metal": "Heavy Metal", "Classical": "Orchestral", "Electronic": "Electronica"}


def invoke(*args) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """Excerpts of three genres from the in-repo genre set (tests/data/music); all but one per
    genre carry the user's genre tag, in the user's own spelling."""
    lib = tmp_path_factory.mktemp("Music")
    labelled, unlabelled = {}, {}
    for genre in USER_SPELLING:
        files = [p for p, g, _ in media.genre_set() if g == genre][: PER_GENRE + 1]
        for i, path in enumerate(files):
            # "Song - 1.ogg": untagged files are grouped by the name's "Artist - " part; here the
            # song, as Nexuiz's and Wesnoth's credits name a project, not one artist
            song, part = path.stem.rsplit("_", 1)
            dest = lib / f"{song} - {part}.ogg"
            shutil.copyfile(path, dest)  # tests/data is read-only to tests; copies are ours
            if i < PER_GENRE:
                tags.write_genres(dest, [USER_SPELLING[genre]])
                labelled[dest.name] = USER_SPELLING[genre]
            else:
                unlabelled[dest.name] = USER_SPELLING[genre]
    return lib, labelled, unlabelled


@pytest.fixture
def env(tagged, labelled, tmp_path, monkeypatch):
    """A private copy of the tagged library, and a private folder for user models."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    lib, db = copy_library(*tagged, tmp_path)
    return lib, db, labelled[1], labelled[2]


@pytest.fixture(scope="module")
def tagged(labelled, tmp_path_factory):
    """The library tagged once: fills the unlabelled tracks with the default tagger's genres."""
    root = tmp_path_factory.mktemp("tagged")
    lib, db = root / "Music", root / "lib.db"
    shutil.copytree(labelled[0], lib)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_DATA_HOME", str(root / "data"))  # no user models of the machine's own
        code, output = invoke("tag", lib, "--db", db)
    assert code == 0, output
    return lib, db


def test_train_from_tags_then_tag_with_the_user_model(env, tmp_path):
    lib, db, labelled, unlabelled = env
    code, output = invoke("labels", "--db", db, "--min-count", "3", "--json")
    counts = json.loads(output)
    assert code == 0
    # the user's spellings are normalised; genres mgctag wrote itself are not labels
    assert counts["counts"] == {"Metal": PER_GENRE, "Classical": PER_GENRE, "Electronic": PER_GENRE}

    code, output = invoke("train", "mine", "--db", db, "--min-count", "3", "--folds", "3", "--json")
    assert code == 0, output
    result = json.loads(output)
    assert result["card"]["labels"] == ["Classical", "Electronic", "Metal"]
    assert result["evaluation"]["n_tracks"] == 3 * PER_GENRE
    assert len(result["evaluation"]["folds"]) == 3
    assert Path(result["model"]).is_file()
    assert (tmp_path / "data" / "mgctag" / "models" / "mine.confusion.png").stat().st_size > 1000

    code, output = invoke("models", "list", "--json")
    assert "mine" in {m["name"] for m in json.loads(output)}

    code, output = invoke("tag", lib, "--db", db, "--model", "mine", "--mode", "replace", "--json")
    assert code == 0, output
    for name in unlabelled:
        genres = tags.read_tags(lib / name).genres
        assert genres and set(genres) <= {"Classical", "Electronic", "Metal"}
    # the user's labels were its training data: the head gives most of them back
    expected = {spelling: genre for genre, spelling in USER_SPELLING.items()}
    agree = [tags.read_tags(lib / n).genres[0] == expected[g] for n, g in labelled.items()]
    assert sum(agree) >= 0.7 * len(agree)


def test_eval_protocols_give_the_right_number_of_splits(env):
    lib, db, _, _ = env
    code, output = invoke(
        "eval", "--db", db, "--min-count", "3", "--protocol", "kfold", "--folds", "4", "--json"
    )
    assert code == 0, output
    assert len(json.loads(output)["folds"]) == 4
    code, output = invoke(
        "eval", "--db", db, "--min-count", "3", "--protocol", "trials", "--trials", "6", "--json"
    )
    report = json.loads(output)
    assert code == 0 and len(report["folds"]) == 6
    assert report["accuracy"]["mean"] > 1 / 3  # better than chance on three genres


def test_csv_with_unknown_paths_or_empty_genres_is_refused(env, tmp_path):
    lib, db, _, _ = env
    bad = tmp_path / "labels.csv"
    bad.write_text(f"path,genre\n{tmp_path / 'nope.flac'},Rock\n")
    with pytest.raises(UserError, match=r"labels.csv:2.*nope.flac|nope.flac.*labels.csv:2"):
        invoke("train", "x", "--labels", bad, "--db", db)
    first = sorted(lib.iterdir())[0]
    bad.write_text(f"path,genre\n{first},\n")
    with pytest.raises(UserError, match="labels.csv:2"):
        invoke("labels", "--labels", bad, "--db", db)


def test_train_a_spectrogram_network_from_audio_and_tag_with_it(env, tmp_path):
    lib, db, _, unlabelled = env
    code, output = invoke(
        "train",
        "mine-swish",
        "--arch",
        "swishnet",
        "--epochs",
        "3",
        "--min-count",
        "3",
        "--db",
        db,
        "--json",
    )
    assert code == 0, output
    result = json.loads(output)
    assert (
        result["card"]["arch"] == "swishnet" and result["card"]["preprocessing"]["input"] == "mfcc"
    )
    assert result["card"]["labels"] == ["Classical", "Electronic", "Metal"]
    assert result["evaluation"]["n_test"] >= 1 and 0.0 <= result["evaluation"]["accuracy"] <= 1.0
    code, output = invoke(
        "tag",
        lib,
        "--db",
        db,
        "--model",
        "mine-swish",
        "--mode",
        "replace",
        "--min-confidence",
        "0",
        "--dry-run",
        "--json",
    )
    report = json.loads(output)
    assert code == 0 and report["counts"]["analysed"] == len(list(lib.iterdir()))
    assert all(set(c["new"]) <= {"Classical", "Electronic", "Metal"} for c in report["changes"])


def test_seed_protocols_for_a_network_retrained_from_audio(env):
    lib, db, _, _ = env
    for protocol, flag, n in (("kfold", "--folds", 3), ("trials", "--trials", 2)):
        code, output = invoke(
            "eval",
            "--db",
            db,
            "--min-count",
            "3",
            "--arch",
            "swishnet",
            "--epochs",
            "2",
            "--protocol",
            protocol,
            flag,
            str(n),
            "--json",
        )
        assert code == 0, output
        report = json.loads(output)
        assert report["splits"] == len(report["folds"]) == n
        assert report["n_tracks"] == 3 * PER_GENRE
        assert all(0.0 <= f["accuracy"] <= 1.0 for f in report["folds"])


def test_network_evaluation_reports_progress(env):
    """A long `eval --arch` run shows where it is: features per track, then one tick per split."""
    from mgctag import pipeline
    from mgctag.library.db import Library
    from mgctag.train import workflow

    class Recorder(pipeline.Progress):
        def __init__(self) -> None:
            self.stages: list[tuple[str, int]] = []
            self.ticks = 0

        def stage(self, name: str, total: int) -> None:
            self.stages.append((name, total))

        def advance(self, n: int = 1) -> None:
            self.ticks += n

    _, db, _, _ = env
    rec = Recorder()
    workflow.evaluate_network(
        Library(db), "swishnet", None, protocol="trials", trials=2, min_count=3, epochs=1,
        progress=rec,
    )  # fmt: skip
    assert rec.stages == [("features (mfcc)", 3 * PER_GENRE), ("training swishnet (trials)", 2)]
    assert rec.ticks == 3 * PER_GENRE + 2
