"""The one log-mel and the one MFCC every model in mgctag reads.

musicnn's models were trained on ``log10(10000 * mel + 1)`` of a 96-band power mel spectrogram at
16 kHz (n_fft 512, hop 256; librosa's defaults otherwise: Hann window, centred frames, Slaney mel).
``log_mel`` reproduces ``librosa.feature.melspectrogram`` bit for bit, but caches the mel filterbank
and stays in float32, which makes it ~100x faster than calling librosa per window. The log
compression is done in float32: musicnn's own extractor casts to float16 first, which overflows to
inf on loud audio.

librosa is imported only where musicnn's bit-exact log-mel needs it: importing it brings numba
(~100 MB resident), which `segments` on a long recording cannot afford (issue 27's memory
target), so the detector's MFCC (`mfcc`) is computed here from numpy and scipy alone, equal to
librosa's to float32 rounding (tests/test_features.py).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.fft
import torch

from mgctag.errors import MgctagError

SR = 16000
N_FFT = 512
HOP = 256
N_MELS = 96
PATCH_FRAMES = 187  # 3 s at 16 kHz / hop 256: musicnn's input length


class FeatureError(MgctagError, ValueError):
    """Audio that cannot be turned into features (empty, not 1-D, not finite)."""


@lru_cache(maxsize=8)
def mel_basis(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    """librosa's Slaney mel filterbank (n_mels, 1 + n_fft // 2), float32, built once per setting."""
    import librosa

    basis = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, dtype=np.float32)
    basis.setflags(write=False)
    return basis


def check_mono(y: np.ndarray) -> np.ndarray:
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
    import librosa

    y = check_mono(y)
    spec = librosa.stft(y, n_fft=N_FFT, hop_length=HOP)
    power = np.abs(spec) ** 2
    return np.ascontiguousarray((mel_basis(sr, N_FFT, n_mels) @ power).T)


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

    What ``librosa.feature.mfcc`` gives with the same n_fft / hop / n_mels (centred Hann frames,
    Slaney mel, dB with an 80 dB floor below the loudest bin, ortho DCT-II), computed without
    importing librosa (see the module's docstring)."""
    coeffs = scipy.fft.dct(mel_db(y, sr, n_mels, hop), type=2, norm="ortho", axis=0)[:n_mfcc]
    return np.ascontiguousarray(coeffs.T, dtype=np.float32)


def mel_db(y: np.ndarray, sr: int = SR, n_mels: int = 40, hop: int = HOP) -> np.ndarray:
    """(n_mels, frames) float64 power mel in dB (n_fft 512, Slaney mel, 80 dB floor below the
    loudest bin): what `mfcc` takes the DCT of, and what a mel-CNN detector reads whole."""
    y = check_mono(y)
    power = np.abs(_stft(y, N_FFT, hop)) ** 2
    mel = slaney_mel_banks(sr, N_FFT, n_mels) @ power
    db = 10.0 * np.log10(np.maximum(mel, 1e-10))
    return np.maximum(db, db.max() - 80.0)


def _stft(y: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """(1 + n_fft // 2, frames) complex STFT as librosa.stft's defaults: frames centred on
    t * hop of the zero-padded signal, periodic Hann window."""
    pad = n_fft // 2
    y = np.pad(y, pad)
    frames = np.lib.stride_tricks.sliding_window_view(y, n_fft)[::hop]
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)
    return scipy.fft.rfft(frames * window, axis=1).T


def _hz_to_slaney_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear (200/3 Hz a mel) below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, np.float64)
    mel = hz / (200.0 / 3)
    log = hz >= 1000.0
    mel[log] = 15.0 + np.log(hz[log] / 1000.0) / (np.log(6.4) / 27.0)
    return mel


def _slaney_mel_to_hz(mel: np.ndarray) -> np.ndarray:
    hz = np.asarray(mel, np.float64) * (200.0 / 3)
    log = mel >= 15.0
    hz[log] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel[log] - 15.0))
    return hz


@lru_cache(maxsize=8)
def slaney_mel_banks(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    """librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels) (0 Hz to Nyquist, Slaney scale and
    area normalisation), float32, read-only: triangles between mel-spaced edges."""
    fft_hz = np.linspace(0, sr / 2, 1 + n_fft // 2)
    top = _hz_to_slaney_mel(np.array([sr / 2]))[0]
    edges = _slaney_mel_to_hz(np.linspace(0.0, top, n_mels + 2))
    width = np.diff(edges)
    ramps = edges[:, None] - fft_hz[None, :]
    rising = -ramps[:-2] / width[:-1, None]
    falling = ramps[2:] / width[1:, None]
    area = 2.0 / (edges[2:] - edges[:-2])
    out = (np.maximum(0.0, np.minimum(rising, falling)) * area[:, None]).astype(np.float32)
    out.setflags(write=False)
    return out


# --- EfficientAT (AudioSet) front-end --------------------------------------------------------

AT_SR = 32000
AT_N_FFT = 1024
AT_WIN = 800
AT_HOP = 320
AT_N_MELS = 128
AT_FMAX = 15000.0
AT_PREEMPHASIS = 0.97


def _kaldi_mel(hz: np.ndarray | float) -> np.ndarray:
    """Kaldi's mel scale: 1127 ln(1 + f / 700)."""
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


@lru_cache(maxsize=4)
def kaldi_mel_banks(
    n_mels: int = AT_N_MELS,
    n_fft: int = AT_N_FFT,
    sr: int = AT_SR,
    fmin: float = 0.0,
    fmax: float = AT_FMAX,
) -> np.ndarray:
    """Kaldi-style triangular mel filters (n_mels, 1 + n_fft // 2), float32, read-only.

    Triangles are equally spaced on Kaldi's mel scale and evaluated in mel (not Hz) at each FFT
    bin below Nyquist; the Nyquist bin gets weight 0, as EfficientAT pads Kaldi's banks.
    """
    mel_lo, mel_hi = _kaldi_mel(fmin), _kaldi_mel(fmax)
    delta = (mel_hi - mel_lo) / (n_mels + 1)
    left = mel_lo + delta * np.arange(n_mels)[:, None]
    center, right = left + delta, left + 2 * delta
    bin_mel = _kaldi_mel(sr / n_fft * np.arange(n_fft // 2))[None, :]
    up = (bin_mel - left) / (center - left)
    down = (right - bin_mel) / (right - center)
    banks = np.maximum(0.0, np.minimum(up, down))
    banks = np.pad(banks, ((0, 0), (0, 1))).astype(np.float32)
    banks.setflags(write=False)
    return banks


@lru_cache(maxsize=1)
def _at_constants() -> tuple[torch.Tensor, torch.Tensor]:
    """The symmetric Hann window and the mel banks as tensors, built once."""
    return torch.hann_window(AT_WIN, periodic=False), torch.tensor(kaldi_mel_banks())


def efficientat_mel(y: np.ndarray) -> np.ndarray:
    """EfficientAT's input features (128, frames) float32 from mono audio at 32 kHz.

    Pre-emphasis (y[t] - 0.97 y[t-1], one sample shorter), centred STFT (n_fft 1024, symmetric
    Hann of 800 samples, hop 320, reflect padding), power, Kaldi mel banks 0-15 kHz,
    log(mel + 1e-5), then (x + 4.5) / 5 — the model's eval-mode preprocessing. A 10 s window
    gives 1000 frames.
    """
    y = check_mono(y)
    if y.size <= AT_N_FFT // 2 + 1:
        raise FeatureError(f"audio too short for EfficientAT's STFT ({y.size} samples at 32 kHz)")
    window, banks = _at_constants()
    x = torch.from_numpy(y)
    x = x[1:] - AT_PREEMPHASIS * x[:-1]
    spec = torch.stft(
        x,
        AT_N_FFT,
        hop_length=AT_HOP,
        win_length=AT_WIN,
        window=window,
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )
    power = spec.real.square() + spec.imag.square()
    mel = banks @ power
    return ((torch.log(mel + 1e-5) + 4.5) / 5.0).numpy()
