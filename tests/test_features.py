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


@pytest.mark.parametrize("sr,n_fft,n_mels", [(8000, 512, 40), (16000, 512, 40), (22050, 2048, 128)])
def test_slaney_mel_banks_equal_librosa(sr, n_fft, n_mels):
    from mgctag.audio.features import slaney_mel_banks

    want = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, dtype=np.float32)
    np.testing.assert_allclose(slaney_mel_banks(sr, n_fft, n_mels), want, rtol=0, atol=1e-8)


def test_detector_mfcc_at_the_telephone_rate_matches_librosa(ref):
    """The segment detector's input: 8 kHz audio, hop 128, on a short and an odd-length clip."""
    y8 = librosa.resample(ref["lets_go_fishin__y16k"], orig_sr=16000, target_sr=8000)
    for y in (y8, y8[:1001]):
        got = mfcc(y, 8000, n_mfcc=20, hop=128)
        want = librosa.feature.mfcc(y=y, sr=8000, n_mfcc=20, n_fft=512, hop_length=128, n_mels=40)
        np.testing.assert_allclose(got, want.T, rtol=0, atol=1e-3)


def test_segmenting_never_imports_librosa(tmp_path):
    """librosa brings numba (~100 MB resident): the detector's path must not need it, or a long
    recording's `segments` passes issue 27's 500 MB."""
    import subprocess
    import sys

    import soundfile as sf

    path = tmp_path / "clip.wav"
    sf.write(path, np.sin(np.linspace(0, 2000, 32000)).astype(np.float32), 16000)
    code = (
        "import sys\n"
        "from mgctag.segments.detector import Segmenter\n"
        "from mgctag.segments.recordings import segment_file\n"
        f"segment_file({str(path)!r}, Segmenter())\n"
        "print(sorted(m for m in ('librosa', 'numba') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
