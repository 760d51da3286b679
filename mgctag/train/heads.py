"""A small genre head on stored embeddings, trained in seconds on the CPU.

The head is logistic regression (hidden=0) or a one-hidden-layer MLP over a fixed embedding
(musicnn's 200-d mix embedding, optionally with per-stem embeddings concatenated). Standardisation
lives inside the module as buffers, so the saved safetensors file is the whole model: no scaler
pickle beside it. Full-batch L-BFGS is used because a few thousand rows fit in memory many times
over and it converges in tens of iterations without a learning rate to tune.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

ARCH = "genre_head"


class GenreHead(nn.Module):
    """Standardise -> [Linear -> ReLU -> Dropout] -> Linear; logits for `n_classes` genres."""

    def __init__(
        self,
        in_dim: int,
        n_classes: int,
        hidden: int = 0,
        multi_label: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.in_dim, self.n_classes, self.hidden = in_dim, n_classes, hidden
        self.multi_label, self.dropout = multi_label, dropout
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

    @property
    def arch_args(self) -> dict[str, Any]:
        """Constructor arguments, for the model card ("arch_args") that rebuilds this module."""
        return {
            "in_dim": self.in_dim,
            "n_classes": self.n_classes,
            "hidden": self.hidden,
            "multi_label": self.multi_label,
            "dropout": self.dropout,
        }

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
    with torch.inference_mode(), _threads(None, X.size):
        parts = [
            head.probabilities(torch.from_numpy(X[i : i + batch])) for i in range(0, len(X), batch)
        ]
    return torch.cat(parts).numpy() if parts else np.zeros((0, head.n_classes), np.float32)


@dataclass
class TrainConfig:
    """How a head is trained; every field goes into the model card so a result can be rerun.

    L-BFGS wants a deterministic loss, so dropout is only allowed with optimizer="adam".
    threads=None picks one torch thread for small problems (see `_threads`), else torch's default.
    """

    hidden: int = 0
    weight_decay: float = 0.5  # L2 on weights / n_train: 0.5 is scikit-learn's C=1
    dropout: float = 0.0
    optimizer: str = "lbfgs"
    max_iter: int = 200
    epochs: int = 200
    lr: float = 1e-2
    balanced: bool = True
    seed: int = 0
    threads: int | None = None


@dataclass
class TrainReport:
    """What happened in one training run (JSON-serialisable via to_dict)."""

    labels: list[str]
    multi_label: bool
    n_train: int
    n_features: int
    class_counts: dict[str, int]
    iterations: int
    final_loss: float
    train_accuracy: float
    seconds: float
    config: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Below this many feature values a head trains faster on one thread: with 200-odd tiny ops per
# L-BFGS step, thread wake-ups dominate (20x slower on a busy 2-core machine, measured in tests).
_SMALL = 1_000_000


@contextmanager
def _threads(n: int | None, size: int) -> Iterator[None]:
    """Temporarily set torch's intra-op threads (restored afterwards, even on error)."""
    before = torch.get_num_threads()
    wanted = n if n is not None else (1 if size < _SMALL else before)
    torch.set_num_threads(max(1, wanted))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _standardise(head: GenreHead, X: torch.Tensor) -> None:
    head.shift.copy_(X.mean(dim=0))
    head.scale.copy_(X.std(dim=0, unbiased=False).clamp_min(1e-6))


def _loss_fn(Y: torch.Tensor, multi_label: bool, balanced: bool):
    """BCE for multi-label targets, else cross-entropy on the one genre; classes balanced."""
    counts = Y.sum(dim=0).clamp_min(1.0)
    if multi_label:
        pos_weight = ((len(Y) - counts) / counts).clamp(max=100.0) if balanced else None
        return nn.BCEWithLogitsLoss(pos_weight=pos_weight), Y
    weight = (len(Y) / (len(counts) * counts)) if balanced else None
    return nn.CrossEntropyLoss(weight=weight), Y.argmax(dim=1)


def _l2(head: GenreHead) -> torch.Tensor:
    return sum((m.weight**2).sum() for m in head.net if isinstance(m, nn.Linear))


def _fit_lbfgs(head: GenreHead, X, target, loss_fn, cfg: TrainConfig) -> tuple[int, float]:
    opt = torch.optim.LBFGS(
        head.parameters(),
        lr=1.0,
        max_iter=cfg.max_iter,
        history_size=20,
        tolerance_grad=1e-6,
        tolerance_change=1e-9,
        line_search_fn="strong_wolfe",
    )
    n = len(X)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = loss_fn(head(X), target) + cfg.weight_decay * _l2(head) / n
        loss.backward()
        return loss

    opt.step(closure)
    iterations = int(opt.state_dict()["state"].get(0, {}).get("n_iter", 0))
    with torch.no_grad():
        return iterations, float(loss_fn(head(X), target))


def _fit_adam(head: GenreHead, X, target, loss_fn, cfg: TrainConfig) -> tuple[int, float]:
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(cfg.seed)
    batch = min(len(X), 256)
    for _ in range(cfg.epochs):
        for idx in torch.randperm(len(X), generator=gen).split(batch):
            opt.zero_grad()
            loss = loss_fn(head(X[idx]), target[idx]) + cfg.weight_decay * _l2(head) / len(X)
            loss.backward()
            opt.step()
    with torch.no_grad():
        return cfg.epochs, float(loss_fn(head(X), target))


def _train_accuracy(head: GenreHead, X: torch.Tensor, Y: torch.Tensor) -> float:
    """Share of tracks whose top genre is one of theirs."""
    with torch.no_grad():
        top = head(X).argmax(dim=1)
    return float(Y[torch.arange(len(Y)), top].mean())


def train_head(
    X: np.ndarray,
    Y: np.ndarray,
    labels: list[str],
    *,
    config: TrainConfig | None = None,
    multi_label: bool | None = None,
    **overrides: Any,
) -> tuple[GenreHead, TrainReport]:
    """Fit a GenreHead on features X (n, d) and multi-hot targets Y (n, n_classes).

    `multi_label` defaults to whether any row has several genres. Keyword overrides (hidden=64,
    weight_decay=..., optimizer="adam", seed=...) replace fields of `config`.
    """
    cfg = TrainConfig(**{**asdict(config or TrainConfig()), **overrides})
    X_t = torch.as_tensor(np.asarray(X, np.float32))
    Y_t = torch.as_tensor(np.asarray(Y, np.float32))
    if X_t.ndim != 2 or Y_t.shape != (len(X_t), len(labels)):
        raise ValueError(
            f"X {tuple(X_t.shape)} and Y {tuple(Y_t.shape)} do not match {len(labels)} labels"
        )
    if len(X_t) == 0 or (Y_t.sum(dim=1) == 0).any():
        raise ValueError("every training row needs at least one genre")
    multi = bool((Y_t.sum(dim=1) > 1).any()) if multi_label is None else multi_label
    torch.manual_seed(cfg.seed)
    head = GenreHead(X_t.shape[1], len(labels), cfg.hidden, multi, cfg.dropout)
    _standardise(head, X_t)
    loss_fn, target = _loss_fn(Y_t, multi, cfg.balanced)
    if cfg.optimizer not in ("lbfgs", "adam"):
        raise ValueError(f"unknown optimizer {cfg.optimizer!r} (lbfgs or adam)")
    if cfg.optimizer == "lbfgs" and cfg.dropout > 0:
        raise ValueError("dropout needs optimizer='adam' (L-BFGS wants a deterministic loss)")
    fit = _fit_lbfgs if cfg.optimizer == "lbfgs" else _fit_adam
    start = time.perf_counter()
    head.train()
    with _threads(cfg.threads, X_t.numel()):
        iterations, loss = fit(head, X_t, target, loss_fn, cfg)
    seconds = time.perf_counter() - start
    head.eval()
    report = TrainReport(
        labels=list(labels),
        multi_label=multi,
        n_train=len(X_t),
        n_features=X_t.shape[1],
        class_counts={g: int(c) for g, c in zip(labels, Y_t.sum(dim=0).tolist(), strict=True)},
        iterations=iterations,
        final_loss=loss,
        train_accuracy=_train_accuracy(head, X_t, Y_t),
        seconds=seconds,
        config=cfg,
    )
    return head, report
