"""MobileNetV2 on log-mel spectrograms, with embedding taps at three depths.

MobileNetV2 (Sandler et al. 2018): inverted residual blocks (1x1 expand, 3x3 depthwise, 1x1 linear
projection), here on a spectrogram instead of an image. The seed paper compares embeddings taken at
different depths, so the head after the backbone is two dense layers and there are three taps:

- ``"backbone"``: global-average-pooled backbone features (``last_channels``, 1280 at width 1.0);
- ``"deep"``: the first dense layer (``deep_dim``), far from the labels, more general;
- ``"shallow"``: the dense layer next to the classifier (``shallow_dim``), most genre-specific.

Input: log-mel ``(batch, frames, n_mels)`` or stacked stems ``(batch, in_channels, frames,
n_mels)``. `forward` returns ``(logits, embedding at the constructor's tap)`` like every other
network here; `forward_taps` returns ``(logits, {tap: embedding})``. Embeddings are not normalised.
"""

from __future__ import annotations

import torch
from torch import nn

from mgctag.models.config import capture_init
from mgctag.models.stemcnn import spectrogram_batch

TAPS = ("backbone", "deep", "shallow")
# (expansion t, channels c, repeats n, first stride s), from the MobileNetV2 paper's Table 2.
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
            (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip


def _divisible(v: float, divisor: int = 8) -> int:
    """Round channel counts to multiples of 8, as the reference implementation does."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def conv_bn(
    in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    """Conv + BN + ReLU6."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """Expand (1x1), filter (3x3 depthwise), project (1x1, linear); residual when shapes match."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = in_ch * expand
        layers: list[nn.Module] = [conv_bn(in_ch, hidden, 1)] if expand != 1 else []
        layers += [
            conv_bn(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


@capture_init
class MobileNetV2(nn.Module):
    """MobileNetV2 backbone + two dense layers + classifier, with embedding taps."""

    INPUT = "mel"  # what it reads (models.names.FEATURES): `train --arch` feeds it this

    def __init__(
        self,
        n_classes: int,
        in_channels: int = 1,
        width: float = 1.0,
        deep_dim: int = 512,
        shallow_dim: int = 128,
        tap: str = "shallow",
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if tap not in TAPS:
            raise ValueError(f"tap must be one of {TAPS}, got {tap!r}")
        self.in_channels = in_channels
        self.tap = tap
        prev = _divisible(32 * width)
        last = _divisible(1280 * max(1.0, width))
        layers: list[nn.Module] = [conv_bn(in_channels, prev, 3, 2)]
        for t, c, n, s in SETTINGS:
            out = _divisible(c * width)
            for i in range(n):
                layers.append(InvertedResidual(prev, out, s if i == 0 else 1, t))
                prev = out
        layers.append(conv_bn(prev, last, 1))
        self.backbone = nn.Sequential(*layers)
        self.deep = nn.Sequential(nn.Linear(last, deep_dim), nn.ReLU(inplace=True))
        self.shallow = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(deep_dim, shallow_dim), nn.ReLU(inplace=True)
        )
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(shallow_dim, n_classes))

    def forward_taps(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        feats = self.backbone(spectrogram_batch(x, self.in_channels)).mean(dim=(2, 3))
        deep = self.deep(feats)
        shallow = self.shallow(deep)
        return self.classifier(shallow), {"backbone": feats, "deep": deep, "shallow": shallow}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, taps = self.forward_taps(x)
        return logits, taps[self.tap]
