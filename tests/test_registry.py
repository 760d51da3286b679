"""Model registry: bundled cards, loading by name or path, caching, user models, pickle refusal."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mgctag import config
from mgctag.models.cards import ModelCard, ModelError, list_models
from mgctag.models.musicnn import Musicnn, Vgg
from mgctag.models.registry import ARCHITECTURES, load_model, save_model

BUNDLED = {"MSD_musicnn": "musicnn", "MTT_musicnn": "musicnn", "MSD_vgg": "vgg", "MTT_vgg": "vgg"}


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """Point the XDG data dir (and so the user models dir) at a temp folder."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    return config.user_models_dir()


def test_bundled_cards_are_listed_with_provenance():
    cards = {card.name: card for card in list_models()}
    for name, arch in BUNDLED.items():
        card = cards[name]
        assert card.arch == arch and arch in ARCHITECTURES
        assert len(card.labels) == 50 and len(set(card.labels)) == 50
        assert card.licence["spdx"] == "ISC" and "Pompeu Fabra" in card.licence["text"]
        assert card.preprocessing["n_mels"] == 96 and card.preprocessing["patch_frames"] == 187
        assert 0.85 < card.published["roc_auc"] < 0.95
        assert card.parity["max_abs_delta"]["from_logmel_prob"] <= 1e-4
    assert cards["MTT_musicnn"].labels[:3] == ["guitar", "classical", "slow"]
    assert cards["MSD_musicnn"].labels[:3] == ["rock", "pop", "alternative"]


def test_load_by_name_is_cached_and_in_eval_mode():
    model, card = load_model("MTT_musicnn")
    assert isinstance(model, Musicnn) and not model.training and card.name == "MTT_musicnn"
    again, _ = load_model("MTT_musicnn")
    assert again is model
    fresh, _ = load_model("MTT_musicnn", cache=False)
    assert fresh is not model


def test_load_by_path(tmp_path):
    path = config.bundled_weights_dir() / "MTT_vgg.safetensors"
    model, card = load_model(str(path))
    assert isinstance(model, Vgg) and card.name == "MTT_vgg"


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".ckpt", ".pkl"])
def test_pickled_weights_are_refused_unopened(tmp_path, suffix, monkeypatch):
    path = tmp_path / f"model{suffix}"
    torch.save({"w": torch.zeros(2)}, path)
    opened = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: opened.append(a))
    with pytest.raises(ModelError, match="refusing"):
        load_model(str(path))
    assert opened == []


def test_unknown_name_lists_available():
    with pytest.raises(ModelError, match="no_such_model.*MSD_musicnn"):
        load_model("no_such_model")


def test_save_and_load_user_model_round_trip(user_dir):
    base, card = load_model("MTT_musicnn", cache=False)
    with torch.no_grad():
        base.classifier.bias.add_(0.5)  # a "retrained" head
    data = card.to_dict() | {"name": "my_tagger", "trained_on": "my labels"}
    path = save_model(base, ModelCard.from_dict(data), user_dir)
    assert path == user_dir / "my_tagger.safetensors" and path.with_suffix(".json").is_file()
    assert oct(path.stat().st_mode & 0o777) == "0o644"

    loaded, loaded_card = load_model("my_tagger")
    assert loaded_card.extra == {"trained_on": "my labels"}
    assert json.loads(path.with_suffix(".json").read_text())["trained_on"] == "my labels"
    x = torch.from_numpy(np.random.default_rng(0).normal(2, 1, (2, 187, 96)).astype(np.float32))
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x)[0], base.eval()(x)[0])
    assert "my_tagger" in [c.name for c in list_models()]


def test_weights_that_do_not_fit_the_arch_are_a_model_error(user_dir, tmp_path):
    model, card = load_model("MTT_vgg", cache=False)
    path = save_model(model, ModelCard.from_dict(card.to_dict() | {"name": "broken"}), user_dir)
    card_path = path.with_suffix(".json")
    bad = json.loads(card_path.read_text()) | {"arch": "musicnn"}
    card_path.write_text(json.dumps(bad))
    with pytest.raises(ModelError, match="broken.safetensors.*(do not fit|fit musicnn)"):
        load_model("broken")


def test_missing_card_and_bad_names(user_dir):
    model, card = load_model("MTT_vgg", cache=False)
    path = save_model(model, ModelCard.from_dict(card.to_dict() | {"name": "lonely"}), user_dir)
    path.with_suffix(".json").unlink()
    with pytest.raises(ModelError, match="no model card"):
        load_model(str(path))
    with pytest.raises(ModelError, match="model names"):
        save_model(model, ModelCard.from_dict(card.to_dict() | {"name": "../escape"}), user_dir)
    with pytest.raises(ModelError, match="card says musicnn"):
        save_model(model, ModelCard.from_dict(card.to_dict() | {"arch": "musicnn"}), user_dir)


def test_card_without_required_keys_is_refused(tmp_path):
    with pytest.raises(ModelError, match="lacks arch, labels"):
        ModelCard.from_dict({"name": "x"})
