"""The command line's contract: one-line errors with the right exit status, runs recorded honestly,
safe printing of untrusted names, stop signals, fast start-up, and options never silently ignored.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import cli
from media import make_library

from mgctag.cli.output import shown, visible
from mgctag.errors import ConfigError
from mgctag.library.db import Library
from mgctag.search.export import dumps_json

CLI = [sys.executable, "-c", "import sys; from mgctag.cli import run; run(sys.argv[1:])"]
HOSTILE = "evil [/x] [link=http://e.x]y[/link] \x1b]0;pwned\x07 \x9b2J\nerror: forged"
# the same, as a folder "evil [" holding a file: a path printed with `[/x]` inside
HOSTILE_PATH = "evil [/x] [link=e.x]y \x1b]0;pwned\x07 \x9b2J\nerror: forged.mp3"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Private config and data folders (XDG on Linux, as platformdirs reads them)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("MGCTAG_DB", raising=False)
    return tmp_path


def last_run(db: Path) -> dict:
    return Library(db).list_runs(1)[0]


# --- printing untrusted text -----------------------------------------------------------------


def test_shown_escapes_markup_and_makes_controls_visible():
    assert visible("a\nb\x1b[31m\x9b\x00") == "a\\nb\\e[31m\\x9b\\x00"
    assert shown("Song [live] [/x].mp3") == "Song \\[live] \\[/x].mp3"
    assert shown(b"\xff".decode("utf-8", "surrogateescape")) == "\\udcff"


def test_hostile_file_name_is_printed_as_one_safe_line(home, tmp_path):
    music = tmp_path / "music"
    (music / "evil [").mkdir(parents=True)
    (music / HOSTILE_PATH).write_bytes(b"not audio at all" * 64)
    result = cli("scan", music, "--db", tmp_path / "lib.db")
    assert result.code == 1
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, result.stderr  # the newline in the name forged no second line
    line = errors[0]
    assert "\x1b" not in result.output and "\x9b" not in result.output and "\x07" not in line
    assert "[/x] [link=e.x]y" in line and "\\e]0;pwned\\x07" in line and "\\nerror" in line


def test_json_output_is_valid_and_has_no_raw_controls():
    text = dumps_json({"nan": float("nan"), "inf": float("inf"), "name": HOSTILE, "p": Path("/a")})
    assert "\x9b" not in text and "\x1b" not in text and "NaN" not in text
    assert json.loads(text) == {"nan": None, "inf": None, "name": HOSTILE, "p": "/a"}


# --- errors: one line, exit 2, the run recorded as failed -----------------------------------------


def test_malformed_config_toml_is_one_line_and_the_run_failed(home, tmp_path):
    (home / "config" / "mgctag").mkdir(parents=True)
    (home / "config" / "mgctag" / "config.toml").write_text("[tag\nstems = on\n")
    make_library(tmp_path / "music", exts=("flac",), seconds=4.0)
    db = tmp_path / "lib.db"
    result = cli("tag", tmp_path / "music", "--db", db)
    assert result.code == 2, result.output
    assert result.stderr.count("\n") == 1 and "config.toml: not a readable config file" in (
        result.stderr
    )
    assert "Traceback" not in result.output
    assert Library(db).list_runs() == []  # settings are read before a run starts (like options)


def test_malformed_genre_map_is_a_config_error(home):
    from mgctag.genres import GenreMap

    path = home / "genres.json"
    for text in ("{not json", "[1, 2]", '{"genres": 5}', '{"tags": {"x": "NoSuchGenre"}}'):
        path.write_text(text)
        with pytest.raises(ConfigError, match="genres.json: not a readable genre map"):
            GenreMap.load(path)


@pytest.mark.slow
def test_malformed_genre_map_ends_tag_with_one_line_and_a_failed_run(home, tmp_path):
    (home / "config" / "mgctag").mkdir(parents=True)
    (home / "config" / "mgctag" / "genres.json").write_text('{"genres": [}')
    music, db = tmp_path / "music", tmp_path / "lib.db"
    make_library(music, exts=("flac",), seconds=4.0)
    proc = subprocess.run(
        [*CLI, "tag", str(music), "--db", str(db), "--stems", "off"],
        capture_output=True,
        text=True,
        env={**os.environ, "XDG_CONFIG_HOME": str(home / "config")},
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "genres.json" in proc.stderr
    assert last_run(db)["status"] == "failed"


@pytest.mark.slow
def test_cuda_on_a_cpu_only_machine_is_one_line_and_a_failed_run(home, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    music, db = tmp_path / "music", tmp_path / "lib.db"
    make_library(music, exts=("flac",), seconds=4.0)
    proc = subprocess.run(
        [*CLI, "tag", str(music), "--db", str(db), "--device", "cuda", "--stems", "off"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "cuda" in proc.stderr.lower()
    assert last_run(db)["status"] == "failed"


def test_db_in_a_missing_folder_is_an_error_and_creates_nothing(home, tmp_path):
    result = cli("runs", "--db", tmp_path / "typo" / "lib.db")
    assert result.code == 2 and "no such folder" in result.stderr
    assert not (tmp_path / "typo").exists()


def test_db_before_the_command_and_the_default_db_is_created(home, tmp_path):
    db = tmp_path / "early.db"
    assert cli("--db", db, "runs", "--json").code == 0
    assert db.is_file()
    assert cli("runs").code == 0  # the default database may be created
    assert (home / "data" / "mgctag" / "library.db").is_file()


def test_runs_tolerates_counts_that_are_not_an_object(home, tmp_path):
    db = tmp_path / "lib.db"
    lib = Library(db)
    run = lib.start_run("tag", {})
    lib.finish_run(run, "ok", [1, 2])  # valid JSON, wrong shape
    result = cli("runs", "--db", db)
    assert result.code == 0 and "tag" in result.stdout


def test_invalid_json_in_a_database_column_does_not_crash_runs(home, tmp_path):
    db = tmp_path / "lib.db"
    Library(db).start_run("tag", {})
    with sqlite3.connect(db) as con:
        con.execute("UPDATE runs SET counts = '{broken', args = 'nope'")
    result = cli("runs", "--db", db)
    assert result.code == 0 and "tag" in result.stdout


# --- options: never silently ignored ----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "m", "--arch", "cnn1d", "--hidden", "8"], "--hidden: only for a head"),
        (["train", "m", "--epochs", "3"], "--epochs: only with --arch"),
        (["train", "m", "--init", "crnn_small"], "--init: only with --arch"),
        (["eval", "--init", "crnn_small"], "--init: only with --arch"),
        (["eval", "--protocol", "trials", "--folds", "3"], "--folds: only with --protocol kfold"),
        (["eval", "--test-size", "0.3"], "--test-size: only with --protocol trials"),
        (["eval", "--split-files", "x"], "--split-files: only with --protocol split-files"),
        (
            ["eval", "--arch", "cnn1d", "--protocol", "split-files", "--split-files", "x"],
            "not with --arch",
        ),
        (["eval", "--device", "cpu"], "--device: only when SOURCE is a folder"),
        (["tag", ".", "--stems", "off", "--separator", "hpss"], "--separator: not with --stems"),
        (["tag", ".", "--device", "gpu"], "--device"),
        (["tag", ".", "--separator", "nope"], "--separator"),
    ],
)
def test_options_a_mode_ignores_are_refused(home, tmp_path, args, message):
    result = cli(*args, "--db", tmp_path / "lib.db")
    assert result.code == 2, result.output
    assert message in result.output


@pytest.mark.parametrize("command", [["train", "m"], ["eval"]])
def test_init_from_a_student_of_another_architecture_is_one_line(home, tmp_path, command):
    """--init keeps the student's weights, so --arch must name the student's own architecture;
    the refusal comes before any labels are read or audio analysed."""
    args = [*command, "--arch", "swishnet", "--init", "crnn_small", "--db", tmp_path / "lib.db"]
    result = cli(*args)
    assert result.code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert "--init crnn_small: a crnn network, not --arch swishnet" in line
    assert result.stdout == ""


def test_from_tags_is_gone(home, tmp_path):
    assert cli("train", "m", "--from-tags", "--db", tmp_path / "lib.db").code == 2


# --- start-up, help, version, completion, verbosity -------------------------------------------


@pytest.mark.parametrize("args", [["--help"], ["runs", "--json"], ["tag", "--help"]])
def test_help_and_runs_do_not_import_torch(home, tmp_path, args):
    code = (
        "import sys\nfrom mgctag.cli import run\ntry:\n    run(sys.argv[1:])\n"
        "except SystemExit:\n    pass\nprint('TORCH' if 'torch' in sys.modules else 'NO-TORCH')"
    )
    env = {**os.environ, "MGCTAG_DB": str(tmp_path / "lib.db")}
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env
    )
    assert proc.stdout.strip().endswith("NO-TORCH"), proc.stdout + proc.stderr


def test_help_is_clean_and_every_option_has_a_help_line():
    from typer.main import get_command

    from mgctag.cli import app

    def commands(group, prefix=()):
        for name, cmd in group.commands.items():
            if hasattr(cmd, "commands"):
                yield from commands(cmd, (*prefix, name))
            else:
                yield (*prefix, name), cmd

    root = get_command(app)
    for path, cmd in commands(root):
        for param in cmd.params:
            if param.param_type_name == "option":
                assert param.help, f"mgctag {' '.join(path)} {param.opts[0]} has no help"
        result = cli(*path, "--help")
        assert result.code == 0
        assert "<bool>" not in result.stdout and "{" not in result.stdout, result.stdout


def test_version_and_completion():
    from mgctag import __version__

    assert cli("--version").stdout.strip() == f"mgctag {__version__}"
    assert "--install-completion" in cli("--help").stdout


def test_verbose_shows_library_warnings_as_log_lines_and_quiet_does_not(home, tmp_path):
    import warnings

    from mgctag.cli import output

    for level, shown_ in ((1, True), (0, False), (-1, False)):
        output.set_verbosity(level)
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            from click.testing import CliRunner

            with CliRunner().isolation() as (_, err, _):
                warnings.warn("n_fft=2048 is too large for input signal", UserWarning, stacklevel=1)
                text = err.getvalue().decode()
        assert ("n_fft=2048" in text) is shown_, (level, text)
    output.set_verbosity(0)


def test_runs_shows_status_and_counts(home, tmp_path):
    db = tmp_path / "lib.db"
    lib = Library(db)
    for status, counts in (
        ("ok", {"tagged": 3, "failed": 0}),
        ("partial", {"tagged": 36, "failed": 2}),
        ("failed", {"tagged": 0, "failed": 5}),
        ("interrupted", {"tagged": 1, "failed": 0}),
    ):
        lib.finish_run(lib.start_run("tag", {}), status, counts)
    rows = json.loads(cli("runs", "--db", db, "--json").stdout)
    assert [r["status"] for r in rows] == ["interrupted", "failed", "partial", "ok"]
    table = cli("runs", "--db", db).stdout
    assert "partial" in table and "36" in table


# --- stop signals -----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_stop_like_ctrl_c(home, tmp_path, sig, code):
    music, db = tmp_path / "music", tmp_path / "lib.db"
    make_library(music, exts=("mp3", "flac", "ogg", "wav", "aiff", "m4a"))
    proc = subprocess.Popen(
        [*CLI, "tag", str(music), "--db", str(db), "--stems", "off", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists() and Library(db).list_runs(1):  # the run started: the handlers are in place
            break
        time.sleep(0.05)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == code, err
    summary = json.loads(out)
    assert summary["interrupted"] is True
    assert last_run(db)["status"] == "interrupted"
    assert not list(music.glob("*.tmp")) and not list(music.glob(".*"))  # no temp copy left


def test_run_status_ok_partial_failed_interrupted():
    from mgctag.options import Summary
    from mgctag.writes.run import run_status

    assert run_status(Summary(scanned=3, tagged=3)) == "ok"
    assert run_status(Summary(scanned=38, tagged=36, failed=2)) == "partial"
    assert run_status(Summary(scanned=2, failed=2)) == "failed"
    assert run_status(Summary(scanned=5, tagged=1, interrupted=True)) == "interrupted"


@pytest.mark.slow
def test_markup_and_escapes_in_a_tag_never_crash_or_drive_the_terminal(home, tmp_path):
    """A genre of `[/x]` plus an escape sequence, through tag (summary), info, runs and undo."""
    from mgctag import tags

    music, db = tmp_path / "music", tmp_path / "lib.db"
    (song,) = make_library(music, exts=("flac",), seconds=4.0)
    hostile = "Rock [/x] [bold]\x1b]2pwned\x07\nerror: forged"  # no ";": tags split there
    tags.write_genres(song, [hostile])
    outputs = [
        cli("tag", music, "--db", db, "--mode", "merge", "--stems", "off"),
        cli("info", song, "--db", db),
        cli("runs", "--db", db),
        cli("undo", "--last", "--db", db),
    ]
    for result in outputs:
        assert result.code == 0, result.output
        assert "\x1b" not in result.output and "\x07" not in result.output
        assert "error: forged" not in result.output.replace("\\nerror: forged", "")
    assert "[/x] [bold]\\e]2pwned\\x07\\nerror: forged" in outputs[1].stdout  # shown literally
    assert tags.read_tags(song).genres == [hostile]  # undo brought the exact value back


@pytest.mark.slow
def test_info_and_similar_on_a_copy_of_the_tagged_library(library_copy):
    music, db = library_copy
    mp3, flac = music / "vibe_ace.mp3", music / "vibe_ace.flac"
    info = cli("info", mp3, "--db", db)
    assert info.code == 0 and "musicnn" in info.stdout and "genre in file:" in info.stdout
    assert "vibe_ace.mp3" in info.stdout.splitlines()[0]  # no tags: the file name, not "? — ?"
    # the flac is the same clip in another format: a copy of the seed, never suggested ...
    copy = cli("similar", mp3, "--db", db, "--json", "-k", "1")
    assert copy.code == 2 and "every other track is a version of the seed" in copy.stderr
    # ... but listed as a likely duplicate
    (group,) = json.loads(cli("dupes", "--db", db, "--json").stdout)
    assert sorted(t["path"] for t in group) == [str(flac), str(mp3)]
    several = cli("info", "vibe_ace", "--db", db)
    assert several.code == 2 and "matches several tracks" in several.stderr
    assert "vibe_ace.flac" in several.stderr and "vibe_ace.mp3" in several.stderr
    polka = cli("similar", mp3, "--db", db, "--genre", "Polka")
    assert polka.code == 2 and "no other track has the genre 'Polka'" in polka.stderr
    nowhere = cli("similar", mp3, "--db", db, "--m3u", music / "no" / "list.m3u8")
    assert nowhere.code == 2 and "no such folder for the playlist" in nowhere.stderr
    layout = json.loads(cli("map", "--db", db, "--method", "pca", "--json").stdout)
    assert sorted(p["path"] for p in layout["points"]) == [str(flac), str(mp3)]
    assert layout["files"] == [] and all(isinstance(p["x"], float) for p in layout["points"])


@pytest.mark.slow
def test_separate_takes_folders(home, tmp_path):
    music = tmp_path / "music"
    flac, mp3 = make_library(music / "sub", exts=("flac", "mp3"), seconds=3.0)
    mp3.rename(music / "other.mp3")
    (music / "notes.txt").write_text("not audio")
    result = cli("separate", music, "--separator", "hpss", "--out", tmp_path / "stems")
    assert result.code == 0, result.output
    written = sorted(p.relative_to(tmp_path / "stems") for p in (tmp_path / "stems").rglob("*.*"))
    assert len(written) == 8 and {p.suffix for p in written} == {".flac"}, written


def test_models_show_is_a_table_or_json_and_built_ins_cannot_be_removed(home):
    table = cli("models", "show", "crnn_small")
    assert table.code == 0 and "preprocessing.sample_rate" in table.stdout
    card = json.loads(cli("models", "show", "crnn_small", "--json").stdout)
    n = len(card["labels"])
    assert card["name"] == "crnn_small" and n > 12
    assert f"({n} in" in table.stdout  # a long label list is summarised ("(54 in all)")
    removed = cli("models", "remove", "musicnn")
    assert removed.code == 2 and "built into mgctag" in removed.stderr


def test_eval_arch_on_labels_of_files_not_in_the_library_is_one_line(home, tmp_path):
    files = make_library(tmp_path / "music", exts=("flac", "ogg"), seconds=3.0)
    labels = tmp_path / "labels.csv"
    labels.write_text("".join(f"{p},{g}\n" for p, g in zip(files, ("Rock", "Jazz"), strict=True)))
    (tmp_path / "db").mkdir()
    args = ("eval", labels, "--arch", "cnn1d", "--min-count", "1", "--folds", "2")
    result = cli(*args, "--db", tmp_path / "db" / "lib.db")
    assert result.code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert "not in the library" in line and "mgctag scan" in line
