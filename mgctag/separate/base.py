"""The separator contract every backend meets, and the errors the pipeline catches.

Every separator takes `(channels, n)` or `(n,)` float32 audio at any rate and returns the four
MUSDB stems at the input's rate, shape and length, so callers never care which backend ran.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import librosa
import numpy as np

from mgctag.audio import decode
from mgctag.errors import MgctagError

STEMS: tuple[str, ...] = ("drums", "bass", "other", "vocals")


class SeparationError(MgctagError):
    """A separator could not run (bad input, missing backend, out of memory)."""


class WeightsUnavailableError(SeparationError):
    """The model's weights are neither given, cached, nor downloadable right now."""


class Separator(ABC):
    """Splits a mix into drums, bass, other and vocals.

    Subclasses implement `_separate` on `(channels, n)` audio at `sample_rate`; this base class
    checks input, resamples to the native rate and back, and restores the caller's shape.
    """

    name: str = "separator"
    sample_rate: int = 44100

    def separate(self, y: np.ndarray, sr: int) -> dict[str, np.ndarray]:
        """Stems of `y` (mono `(n,)` or `(channels, n)`), each with the shape and rate of `y`."""
        return self._finish(self._separate(self._prepare(y, sr)), y, sr)

    def separate_batch(self, windows: list[np.ndarray], sr: int) -> list[dict[str, np.ndarray]]:
        """Stems for several windows; backends that gain from batching override this."""
        return [self.separate(w, sr) for w in windows]

    def _prepare(self, y: np.ndarray, sr: int) -> np.ndarray:
        """`(channels, n)` float32 at the native rate, or a SeparationError saying what is wrong."""
        x = _as_channels(y)
        return x if sr == self.sample_rate else _resample(x, sr, self.sample_rate)

    def _finish(
        self, stems: dict[str, np.ndarray], y: np.ndarray, sr: int
    ) -> dict[str, np.ndarray]:
        """Stems back at the caller's rate, length and shape."""
        out: dict[str, np.ndarray] = {}
        for stem in STEMS:
            s = stems[stem]
            if sr != self.sample_rate:
                s = _resample(s, self.sample_rate, sr)
            s = librosa.util.fix_length(s, size=np.shape(y)[-1], axis=-1)
            out[stem] = np.ascontiguousarray(s.reshape(np.shape(y)), dtype=np.float32)
        return out

    @abstractmethod
    def _separate(self, y: np.ndarray) -> dict[str, np.ndarray]:
        """Stems of `(channels, n)` float32 audio at `self.sample_rate`."""


def _as_channels(y: np.ndarray) -> np.ndarray:
    """`(channels, n)` float32 view of the input, or a SeparationError saying what is wrong."""
    y = np.asarray(y)
    if y.ndim == 1:
        y = y[None, :]
    if y.ndim != 2 or y.shape[0] > 2:
        raise SeparationError(f"expected mono (n,) or (channels<=2, n) audio, got shape {y.shape}")
    if y.shape[1] == 0:
        raise SeparationError("cannot separate empty audio")
    if not np.all(np.isfinite(y)):
        raise SeparationError("audio contains NaN or infinite samples")
    return y.astype(np.float32, copy=False)


def _resample(y: np.ndarray, sr: int, target: int) -> np.ndarray:
    """The one resampler (soxr HQ, as decoding uses), channels kept."""
    return decode.convert(y, sr, target, mono=False)
