"""The genre head: a small network over stored embeddings, and how it gives probabilities.

The head is logistic regression (hidden=0) or a one-hidden-layer MLP over a fixed embedding
(musicnn's 200-d mix embedding, optionally with per-stem embeddings concatenated). Standardisation
lives inside the module as buffers, so the saved safetensors file is the whole model: no scaler
pickle beside it. Training is `mgctag.train.heads`; this module is what tagging needs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from mgctag.models.config import capture_init

ARCH = "genre_head"


@capture_init
class GenreHead(nn.Module):
    """Standardise -> [Linear -> ReLU -> Dropout] -> Linear; logits for `n_classes` genres."""

    shift: torch.Tensor  # buffers, registered in __init__
    scale: torch.Tensor
    config: dict[str, Any]  # set by capture_init

    def __init__(
        self,
        in_dim: int,
        n_classes: int,
        hidden: int = 0,
        multi_label: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.n_classes, self.multi_label = n_classes, multi_label
        self.register_buffer("shift", torch.zeros(in_dim))
        self.register_buffer("scale", torch.ones(in_dim))
        if hidden > 0:
            self.net = nn.Sequential(
                nn.Linear(in_dim, hidden),
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Linear(hidden, n_classes),
            )
        else:
            self.net = nn.Sequential(nn.Linear(in_dim, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.shift) / self.scale)

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Per-genre sigmoid when a track may have several genres, a softmax otherwise."""
        logits = self.forward(x)
        return torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)


def predict_proba(head: GenreHead, X: np.ndarray, batch: int = 65536) -> np.ndarray:
    """(n, in_dim) features -> (n, n_classes) float32 probabilities."""
    head.eval()
    X = np.asarray(X, np.float32)
    with torch.inference_mode(), torch_threads(None, X.size):
        parts = [
            head.probabilities(torch.from_numpy(X[i : i + batch])) for i in range(0, len(X), batch)
        ]
    return torch.cat(parts).numpy() if parts else np.zeros((0, head.n_classes), np.float32)


# Below this many feature values a head trains faster on one thread: with 200-odd tiny ops per
# L-BFGS step, thread wake-ups dominate (20x slower on a busy 2-core machine, measured in tests).
_SMALL = 1_000_000


@contextmanager
def torch_threads(n: int | None, size: int) -> Iterator[None]:
    """Temporarily set torch's intra-op threads (restored afterwards, even on error)."""
    before = torch.get_num_threads()
    wanted = n if n is not None else (1 if size < _SMALL else before)
    torch.set_num_threads(max(1, wanted))
    try:
        yield
    finally:
        torch.set_num_threads(before)
