"""Segmenting whole recordings: decoding them in bounded memory (what the detector keeps instead of
the samples), the JSON record and PNG strip of a timeline, and keeping it in the library."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mgctag.segments.detector import (
    HOP,
    N_MFCC,
    SILENCE,
    SR,
    Segmenter,
    Timeline,
    chunked_features,
    frame_db,
    mfcc,
)

Features = Callable[[np.ndarray], np.ndarray]  # 16 kHz mono -> (frames, width)
CHUNK_S = 60.0  # seconds of audio decoded at a time: tens of MB of working memory, not hundreds


@dataclass(frozen=True)
class Decoded:
    """What segmenting keeps of a recording instead of its samples: the detector's input frames
    (MFCCs or log-mel), each frame's level and peak (for the drawing). Three hours take ~60 MB,
    not gigabytes."""

    feats: np.ndarray  # (frames, MFCCs or mel bands), not standardised
    db: np.ndarray  # (frames,) RMS level in dBFS, as frame_db
    peaks: np.ndarray  # (frames,) peak |y| over each frame's HOP samples
    duration: float  # seconds of audio decoded

    @classmethod
    def of(cls, y: np.ndarray, feats: Features = mfcc) -> Decoded:
        """16 kHz mono audio already in memory."""
        m = chunked_features(y, feats=feats)
        return cls(m, frame_db(y, len(m)), frame_peaks(y, len(m)), len(y) / SR)


def frame_peaks(y: np.ndarray, frames: int) -> np.ndarray:
    """Peak |y| over samples [t * HOP, (t + 1) * HOP) of each frame t (0 past the end)."""
    y = np.abs(np.asarray(y, np.float32))
    out = np.zeros(frames, np.float32)
    whole = min(frames, len(y) // HOP)
    out[:whole] = y[: whole * HOP].reshape(whole, HOP).max(axis=1) if whole else 0
    if whole < frames and len(y) > whole * HOP:
        out[whole] = y[whole * HOP :].max()
    return out


MMAP_THRESHOLD = 16 << 20  # bytes: blocks this large are mapped, and unmapped when freed


@functools.cache
def fixed_mmap_threshold() -> None:
    """Keep large blocks out of the heap for the rest of the process (glibc's `mallopt`).

    glibc maps a large block and unmaps it when freed, but raises its threshold each time one is
    freed, so hours decoded a chunk at a time end up on the heap, where freed chunks stay
    resident: `segments` of a 3-hour file peaked anywhere from 408 to 546 MB from run to run.
    With the threshold fixed at 16 MB it peaked at 422-444 MB, at the same speed (4 MB: 405-417
    MB, but 30 % more CPU on a 3-minute file; docs/segments.md). Elsewhere nothing changes."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(-3, MMAP_THRESHOLD)  # -3: M_MMAP_THRESHOLD


def decode_file(
    path: str | Path, feats: Features = mfcc, dtype: type[np.floating] = np.float32
) -> Decoded:
    """A recording's MFCC frames (or `feats`, kept as `dtype`), levels and peaks, decoded
    CHUNK_S at a time at 16 kHz mono, so memory is bounded by one chunk whatever the length
    (each chunk decoded with 4 frames of context on both sides, dropped: the same frames as a
    whole-file pass, up to resampler edges). DecodeError for what cannot be read."""
    from mgctag.audio import decode

    duration = decode.probe(path).duration
    if not duration or duration <= CHUNK_S:
        return Decoded.of(decode.load(path, SR), feats)
    fixed_mmap_threshold()
    step = int(CHUNK_S * SR) // HOP * HOP
    pad = 4 * HOP
    out = _Frames(int(duration * SR) // HOP + 2, dtype)
    s0 = 0
    while True:
        lo = max(0, s0 - pad)
        want = s0 + step + pad - lo
        (piece,) = decode.load_windows(path, SR, [(lo / SR, want / SR)])
        first = (s0 - lo) // HOP
        last = len(piece) < want  # the file ends inside this chunk
        count = 1 + (lo + len(piece)) // HOP - s0 // HOP if last else step // HOP
        if count > 0 and len(piece):
            m = feats(piece)[first : first + count]
            out.add(
                m, frame_db(piece, first + len(m))[first:], frame_peaks(piece[s0 - lo :], len(m))
            )
        if last:
            end = lo + len(piece)
            break
        s0 += step
    return out.decoded(end / SR)


class _Frames:
    """Per-frame arrays filled chunk by chunk into buffers sized from the header's duration
    (grown if the file is longer), so the hours are never held twice by a concatenation."""

    def __init__(self, frames: int, dtype: type[np.floating]) -> None:
        self.feats: np.ndarray | None = None  # (frames, width) once the first chunk says width
        self.dtype, self.size = dtype, frames
        self.db = np.empty(frames, np.float32)
        self.peaks = np.empty(frames, np.float32)
        self.n = 0

    def add(self, m: np.ndarray, db: np.ndarray, peaks: np.ndarray) -> None:
        k = len(m)
        if self.feats is None:
            self.feats = np.empty((self.size, m.shape[1]), self.dtype)
        if self.n + k > len(self.db):
            grow = max(k, len(self.db) // 4)
            extra = np.empty((grow, m.shape[1]), self.dtype)
            self.feats = np.concatenate([self.feats, extra])
            self.db = np.concatenate([self.db, np.empty(grow, np.float32)])
            self.peaks = np.concatenate([self.peaks, np.empty(grow, np.float32)])
        self.feats[self.n : self.n + k] = m
        self.db[self.n : self.n + k] = db
        self.peaks[self.n : self.n + k] = peaks
        self.n += k

    def decoded(self, duration: float) -> Decoded:
        n = self.n
        feats = self.feats if self.feats is not None else np.empty((0, N_MFCC), np.float32)
        return Decoded(feats[:n], self.db[:n], self.peaks[:n], duration)


def segment_file(path: str | Path, segmenter: Segmenter) -> tuple[Timeline, Decoded]:
    """Decode a whole file in chunks and segment it."""
    decoded = decode_file(path, segmenter.features, segmenter.store_dtype)
    return segmenter.segment_decoded(decoded), decoded


def timeline_record(path: str | Path, timeline: Timeline) -> dict:
    """What `segments --json` prints per file."""
    return {
        "path": str(path),
        "duration": round(timeline.duration, 2),
        "content": timeline.content(),
        "shares": {k: round(v, 4) for k, v in timeline.shares().items()},
        "intervals": [i.as_dict() for i in timeline.intervals],
    }


COLOURS = {"speech": "#d62728", "music": "#1f77b4", "noise": "#2ca02c", SILENCE: "#bbbbbb"}


def draw_timeline(peaks: np.ndarray, timeline: Timeline, path: str | Path, title: str = "") -> None:
    """A PNG: the waveform's envelope (`Decoded.peaks`) with the intervals as a coloured strip
    beneath it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    fig = Figure(figsize=(12, 3), dpi=100)
    FigureCanvasAgg(fig)
    wave, strip = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [4, 1]})
    step = max(1, len(peaks) // 4000)
    env = np.asarray(peaks[: len(peaks) // step * step]).reshape(-1, step).max(axis=1)
    t = np.arange(len(env)) * step * HOP / SR
    wave.fill_between(t, -env, env, color="#444444", linewidth=0)
    wave.set_ylim(-1, 1)
    wave.set_yticks([])
    wave.set_title(title, fontsize=9, loc="left")
    for iv in timeline.intervals:
        strip.axvspan(iv.start, iv.end, color=COLOURS[iv.label], linewidth=0)
    strip.set_yticks([])
    strip.set_xlim(0, max(timeline.duration, 1e-3))
    strip.set_xlabel("seconds")
    fig.legend(
        handles=[Patch(color=c, label=k) for k, c in COLOURS.items()],
        loc="upper right",
        ncol=4,
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(path)


def store_timeline(lib, path: str | Path, timeline: Timeline, model: str) -> bool:
    """Keep a library track's intervals as a prediction row of the detector (no genres), in the
    content columns the AudioSet gate uses: `content` the track's class, `windows` one record per
    interval ({offset, end, content, confidence}), so `info` shows them as it shows the gate's.
    False when the file is not a track of the library."""
    track = lib.track_by_path(Path(path).resolve())
    if track is None:
        return False
    windows = [
        {"offset": round(i.start, 2), "end": round(i.end, 2), "content": i.label}
        | {"confidence": round(i.confidence, 3)}
        for i in timeline.intervals
    ]
    lib.save_analysis(
        track.id, model, "none", {}, [], {}, content=timeline.content(), windows=windows
    )
    return True
