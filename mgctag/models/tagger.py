"""The taggers: every kind of genre model behind the one `Tagger` protocol (models/protocol.py).

- `EnsembleTagger`: a pair of tag models on the same mel patches, tags mapped to genres
  (`musicnn`: MSD + MTT musicnn, the default; `vgg`: the VGG pair); the first one embeds.
- `StudentTagger`: a seed-paper network distilled from musicnn (or retrained by the user): one
  softmax over canonical genres, on mel, MFCC or stacked stem patches, as its card says.
- `HeadTagger`: a user-trained head over another tagger's stored embeddings (no audio).

`catalog.get_tagger(name)` picks the class; nothing else needs to know which is which.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import cast

import numpy as np
import torch

from mgctag.content import MUSIC, SPEECH, ContentDecision, track_class
from mgctag.genres import GenreMap, combine_models, mean_tag_probs
from mgctag.models.cards import ModelCard
from mgctag.models.head import GenreHead, predict_proba
from mgctag.models.inputs import InputSpec, TrackInput, select_input
from mgctag.models.names import EMBEDDING_MODEL, MUSICNN_MODELS
from mgctag.models.protocol import Prediction, TaggerOutput, ranked, split_rows, unit_mean
from mgctag.models.registry import load_model
from mgctag.options import MUSICNN_TAGGER


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX): only there is bf16
    faster than float32; elsewhere torch emulates it, slower. Linux's /proc/cpuinfo says."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags.split()))


#: Patches per forward pass of a musicnn network and torch thread: see `EnsembleTagger._run`.
CHUNK_PATCHES = 3


class EnsembleTagger:
    """Tag models on the mix's mel patches, batched, on one device (the bundled musicnn pair).

    When the run separates stems, the embedding model also embeds each stem (for `similar`).
    `bf16` runs the networks under CPU bfloat16 autocast: about 1.6x faster, probabilities move by
    up to ~0.01, so only a tagger whose written genres were shown not to change sets it (see
    `audioset.CombinedTagger`); `--model musicnn` stays float32.
    """

    requires: tuple[str, ...] = ()

    def __init__(
        self,
        device: str = "cpu",
        name: str = MUSICNN_TAGGER,
        models: Sequence[str] = MUSICNN_MODELS,
    ) -> None:
        self.name = name
        self.device = device
        self.inputs = InputSpec("mel", embeds_stems=True)
        self.models: dict[str, torch.nn.Module] = {}
        self.labels: dict[str, list[str]] = {}
        for model_name in models:
            module, card = load_model(model_name, device=device)
            self.models[model_name] = module
            self.labels[model_name] = list(card.labels)
        self.embedding_model = models[0]
        self.bf16 = False
        self._workers: ThreadPoolExecutor | None = None  # `_side_by_side`, made when first used

    def __call__(self, patches: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """(n, 187, 96) log-mel patches → per model: tag probabilities, embeddings.

        On a CPU with two or more torch threads, the models run side by side, each in its own
        worker thread with half the threads (`_side_by_side`): two OpenMP threads on one small
        chunk spend much of their time waiting for each other, one network a core does not
        (a third less wall time, docs/benchmarks.md, issue 29). Same numbers either way.
        """
        x = torch.from_numpy(patches).to(self.device)
        if x.device.type == "cpu" and len(self.models) > 1 and torch.get_num_threads() > 1:
            return self._side_by_side(x)
        return {name: self._run(module, x) for name, module in self.models.items()}

    def _run(
        self, module: torch.nn.Module, x: torch.Tensor, threads: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """One network over the patches: (probabilities, embeddings).

        On a CPU it takes CHUNK_PATCHES patches a thread at once: musicnn's timbral convolution
        makes a (patches, 204, 187, 59) tensor before pooling, 9 MB a float32 patch, and glibc
        maps every block over 32 MB afresh, which the kernel zeroes page by page on each pass;
        3 patches stay under that, are reused from the heap and stay in cache. A GPU wants large
        batches. (Issue 29, quiet, side by side, 36 patches: 3 patches a thread 33.5 ms wall a
        patch against 42.9 for 12 in float32, 20.8 against 23.6 in bf16; docs/benchmarks.md.)
        `threads`: this thread's torch threads (a worker's own; 0 leaves them). Inference mode
        and autocast are per thread, so they are entered here.
        """
        if threads:
            torch.set_num_threads(threads)
        on_cpu = x.device.type == "cpu"
        size = CHUNK_PATCHES * torch.get_num_threads() if on_cpu else max(len(x), 1)
        got = []
        with (
            torch.inference_mode(),
            torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16),
        ):
            for chunk in torch.split(x, size) if len(x) else (x,):
                logits, emb = module(chunk)
                probs = torch.sigmoid(logits.float())
                got.append((probs.cpu().numpy(), emb.float().cpu().numpy()))
        return np.concatenate([p for p, _ in got]), np.concatenate([e for _, e in got])

    def _side_by_side(self, x: torch.Tensor) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Each model in its own worker thread with an even share of torch's threads."""
        if self._workers is None:
            self._workers = ThreadPoolExecutor(len(self.models), thread_name_prefix="mgctag-nn")
        share = max(1, torch.get_num_threads() // len(self.models))
        futures = {
            name: self._workers.submit(self._run, module, x, share)
            for name, module in self.models.items()
        }
        return {name: future.result() for name, future in futures.items()}

    @torch.inference_mode()
    def embed(self, patches: np.ndarray) -> np.ndarray:
        """(n, 187, 96) patches → (n, d) embeddings of the embedding model alone (for stems)."""
        _, emb = self.models[self.embedding_model](torch.from_numpy(patches).to(self.device))
        return emb.cpu().numpy()

    def analyse(self, batch: Sequence[TrackInput]) -> list[TaggerOutput]:
        counts = [len(item.features["mel"]) for item in batch]
        outputs = self(np.concatenate([item.features["mel"] for item in batch]))
        per_track = [TaggerOutput() for _ in batch]
        for model_name, (probs, emb) in outputs.items():
            for out, rows in zip(per_track, split_rows(probs, counts), strict=True):
                out.tags[model_name] = rows
            if model_name == self.embedding_model:
                for out, rows in zip(per_track, split_rows(emb, counts), strict=True):
                    out.embeddings["mix"] = rows
        self._embed_stems(batch, per_track)
        return per_track

    def _embed_stems(self, batch: Sequence[TrackInput], per_track: list[TaggerOutput]) -> None:
        """Each stem's patches through the embedding model, when the run separated them."""
        if "stems" not in batch[0].features:
            return
        from mgctag.separate import STEMS

        counts = [len(item.features["stems"]) for item in batch]
        for i, stem in enumerate(STEMS):
            x = np.concatenate([item.features["stems"][:, i] for item in batch])
            for out, rows in zip(per_track, split_rows(self.embed(x), counts), strict=True):
                out.embeddings[stem] = rows

    def predictions(self, output: TaggerOutput, gmap: GenreMap) -> list[Prediction]:
        per_model = {
            name: mean_tag_probs(output.tags[name], self.labels[name]) for name in self.labels
        }
        genres = ranked(combine_models(per_model, gmap))
        embeddings = {stem: unit_mean(rows) for stem, rows in output.embeddings.items()}
        return [Prediction(self.name, per_model, genres, embeddings)]


class StudentTagger:
    """A seed-paper network with one softmax over canonical genres, fed as its card says."""

    requires: tuple[str, ...] = ()

    def __init__(self, name: str, device: str = "cpu") -> None:
        self.module, self.card = load_model(name, device=device)
        self.name = self.card.name
        self.device = device
        self.inputs = student_spec(self.card)
        self.labels = {self.name: list(self.card.labels)}

    @torch.inference_mode()
    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Feature patches (as `select_input` gives them) → genre probabilities, embeddings."""
        t = prepare_input(x, self.card.preprocessing).to(self.device)
        logits, emb = self.module(t)
        return torch.softmax(logits, dim=-1).cpu().numpy(), emb.cpu().numpy()

    def analyse(self, batch: Sequence[TrackInput]) -> list[TaggerOutput]:
        spec = self.inputs
        inputs = [select_input(item.features, spec.feature, spec.stems) for item in batch]
        probs, emb = self(np.concatenate(inputs))
        counts = [len(x) for x in inputs]
        return [
            TaggerOutput(
                tags={self.name: p},
                embeddings={"mix": e},
                extra={k: np.asarray(item.features[k]) for k in WINDOW_KEYS if k in item.features},
            )
            for p, e, item in zip(
                split_rows(probs, counts), split_rows(emb, counts), batch, strict=True
            )
        ]

    def predictions(self, output: TaggerOutput, gmap: GenreMap) -> list[Prediction]:
        probs = output.tags[self.name]
        content = self.card.outputs.get("content_classes") or {}
        embeddings = {"mix": unit_mean(output.embeddings["mix"])}
        if not content or "mel_windows" not in output.extra:
            genres = ranked(list(zip(self.labels[self.name], probs.mean(axis=0), strict=True)))
            return [Prediction(self.name, {}, genres, embeddings)]
        decision, scores = student_decision(
            probs, output.extra["mel_windows"], output.extra["offsets"], self.labels[self.name],
            content,
        )  # fmt: skip
        return [Prediction(self.name, {}, ranked(scores), embeddings,
                           content=decision.content, windows=decision.windows)]  # fmt: skip


WINDOW_KEYS = ("mel_windows", "offsets")  # patches per window, window offsets (models/inputs.py)


def student_decision(
    probs: np.ndarray,
    patches_per_window: Sequence[int] | np.ndarray,
    offsets: Sequence[float] | np.ndarray,
    labels: Sequence[str],
    content: Mapping[str, str],
) -> tuple[ContentDecision, dict[str, float]]:
    """A student's own content gate and genres, from one pass.

    Students distilled from the default tagger have not-music outputs (`content`: class →
    label, e.g. speech → "(speech)"). Per window, the patches' mean softmax decides: music when
    the not-music outputs hold less than half the mass, else the larger of them. Genres are the
    mean over the music windows' patches (all windows when none is music), renormalised over the
    genre outputs so the selection floors read them as shares of the genre evidence.
    """
    index = {c: labels.index(label) for c, label in content.items()}
    genre_idx = [i for i in range(len(labels)) if i not in index.values()]
    starts = np.concatenate([[0], np.cumsum(patches_per_window)[:-1]]).astype(int)
    records, classes = [], []
    for start, n, offset in zip(starts, patches_per_window, offsets, strict=True):
        mean = probs[start : start + int(n)].mean(axis=0)
        not_music = {c: float(mean[i]) for c, i in index.items()}
        music = 1.0 - sum(not_music.values())
        cls = MUSIC if music >= 0.5 else max(not_music, key=lambda c: not_music[c])
        classes.append(cls)
        speech = round(not_music.get(SPEECH, 0.0), 4)
        records.append({"offset": round(float(offset), 3), "content": cls,
                        "music": round(music, 4), "speech": speech})  # fmt: skip
    chosen = [i for i, c in enumerate(classes) if c == MUSIC] or list(range(len(classes)))
    rows = np.concatenate([np.arange(starts[w], starts[w] + int(patches_per_window[w]))
                           for w in chosen])  # fmt: skip
    mean = probs[rows][:, genre_idx].mean(axis=0)
    mean = mean / max(float(mean.sum()), 1e-9)
    scores = {labels[i]: float(v) for i, v in zip(genre_idx, mean, strict=True)}
    return ContentDecision(track_class(classes), records, chosen), scores


def student_spec(card: ModelCard) -> InputSpec:
    """A student's input, from its card: the feature, its stems and the separator it needs."""
    prep = card.preprocessing
    kind = prep["input"]
    if kind == "stems":
        return InputSpec(
            "stems", stems=tuple(prep["stems"]), separator=prep.get("separator", "cascade")
        )
    return InputSpec(kind)


class HeadTagger:
    """A user-trained genre head over the stored embeddings of another tagger (musicnn)."""

    def __init__(self, name: str, device: str = "cpu") -> None:
        self.module, self.card = load_model(name)
        self.name = self.card.name
        prep = self.card.preprocessing
        source = prep.get("embedding_model", MUSICNN_TAGGER)
        self.inputs = InputSpec(
            "embeddings", stems=tuple(prep.get("stems", ["mix"])), source=source
        )
        self.requires = (source,)
        self.labels = {self.name: list(self.card.labels)}
        self.separator = prep.get("separator", "none")

    def analyse(self, batch: Sequence[TrackInput]) -> list[TaggerOutput]:
        # one track at a time: the same numbers whatever the batch (BLAS sums differ by size)
        head = cast(GenreHead, self.module)  # a head card builds a GenreHead
        return [
            TaggerOutput(tags={self.name: predict_proba(head, item.features["embeddings"])})
            for item in batch
        ]

    def predictions(self, output: TaggerOutput, gmap: GenreMap) -> list[Prediction]:
        probs = output.tags[self.name][0]
        genres = ranked(list(zip(self.labels[self.name], probs.tolist(), strict=True)))
        return [Prediction(self.name, {}, genres, {}, separator=self.separator)]


def prepare_input(x: np.ndarray | torch.Tensor, preprocessing: Mapping) -> torch.Tensor:
    """Feature patches → the float32 tensor a student reads, standardised as its card says.

    `x` is mel or MFCC patches (n, 187, bins) or the card's stems stacked (n, stems, 187, 96).
    """
    x = torch.as_tensor(x).float()
    if preprocessing.get("input") == "stems" and x.shape[1] > len(preprocessing["stems"]):
        x = x[:, : len(preprocessing["stems"])]  # all four stems given: the card's come first
    if stats := preprocessing.get("standardize"):
        x = (x - torch.tensor(stats["mean"])) / torch.tensor(stats["std"])
    return x


__all__ = ["EMBEDDING_MODEL", "MUSICNN_MODELS", "MUSICNN_TAGGER", "MusicnnTagger"]

# The name the rest of the code (distillation's teacher, scripts) knows the musicnn pair by.
MusicnnTagger = EnsembleTagger
