"""Which few windows of a track to analyse, and which of them are too quiet to count.

Genre is a property of the body of a track: intros, outros, fades and hidden tracks are atypical,
so windows are spread over the middle `span` of it. Three 10 s windows give ~10 musicnn patches
(3 s each), enough for a stable track-level average at a fraction of the cost of the whole track,
and `decode.load_windows` decodes only those 30 s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Window:
    """One decoded analysis window: where it came from, its audio, and whether it is near-silent."""

    offset: float  # seconds from the start of the track
    duration: float  # seconds asked for (the audio may be shorter at the end of a file)
    audio: np.ndarray
    level_db: float  # RMS level in dBFS
    silent: bool  # kept only because every window was silent


def plan_windows(
    duration: float, *, n: int = 3, length: float = 10.0, span: float = 0.8
) -> list[tuple[float, float]]:
    """Up to `n` non-overlapping `(offset, length)` windows spread evenly over the middle `span`.

    A track shorter than one window gives one window of the whole track. When the middle part is too
    short for `n` windows it is widened (centred, within the track) instead of overlapping them; a
    track with room for fewer than `n` windows gets as many as fit. Offsets are rounded to 1 ms.
    """
    if n < 1 or length <= 0 or not 0 < span <= 1:
        raise ValueError(f"bad window plan: n={n}, length={length}, span={span}")
    if not math.isfinite(duration) or duration <= 0:
        return []
    if duration <= length:
        return [(0.0, float(duration))]
    k = min(n, int(duration // length))
    region = min(duration, max(span * duration, k * length))
    start = (duration - region) / 2
    step = (region - length) / (k - 1) if k > 1 else 0.0
    first = start if k > 1 else (duration - length) / 2
    return [(_ms_floor(first + i * step), float(length)) for i in range(k)]


def _ms_floor(t: float) -> float:
    """Round down to whole milliseconds, so that offset + length never passes the end."""
    return math.floor(t * 1000 + 1e-6) / 1000


def rms_db(y: np.ndarray) -> float:
    """RMS level in dBFS (full-scale square wave: 0 dB); -inf for digital silence or no samples."""
    if y.size == 0:
        return -math.inf
    rms = math.sqrt(float(np.mean(np.square(y, dtype=np.float64))))
    return 20 * math.log10(rms) if rms > 0 else -math.inf


def audible_seconds(
    y: np.ndarray, sr: int, threshold_db: float = -50.0, frame: float = 0.05
) -> float:
    """Seconds from the first to the last 50 ms frame of `y` (mono) louder than `threshold_db`.

    Silence before and after does not count, pauses between notes do: a 60 ms jingle or a click
    in silence has well under a second of it, a quiet pizzicato passage all of its length.
    """
    n = max(1, int(sr * frame))
    y = np.asarray(y, dtype=np.float32).reshape(-1)
    if y.size == 0:
        return 0.0
    frames = np.pad(y, (0, (-y.size) % n)).reshape(-1, n).astype(np.float64)
    loud = np.flatnonzero(np.sqrt(np.mean(np.square(frames), axis=1)) > 10 ** (threshold_db / 20))
    if loud.size == 0:
        return 0.0
    return float(min((loud[-1] - loud[0] + 1) * n, y.size)) / sr


def select_windows(
    windows: list[tuple[float, float]],
    audio: list[np.ndarray],
    *,
    threshold_db: float = -50.0,
    min_samples: int = 1,
) -> list[Window]:
    """Keep the windows worth analysing: drop near-silent ones and ones with under `min_samples`.

    If every non-empty window is silent the loudest one is kept with `silent=True`, so a quiet track
    still gets a result the pipeline can mark as unreliable; if all are empty the list is empty.
    """
    if len(windows) != len(audio):
        raise ValueError(f"{len(windows)} windows but {len(audio)} decoded arrays")
    candidates = [
        Window(off, dur, y, level, silent=level < threshold_db)
        for (off, dur), y in zip(windows, audio, strict=True)
        if y.shape[-1] >= min_samples
        for level in [rms_db(y)]
    ]
    kept = [w for w in candidates if not w.silent]
    if kept or not candidates:
        return kept
    return [max(candidates, key=lambda w: w.level_db)]
