"""The mn04 AudioSet port against the original EfficientAT outputs (fixture): from the original's
mel, and from 32 kHz audio through mgctag's own front-end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from media import FIXTURES, need

from mgctag.audio.features import FeatureError, efficientat_mel, kaldi_mel_banks
from mgctag.models.registry import load_model

FIXTURE = FIXTURES / "efficientat" / "reference.npz"  # optional: the clips include CC BY-NC audio


@pytest.fixture(scope="module")
def ref():
    return np.load(need(FIXTURE))


@pytest.fixture(scope="module")
def mn04():
    return load_model("audioset_mn04")


def clips(ref) -> list[str]:
    return sorted({k.split("__")[0] for k in ref.files})


def test_card_describes_the_model(mn04):
    model, card = mn04
    assert len(card.labels) == 527 and card.labels[0] == "Speech" and card.labels[137] == "Music"
    assert card.preprocessing["sample_rate"] == 32000
    assert card.published["mAP"] == 0.432
    assert (
        "MIT" in card.licence["weights"] and "Permission is hereby granted" in card.licence["text"]
    )
    assert len(card.source["original_sha256"]) == 64
    assert sum(p.numel() for p in model.parameters()) == 983_599


def test_logits_from_the_reference_mel(ref, mn04):
    model, _ = mn04
    assert len(clips(ref)) == 7
    for clip in clips(ref):
        with torch.inference_mode():
            logits, emb = model(torch.from_numpy(ref[f"{clip}__mel"]))
        assert np.abs(logits[0].numpy() - ref[f"{clip}__logits"]).max() <= 1e-4, clip
        assert np.abs(emb[0].numpy() - ref[f"{clip}__embedding"]).max() <= 1e-4, clip


def test_probabilities_from_the_waveform(ref, mn04):
    model, _ = mn04
    for clip in clips(ref):
        mel = efficientat_mel(ref[f"{clip}__y32k"])
        assert mel.shape == ref[f"{clip}__mel"].shape[1:]
        assert np.abs(mel - ref[f"{clip}__mel"][0]).max() <= 1e-3, clip
        with torch.inference_mode():
            probs = torch.sigmoid(model(torch.from_numpy(mel)[None])[0][0]).numpy()
        expected = 1 / (1 + np.exp(-ref[f"{clip}__logits"].astype(np.float64)))
        assert np.abs(probs - expected).max() <= 1e-3, clip


def test_speech_clip_is_heard_as_speech(ref, mn04):
    model, card = mn04
    mel = efficientat_mel(ref["speech__y32k"])
    with torch.inference_mode():
        probs = torch.sigmoid(model(torch.from_numpy(mel)[None])[0][0]).numpy()
    assert card.labels[int(np.argmax(probs))] == "Speech"
    assert probs[card.labels.index("Speech")] > 0.8


def test_kaldi_banks_are_triangles_below_15k():
    banks = kaldi_mel_banks()
    assert banks.shape == (128, 513)
    assert (banks >= 0).all() and banks.max() <= 1.0
    assert not banks[:, -1].any()  # Nyquist bin padded with zero
    top_bin = int(np.nonzero(banks.any(axis=0))[0].max())
    assert top_bin * 32000 / 1024 <= 15000


def test_too_short_audio_is_a_feature_error():
    with pytest.raises(FeatureError, match="too short"):
        efficientat_mel(np.zeros(100, np.float32))
