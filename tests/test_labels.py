"""`mgctag labels` on a real library (issue #25): files retagged by another program since the
last scan are read again before they are counted, and labels equal to mgctag's own prediction
are left out and counted, also after an undo gave a file its own genre back.

Real clips from tests/data/music copied into a temporary folder, genres written by mutagen (the
"other program"), a real SQLite library made by `mgctag scan`, mgctag's own write through its
journal, and `mgctag undo`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import media
import pytest
from conftest import cli
from mutagen.oggvorbis import OggVorbis

from mgctag.library.db import Library
from mgctag.writes.journal import file_lock, journaled_write

CLIPS = {  # file name in tests/data/music → the genre its "user" gave it
    "jazz/vibe_ace_1.ogg": "Jazz",
    "jazz/vibe_ace_2.ogg": "Jazz",
    "folk/let_s_go_fishin_1.ogg": "Folk",
    "folk/let_s_go_fishin_2.ogg": "Folk",
    "metal/armygeddon_1.ogg": "Metal",
}


def _retag(path: Path, genre: str) -> None:
    """What another tagger (Picard, say) does: rewrite the file's genre comment."""
    audio = OggVorbis(path)
    audio["genre"] = [genre]
    audio.save()


@pytest.fixture
def scanned(tmp_path: Path) -> tuple[Path, Path]:
    """(music folder, database): the clips with the user's genres, scanned."""
    music, db = tmp_path / "Music", tmp_path / "lib.db"
    for name, genre in CLIPS.items():
        dest = music / name.replace("/", "_")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(media.MUSIC / name, dest)
        _retag(dest, genre)
    result = cli("scan", music, "--db", db)
    assert result.code == 0, result.output
    return music, db


def _labels(db: Path) -> tuple[dict, str]:
    result = cli("labels", "--db", db, "--min-count", "1", "--json")
    assert result.code == 0, result.output
    return json.loads(result.stdout), result.stderr


def test_labels_reads_again_the_files_retagged_since_the_last_scan(
    scanned: tuple[Path, Path],
) -> None:
    music, db = scanned
    counts, said = _labels(db)
    assert counts["counts"] == {"Folk": 2, "Jazz": 2, "Metal": 1} and said == ""
    for name in ("jazz_vibe_ace_1.ogg", "jazz_vibe_ace_2.ogg"):
        _retag(music / name, "Blues")  # not scanned since
    counts, said = _labels(db)
    assert counts["counts"] == {"Blues": 2, "Folk": 2, "Metal": 1}
    assert (
        said.strip()
        == "2 files changed since the last scan: tags read again (as `mgctag scan` does)"
    )
    with Library(db) as lib:  # the library holds them now, as a scan would have recorded them
        track = lib.track_by_path(str(music / "jazz_vibe_ace_1.ogg"))
        assert track is not None and track.genres == ["Blues"]
    assert _labels(db)[1] == ""  # read once: nothing changed since


def test_a_retagged_file_that_cannot_be_read_is_one_line_and_the_rest_is_counted(
    scanned: tuple[Path, Path],
) -> None:
    music, db = scanned
    broken = music / "metal_armygeddon_1.ogg"
    broken.write_bytes(b"not an ogg file at all" * 100)
    result = cli("labels", "--db", db, "--min-count", "1")
    assert result.code == 1, result.output
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and str(broken) in errors[0], result.stderr
    assert "Traceback" not in result.output
    assert "Folk" in result.stdout and "Jazz" in result.stdout and "Metal" not in result.stdout


def test_labels_says_how_many_it_left_out_as_mgctags_own_prediction(
    scanned: tuple[Path, Path],
) -> None:
    """mgctag's own write is no label; an undo that puts the user's genre back makes it one
    again (the undo's own write restores the user's genre, not a prediction)."""
    music, db = scanned
    path = music / "folk_let_s_go_fishin_1.ogg"
    with Library(db) as lib:
        track = lib.track_by_path(str(path))
        assert track is not None
        run_id = lib.start_run("tag", {"mode": "replace"})
        with file_lock(lib, path):
            journaled_write(lib, run_id, track.id, path, ["Folk"], ["Country"])
        lib.finish_run(run_id, "ok", {"tagged": 1})
    counts, said = _labels(db)
    assert counts["own_left_out"] == 1 and "Country" not in counts["counts"]
    assert counts["counts"]["Folk"] == 1 and said == ""  # mgctag's write is not a retag
    table = cli("labels", "--db", db, "--min-count", "1").stdout
    assert (
        "1 track left out: its genre is mgctag's own prediction (mgctag never learns from its "
        "own writes)"
    ) in table
    undone = cli("undo", "--last", "--db", db)
    assert undone.code == 0, undone.output
    assert OggVorbis(path)["genre"] == ["Folk"]
    counts, _ = _labels(db)
    assert counts["own_left_out"] == 0 and counts["counts"]["Folk"] == 2
