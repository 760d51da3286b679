"""Training the genre head (mgctag.models.head) on stored embeddings, in seconds on the CPU.

Full-batch L-BFGS is used because a few thousand rows fit in memory many times
over and it converges in tens of iterations without a learning rate to tune.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from mgctag.models.head import ARCH, GenreHead, predict_proba, torch_threads

__all__ = ["ARCH", "GenreHead", "HeadConfig", "TrainReport", "predict_proba", "train_head"]


@dataclass
class HeadConfig:
    """How a head is trained; every field goes into the model card so a result can be rerun.

    L-BFGS wants a deterministic loss, so dropout is only allowed with optimizer="adam".
    threads=None picks one torch thread for small problems (`torch_threads`), else the default.
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
    config: HeadConfig = field(default_factory=HeadConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    # cast: head.net always holds a Linear, so the sum never falls back to its start, 0
    return cast(
        torch.Tensor, sum((m.weight**2).sum() for m in head.net if isinstance(m, nn.Linear))
    )


def _fit_lbfgs(head: GenreHead, X, target, loss_fn, cfg: HeadConfig) -> tuple[int, float]:
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


def _fit_adam(head: GenreHead, X, target, loss_fn, cfg: HeadConfig) -> tuple[int, float]:
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
    config: HeadConfig | None = None,
    multi_label: bool | None = None,
    **overrides: Any,
) -> tuple[GenreHead, TrainReport]:
    """Fit a GenreHead on features X (n, d) and multi-hot targets Y (n, n_classes).

    `multi_label` defaults to whether any row has several genres. Keyword overrides (hidden=64,
    weight_decay=..., optimizer="adam", seed=...) replace fields of `config`.
    """
    cfg = HeadConfig(**{**asdict(config or HeadConfig()), **overrides})
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
    with torch_threads(cfg.threads, X_t.numel()):
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
