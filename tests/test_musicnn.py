"""The PyTorch musicnn / VGG ports against the original TensorFlow outputs (fixture), and on real
music through the whole feature path."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

from mgctag.audio.features import log_mel, patches
from mgctag.models.musicnn import Musicnn, Vgg
from mgctag.models.registry import load_model
from tests.media import MUSICNN_CLIPS, musicnn_reference, real_clip

CLIPS = list(MUSICNN_CLIPS)
MODELS = ["MSD_musicnn", "MTT_musicnn", "MSD_vgg", "MTT_vgg"]


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    return musicnn_reference()


def run(model: torch.nn.Module, logmel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with torch.inference_mode():
        logits, emb = model(torch.from_numpy(patches(logmel)))
    return torch.sigmoid(logits).numpy(), emb.numpy()


@pytest.mark.parametrize("name", MODELS)
def test_parity_from_reference_log_mels(ref, name):
    model, card = load_model(name)
    assert len(card.labels) == 50
    for clip in CLIPS:
        probs, emb = run(model, ref[f"{clip}__logmel"])
        assert np.abs(probs - ref[f"{clip}__{name}__taggram"]).max() <= 1e-4
        if name.endswith("musicnn"):
            assert emb.shape == (4, 200)
            assert np.abs(emb - ref[f"{clip}__{name}__penultimate"]).max() <= 1e-4
        else:
            assert emb.shape == (4, 256)


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_parity_from_waveforms_through_our_log_mel(ref, name):
    model, _ = load_model(name)
    for clip in CLIPS:
        probs, emb = run(model, log_mel(ref[f"{clip}__y16k"]))
        assert np.abs(probs - ref[f"{clip}__{name}__taggram"]).max() <= 1e-3
        if name.endswith("musicnn"):
            assert np.abs(emb - ref[f"{clip}__{name}__penultimate"]).max() <= 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("name", ["MTT_musicnn", "MSD_vgg"])
def test_fused_inference_equals_literal_op_order(ref, name):
    """The pool-first / taps fast path must equal TF's literal conv->relu->bn->pool order."""
    model, _ = load_model(name, cache=False)
    x = torch.from_numpy(patches(ref["lets_go_fishin__logmel"]))
    with torch.inference_mode():
        fast = model(x)
        for module in model.modules():
            if hasattr(module, "fused"):
                module.fused = False
        literal = model(x)
    for a, b in zip(fast, literal, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_musicnn_accepts_other_patch_lengths(ref):
    model, _ = load_model("MSD_musicnn")
    x = torch.from_numpy(ref["vibe_ace__logmel"][None, :300].copy())
    with torch.inference_mode():
        logits, emb = model(x)
    assert logits.shape == (1, 50) and emb.shape == (1, 200)


@pytest.mark.parametrize("cls, frames, dim", [(Musicnn, 64, 200), (Vgg, 187, 256)])
def test_training_mode_runs_and_backpropagates(cls, frames, dim):
    torch.manual_seed(0)
    model = cls(n_tags=7).train()
    x = torch.randn(2, frames, 96)
    logits, emb = model(x)
    assert logits.shape == (2, 7) and emb.shape == (2, dim)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def tags_of(name: str, clip: str, top: int) -> list[str]:
    """Top tags of a real recording: stereo 44.1 kHz file -> 16 kHz mono -> log-mel -> model."""
    y, sr = real_clip(clip, seconds=12.0)
    mono = librosa.resample(y.mean(axis=0), orig_sr=sr, target_sr=16000)
    model, card = load_model(name)
    probs, _ = run(model, log_mel(mono))
    order = np.argsort(probs.mean(axis=0))[::-1][:top]
    return [card.labels[i] for i in order]


def test_string_orchestra_is_classical_strings_in_mtt():
    top = tags_of(
        "MTT_musicnn", "Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra)", 3
    )
    assert {"classical", "strings"} & set(top), top


def test_drum_loop_is_drums_or_beat_in_mtt():
    top = tags_of("MTT_musicnn", "music/electronic/northern_lights_1", 5)
    assert {"drums", "beat", "beats", "techno"} & set(top), top


@pytest.mark.slow
def test_pair_side_by_side_equals_one_after_the_other(ref):
    """With two or more torch threads the pair runs each network in its own worker thread with
    half of them (issue 29); the rows are the ones a single thread gets running them in turn, in
    float32 and under bf16 autocast (thread-local, so each worker enters it), and the caller's
    own thread count is left alone."""
    import torch

    from mgctag.models import tagger as tagger_module

    x = patches(ref["lets_go_fishin__logmel"])
    pair = tagger_module.EnsembleTagger()
    before = torch.get_num_threads()
    try:
        for bf16 in (False, True):
            pair.bf16 = bf16
            torch.set_num_threads(1)
            in_turn = pair(x)
            assert bf16 or pair._workers is None  # one thread: nothing side by side
            torch.set_num_threads(2)
            side = pair(x)
            assert pair._workers is not None and torch.get_num_threads() == 2
            for name, (probs, emb) in in_turn.items():
                np.testing.assert_allclose(side[name][0], probs, atol=1e-5)
                np.testing.assert_allclose(side[name][1], emb, atol=1e-5)
        pair.bf16 = False
        float32 = pair(x)
        moved = max(np.abs(float32[n][0] - side[n][0]).max() for n in side)
        assert moved > 1e-5  # the workers did run under autocast
    finally:
        torch.set_num_threads(before)


def test_pair_in_chunks_equals_one_pass(ref, monkeypatch):
    """On a CPU the pair runs CHUNK_PATCHES patches at a time (page faults, cache), in one
    torch thread or several; the rows are the same as one pass over all of them."""
    from mgctag.models import tagger as tagger_module

    x = patches(ref["lets_go_fishin__logmel"])
    x = np.concatenate([x, x[::-1], x] * 5)[:29]
    pair = tagger_module.EnsembleTagger()
    assert len(x) > 2 * tagger_module.CHUNK_PATCHES  # three chunks, the last one short
    chunked = pair(x)
    monkeypatch.setattr(tagger_module, "CHUNK_PATCHES", len(x))
    whole = pair(x)
    for name, (probs, emb) in whole.items():
        assert chunked[name][0].shape == probs.shape and chunked[name][1].shape == emb.shape
        np.testing.assert_allclose(chunked[name][0], probs, atol=1e-5)
        np.testing.assert_allclose(chunked[name][1], emb, atol=1e-5)
