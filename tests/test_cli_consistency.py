"""The command line behaves the same everywhere (issue #25, "The CLI, consistent"): what help
shows, what an unknown model says, one version number, dry runs in `runs`, piped tables, the
beets plugin's flags."""

from __future__ import annotations

import json
import re
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from conftest import cli

import mgctag
from mgctag.models import catalog
from mgctag.options import DEFAULT_TAGGER


def test_help_shows_brackets_as_written_and_reflows_docstrings(monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    assert 'pip install "mgctag[ray]"' in cli("tag", "--help").stdout
    # the docstring breaks this sentence after "hold-out;": help joins it again
    assert (
        "measured on a grouped hold-out; --init STUDENT starts it" in cli("train", "--help").stdout
    )


def test_an_unknown_model_lists_the_names_model_takes(tmp_path: Path) -> None:
    result = cli("tag", tmp_path, "--db", tmp_path / "lib.db", "--model", "nosuch", "--dry-run")
    assert result.code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert "nosuch: unknown model; --model takes" in line
    named = set(re.split(r"[ ,]+", line.split("--model takes", 1)[1]))
    assert {DEFAULT_TAGGER, "musicnn", "fast"} <= named  # the aliases users type, too
    assert "MSD_musicnn" not in named  # a part of a tagger is no answer to --model


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split("."))


def test_the_version_is_one_number() -> None:
    assert cli("--version").stdout.strip() == f"mgctag {mgctag.__version__}"
    assert version("mgctag") == mgctag.__version__  # the package takes it from mgctag/__init__.py
    said = [v for why in catalog.REMOVED.values() for v in re.findall(r"in (\d+\.\d+)", why)]
    assert said and all(_version_tuple(v) <= _version_tuple(mgctag.__version__)[:2] for v in said)
    result = cli("tag", ".", "--model", "musicnn+crnn")
    assert result.code == 2 and "removed in" in result.stderr


def test_dry_runs_are_marked_in_runs(tmp_path: Path) -> None:
    music, db = tmp_path / "Music", tmp_path / "lib.db"
    music.mkdir()
    for dry in (("--dry-run",), ()):
        result = cli("tag", music, "--db", db, "--model", "musicnn", *dry)
        assert result.code == 0, result.output
    rows = [ln for ln in cli("runs", "--db", db).stdout.splitlines() if " tag " in ln]
    assert len(rows) == 2, rows
    real, dry_run = rows  # newest first
    assert "dry run" in dry_run and "dry run" not in real


def test_piped_tables_keep_each_row_on_one_line() -> None:
    arch = catalog.describe(DEFAULT_TAGGER)["arch"]
    assert len(arch) > 80  # wider than the 80 columns a pipe used to get
    listing = cli("models", "list").stdout
    assert any(arch in line for line in listing.splitlines()), listing


def test_the_beets_plugins_write_flags_have_help() -> None:
    pytest.importorskip("beets")
    from beetsplug.mgctag import MgctagPlugin

    for command in MgctagPlugin().commands():
        for option in command.parser.option_list:
            if option.dest == "write":
                assert option.help, f"{command.name} {option.get_opt_string()}"


def _leaf_commands() -> list[tuple[str, Any]]:
    import importlib

    import typer

    app = importlib.import_module("mgctag.cli.app").app
    leaves: list[tuple[str, Any]] = []

    def walk(command: Any, name: str) -> None:
        for sub, child in getattr(command, "commands", {}).items():
            walk(child, f"{name} {sub}".strip())
        if not hasattr(command, "commands"):
            leaves.append((name, command))

    walk(typer.main.get_command(app), "")
    return leaves


def test_every_command_takes_db_after_it_and_lists_it(tmp_path: Path) -> None:
    leaves = _leaf_commands()
    assert len(leaves) > 15
    lacking = [name for name, cmd in leaves if not any("--db" in p.opts for p in cmd.params)]
    assert lacking == []
    db = tmp_path / "other.db"
    shown = json.loads(cli("config", "--db", db, "--json").stdout)
    assert shown["files"]["database"]["path"] == str(db)  # config shows the one given after it
    assert cli("models", "list", "--db", db).code == 0


@pytest.mark.parametrize("command", ["tag", "scan", "explain", "segments", "separate"])
def test_a_missing_file_is_the_same_line_and_exit_2_everywhere(
    command: str, tmp_path: Path
) -> None:
    missing = tmp_path / "nope.mp3"
    result = cli(command, missing, "--db", tmp_path / "lib.db")
    assert result.code == 2, result.output
    assert result.stderr.strip().splitlines() == [f"error: {missing}: no such file or folder"]


def test_separate_prints_one_json_document(tmp_path: Path) -> None:
    from media import encode, real_clip

    y, sr = real_clip(seconds=4.0)
    src = encode(y, sr, tmp_path / "clip.flac")
    args = ("--separator", "hpss", "--out", tmp_path / "stems", "--json")
    result = cli("separate", src, *args)
    assert result.code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["separator"] == "hpss" and doc["failures"] == [] and not doc["interrupted"]
    (item,) = doc["separated"]
    assert item["source"] == str(src) and item["duration"] == pytest.approx(4.0, abs=0.1)
    assert set(item["stems"]) == {"drums", "bass", "other", "vocals"}
    assert all(Path(p).is_file() for p in item["stems"].values())


@pytest.mark.parametrize(
    ("line", "want"),
    [
        ("mgctag tag --mode ", ["fill", "merge", "replace"]),
        ("mgctag tag --content ", ["music", "all"]),
        ("mgctag tag --stems o", ["on", "off"]),
        ("mgctag tag --model mu", [DEFAULT_TAGGER, "musicnn"]),
    ],
)
def test_the_shell_completes_option_values(line: str, want: list[str]) -> None:
    import os
    import subprocess
    import sys

    script = Path(sys.executable).parent / "mgctag"
    if not script.is_file():
        pytest.skip(f"no console script at {script} (mgctag not installed in this Python)")
    env = {**os.environ, "_MGCTAG_COMPLETE": "complete_bash", "_TYPER_COMPLETE_ARGS": line}
    env.update(COMP_WORDS=line, COMP_CWORD=str(len(line.split()) - (0 if line[-1] == " " else 1)))
    done = subprocess.run([script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == want


def test_completing_a_model_name_does_not_import_torch() -> None:
    """A shell's tab on `--model` listed the taggers after importing torch (2.1 s CPU): model
    cards are read by `models.cards`, which needs no torch; now 0.24 s."""
    import os
    import subprocess
    import sys

    line = "mgctag tag --model mu"
    code = (
        "import sys\nsys.argv = ['mgctag']\nfrom mgctag.cli import run\ntry:\n    run()\n"
        "except SystemExit:\n    pass\nprint(sorted(m for m in ('torch',) if m in sys.modules))"
    )
    env = {**os.environ, "_MGCTAG_COMPLETE": "complete_bash", "_TYPER_COMPLETE_ARGS": line}
    env.update(COMP_WORDS=line, COMP_CWORD="3")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    *names, imported = done.stdout.split("\n")[:-1]
    assert DEFAULT_TAGGER in names and imported == "[]", done.stdout


def test_models_list_does_not_import_torch(tmp_path: Path) -> None:
    """`models list` shows HTDemucs's state, whose module converts weights with torch: only
    the conversion imports it (1.8 s CPU before, 0.43 s now)."""
    import os
    import subprocess
    import sys

    code = (
        "import sys\nsys.argv = ['mgctag', 'models', 'list']\nfrom mgctag.cli import run\n"
        "try:\n    run()\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules)"
    )
    env = {**os.environ, "MGCTAG_DB": str(tmp_path / "lib.db")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "htdemucs" in done.stdout and done.stdout.split()[-1] == "False", done.stdout


@pytest.mark.parametrize("args", [["--help"], ["tag", "--help"], ["train", "--help"]])
def test_help_starts_without_numpy_pyav_or_torch(args: list[str], tmp_path: Path) -> None:
    """`mgctag --help` and `mgctag tag --help` must start in under 0.5 s (issue #25; timed by
    scripts/bench_startup.py, docs/benchmarks.md): through the console script's own argv, as a
    user runs it, help imports neither torch nor the decoder's numpy and PyAV (`tag --help` used
    to install the decoder-noise filter, which imports both)."""
    import os
    import subprocess
    import sys

    code = (
        "import sys\nfrom mgctag.cli import run\ntry:\n    run()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('numpy', 'av', 'torch') if m in sys.modules))"
    )
    env = {**os.environ, "MGCTAG_DB": str(tmp_path / "lib.db")}
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout[-300:]
