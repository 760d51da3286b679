"""Speech, music and noise over time: SwishNet as its paper uses it (issue 13).

A recording is cut into MFCC frames (16 kHz, hop 256: 62.5 frames/s). The detector decides each
frame from a context window centred on it (0.5, 1 or 2 s): SwishNet's causal convolutions run
once over the whole recording, their swish features are averaged over the window and the linear
classifier gives speech / music / noise. That is what the network computes on a clip of that
length (its head is a time average then a linear layer), without running it once per frame.
Class probabilities are then median-filtered over time (the paper's smoothing) before the
decision, and frames below an energy floor are silence (not a class the network learns, and not
scored, as in the paper). Runs of equal labels become intervals.

Rap and singing are music: the training data has vocals in its music and the teacher's targets
count AudioSet's singing / rapping classes as music (`mgctag.content`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from scipy.ndimage import median_filter as _median

from mgctag.audio import features
from mgctag.content import MUSIC, OTHER, SPEECH, ContentGate
from mgctag.errors import MgctagError
from mgctag.models.melcnn import MelCnn
from mgctag.models.swishnet import SwishNet
from mgctag.options import DEFAULT_SEGMENTER, MIN_SEGMENT_S

CLASSES = ("speech", "music", "noise")
SILENCE = "silence"
SR = features.SR
HOP = features.HOP
FPS = SR / HOP  # 62.5 frames per second
N_MFCC = 20
N_MELS = 40  # the telephone-band mel bands of both inputs (MFCC: their DCT)
TELEPHONE_SR = 8000
DEFAULT_MODEL = DEFAULT_SEGMENTER
SILENCE_DB = -50.0  # frame RMS below this (dBFS) is silence, as audio.segment's floor
MIN_SILENCE_S = 0.3  # shorter pauses stay part of what surrounds them
HEADROOM_DB = 30.0  # a quiet recording's silence: this far under its loud level (95th percentile)
QUIET_FLOOR_DB = -70.0  # ... but never a floor lower than this
CONTENT_OF = {"speech": SPEECH, "music": MUSIC, "noise": OTHER}


@dataclass(frozen=True)
class Interval:
    """A stretch of one class: seconds from the start, and the mean probability of its class."""

    start: float
    end: float
    label: str
    confidence: float

    def as_dict(self) -> dict:
        return {
            "start": round(self.start, 2),
            "end": round(self.end, 2),
            "class": self.label,
            "confidence": round(self.confidence, 3),
        }


@dataclass(frozen=True)
class Timeline:
    """One recording's frame decisions and their intervals."""

    duration: float
    labels: np.ndarray  # (frames,) index into CLASSES, -1 for silence
    probs: np.ndarray  # (frames, 3) smoothed class probabilities
    intervals: list[Interval]

    def shares(self) -> dict[str, float]:
        """Fraction of the recording's time in each class and in silence."""
        n = max(1, len(self.labels))
        out = {c: float((self.labels == i).sum()) / n for i, c in enumerate(CLASSES)}
        return out | {SILENCE: float((self.labels < 0).sum()) / n}

    def content(self) -> str:
        """music / speech / other for the whole recording, by `content.track_class`'s rule over
        its non-silent frames (music when at least half of them are music)."""
        from mgctag.content import track_class

        voiced = [CONTENT_OF[CLASSES[i]] for i in self.labels if i >= 0]
        return track_class(voiced)


# --- features ----------------------------------------------------------------------------------


def mfcc(y: np.ndarray) -> np.ndarray:
    """The detector's input: (frames, 20) MFCCs of 16 kHz mono audio, from its telephone band.

    The audio is resampled to 8 kHz first (MFCC at hop 128: the same 62.5 frames/s, frame t
    centred on sample t * HOP at 16 kHz), so the detector never sees above 4 kHz. The speech
    it learns from is 8 kHz telephone audio: given the full band it learned "wideband means not
    speech" and called held-out wideband speech music.
    """
    return features.mfcc(_telephone(y), TELEPHONE_SR, n_mfcc=N_MFCC, hop=HOP // 2)


def telephone_mel(y: np.ndarray) -> np.ndarray:
    """The mel-CNN detector's input: (frames, 40) log-mel (dB) of the telephone band, the
    spectrum `mfcc` takes its DCT of (same frames, same 80 dB floor)."""
    db = features.mel_db(_telephone(y), TELEPHONE_SR, N_MELS, HOP // 2)
    return np.ascontiguousarray(db.T, dtype=np.float32)


def _telephone(y: np.ndarray) -> np.ndarray:
    from mgctag.audio.decode import convert

    return convert(features.check_mono(y), SR, TELEPHONE_SR)


FEATURES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "mgctag.segments.detector.mfcc": mfcc,
    "mgctag.segments.detector.telephone_mel": telephone_mel,
}  # a card's `preprocessing.features` -> the function


def chunked_features(
    y: np.ndarray, block_s: float = 600.0, feats: Callable[[np.ndarray], np.ndarray] = mfcc
) -> np.ndarray:
    """A detector's input frames (`feats`: `mfcc` or `telephone_mel`) of a long recording block
    by block (each with 4 frames of context on both sides, dropped), so memory stays bounded; the
    same frames as one call, up to resampler edges."""
    y = np.asarray(y, np.float32)
    total = 1 + len(y) // HOP
    step = int(block_s * SR) // HOP * HOP
    if len(y) <= step:
        return feats(y)
    pad = 4 * HOP
    parts = []
    for s0 in range(0, len(y), step):
        lo = max(0, s0 - pad)
        piece = feats(y[lo : s0 + step + pad])
        first = (s0 - lo) // HOP
        count = min(step // HOP, total - s0 // HOP)
        parts.append(piece[first : first + count])
    return np.concatenate(parts)


def frame_db(y: np.ndarray, frames: int | None = None) -> np.ndarray:
    """RMS level (dBFS) of each MFCC frame: a 512-sample window centred on frame t * HOP.

    Computed a block of frames at a time, so an hour of audio needs megabytes, not gigabytes."""
    y = np.asarray(y, np.float32)
    n = frames if frames is not None else 1 + len(y) // HOP
    padded = np.pad(y, (256, max(0, (n - 1) * HOP + 256 - len(y))))
    win = np.lib.stride_tricks.sliding_window_view(padded, 512)[::HOP][:n]
    out = np.empty(n, np.float32)
    for b in range(0, n, 2048):  # 2048 frames: 8 MB of float64 at a time
        block = win[b : b + 2048].astype(np.float64)
        out[b : b + 2048] = 10 * np.log10(np.mean(block**2, axis=1) + 1e-24)
    return out


def silent_frames(
    db: np.ndarray, floor: float = SILENCE_DB, min_s: float = MIN_SILENCE_S
) -> np.ndarray:
    """Frames in runs of at least `min_s` below `floor` dBFS."""
    quiet = db < floor
    out = np.zeros_like(quiet)
    min_len = max(1, round(min_s * FPS))
    for start, end in runs(quiet.astype(np.int8)):
        if quiet[start] and end - start >= min_len:
            out[start:end] = True
    return out


def silence_floor(db: np.ndarray, floor: float = SILENCE_DB) -> float:
    """The level under which a recording's frames are silence: `floor` at an ordinary level,
    lower for a quiet recording (`HEADROOM_DB` under its loud level, down to `QUIET_FLOOR_DB`),
    so that wind or a river recorded at -55 dBFS is noise to classify, not silence."""
    if not len(db):
        return floor
    loud = float(np.percentile(db, 95))
    return min(floor, max(QUIET_FLOOR_DB, loud - HEADROOM_DB))


def teacher_probs(audioset: np.ndarray, gate: ContentGate) -> np.ndarray:
    """(n, 3) speech / music / noise from AudioSet probabilities, music first as the gate decides:
    p(music) = m, p(speech) = (1 - m) s, p(noise) = (1 - m)(1 - s), with m and s the strongest
    music and speech class (`ContentGate.scores`). Rows sum to 1."""
    m, s = gate.scores(audioset)
    return np.stack([(1 - m) * s, m, (1 - m) * (1 - s)], axis=1)


# --- decisions over time -----------------------------------------------------------------------


def context_mean(
    x: np.ndarray, frames: int, start: int = 0, total: int | None = None
) -> np.ndarray:
    """Mean of x (T, C) over a window of `frames` centred on each frame (shorter at the ends).

    `x` may be frames [start, start + T) of a recording of `total` frames: windows are then
    clipped at the recording's ends, not the piece's (frames whose window leaves the piece are
    not exact)."""
    x = np.asarray(x, np.float64)
    t = len(x)
    total = start + t if total is None else total
    half = frames // 2
    c = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(x, axis=0)])
    pos = np.arange(start, start + t)
    lo = np.clip(pos - half, 0, total)
    hi = np.clip(pos - half + frames, 0, total)
    width = np.maximum(hi - lo, 1)[:, None]
    lo, hi = np.clip(lo - start, 0, t), np.clip(hi - start, 0, t)
    return ((c[hi] - c[lo]) / width).astype(np.float32)


def smooth(probs: np.ndarray, frames: int) -> np.ndarray:
    """Median filter of each class's probability over `frames` frames (the paper's smoothing)."""
    if frames <= 1:
        return probs
    return _median(probs, size=(frames, 1), mode="nearest")


def runs(labels: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) frame ranges of equal consecutive labels."""
    if len(labels) == 0:
        return []
    edges = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [len(labels)]])
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def to_intervals(labels: np.ndarray, probs: np.ndarray, duration: float) -> list[Interval]:
    """Runs of frame labels as intervals in seconds (the last one ends at `duration`)."""
    out = []
    for start, end in runs(labels):
        k = int(labels[start])
        conf = 1.0 if k < 0 else float(probs[start:end, k].mean())
        name = SILENCE if k < 0 else CLASSES[k]
        out.append(Interval(start / FPS, min(end / FPS, duration), name, conf))
    return out


def merge_short(labels: np.ndarray, probs: np.ndarray, min_frames: int) -> np.ndarray:
    """Labels with every run shorter than `min_frames` given to a neighbour, shortest first, so
    a 6-minute talk is a few rows instead of hundreds of flickers. A short run joins the
    neighbour whose class the run's own frames find likelier (silence counts as 0), except a
    sound with silence on both sides, which grows into that silence instead; runs of the same
    label that meet are joined. The result has no run under `min_frames` unless the whole
    recording is shorter."""
    import heapq

    bounds = runs(labels)
    if min_frames <= 1 or len(bounds) < 2:
        return labels
    start = [a for a, _ in bounds]
    end = [b for _, b in bounds]
    lab = [int(labels[a]) for a in start]
    prev = list(range(-1, len(bounds) - 1))
    nxt = [*range(1, len(bounds)), -1]
    alive = [True] * len(bounds)
    heap = [(end[i] - start[i], start[i], i) for i in range(len(bounds))]
    heapq.heapify(heap)

    def span(run: int) -> int:
        return end[run] - start[run]

    def likelihood(run: int, neighbour: int) -> float:
        k = lab[neighbour]
        return -1.0 if k < 0 else float(probs[start[run] : end[run], k].mean())

    def absorb(keep: int, gone: int) -> None:
        """`keep` takes over the frames of its neighbour `gone`."""
        start[keep], end[keep] = min(start[keep], start[gone]), max(end[keep], end[gone])
        alive[gone] = False
        p, n = prev[gone], nxt[gone]
        if p >= 0:
            nxt[p] = n
        if n >= 0:
            prev[n] = p

    while heap:
        length, _, i = heapq.heappop(heap)
        if not alive[i] or end[i] - start[i] != length:
            continue
        if length >= min_frames:
            break
        p, n = prev[i], nxt[i]
        if p < 0 and n < 0:
            break
        beside = [j for j in (p, n) if j >= 0]
        if lab[i] >= 0 and all(lab[j] < 0 for j in beside):
            # a lone sound between silences (a step, a bark, one word) keeps its class: it takes
            # in a silence that is shorter than what it lacks, or else that many frames of the
            # longer silence beside it, rather than vanishing into silence
            need = min_frames - length
            target, gone = i, min(beside, key=span)
            if span(gone) > need:
                j = max(beside, key=span)  # the longer silence gives up `need` of its frames
                if j == n:
                    end[i], start[j] = end[i] + need, start[j] + need
                else:
                    start[i], end[j] = start[i] - need, end[j] - need
                for k in (i, j):
                    heapq.heappush(heap, (end[k] - start[k], start[k], k))
                continue
        else:
            target = p if n < 0 or (p >= 0 and likelihood(i, p) >= likelihood(i, n)) else n
            gone = i
        absorb(target, gone)
        for other in (prev[target], nxt[target]):
            if other >= 0 and lab[other] == lab[target]:
                absorb(target, other)
        heapq.heappush(heap, (end[target] - start[target], start[target], target))
    out = np.empty_like(labels)
    for i in range(len(bounds)):
        if alive[i]:
            out[start[i] : end[i]] = lab[i]
    return out


def decide(
    probs: np.ndarray,
    db: np.ndarray,
    duration: float,
    median_frames: int,
    floor: float = SILENCE_DB,
    min_frames: int = 0,
    voiced_smoothing: bool = False,
) -> Timeline:
    """Smoothed frame probabilities → labels (silence by energy) → runs under `min_frames`
    merged into a neighbour → intervals. `voiced_smoothing`: the median filter runs over the
    non-silent frames only, so a lone word between pauses is smoothed with its neighbouring
    words, not with the silence around it."""
    db = db[: len(probs)]
    silent = silent_frames(db, silence_floor(db, floor))
    if voiced_smoothing and (~silent).any():
        p = probs.copy()
        p[~silent] = smooth(probs[~silent], median_frames)
    else:
        p = smooth(probs, median_frames)
    labels = p.argmax(axis=1).astype(np.int64)
    labels[silent] = -1
    labels = merge_short(labels, p, min_frames)
    return Timeline(duration, labels, p, to_intervals(labels, p, duration))


# --- the detector -----------------------------------------------------------------------------


#: Frames of input a causal SwishNet frame depends on, with room to spare (its receptive field
#: is 33 frames); and frames per pass of the network over a long recording (4.4 min: the window
#: means of a block take ~7 float64 copies of its features, ~50 MB; 17-min blocks took ~200 MB).
LEFT_CONTEXT = 256
BLOCK_FRAMES = 1 << 14


@torch.inference_mode()
def swishnet_frame_logits(
    model: SwishNet,
    x: np.ndarray,
    context: int,
    block: int = BLOCK_FRAMES,
    scale: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """(T, 3) logits of each frame's centred `context`-frame window over the input (T, n_mfcc)
    (standardised): the network's convolutions, the window mean, the classifier.

    Long inputs go `block` frames at a time, each with the input its frames and their windows
    depend on (the convolutions are causal: LEFT_CONTEXT frames before, the window's half
    after), so memory is bounded by a block and the logits are those of one pass. `scale`
    (mean, std) standardises each block as it goes, so hours of raw MFCCs are never copied."""
    t, half = len(x), context // 2
    out = []
    for a in range(0, max(t, 1), block):
        b = min(t, a + block)
        lo, hi = max(0, a - half - LEFT_CONTEXT), min(t, b + context)
        raw = x[lo:hi] if scale is None else (x[lo:hi] - scale[0]) / scale[1]
        piece = torch.from_numpy(np.ascontiguousarray(raw, np.float32))[None]
        feats = model.frame_features(piece)[0].T.numpy()  # (hi - lo, C)
        emb = context_mean(feats, context, lo, t)[a - lo : b - lo]
        out.append(model.classifier(torch.from_numpy(emb)).numpy())
    return np.concatenate(out)


#: Output frames (each TIME_STRIDE input frames) per pass of the mel-CNN over a long recording:
#: 65 s; its first layer's maps hold width x 4 x block x 40 floats (~10 MB each; blocks of
#: 4.4 min, as SwishNet's, took 547 MB for a 3-hour file, over issue 27's 500).
MEL_BLOCK = 1024


@torch.inference_mode()
def melcnn_frame_logits(
    model: MelCnn,
    x: np.ndarray,
    context: int,
    block: int = MEL_BLOCK,
    scale: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """(T, 3) logits of each frame's centred `context`-frame window over the log-mel input
    (T, n_mels): the convolutions, the window mean of the output frames (TIME_STRIDE input frames
    each), the classifier; each output frame's logits repeated over its input frames.

    Long inputs go `block` output frames at a time, each with the input its windows depend on
    (the window's reach plus the network's RECEPTIVE frames on both sides), so memory is bounded
    by a block; `scale` (mean, std) standardises each block as it goes."""
    s, t = model.TIME_STRIDE, len(x)
    n = -(-t // s)  # output frames: the last group is completed by repeating the last frame
    ctx = max(1, round(context / s))
    half, reach = ctx // 2, -(-model.RECEPTIVE // s)
    out = []
    for a in range(0, max(n, 1), block):
        b = min(n, a + block)
        lo, hi = max(0, a - half - reach), min(n, b + ctx + reach)
        raw = x[lo * s : hi * s]
        if len(raw) < (hi - lo) * s:  # the recording's last group
            raw = np.concatenate([raw, np.repeat(raw[-1:], (hi - lo) * s - len(raw), axis=0)])
        raw = raw if scale is None else (raw - scale[0]) / scale[1]
        piece = torch.from_numpy(np.ascontiguousarray(raw, np.float32))[None]
        feats = model.frame_features(piece)[0].T.numpy()  # (hi - lo, C)
        emb = context_mean(feats, ctx, lo, n)[a - lo : b - lo]
        out.append(model.classifier(torch.from_numpy(emb)).numpy())
    return np.repeat(np.concatenate(out), s, axis=0)[:t]


class DecodedFrames(Protocol):
    """What the detector needs of a decoded recording (`recordings.Decoded`)."""

    @property
    def feats(self) -> np.ndarray: ...  # (frames, MFCC or mel bands), not standardised

    @property
    def db(self) -> np.ndarray: ...  # (frames,) RMS level in dBFS

    @property
    def duration(self) -> float: ...


class Segmenter:
    """A speech / music / noise detector with its card's settings: the mel-CNN on log-mel
    frames (the default) or a SwishNet on MFCCs; the card names the input (`FEATURES`)."""

    def __init__(
        self,
        name: str | Path = DEFAULT_MODEL,
        device: str = "cpu",
        min_segment: float = MIN_SEGMENT_S,
    ) -> None:
        from mgctag.models.registry import load_model

        model, self.card = load_model(name, device=device)
        if not isinstance(model, (SwishNet, MelCnn)):
            raise MgctagError(f"{name}: not a speech / music / noise detector ({self.card.arch})")
        self.model = model
        pre = self.card.preprocessing
        self.features = FEATURES[pre.get("features", "mgctag.segments.detector.mfcc")]
        # what a long recording's frames are kept as: 40 mel bands of hours in float16 take
        # the memory of the 20 MFCCs in float32 (the bound of issue 27)
        self.store_dtype = np.float16 if isinstance(model, MelCnn) else np.float32
        self.mean = np.asarray(pre["standardize"]["mean"], np.float32)
        self.std = np.asarray(pre["standardize"]["std"], np.float32)
        self.context = round(float(pre.get("context_seconds", 1.0)) * FPS)
        self.median = round(float(pre.get("median_seconds", 1.0)) * FPS) | 1
        self.floor = float(pre.get("silence_db", SILENCE_DB))
        self.min_frames = round(min_segment * FPS)
        self.voiced_smoothing = bool(pre.get("voiced_smoothing", False))

    def inputs(self, y: np.ndarray) -> np.ndarray:
        """Standardised input frames (MFCCs or log-mel), computed in 10-minute blocks for long
        recordings."""
        return self.standardise(chunked_features(y, feats=self.features))

    def standardise(self, m: np.ndarray) -> np.ndarray:
        return (m - self.mean) / self.std

    def frame_probs(self, y: np.ndarray) -> np.ndarray:
        """(frames, 3) unsmoothed class probabilities of 16 kHz mono audio."""
        return self.input_probs(self.inputs(y))

    def input_probs(self, x: np.ndarray, raw: bool = False) -> np.ndarray:
        """(frames, 3) unsmoothed class probabilities of standardised input frames (`raw`: not
        yet standardised; done block by block)."""
        scale = (self.mean, self.std) if raw else None
        if isinstance(self.model, MelCnn):
            logits = melcnn_frame_logits(self.model, x, self.context, scale=scale)
        else:
            logits = swishnet_frame_logits(self.model, x, self.context, scale=scale)
        return torch.softmax(torch.from_numpy(logits), dim=1).numpy()

    @torch.inference_mode()
    def clip_probs(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """(clips, 3) probabilities, each clip classified whole (the paper's clip task)."""
        out = []
        for y in clips:
            x = torch.from_numpy(self.inputs(y))[None]
            out.append(torch.softmax(self.model(x)[0], dim=1)[0].numpy())
        return np.stack(out)

    def segment(self, y: np.ndarray) -> Timeline:
        """The timeline of 16 kHz mono audio."""
        probs = self.frame_probs(y)
        db = frame_db(y, len(probs))
        return decide(
            probs, db, len(y) / SR, self.median, self.floor, self.min_frames, self.voiced_smoothing
        )

    def segment_decoded(self, d: DecodedFrames) -> Timeline:
        """The timeline of a recording decoded by `recordings.decode_file`."""
        probs = self.input_probs(d.feats, raw=True)
        return decide(
            probs, d.db, d.duration, self.median, self.floor, self.min_frames, self.voiced_smoothing
        )
