"""Stem CNN: genre from the log-mels of separated stems, stacked as image channels.

Seed paper: music genre classification with source separation and depthwise separable convolutions.
Each stem gives one log-mel channel, in `mgctag.separate.base.STEMS` order (drums, bass, other,
then vocals when ``in_channels=4``); a small CNN of two convolution + max-pooling layers (batch
norm after each convolution) and dropout 0.5 before the classifier. ``separable=True`` swaps each
3x3 convolution for a depthwise 3x3 + pointwise 1x1 pair, which is where the paper's parameter and
compute savings come from. ``in_channels=1`` on the mix is the paper's one-spectrogram baseline.
Its L1 + L2 penalties and class weights live in the training loss
(`mgctag.train.distill.weight_penalty`, `class_weights`), not here.

Input: log-mel ``(batch, in_channels, frames, n_mels)`` from `mgctag.audio.features.log_mel`
(a ``(batch, frames, n_mels)`` tensor is accepted when ``in_channels == 1``). Any number of frames
>= 16 works: time is averaged after the convolutions; the bundled models train on 187-frame patches.
Output: ``(logits (batch, n_classes), embedding (batch, embedding_dim))``; the embedding is the
dense layer before dropout and the classifier, not normalised.
"""

from __future__ import annotations

import torch
from torch import nn

from mgctag.models.config import capture_init

PAPER_STEMS = ("drums", "bass", "other")  # the paper's three stems, in `STEMS` order


def spectrogram_batch(x: torch.Tensor, in_channels: int) -> torch.Tensor:
    """(B, T, F) or (B, C, T, F) -> (B, C, T, F), checking C so a stem/mix mix-up fails loudly."""
    if x.dim() == 3 and in_channels == 1:
        x = x.unsqueeze(1)
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ValueError(
            f"expected (batch, {in_channels}, frames, mels) spectrograms, got {tuple(x.shape)}"
        )
    return x


def conv3x3(in_ch: int, out_ch: int, separable: bool) -> nn.Module:
    """A 3x3 convolution, or its depthwise + pointwise factorisation (about 8x fewer weights)."""
    if not separable:
        return nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False)
    return nn.Sequential(
        nn.Conv2d(in_ch, in_ch, 3, padding=1, groups=in_ch, bias=False),
        nn.Conv2d(in_ch, out_ch, 1, bias=False),
    )


@capture_init
class StemCnn(nn.Module):
    """Two conv + BN + ReLU + max-pool layers over stacked stem log-mels, then a dense layer."""

    INPUT = "stems"  # what it reads (models.names.FEATURES): `train --arch` feeds it this

    def __init__(
        self,
        n_classes: int,
        in_channels: int = 3,
        separable: bool = False,
        channels: tuple[int, int] | list[int] = (32, 64),
        n_mels: int = 96,
        pool: tuple[int, int] | list[int] = (4, 4),
        embedding_dim: int = 128,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        layers: list[nn.Module] = []
        prev = in_channels
        for ch in channels:
            layers += [
                conv3x3(prev, ch, separable),
                nn.BatchNorm2d(ch),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(tuple(pool)),
            ]
            prev = ch
        self.features = nn.Sequential(*layers)
        freq = n_mels
        for _ in channels:
            freq //= pool[1]
        self.embed = nn.Sequential(nn.Linear(prev * freq, embedding_dim), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(embedding_dim, n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(spectrogram_batch(x, self.in_channels))  # (B, C, T', F')
        h = h.mean(dim=2).flatten(1)  # average over time, keep the frequency layout
        emb = self.embed(h)
        return self.classifier(self.dropout(emb)), emb
