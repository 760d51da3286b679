"""The one log-mel (and MFCC) against the original musicnn references on real recordings."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
from media import MUSICNN_CLIPS, musicnn_reference

from mgctag.audio.features import PATCH_FRAMES, FeatureError, log_mel, mfcc, patches

CLIPS = list(MUSICNN_CLIPS)


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    return musicnn_reference()


@pytest.mark.parametrize("clip", CLIPS)
def test_log_mel_matches_musicnn_reference(ref, clip):
    got = log_mel(ref[f"{clip}__y16k"])
    want = ref[f"{clip}__logmel"]
    assert got.dtype == np.float32
    assert got.shape == want.shape == (751, 96)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_log_mel_stays_finite_on_loud_audio(ref):
    # musicnn's own float16 cast overflows here; ours must not.
    loud = np.clip(ref["vibe_ace__y16k"] * 8.0, -1.0, 1.0)
    out = log_mel(loud)
    assert np.isfinite(out).all() and out.max() > 4.0


def test_patches_are_consecutive_and_drop_the_tail(ref):
    logmel = ref["hungarian_dance__logmel"]
    out = patches(logmel)
    assert out.shape == (4, PATCH_FRAMES, 96) and out.dtype == np.float32
    for i in range(4):
        np.testing.assert_array_equal(out[i], logmel[i * 187 : (i + 1) * 187])


def test_patches_with_hop_overlap(ref):
    logmel = ref["vibe_ace__logmel"]
    out = patches(logmel, hop=94)
    assert out.shape == (1 + (751 - 187) // 94, 187, 96)
    np.testing.assert_array_equal(out[3], logmel[3 * 94 : 3 * 94 + 187])


def test_short_window_is_repeat_padded_to_one_patch(ref):
    short = ref["vibe_ace__logmel"][:50]
    out = patches(short)
    assert out.shape == (1, 187, 96)
    np.testing.assert_array_equal(out[0, :50], short)
    np.testing.assert_array_equal(out[0, 50:100], short)
    np.testing.assert_array_equal(out[0, 150:187], short[:37])


@pytest.mark.parametrize(
    "bad, reason",
    [
        (np.zeros(0, np.float32), "empty"),
        (np.zeros((2, 16000), np.float32), "mono"),
        (np.array([0.0, np.nan, 0.1], np.float32), "NaN"),
    ],
)
def test_bad_audio_raises_feature_error(bad, reason):
    with pytest.raises(FeatureError, match=reason):
        log_mel(bad)


def test_patches_refuses_non_matrix():
    with pytest.raises(FeatureError):
        patches(np.zeros((0, 96), np.float32))


def test_mfcc_matches_librosa(ref):
    y = ref["lets_go_fishin__y16k"]
    got = mfcc(y, n_mfcc=20)
    want = librosa.feature.mfcc(y=y, sr=16000, n_mfcc=20, n_fft=512, hop_length=256, n_mels=40).T
    assert got.shape == (751, 20) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-3)
