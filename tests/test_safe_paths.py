"""Issue #18 items 8-9: `models remove` and `separate` never touch files outside their folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mgctag.models.cards import ModelError
from mgctag.models.registry import remove_model
from mgctag.separate.base import STEMS
from mgctag.separate.files import OutputError, track_folder, write_stems


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    folder = tmp_path / "data" / "mgctag" / "models"
    folder.mkdir(parents=True)
    return folder


def test_remove_deletes_exactly_the_models_own_files(models: Path) -> None:
    names = ["rock.safetensors", "rock.json", "rock.v2.safetensors", "rock.v2.json"]
    names += ["rock.old-backup", "rockabilly.json"]
    for name in names:
        (models / name).write_bytes(b"x")
    removed = remove_model("rock")
    assert sorted(p.name for p in removed) == ["rock.json", "rock.safetensors"]
    assert sorted(p.name for p in models.iterdir()) == sorted(names[2:])


def test_remove_never_leaves_the_models_folder(models: Path, tmp_path: Path) -> None:
    victim = tmp_path / "v"
    victim.mkdir()
    for name in ("song.safetensors", "song.flac", "song.mp3", "song.txt"):
        (victim / name).write_bytes(b"x")
    sneaky = models / ".." / ".." / ".." / "v" / "song.safetensors"
    with pytest.raises(ModelError, match="not a model in your models folder"):
        remove_model(str(sneaky))
    with pytest.raises(ModelError, match="not a model in your models folder"):
        remove_model("../v/song")
    with pytest.raises(ModelError, match="not a model name"):
        remove_model("-rf")
    assert len(list(victim.iterdir())) == 4
    (models / "link.safetensors").symlink_to(victim / "song.safetensors")
    remove_model("link")  # the link goes, never its target
    assert (victim / "song.safetensors").exists()
    with pytest.raises(ModelError, match="no such model"):
        remove_model("nothing")


def stems(n: int = 4410) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {s: (rng.standard_normal((2, n)) * 0.1).astype(np.float32) for s in STEMS}


def test_separate_outputs_stay_under_out(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    mine = tmp_path / "drums.flac"
    mine.write_bytes(b"the user's own file")
    for name in ("...wav", "..wav", "..", ".wav"):
        folder = track_folder(Path("/music") / name, out)
        assert folder.resolve().parent == out.resolve(), name
    folder = write_stems(stems(), 44100, track_folder(Path("/music/...wav"), out), out_dir=out)
    assert mine.read_bytes() == b"the user's own file"
    with pytest.raises(OutputError, match="outside"):
        write_stems(stems(), 44100, out / ".." / "elsewhere", out_dir=out)
    assert all(p.parent.parent == out for p in folder.values())


def test_separate_never_overwrites_without_overwrite(tmp_path: Path) -> None:
    folder = tmp_path / "out" / "song"
    first = write_stems(stems(), 44100, folder, overwrite=False)
    before = {s: p.read_bytes() for s, p in first.items()}
    with pytest.raises(OutputError, match="exists"):
        write_stems(stems(8820), 44100, folder, overwrite=False)
    assert {s: p.read_bytes() for s, p in first.items()} == before
    again = write_stems(stems(8820), 44100, folder, overwrite=True)
    assert sf.info(again["drums"]).frames == 8820
    assert not list(folder.glob("*.part")) and not list(folder.glob(".*"))


def test_fifo_or_device_given_directly_is_one_clear_reason(tmp_path: Path) -> None:
    """#18: a FIFO or device named on the command line said "Not a directory"."""
    from mgctag.library.db import Library
    from mgctag.library.scan import scan

    fifo = tmp_path / "pipe.mp3"
    os.mkfifo(fifo)
    with Library(tmp_path / "lib.db") as lib:
        report = scan(lib, [fifo, Path("/dev/null")])
    reasons = dict(report.failures)
    expected = "not a regular file or folder (a FIFO, device or socket)"
    assert reasons == {str(fifo): expected, "/dev/null": expected}
