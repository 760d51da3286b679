"""A broken user model card is one line, never a traceback, and never hides the other models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import cli
from safetensors.torch import save_file

GOOD = {"name": "x", "arch": "cnn1d", "labels": ["Rock", "Jazz"]}
BROKEN: dict[str, tuple[bytes, str]] = {
    "nested": (b'{"labels": ["a"], "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested"),
    "latin": (b'{"name": "latin", "arch": "cnn1d", "labels": ["Rock\xe9"]}', "not UTF-8"),
    "labels5": (json.dumps({**GOOD, "name": "labels5", "labels": 5}).encode(), "labels must"),
    "prep": (json.dumps({**GOOD, "name": "prep", "preprocessing": []}).encode(), "must be an"),
    "huge": (
        json.dumps(
            {**GOOD, "name": "huge", "arch_args": {"n_classes": 2, "n_mels": 10**9}}
        ).encode(),
        "parameters",
    ),
}


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    folder = tmp_path / "data" / "mgctag" / "models"
    folder.mkdir(parents=True)
    for name, (card, _) in BROKEN.items():
        save_file({"w": torch.zeros(1)}, str(folder / f"{name}.safetensors"))
        (folder / f"{name}.json").write_bytes(card)
    return folder


def test_models_list_skips_each_broken_card_with_one_line(models: Path) -> None:
    result = cli("models", "list")
    assert result.code == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("warning")]
    for name, (_, reason) in BROKEN.items():
        if name == "huge":  # a well-formed card: listed; only building it is refused (below)
            continue
        (line,) = [line for line in lines if f"{name}.json" in line]
        assert reason in line
    assert "musicnn" in result.stdout  # the good models are all still listed
    assert "Traceback" not in result.output


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_tagging_with_a_broken_card_is_one_usage_error(models: Path, name: str) -> None:
    result = cli("tag", models, "--model", name, "--db", models / "lib.db", "--dry-run")
    assert result.code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error:") and "Traceback" not in result.output
