"""The one log-mel and the one MFCC every model in mgctag reads.

musicnn's models were trained on ``log10(10000 * mel + 1)`` of a 96-band power mel spectrogram at
16 kHz (n_fft 512, hop 256; librosa's defaults otherwise: Hann window, centred frames, Slaney mel).
``log_mel`` reproduces ``librosa.feature.melspectrogram`` bit for bit, but caches the mel filterbank
and stays in float32, which makes it ~100x faster than calling librosa per window. The log
compression is done in float32: musicnn's own extractor casts to float16 first, which overflows to
inf on loud audio.
"""

from __future__ import annotations

from functools import lru_cache

import librosa
import numpy as np

from mgctag.errors import MgctagError

SR = 16000
N_FFT = 512
HOP = 256
N_MELS = 96
PATCH_FRAMES = 187  # 3 s at 16 kHz / hop 256: musicnn's input length


class FeatureError(MgctagError, ValueError):
    """Audio that cannot be turned into features (empty, not 1-D, not finite)."""


@lru_cache(maxsize=8)
def _mel_basis(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    """librosa's Slaney mel filterbank (n_mels, 1 + n_fft // 2), float32, built once per setting."""
    basis = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, dtype=np.float32)
    basis.setflags(write=False)
    return basis


def _check_mono(y: np.ndarray) -> np.ndarray:
    """Return y as contiguous float32 mono, or raise FeatureError saying what is wrong."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise FeatureError(f"expected mono audio of shape (n,), got shape {y.shape}")
    if y.size == 0:
        raise FeatureError("empty audio")
    y = np.ascontiguousarray(y, dtype=np.float32)
    if not np.isfinite(y).all():
        raise FeatureError("audio contains NaN or infinite samples")
    return y


def mel_power(y: np.ndarray, sr: int = SR, n_mels: int = N_MELS) -> np.ndarray:
    """Power mel (frames, n_mels), bit-identical to librosa.feature.melspectrogram(...).T."""
    y = _check_mono(y)
    spec = librosa.stft(y, n_fft=N_FFT, hop_length=HOP)
    power = np.abs(spec) ** 2
    return np.ascontiguousarray((_mel_basis(sr, N_FFT, n_mels) @ power).T)


def log_mel(y: np.ndarray, sr: int = SR) -> np.ndarray:
    """musicnn's input features: (frames, 96) float32 log10(10000 * mel + 1).

    ``y`` must already be at ``sr`` (16 kHz for every bundled model); a 12 s clip gives 751 frames.
    """
    mel = mel_power(y, sr)
    mel *= np.float32(10000.0)
    mel += np.float32(1.0)
    return np.log10(mel, out=mel)


def patches(logmel: np.ndarray, frames: int = PATCH_FRAMES, hop: int | None = None) -> np.ndarray:
    """Cut a (T, bands) log-mel into (n, frames, bands) model inputs.

    Non-overlapping by default (hop = frames), like musicnn's extractor: a tail shorter than a
    patch is dropped once at least one full patch exists. An input shorter than one patch is
    repeated end to end until it fills one ("repeat-pad", as musicnn was trained), so a short
    window still yields exactly one patch instead of nothing.
    """
    logmel = np.asarray(logmel, dtype=np.float32)
    if logmel.ndim != 2 or logmel.shape[0] == 0:
        raise FeatureError(f"expected a (frames, bands) log-mel, got shape {logmel.shape}")
    hop = frames if hop is None else hop
    if hop <= 0 or frames <= 0:
        raise FeatureError(f"frames and hop must be positive, got {frames}, {hop}")
    n_frames = logmel.shape[0]
    if n_frames < frames:
        reps = -(-frames // n_frames)
        return np.tile(logmel, (reps, 1))[None, :frames]
    starts = range(0, n_frames - frames + 1, hop)
    view = np.lib.stride_tricks.sliding_window_view(logmel, frames, axis=0)  # (T-f+1, bands, f)
    return np.ascontiguousarray(view[list(starts)].transpose(0, 2, 1))


def mfcc(
    y: np.ndarray, sr: int = SR, n_mfcc: int = 20, n_mels: int = 40, hop: int = HOP
) -> np.ndarray:
    """MFCCs (frames, n_mfcc) float32 from a power mel (n_fft 512), for 1-D models like SwishNet.

    Uses librosa's dB scaling and DCT-II (ortho), so the values match ``librosa.feature.mfcc``
    with the same n_fft / hop / n_mels.
    """
    y = _check_mono(y)
    spec = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=hop)) ** 2
    mel = _mel_basis(sr, N_FFT, n_mels) @ spec
    coeffs = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=n_mfcc)
    return np.ascontiguousarray(coeffs.T, dtype=np.float32)
