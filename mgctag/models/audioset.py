"""The AudioSet tagger (EfficientAT mn04) over whole analysis windows at 32 kHz.

It hears what musicnn cannot: whether a window is music at all (mgctag.content), and genres outside
musicnn's pop/rock-centred vocabulary (Reggae, Latin, Afrobeat, ...). One forward pass per group of
equally long windows; its mel comes from mgctag.audio.features.efficientat_mel.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mgctag.audio.features import efficientat_mel
from mgctag.content import ContentGate
from mgctag.genres import GenreMap
from mgctag.models.registry import load_model

AUDIOSET_MODEL = "audioset_mn04"
AUDIOSET_RATE = 32000


class AudiosetTagger:
    """mn04 on 32 kHz mono windows: per-window class probabilities and 384-d embeddings."""

    def __init__(self, device: str = "cpu", name: str = AUDIOSET_MODEL) -> None:
        self.module, self.card = load_model(name, device=device)
        self.name = self.card.name
        self.labels = list(self.card.labels)
        self.sample_rate = int(self.card.preprocessing.get("sample_rate", AUDIOSET_RATE))
        self.device = device

    def gate(self, gmap: GenreMap) -> ContentGate:
        """The content gate over this tagger's classes, with the taxonomy's genre classes."""
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
