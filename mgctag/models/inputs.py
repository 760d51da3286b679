"""The features stage: from one track to every input the run's taggers declared, decoding once.

Each tagger declares what it reads as an `InputSpec` (mel / MFCC / stacked stem patches at 16 kHz,
raw waveform windows at its own rate, or another tagger's stored embeddings). `prepare` decodes
the track's analysis windows once, at the highest rate any of them needs (the separator's rate
when stems are made), and resamples that audio for the others with the one resampler
(`decode.convert`), so two taggers at 16 and 32 kHz never decode a file twice.

Tracks too short or too quiet to judge are *skipped* with a reason, not failed: a 60 ms jingle or
digital silence has no genre, and the user did nothing wrong by having it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mgctag.audio import decode, features, segment
from mgctag.library.rows import Track
from mgctag.models.names import FEATURES, PATCH_FEATURES
from mgctag.separate.base import STEMS, SeparationError, Separator
from mgctag.separate.files import write_stems

# Below this much audible signal (in the analysed windows) a track is skipped, not guessed at.
MIN_AUDIBLE_SECONDS = 2.0
SILENCE_DB = -50.0  # a window (or 50 ms frame) quieter than this RMS level counts as silent


@dataclass(frozen=True)
class InputSpec:
    """What one tagger reads. Plain data: the pipeline plans the run's decoding from these.

    `stems` names the stems read, in order (feature "stems": the stacked channels; "embeddings":
    the stored vectors concatenated). `separator` is the separator a model was trained with (it is
    used whatever the run's --stems says); `embeds_stems` says the tagger also embeds each stem
    when the run separates anyway (musicnn does, for `similar --by drums`). `source` is the tagger
    whose stored embeddings an "embeddings" tagger reads. `window_seconds` pins the analysis
    window length (None: the run's --window-seconds). `also` names patch features (mel, mfcc)
    a waveform tagger reads besides its windows (the default reads 32 kHz windows for mn04 and
    16 kHz mel patches for musicnn from the same decode).
    """

    feature: str = "mel"
    sample_rate: int = features.SR
    window_seconds: float | None = None
    stems: tuple[str, ...] = ()
    separator: str | None = None
    embeds_stems: bool = False
    source: str | None = None
    also: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if any(k not in PATCH_FEATURES for k in self.also):
            raise ValueError(f"`also` takes patch features only ({PATCH_FEATURES})")
        if self.feature not in FEATURES:
            raise ValueError(f"unknown input feature {self.feature!r} (one of {FEATURES})")
        if self.feature in PATCH_FEATURES and self.sample_rate != features.SR:
            raise ValueError(f"{self.feature} patches are made at {features.SR} Hz only")
        if self.feature == "embeddings" and not self.source:
            raise ValueError("an embeddings input names the tagger whose embeddings it reads")

    @property
    def key(self) -> str:
        """The key of this input in `TrackInput.features`."""
        return f"waveform@{self.sample_rate}" if self.feature == "waveform" else self.feature

    @property
    def reads_audio(self) -> bool:
        return self.feature != "embeddings"

    @property
    def needs_stems(self) -> bool:
        return self.feature == "stems" or any(s != "mix" for s in self.stems)


@dataclass
class TrackInput:
    """One track's inputs, made by the decode worker (or from the library for embeddings).

    `features[spec.key]`: "mel" (n, 187, 96), "mfcc" (n, 187, 20), "stems" (n, 4, 187, 96) in
    `STEMS` order (made whenever the run separates), "waveform@RATE" a list of mono windows,
    "embeddings" (1, d). `units` is how many analysis units (patches, windows) the track brings
    to a batch. `error` is a failure; `error_type` the exception class behind an unexpected one
    (shown with -v); `skip` a reason not to analyse that is not a failure.
    """

    track: Track  # the library's row (or `Track.of_file` for a file outside it)
    features: dict[str, Any] = field(default_factory=dict)
    units: int = 0
    error: str | None = None
    error_type: str | None = None
    skip: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    stage: str = "decode"  # where an error happened, as the failures table records it


@dataclass(frozen=True)
class InputPlan:
    """Everything the decode worker makes for each track of one run."""

    specs: tuple[InputSpec, ...]
    windows: int = 3
    window_seconds: float = 10.0
    keep_stems: Path | None = None  # write each analysed window's stems here

    @property
    def keys(self) -> set[str]:
        return {s.key for s in self.specs if s.reads_audio} | {
            k for s in self.specs for k in s.also
        }

    @property
    def window_length(self) -> float:
        pinned = [s.window_seconds for s in self.specs if s.window_seconds]
        return max(pinned) if pinned else self.window_seconds

    def decode_rate(self, separator: Separator | None) -> int:
        """The one rate to decode at: the highest any input (or the separator) needs."""
        rates = [s.sample_rate for s in self.specs if s.reads_audio]
        if separator is not None:
            rates.append(separator.sample_rate)
        return max(rates, default=features.SR)


def select_input(feats: Mapping[str, Any], kind: str, stems: Sequence[str] = STEMS) -> Any:
    """The array a patch network reads: mel or MFCC patches, or the named stems' channels.

    Works on numpy arrays and torch tensors alike (training reads cached tensors the same way).
    """
    if kind == "stems":
        return feats["stems"][:, [STEMS.index(s) for s in stems]]
    return feats[kind]


def prepare(track: Track, plan: InputPlan, separator: Separator | None = None) -> TrackInput:
    """Decode one track's analysis windows once, (separate them,) and make every planned input."""
    t0 = time.perf_counter()
    path = track.path
    rate = plan.decode_rate(separator)
    try:
        duration = track.duration or decode.probe(path).duration
        windows = segment.plan_windows(duration, n=plan.windows, length=plan.window_length)
        audio = decode.load_windows(path, rate, windows, mono=separator is None)
    except decode.DecodeError as exc:
        return TrackInput(track, error=exc.reason)
    except OSError as exc:
        return TrackInput(track, error=exc.strerror or str(exc))
    seconds = {"decode": time.perf_counter() - t0}
    keys = plan.keys
    patch_rate = any(k in PATCH_FEATURES for k in keys) or not keys
    judge_rate = features.SR if patch_rate else min(s.sample_rate for s in plan.specs)
    mono = _mono_at(audio, rate, judge_rate, already_mono=separator is None)
    chosen = segment.select_windows(windows, mono, threshold_db=SILENCE_DB)
    if not chosen:
        return TrackInput(track, error="no audio to analyse", seconds=seconds)
    if all(w.silent for w in chosen):
        return TrackInput(track, skip="silent: nothing audible to analyse", seconds=seconds)
    audible = sum(segment.audible_seconds(w.audio, judge_rate, SILENCE_DB) for w in chosen)
    if audible < MIN_AUDIBLE_SECONDS:
        reason = f"too short: {audible:.1f} s of audible audio (at least {MIN_AUDIBLE_SECONDS:g} s)"
        return TrackInput(track, skip=reason, seconds=seconds)
    offsets = {w.offset for w in chosen}
    kept = [i for i, (offset, _) in enumerate(windows) if offset in offsets]
    item = TrackInput(track, seconds=seconds)
    if judge_rate == features.SR:
        mix16 = [mono[i] for i in kept]
    else:
        mix16 = _mono_at([audio[i] for i in kept], rate, features.SR, separator is None)
    if "mel" in keys or not keys or separator is not None:
        per_window = [features.patches(features.log_mel(y, features.SR)) for y in mix16]
        item.features["mel"] = np.concatenate(per_window)
        item.features["mel_windows"] = [len(p) for p in per_window]  # patches of each window
    if "mfcc" in keys:
        per_window = [features.patches(features.mfcc(y, features.SR)) for y in mix16]
        item.features["mfcc"] = np.concatenate(per_window)
        item.features.setdefault("mel_windows", [len(p) for p in per_window])
    for spec in plan.specs:
        if spec.feature == "waveform":
            item.features[spec.key] = _mono_at([audio[i] for i in kept], rate, spec.sample_rate)
            item.features["offsets"] = [windows[i][0] for i in kept]
    if separator is not None:
        t1 = time.perf_counter()
        try:
            stems = separator.separate_batch([audio[i] for i in kept], rate)
        except SeparationError as exc:
            return TrackInput(track, error=f"separation failed: {exc}", seconds=seconds)
        seconds["separation"] = time.perf_counter() - t1
        if plan.keep_stems:
            _keep_stems(Path(path), plan.keep_stems, stems, [windows[i] for i in kept], rate)
        item.features["stems"] = np.stack(
            [
                np.concatenate(
                    [_patches_of([decode.convert(s[stem], rate, features.SR)]) for s in stems]
                )
                for stem in STEMS
            ],
            axis=1,
        )  # (patches, 4, 187, 96) in STEMS order
    item.features.setdefault("offsets", [windows[i][0] for i in kept])  # for per-window gates
    first = next(iter(item.features.values()))
    item.units = len(first)
    seconds["features"] = time.perf_counter() - t0 - sum(seconds.values())
    return item


def _mono_at(
    audio: Sequence[np.ndarray], rate: int, target: int, already_mono: bool = True
) -> list[np.ndarray]:
    """Each window as mono at `target` (the decoded arrays themselves when nothing changes)."""
    if already_mono and rate == target:
        return list(audio)
    return [decode.convert(y, rate, target) for y in audio]


def _patches_of(mono16: Sequence[np.ndarray], transform=features.log_mel) -> np.ndarray:
    """Windows at 16 kHz → their 187-frame patches, concatenated in window order."""
    return np.concatenate([features.patches(transform(y, features.SR)) for y in mono16])


def _keep_stems(
    path: Path, out_dir: Path, stems: list[dict], windows: list[tuple[float, float]], rate: int
) -> None:
    """KEEP/<file name>/<offset>s/<stem>.flac for each analysed window, for a user who asked.

    The whole file name, extension included: song.flac and song.mp3 must not share a folder.
    """
    for window, window_stems in zip(windows, stems, strict=True):
        write_stems(window_stems, rate, out_dir / path.name / f"{window[0]:g}s")
