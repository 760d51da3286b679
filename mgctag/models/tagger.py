"""The bundled tagger: both musicnn ports on the mix, batched; MSD's penultimate layer embeds.

One place loads the pair for everything that needs it: the pipeline, and distillation (teacher).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from mgctag.models.registry import load_model

DEFAULT_TAGGER = "musicnn"
MUSICNN_MODELS = ("MSD_musicnn", "MTT_musicnn")
EMBEDDING_MODEL = "MSD_musicnn"
# What the seed papers' networks read (their card's preprocessing.input).
STUDENT_INPUTS = ("mel", "stems", "mfcc")
# musicnn blended with a distilled student that reads the same mel patches:
# name -> (student, musicnn's weight); measured and cross-validated in docs/models.md
BLENDS = {"musicnn+crnn": ("crnn_small", 0.5)}


class MusicnnTagger:
    """The bundled tagger: MSD_musicnn + MTT_musicnn, batched, on one device.

    With `blend` (a name in BLENDS) it also runs that blend's student on the same patches; the
    pipeline then stores the blended genres under the blend's name beside musicnn's analysis.
    """

    def __init__(self, device: str = "cpu", blend: str | None = None) -> None:
        self.models = {}
        self.labels = {}
        for model_name in MUSICNN_MODELS:
            module, card = load_model(model_name, device=device)
            self.models[model_name] = module
            self.labels[model_name] = list(card.labels)
        self.device = device
        self.name = DEFAULT_TAGGER
        self.blend = blend
        self.companion: StudentTagger | None = None
        self.weight = 1.0
        if blend is not None:
            student, self.weight = BLENDS[blend]
            self.companion = StudentTagger(student, device)

    @torch.inference_mode()
    def __call__(self, patches: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """(n, 187, 96) log-mel patches → per model: tag probabilities, embeddings."""
        x = torch.from_numpy(patches).to(self.device)
        out = {}
        for model_name, module in self.models.items():
            logits, emb = module(x)
            out[model_name] = (torch.sigmoid(logits).cpu().numpy(), emb.cpu().numpy())
        return out

    @torch.inference_mode()
    def embed(self, patches: np.ndarray) -> np.ndarray:
        """(n, 187, 96) patches → (n, d) embeddings of the embedding model alone (for stems)."""
        _, emb = self.models[EMBEDDING_MODEL](torch.from_numpy(patches).to(self.device))
        return emb.cpu().numpy()


class StudentTagger:
    """A bundled seed-paper network distilled from musicnn: one softmax over canonical genres."""

    def __init__(self, name: str, device: str = "cpu") -> None:
        self.module, self.card = load_model(name, device=device)
        self.name = self.card.name
        self.input = self.card.preprocessing["input"]
        self.labels = list(self.card.labels)
        self.device = device

    @torch.inference_mode()
    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Feature patches (stems stacked in STEMS order) → genre probabilities, embeddings."""
        t = prepare_input(x, self.card.preprocessing).to(self.device)
        logits, emb = self.module(t)
        return torch.softmax(logits, dim=-1).cpu().numpy(), emb.cpu().numpy()


def prepare_input(x: np.ndarray | torch.Tensor, preprocessing: Mapping) -> torch.Tensor:
    """Feature patches → the float32 tensor a distilled student reads, as its card says.

    `x` is mel or MFCC patches (n, 187, bins) or stacked stem patches (n, stems, 187, 96) in
    `STEMS` order; stems beyond the card's `stems` are dropped, `standardize` is applied.
    """
    x = torch.as_tensor(x).float()
    if preprocessing.get("input") == "stems":
        x = x[:, : len(preprocessing["stems"])]
    if stats := preprocessing.get("standardize"):
        x = (x - torch.tensor(stats["mean"])) / torch.tensor(stats["std"])
    return x
