"""One table of `tag` options (issues #25, #26): the command line, config.toml, the environment
and the beets plugin take their choices, defaults and checks from `mgctag.options.TAG_OPTIONS`,
and a wrong value is one line naming where it came from (the flag, the config key, the variable).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import cli

from mgctag import config
from mgctag.library.db import Library
from mgctag.options import TAG, TAG_DEFAULTS, TAG_OPTIONS, TagOptions


def _config(home: Path, text: str) -> Path:
    path = home / "config" / "mgctag" / "config.toml"
    path.write_text(text, "utf-8")
    return path


def _tag(home: Path, *options: str):
    (home / "empty").mkdir(exist_ok=True)
    return cli("tag", home / "empty", "--db", home / "lib.db", "--dry-run", *options)


def _one_error(result) -> str:
    assert result.code == 2 and "Traceback" not in result.output, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_every_default_comes_from_the_table():
    """`TAG_DEFAULTS` had stems="auto" while `TagOptions.stems` was "off": beets and `eval`
    got another default than the command line."""
    plain = TagOptions()
    for option in TAG_OPTIONS:
        assert TAG_DEFAULTS[option.name] == option.default
        assert getattr(plain, option.name) == option.default, option.name
    assert set(config._settings()["tag"]) == set(TAG_DEFAULTS)


def test_the_beets_settings_take_the_tables_defaults():
    pytest.importorskip("beets")
    from beetsplug.mgctag import TABLE_SETTINGS, MgctagPlugin

    plugin = MgctagPlugin()
    for key, name in TABLE_SETTINGS.items():
        assert plugin.config[key].get() == TAG[name].default, key
    opts = plugin.tag_options()  # an empty `mgctag:` section: the command line's defaults
    for name in ("mode", "max_genres", "min_confidence", "content", "device"):
        assert getattr(opts, name) == TAG[name].default, name


def test_beets_and_separate_use_the_same_choices():
    from beetsplug.mgctag import CONTENTS, MODES
    from mgctag.separate import SEPARATORS

    assert TAG["mode"].choices == MODES and TAG["content"].choices == CONTENTS
    assert TAG["separator"].choices == SEPARATORS


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("min_confidence = nan", "[tag] min_confidence = nan: use a number from 0 to 1"),
        ("min_confidence = inf", "[tag] min_confidence = inf: use a number from 0 to 1"),
        ("min_confidence = 5", "[tag] min_confidence = 5: use a number from 0 to 1"),
        ("max_genres = 0", "[tag] max_genres = 0: use a number at least 1"),
        ("max_genres = -1", "[tag] max_genres = -1: use a number at least 1"),
        ("max_genres = -5.0", "[tag] max_genres = -5.0: use int"),
        ('device = "..."', "[tag] device = '...': use auto, cpu, cuda, cuda:N or mps"),
    ],
)
def test_config_values_the_command_line_refuses_are_refused(home, text, message):
    """These were accepted and every file became "no genre confident enough", or produced a
    click box about --device, an option the user never typed."""
    path = _config(home, f"[tag]\n{text}\n")
    line = _one_error(_tag(home))
    assert f"{path}: {message}" in line and "--device" not in line


@pytest.mark.parametrize(
    ("flag", "value"), [("--min-confidence", "5"), ("--max-genres", "0"), ("--device", "gpu")]
)
def test_the_command_line_is_checked_by_the_same_rules(home, flag, value):
    result = _tag(home, flag, value)
    assert result.code == 2 and flag in result.stderr and "Traceback" not in result.output


def test_an_environment_variable_is_named_not_an_option(home, monkeypatch):
    monkeypatch.setenv("MGCTAG_STEMS", "maybe")
    line = _one_error(_tag(home))
    assert "MGCTAG_STEMS = 'maybe': use auto, on or off" in line and "--stems" not in line


def test_model_path_in_config_expands_home(home, monkeypatch):
    monkeypatch.setenv("HOME", str(home))
    _config(home, '[tag]\nmodel = "~/models/mine.safetensors"\n')
    line = _one_error(_tag(home))
    assert f"{home}/models/mine.safetensors: no such model file" in line
    _config(home, '[tag]\nmodel = "$HOME/models/mine.safetensors"\n')
    assert f"{home}/models/mine.safetensors" in _one_error(_tag(home))
    assert config.default_model() == f"{home}/models/mine.safetensors"


def test_good_settings_reach_the_run(home):
    _config(home, "[tag]\nmin_confidence = 1\nmax_genres = 4\n")
    result = _tag(home)
    assert result.code == 0, result.output
    args = Library(home / "lib.db").list_runs(1)[0]["args"]
    args = json.loads(args) if isinstance(args, str) else args
    assert args["min_confidence"] == 1.0 and args["max_genres"] == 4
