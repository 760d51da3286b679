"""The mel-CNN option of the speech / music / noise detector (issue 27): its input, its shapes,
its frame-wise decisions over long recordings and its card round trip."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import torch

from mgctag.audio import decode
from mgctag.models.cards import ModelCard
from mgctag.models.melcnn import MelCnn
from mgctag.models.registry import load_model, save_model
from mgctag.segments.detector import (
    CLASSES,
    N_MELS,
    N_MFCC,
    SR,
    melcnn_frame_logits,
    mfcc,
    telephone_mel,
)
from tests.media import LIBROSA

SPEECH = LIBROSA / "198-209-0000.hq.ogg"


def _net(seed: int = 0) -> MelCnn:
    torch.manual_seed(seed)
    net = MelCnn(n_classes=3, n_mels=N_MELS, width=4)
    for m in net.modules():  # BatchNorm statistics other than the identity, as after training
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def test_the_log_mel_is_what_the_mfccs_are_the_dct_of() -> None:
    """Both detectors read the same telephone-band spectrum: the MFCCs are the first 20
    coefficients of the log-mel's DCT, frame for frame."""
    y = decode.load(SPEECH, SR, duration=4.0)
    mel, m = telephone_mel(y), mfcc(y)
    assert mel.shape == (len(m), N_MELS) and mel.dtype == np.float32
    dct = scipy.fft.dct(mel.astype(np.float64), type=2, norm="ortho", axis=1)[:, :N_MFCC]
    np.testing.assert_allclose(dct, m, atol=1e-2)


def test_shapes_and_forward_is_the_mean_of_frame_features() -> None:
    net = _net()
    x = torch.randn(2, 64, N_MELS)
    feats = net.frame_features(x)
    assert feats.shape == (2, 32, 64 // MelCnn.TIME_STRIDE)
    logits, emb = net(x)
    assert logits.shape == (2, 3) and emb.shape == (2, 32)
    assert torch.allclose(emb, feats.mean(dim=2), atol=1e-6)
    with pytest.raises(ValueError):
        net.frame_features(torch.randn(64, N_MELS))


def test_frame_logits_equal_the_clip_network_where_the_window_is_whole() -> None:
    """The middle frames of an input exactly one window long get the network's clip logits."""
    net = _net()
    x = np.random.default_rng(0).standard_normal((64, N_MELS)).astype(np.float32)
    frames = melcnn_frame_logits(net, x, 64)
    assert frames.shape == (64, 3)
    with torch.inference_mode():
        clip = net(torch.from_numpy(x)[None])[0][0].numpy()
    np.testing.assert_allclose(frames[32:36], np.tile(clip, (4, 1)), atol=1e-5)


def test_blocks_give_the_logits_of_one_pass() -> None:
    """A long recording goes through the network a block at a time (bounded memory); with the
    network's receptive field and the window's reach around each block, the logits are those
    of one pass over the whole input, also when its length is not a multiple of the stride."""
    net = _net(1)
    x = np.random.default_rng(1).standard_normal((1001, N_MELS)).astype(np.float32)
    mean, std = np.full(N_MELS, 0.5, np.float32), np.full(N_MELS, 2.0, np.float32)
    whole = melcnn_frame_logits(net, x, 62, block=10_000, scale=(mean, std))
    blocks = melcnn_frame_logits(net, x, 62, block=16, scale=(mean, std))
    assert whole.shape == blocks.shape == (1001, 3)
    np.testing.assert_allclose(blocks, whole, atol=1e-4)
    direct = melcnn_frame_logits(net, (x - mean) / std, 62, block=10_000)
    np.testing.assert_allclose(direct, whole, atol=1e-4)


def test_safetensors_round_trip(tmp_path) -> None:
    net = _net()
    card = ModelCard(name="seg_mel_test", arch="melcnn", labels=list(CLASSES))
    card = ModelCard(**{**card.to_dict(), "arch_args": dict(net.config)})  # type: ignore[arg-type]
    back, card2 = load_model(save_model(net, card, tmp_path))
    x = torch.randn(1, 64, N_MELS)
    with torch.inference_mode():
        assert torch.equal(net(x)[0], back(x)[0])
    assert card2.arch_args == {"n_classes": 3, "n_mels": N_MELS, "width": 4}


def test_the_bundled_option_streams_a_file_as_it_decides_it_whole(tmp_path, monkeypatch) -> None:
    """`segments --model segmenter_melcnn` decodes a file a chunk at a time into float16 log-mel
    frames; its decisions are those of the whole recording in memory (float32), up to the
    frames at the chunk joins."""
    import soundfile as sf

    from mgctag.segments import recordings
    from mgctag.segments.detector import Segmenter

    seg = Segmenter("segmenter_melcnn")
    assert seg.card.preprocessing["features"] == "mgctag.segments.detector.telephone_mel"
    assert len(seg.mean) == len(seg.std) == N_MELS and seg.store_dtype == np.float16
    y = decode.load(SPEECH, SR, duration=12.0)
    path = tmp_path / "speech.wav"
    sf.write(path, y, SR)
    whole = seg.segment(y)
    monkeypatch.setattr(recordings, "CHUNK_S", 2.5)
    timeline, decoded = recordings.segment_file(path, seg)
    assert decoded.feats.dtype == np.float16 and decoded.feats.shape[1] == N_MELS
    assert (timeline.labels == whole.labels).mean() > 0.97
    assert timeline.content() == whole.content() == "speech"
