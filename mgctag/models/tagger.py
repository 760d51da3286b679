"""The bundled tagger: both musicnn ports on the mix, batched; MSD's penultimate layer embeds.

One place loads the pair for everything that needs it: the pipeline, and distillation (teacher).
"""

from __future__ import annotations

import numpy as np
import torch

from mgctag.models.registry import load_model

DEFAULT_TAGGER = "musicnn"
MUSICNN_MODELS = ("MSD_musicnn", "MTT_musicnn")
EMBEDDING_MODEL = "MSD_musicnn"


class MusicnnTagger:
    """The bundled tagger: MSD_musicnn + MTT_musicnn, batched, on one device."""

    name = DEFAULT_TAGGER

    def __init__(self, device: str = "cpu") -> None:
        self.models = {}
        self.labels = {}
        for model_name in MUSICNN_MODELS:
            module, card = load_model(model_name, device=device)
            self.models[model_name] = module
            self.labels[model_name] = list(card.labels)
        self.device = device

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
