"""The AudioSet tagger (EfficientAT mn04) and the default tagger that pairs it with musicnn.

mn04 hears what musicnn cannot: whether a window is music at all (mgctag.content), and genres
outside musicnn's pop/rock-centred vocabulary (Reggae, Latin, Afrobeat, ...). It reads whole
analysis windows at 32 kHz (`audio.features.efficientat_mel`), one unit per window.

`CombinedTagger` ("musicnn+mn04", the default) reads each window once, decoded at 32 kHz: mn04
gets the window, musicnn the same audio resampled to 16 kHz as mel patches (`InputSpec.also`).
The content gate decides per window; genres come from the music windows only and are the mean of
musicnn's and mn04's genre scores (`genres.mean_scores`, cross-validated in docs/models.md). It
stores three rows: musicnn's (so `--model musicnn`, user heads and `similar --by STEM` keep
working), mn04's (AudioSet classes, 384-d embedding) and its own (the mean, the content decision,
and musicnn's and mn04's embeddings concatenated, the better one for `similar`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
import torch

from mgctag.audio.features import efficientat_mel
from mgctag.content import ContentDecision, ContentGate, decide
from mgctag.genres import (
    DecisionGaps,
    GenreMap,
    Planning,
    average_known,
    decision_gaps,
    default_scores,
    mean_tag_probs,
    selection_margin,
)
from mgctag.models.inputs import InputSpec, TrackInput
from mgctag.models.names import AUDIOSET_MODEL, builtin_selection
from mgctag.models.protocol import Prediction, TaggerOutput, ranked, split_rows, unit_mean
from mgctag.models.registry import load_model
from mgctag.models.tagger import EnsembleTagger, native_bf16
from mgctag.options import DEFAULT_TAGGER

AUDIOSET_RATE = 32000
WAVEFORM = f"waveform@{AUDIOSET_RATE}"
# bfloat16 for musicnn's pair (2x faster per patch where the CPU has native bf16): raw, it changes
# the written genres of 2 of 88 real tracks; re-running a track in float32 when the default's
# written genres lie within BF16_MARGIN of changing keeps them (0 of 88) and makes the default as
# fast as musicnn alone. The musicnn row it stores is marked approximate (`Prediction`), so a later
# `--model musicnn` analyses again rather than write bf16 genres (docs/benchmarks.md,
# tools/bench/compare_precision.py). Off on CPUs without native bfloat16, where it would be slower.
# The margin is read against both of `genres.decision_gaps`: bf16 moved a combined genre score by
# at most 0.0048 and one model's own genre score by at most 0.0096 on 158 real tracks, so 0.012
# is 2.5x the first (a gap between two scores needs twice the drift) and 1.25x the second.
BF16_MUSICNN = native_bf16()
BF16_MARGIN = 0.012
BF16_GUARD_MUSICNN = False  # also guard the stored musicnn row's own written genres
# bf16 pays only while few tracks need that re-run: a bf16 pass costs 0.49-0.57 of a float32 one
# (CPU per patch), so once more than BF16_BREAK_EVEN of the last BF16_RECENT tracks were
# borderline, float32 alone is cheaper. The tagger then runs float32 (exact rows), still judges
# each track's margin, and goes back to bf16 when the share falls (docs/benchmarks.md, issue 29).
BF16_BREAK_EVEN = 0.45
BF16_RECENT = 32
BF16_MIN_SEEN = 8  # tracks judged before the share decides anything


class AudiosetNet:
    """mn04 on 32 kHz mono windows: per-window class probabilities and 384-d embeddings."""

    def __init__(self, device: str = "cpu", name: str = AUDIOSET_MODEL) -> None:
        self.module, self.card = load_model(name, device=device)
        self.labels = list(self.card.labels)
        self.device = device

    def gate(self, gmap: GenreMap) -> ContentGate:
        """The content gate over this model's classes, with the taxonomy's genre classes."""
        return ContentGate.for_labels(self.labels, gmap.tags)

    @torch.inference_mode()
    def __call__(self, windows: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Mono windows at 32 kHz → (windows, 527) probabilities, (windows, 384) embeddings.

        Windows of the same length share a forward pass; a shorter last window gets its own.
        """
        n = len(windows)
        probs = np.zeros((n, len(self.labels)), np.float32)
        embs = np.zeros((n, int(self.card.embedding_dim or 384)), np.float32)
        by_length: dict[int, list[int]] = {}
        for i, y in enumerate(windows):
            by_length.setdefault(len(y), []).append(i)
        for idx in by_length.values():
            mel = np.stack([efficientat_mel(windows[i]) for i in idx])
            logits, emb = self.module(torch.from_numpy(mel).to(self.device))
            probs[idx] = torch.sigmoid(logits).cpu().numpy()
            embs[idx] = emb.cpu().numpy()
        return probs, embs


class AudiosetTagger:
    """mn04 alone as a tagger (`--model audioset_mn04`): AudioSet genres and the content gate."""

    requires: tuple[str, ...] = ()

    def __init__(self, name: str = AUDIOSET_MODEL, device: str = "cpu") -> None:
        self.net = AudiosetNet(device, name)
        self.name = self.net.card.name
        self.inputs = InputSpec("waveform", sample_rate=AUDIOSET_RATE)
        self.labels = {self.name: self.net.labels}

    def analyse(self, batch: Sequence[TrackInput]) -> list[TaggerOutput]:
        return _audioset_outputs(self.net, self.name, batch)

    def predictions(self, output: TaggerOutput, gmap: GenreMap) -> list[Prediction]:
        decision = decide(self.net.gate(gmap), output.tags[self.name], output.extra["offsets"])
        return [audioset_row(self.name, self.net.labels, output, decision, gmap)]


def _audioset_outputs(
    net: AudiosetNet, name: str, batch: Sequence[TrackInput]
) -> list[TaggerOutput]:
    """mn04 over every track's windows in one call, given back per track."""
    windows = [item.features[WAVEFORM] for item in batch]
    probs, emb = net([w for track in windows for w in track])
    counts = [len(w) for w in windows]
    return [
        TaggerOutput(
            tags={name: p},
            extra={"mn04_embedding": e, "offsets": np.asarray(item.features["offsets"])},
        )
        for p, e, item in zip(
            split_rows(probs, counts), split_rows(emb, counts), batch, strict=True
        )
    ]


def audioset_row(
    name: str, labels: list[str], output: TaggerOutput, decision: ContentDecision, gmap: GenreMap
) -> Prediction:
    """mn04's own row: its classes over all windows, genres over the music windows."""
    probs = output.tags[name]
    genres = gmap.genre_scores(mean_tag_probs(probs[decision.genre_windows], labels))
    return Prediction(
        name,
        {name: mean_tag_probs(probs, labels)},
        ranked(genres),
        {"mix": unit_mean(output.extra["mn04_embedding"])},
        content=decision.content,
        windows=decision.windows,
    )


class CombinedTagger:
    """The default: musicnn (MSD + MTT) and mn04 on each window decoded once, content-gated."""

    requires: tuple[str, ...] = ()

    def __init__(self, device: str = "cpu") -> None:
        self.name = DEFAULT_TAGGER
        self.musicnn = EnsembleTagger(device)
        self.musicnn.bf16 = BF16_MUSICNN
        self.net = AudiosetNet(device)
        self.inputs = InputSpec(
            "waveform", sample_rate=AUDIOSET_RATE, embeds_stems=True, also=("mel",)
        )
        self.labels = {**self.musicnn.labels, AUDIOSET_MODEL: self.net.labels}
        self.recent: deque[bool] = deque(maxlen=BF16_RECENT)  # borderline or not, per track

    def analyse(self, batch: Sequence[TrackInput]) -> list[TaggerOutput]:
        allowed = self.musicnn.bf16
        self.musicnn.bf16 = used = allowed and bf16_pays(self.recent)
        try:
            outputs = self.musicnn.analyse(batch)
        finally:
            self.musicnn.bf16 = allowed
        for out, extra, item in zip(
            outputs, _audioset_outputs(self.net, AUDIOSET_MODEL, batch), batch, strict=True
        ):
            out.tags.update(extra.tags)
            out.extra.update(extra.extra)
            out.extra["mel_windows"] = np.asarray(item.features["mel_windows"])
            if used:
                out.extra["mel"] = item.features["mel"]  # for a float32 re-run (predictions)
            elif allowed:
                out.extra["judge"] = np.asarray(True)  # float32 by choice: still judge margins
        return outputs

    def predictions(self, output: TaggerOutput, gmap: GenreMap) -> list[Prediction]:
        rows = self._rows(output, gmap)
        if "mel" not in output.extra:  # musicnn ran in float32
            if output.extra.pop("judge", None) is not None:
                self.recent.append(self._borderline(rows))
            return rows
        borderline = self._borderline(rows)
        self.recent.append(borderline)
        if borderline:
            self._float32_musicnn(output, output.extra.pop("mel"))
            return self._rows(output, gmap)
        musicnn, *rest = rows
        return [replace(musicnn, approximate=True), *rest]  # bf16: not for `--model musicnn`

    def _borderline(self, rows: list[Prediction]) -> bool:
        """Whether bfloat16's drift could change the genres written from musicnn's row or ours."""
        musicnn, _, combined = rows
        gaps = planned_gaps(combined)
        if gaps.scores < BF16_MARGIN or gaps.models < BF16_MARGIN:
            return True
        return (
            BF16_GUARD_MUSICNN and choice_margin(dict(musicnn.genres), musicnn.model) < BF16_MARGIN
        )

    def _float32_musicnn(self, output: TaggerOutput, mel: np.ndarray) -> None:
        """musicnn's tags and embeddings of this track again, in float32."""
        self.musicnn.bf16 = False
        try:
            for name, (probs, emb) in self.musicnn(mel).items():
                output.tags[name] = probs
                if name == self.musicnn.embedding_model:
                    output.embeddings["mix"] = emb
        finally:
            self.musicnn.bf16 = True

    def _rows(self, output: TaggerOutput, gmap: GenreMap) -> list[Prediction]:
        (musicnn,) = self.musicnn.predictions(output, gmap)
        probs = output.tags[AUDIOSET_MODEL]
        decision = decide(self.net.gate(gmap), probs, output.extra["offsets"])
        audioset = audioset_row(AUDIOSET_MODEL, self.net.labels, output, decision, gmap)
        rows = patch_rows(output.extra["mel_windows"], decision.genre_windows)
        per_vocabulary = self.vocabulary_scores(output, rows, gmap)
        per_vocabulary[AUDIOSET_MODEL] = dict(audioset.genres)
        genres = default_scores(per_vocabulary)
        embedding = unit_mean(
            np.concatenate([musicnn.embeddings["mix"], audioset.embeddings["mix"]])[None]
        )
        combined = Prediction(
            self.name,
            {name: _rounded(scores) for name, scores in per_vocabulary.items()},
            ranked(genres),
            {"mix": embedding},
            content=decision.content,
            windows=decision.windows,
        )
        return [musicnn, audioset, combined]

    def vocabulary_scores(
        self, output: TaggerOutput, rows: np.ndarray, gmap: GenreMap
    ) -> dict[str, dict[str, float]]:
        """Each musicnn model's genre scores (MSD, MTT) over the chosen patches. Stored apart in
        the combined row so that planning can see which models back a genre (the lone-tag rule,
        `genres.backed_genres`) without analysing again."""
        return {
            name: gmap.genre_scores(mean_tag_probs(output.tags[name][rows], labels))
            for name, labels in self.musicnn.labels.items()
        }

    def musicnn_scores(
        self, output: TaggerOutput, rows: np.ndarray, gmap: GenreMap
    ) -> dict[str, float]:
        """musicnn's genre scores (MSD + MTT, as `combine_models`) over the chosen patches."""
        return average_known(list(self.vocabulary_scores(output, rows, gmap).values()))


def bf16_pays(recent: Sequence[bool]) -> bool:
    """Whether a bf16 pass is cheaper than float32, judging by how many of the recent tracks were
    borderline (each of those costs a bf16 and a float32 pass)."""
    if len(recent) < BF16_MIN_SEEN:
        return True
    return sum(recent) / len(recent) <= BF16_BREAK_EVEN


def _rounded(scores: Mapping[str, float]) -> dict[str, float]:
    return {g: round(float(s), 6) for g, s in scores.items()}


def choice_margin(scores: Mapping[str, float], name: str) -> float:
    """How far the genres a built-in tagger writes from `scores` are from changing, by its count
    and floors alone (`genres.selection_margin`)."""
    return selection_margin(scores, *builtin_selection(name))


def planned_gaps(row: Prediction) -> DecisionGaps:
    """How far the genres planning writes from the default's row by default (tree, depth,
    lone-tag rule: `genres.decision_gaps`) are from changing."""
    plan = Planning.shipped(builtin_selection(row.model))
    return decision_gaps(dict(row.genres), plan, per_model=list(row.tags.values()))


def patch_rows(patches_per_window: np.ndarray, windows: Sequence[int]) -> np.ndarray:
    """The indices of the mel patches that belong to the given windows."""
    starts = np.concatenate([[0], np.cumsum(patches_per_window)[:-1]])
    return np.concatenate(
        [np.arange(starts[w], starts[w] + patches_per_window[w]) for w in windows]
    ).astype(np.int64)
