"""Training the speech / music / noise detector and its baselines (issue 13, the SwishNet paper).

Only the tools train the detector (train_segmenter, eval_segmenter), so this lives beside them,
not in the package (formerly mgctag/train/segmenter.py).

Data are one stream per split and class (tools.data.segment_data): MFCC frames, a silence mask
and the teacher's (mn04) probabilities per 1 s window at a 0.5 s hop. From them come clips of a
context length (0.5, 1 or 2 s) with their class, the teacher's soft target and the stream they
come from. SwishNet learns from clips through `distill.distillation_loss` (alpha = 0: the hard
labels alone); the paper's baselines learn from single frames: a GMM per class on MFCC + delta +
delta-delta, and a small fully connected network on the same frames.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mgctag.segments.detector import CLASSES, FPS
from mgctag.train.distill import DistillConfig, distillation_loss
from mgctag.train.distill import augment as augment_batch

TEACHER_HOP_S = 0.5


@dataclass
class Clips:
    """Clips of one context length: x (n, frames, n_mfcc) standardised MFCC, y (n,) class,
    teacher (n, 3) soft targets, start (n,) first frame in its class stream."""

    x: np.ndarray
    y: np.ndarray
    teacher: np.ndarray
    start: np.ndarray


def standardizer(streams: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-coefficient mean and std over all frames of the training streams."""
    allf = np.concatenate(streams)
    return allf.mean(axis=0).astype(np.float32), (allf.std(axis=0) + 1e-6).astype(np.float32)


def teacher_at(teacher: np.ndarray, start: int, frames: int) -> np.ndarray:
    """Mean teacher probabilities of the 1 s windows whose centres fall in the clip (the nearest
    one when none does)."""
    hop = TEACHER_HOP_S * FPS
    centres = (np.arange(len(teacher)) * hop) + FPS / 2
    inside = (centres >= start) & (centres < start + frames)
    if not inside.any():
        inside = np.zeros(len(teacher), bool)
        inside[int(np.argmin(np.abs(centres - (start + frames / 2))))] = True
    return teacher[inside].mean(axis=0)


def cut_clips(
    mfcc: np.ndarray,
    silent: np.ndarray,
    teacher: np.ndarray | None,
    label: int,
    frames: int,
    hop: int,
    max_silent: float = 0.5,
) -> Clips:
    """Clips of `frames` frames every `hop` frames of one class stream, dropping clips more than
    `max_silent` silent (silence is not a class)."""
    starts = [
        s
        for s in range(0, max(1, len(mfcc) - frames + 1), hop)
        if silent[s : s + frames].mean() <= max_silent
    ]
    x = np.stack([mfcc[s : s + frames] for s in starts]).astype(np.float32)
    t = (
        np.stack([teacher_at(teacher, s, frames) for s in starts])
        if teacher is not None
        else np.full((len(starts), len(CLASSES)), np.nan, np.float32)
    )
    y = np.full(len(starts), label, np.int64)
    return Clips(x, y, t.astype(np.float32), np.asarray(starts))


def concat(parts: list[Clips]) -> Clips:
    return Clips(
        *(np.concatenate([getattr(p, f) for p in parts]) for f in ("x", "y", "teacher", "start"))
    )


def train_clips(
    model: nn.Module,
    clips: Clips,
    *,
    epochs: int,
    T: float = 2.0,
    alpha: float = 0.0,
    lr: float = 3e-3,
    batch: int = 64,
    seed: int = 0,
    on_epoch: Callable[[int, float], None] | None = None,
    augment: DistillConfig | None = None,
    gain: tuple[float, np.ndarray] | None = None,
) -> list[float]:
    """Adam on the weighted soft/hard loss (alpha = 0: hard labels only); class-balanced batches
    by weighting; returns the mean loss per epoch. `augment` (the students' "frames" mode: tempo
    and mixup of MFCC clips and their teacher targets) varies each batch; `gain` (dB, the
    standardised change of each feature per dB) shifts each clip's level by up to that many dB,
    for features in dB such as the mel-CNN's log-mel."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    counts = np.bincount(clips.y, minlength=len(CLASSES)).astype(np.float64)
    weights = torch.as_tensor(
        counts.sum() / (len(CLASSES) * np.maximum(counts, 1)), dtype=torch.float32
    )
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x_all, y_all = torch.from_numpy(clips.x), torch.from_numpy(clips.y)
    t_all = torch.from_numpy(np.nan_to_num(clips.teacher, nan=1.0 / len(CLASSES)))
    history = []
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(clips.y))
        total = 0.0
        for b in range(0, len(order), batch):
            idx = torch.from_numpy(order[b : b + batch])
            xb, tb, yb = x_all[idx], t_all[idx], y_all[idx]
            if gain is not None:
                db = torch.empty(len(idx), 1, 1).uniform_(-gain[0], gain[0], generator=gen)
                xb = xb + db * torch.from_numpy(gain[1].astype(np.float32))
            if augment is not None:
                xb, tb, yb = augment_batch(xb, tb, yb, augment, gen)
            logits, _ = model(xb)
            loss = distillation_loss(logits, tb, yb, T=T, alpha=alpha, class_weights=weights)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        history.append(total / len(order))
        if on_epoch:
            on_epoch(epoch, history[-1])
    model.eval()
    return history


@torch.inference_mode()
def clip_predict(model: nn.Module, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """(n, 3) class probabilities of clips (n, frames, n_mfcc)."""
    model.eval()
    out = [
        torch.softmax(model(torch.from_numpy(x[b : b + batch]))[0], dim=1)
        for b in range(0, len(x), batch)
    ]
    return torch.cat(out).numpy()


# --- the paper's frame baselines ---------------------------------------------------------------


def with_deltas(mfcc: np.ndarray) -> np.ndarray:
    """(T, 3 * n_mfcc): MFCC, delta and delta-delta (librosa, width 9)."""
    import librosa

    m = mfcc.T
    width = 9 if m.shape[1] >= 9 else (m.shape[1] // 2) * 2 + 1
    if width < 3:
        return np.concatenate([mfcc, np.zeros_like(mfcc), np.zeros_like(mfcc)], axis=1)
    d1 = librosa.feature.delta(m, width=width, mode="nearest")
    d2 = librosa.feature.delta(m, order=2, width=width, mode="nearest")
    return np.concatenate([m, d1, d2]).T.astype(np.float32)


class GmmBaseline:
    """One diagonal-covariance GMM per class on MFCC + delta + delta-delta frames; a window's
    class is the one with the highest mean frame log-likelihood."""

    def __init__(self, components: int = 16, seed: int = 0) -> None:
        self.components, self.seed = components, seed
        self.gmms: list = []

    def fit(self, frames_by_class: list[np.ndarray]) -> GmmBaseline:
        from sklearn.mixture import GaussianMixture

        self.gmms = [
            GaussianMixture(
                self.components, covariance_type="diag", random_state=self.seed, reg_covar=1e-3
            ).fit(np.asarray(f, np.float64))
            for f in frames_by_class
        ]
        return self

    def frame_scores(self, frames: np.ndarray) -> np.ndarray:
        """(T, 3) log-likelihood of each frame under each class."""
        return np.stack([g.score_samples(frames) for g in self.gmms], axis=1).astype(np.float32)

    def params(self) -> int:
        d = self.gmms[0].means_.shape[1]
        return len(self.gmms) * self.components * (2 * d + 1)


class FrameMlp(nn.Module):
    """The paper's fully connected baseline: frame features → two hidden layers → 3 classes."""

    def __init__(self, n_in: int = 60, hidden: int = 64, n_classes: int = 3) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_in, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def train_frames(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    epochs: int = 5,
    lr: float = 1e-3,
    batch: int = 512,
    seed: int = 0,
) -> list[float]:
    """Class-weighted cross-entropy on single frames; mean loss per epoch."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    counts = np.bincount(y, minlength=len(CLASSES)).astype(np.float64)
    w = torch.as_tensor(counts.sum() / (len(CLASSES) * np.maximum(counts, 1)), dtype=torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    history = []
    for _ in range(epochs):
        order = rng.permutation(len(y))
        total = 0.0
        for b in range(0, len(order), batch):
            idx = torch.from_numpy(order[b : b + batch])
            loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx], weight=w)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        history.append(total / len(order))
    model.eval()
    return history


@torch.inference_mode()
def frame_log_probs(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """(T, 3) log-probabilities of each frame from the frame network."""
    return torch.log_softmax(model(torch.from_numpy(x)), dim=1).numpy()
