"""config.toml and `mgctag config`: every `tag` option settable under [tag], the command line
wins, a typo or a wrong value is a one-line error naming it, and `mgctag config` says where each
setting came from (issue 17). Also the ID3v2.3 separator those settings reach."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import cli
from media import make_library
from mutagen.id3 import ID3

from mgctag import tags
from mgctag.library.db import Library
from mgctag.options import TAG_DEFAULTS

SETTINGS = """[tag]
mode = "merge"
max_genres = 3
min_confidence = 0.25
content = "all"
id3v23 = true
id3v23_separator = "/"
keep_mtime = true
follow_symlinks = true
stems = "off"
separator = "hpss"
device = "cpu"
model = "musicnn"
genre_depth = "both"
learn_from_library = true
genre_tree = "TREE"
genre_whitelist = "WHITELIST"
"""


def _settings(home: Path) -> str:
    """SETTINGS with real files for the genre tree and whitelist (a lastgenre YAML, a list)."""
    (home / "tree.yaml").write_text("- rock:\n    - heavy metal\n- jazz\n", "utf-8")
    (home / "genres.txt").write_text("rock\njazz\n", "utf-8")
    tree, whitelist = str(home / "tree.yaml"), str(home / "genres.txt")
    return SETTINGS.replace("TREE", tree).replace("WHITELIST", whitelist)


def _write_config(home: Path, text: str) -> Path:
    path = home / "config" / "mgctag" / "config.toml"
    path.write_text(text, "utf-8")
    return path


def _run_args(home: Path, *options: str) -> dict:
    """`mgctag tag` on an empty folder; the options the run recorded (what it would use)."""
    (home / "empty").mkdir(exist_ok=True)
    result = cli("tag", home / "empty", "--db", home / "lib.db", "--dry-run", *options)
    assert result.code == 0, result.output
    with Library(home / "lib.db") as lib:
        args = lib.list_runs(1)[0]["args"]
    return json.loads(args) if isinstance(args, str) else args


def test_every_tag_option_can_be_set_under_tag(home: Path) -> None:
    assert set(TAG_DEFAULTS) == {line.split(" =")[0] for line in SETTINGS.splitlines()[1:]}
    _write_config(home, _settings(home))
    args = _run_args(home)
    assert args["mode"] == "merge" and args["max_genres"] == 3 and args["min_confidence"] == 0.25
    assert args["genre_depth"] == "both" and args["learn_from_library"] is True
    assert args["genre_tree"] == str(home / "tree.yaml")
    assert args["genre_whitelist"] == str(home / "genres.txt")
    assert args["content"] == "all" and args["id3v23"] is True and args["keep_mtime"] is True
    assert args["id3v23_separator"] == "/" and args["stems"] == "off" and args["model"] == "musicnn"
    assert args["separator"] == "hpss" and args["device"] == "cpu" and args["follow_symlinks"]


def test_the_command_line_wins_over_config_toml(home: Path) -> None:
    _write_config(home, _settings(home))
    args = _run_args(home, "--mode", "fill", "--max-genres", "1", "--id3v23-separator", "; ")
    assert (args["mode"], args["max_genres"], args["id3v23_separator"]) == ("fill", 1, "; ")
    assert args["content"] == "all"  # not given: still from config.toml


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[tag]\nmod = "merge"\n', "unknown setting `mod` in [tag]"),
        ("[tagging]\nmode = 1\n", "unknown section [tagging]"),
        ('[tag]\nmode = "mix"\n', "[tag] mode = 'mix': use 'fill' or 'merge' or 'replace'"),
        ('[tag]\nmax_genres = "3"\n', "[tag] max_genres = '3': use int"),
        ("[tag]\nid3v23 = 1\n", "[tag] id3v23 = 1: use bool"),
    ],
)
def test_a_wrong_setting_is_one_line_naming_it(home: Path, text: str, message: str) -> None:
    path = _write_config(home, text)
    result = cli("tag", home, "--db", home / "lib.db", "--dry-run")
    assert result.code == 2 and "Traceback" not in result.output
    assert result.stderr.count("\n") == 1 and f"{path}: {message}" in result.stderr, result.stderr


def test_config_command_prints_each_setting_and_where_it_came_from(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write_config(home, '[tag]\nmode = "replace"\n')
    monkeypatch.setenv("MGCTAG_STEMS", "on")
    result = cli("--db", home / "x.db", "config", "--json")
    assert result.code == 0, result.output
    report = json.loads(result.stdout)
    assert report["tag"]["mode"] == {"value": "replace", "from": f"{path} [tag]"}
    assert report["tag"]["stems"] == {"value": "on", "from": "environment (MGCTAG_STEMS)"}
    assert report["tag"]["max_genres"] == {"value": None, "from": "default"}
    assert report["files"]["database"] == {"path": str(home / "x.db"), "from": "--db"}
    assert set(report["tag"]) == set(TAG_DEFAULTS)
    table = cli("config").stdout
    assert "replace" in table and "config.toml" in table and "id3v23_separator" in table


@pytest.mark.parametrize(("separator", "stored"), [("; ", "Rock; Jazz"), ("/", "Rock/Jazz")])
def test_id3v23_separator_joins_genres_and_reads_back(
    tmp_path: Path, separator: str, stored: str
) -> None:
    """beets and Picard users pick "/" or "; " for the one TCON string of ID3v2.3."""
    (mp3,) = make_library(tmp_path, ("mp3",), seconds=2.0)
    ID3(mp3).delete()  # the encoder's own ID3v2.4 tag would stay v2.4
    tags.write_genres(mp3, ["Rock", "Jazz"], id3v23=True, id3v23_separator=separator)
    tag = ID3(mp3)
    assert tag.version == (2, 3, 0) and tag["TCON"].text == [stored]
    assert tags.read_tags(mp3).genres == ["Rock", "Jazz"]


def test_id3v23_separator_is_checked_when_parsed(tmp_path: Path) -> None:
    result = cli("tag", tmp_path, "--db", tmp_path / "lib.db", "--id3v23-separator", ",")
    assert result.code == 2 and "--id3v23-separator" in result.stderr
