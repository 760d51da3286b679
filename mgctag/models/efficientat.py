"""EfficientAT's mn04: a MobileNetV3-Large-style CNN at width 0.4 that tags AudioSet's 527 classes.

Schmid, Koutini and Widmer ("Efficient Large-Scale Audio Tagging via Transformer-to-CNN Knowledge
Distillation", ICASSP 2023) distilled an ensemble of audio transformers into MobileNetV3s running
on log-mel spectrograms. Written here from the paper, MobileNetV3's Table 1 (Howard et al. 2019)
and the shapes of the published weights; tools/convert/efficientat.py renames their keys to ours.

Two details differ from torchvision's MobileNetV3 and matter for parity: squeeze-and-excitation
gates with a plain sigmoid after a ReLU bottleneck of make_divisible(C / 4), and every batch norm
uses eps 1e-3. Input: the mel of `mgctag.audio.features.efficientat_mel`, ``(batch, 128, frames)``;
output: ``(logits over 527 classes, 384-d embedding)`` like every network in mgctag.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

BN_EPS = 1e-3
# MobileNetV3-Large, Table 1: (kernel, expanded channels, out channels, SE, hard-swish, stride).
LARGE = (
    (3, 16, 16, False, False, 1),
    (3, 64, 24, False, False, 2),
    (3, 72, 24, False, False, 1),
    (5, 72, 40, True, False, 2),
    (5, 120, 40, True, False, 1),
    (5, 120, 40, True, False, 1),
    (3, 240, 80, False, True, 2),
    (3, 200, 80, False, True, 1),
    (3, 184, 80, False, True, 1),
    (3, 184, 80, False, True, 1),
    (3, 480, 112, True, True, 1),
    (3, 672, 112, True, True, 1),
    (5, 672, 160, True, True, 2),
    (5, 960, 160, True, True, 1),
    (5, 960, 160, True, True, 1),
)


def make_divisible(v: float, divisor: int = 8) -> int:
    """Nearest multiple of 8, at least 8, never below 90 % of v (MobileNet's channel rounding)."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def conv_bn(
    in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, act: str | None = None
) -> nn.Sequential:
    """Conv (no bias) + batch norm + optional activation ("relu" or "hswish")."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch, eps=BN_EPS),
    ]
    if act is not None:
        layers.append(nn.Hardswish() if act == "hswish" else nn.ReLU())
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    """Channel gates from the mean over frequency and time: C → C/4 → C, ReLU then sigmoid."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        squeezed = make_divisible(channels / 4)
        self.fc1 = nn.Linear(channels, squeezed)
        self.fc2 = nn.Linear(squeezed, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3))))))
        return x * gate[:, :, None, None]


class InvertedResidual(nn.Module):
    """1x1 expand, k x k depthwise, optional SE, 1x1 linear projection; residual if shapes match."""

    def __init__(
        self, in_ch: int, kernel: int, hidden: int, out_ch: int, se: bool, act: str, stride: int
    ) -> None:
        super().__init__()
        self.expand = conv_bn(in_ch, hidden, 1, act=act) if hidden != in_ch else None
        self.depthwise = conv_bn(hidden, hidden, kernel, stride, groups=hidden, act=act)
        self.se = SqueezeExcite(hidden) if se else None
        self.project = conv_bn(hidden, out_ch, 1)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.depthwise(y)
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        return x + y if self.residual else y


class EfficientAT(nn.Module):
    """mn04 (width 0.4) by default: 983,599 weights (993,439 with BN statistics), 527 logits."""

    def __init__(
        self, width: float = 0.4, n_classes: int = 527, n_mels: int = 128, head_units: int = 512
    ) -> None:
        super().__init__()
        self.n_mels = n_mels
        in_ch = make_divisible(16 * width)
        self.stem = conv_bn(1, in_ch, 3, stride=2, act="hswish")
        blocks = []
        for kernel, expanded, out, se, hswish, stride in LARGE:
            hidden, out_ch = make_divisible(expanded * width), make_divisible(out * width)
            act = "hswish" if hswish else "relu"
            blocks.append(InvertedResidual(in_ch, kernel, hidden, out_ch, se, act, stride))
            in_ch = out_ch
        self.blocks = nn.Sequential(*blocks)
        self.embedding_dim = 6 * in_ch
        self.last = conv_bn(in_ch, self.embedding_dim, 1, act="hswish")
        self.hidden = nn.Linear(self.embedding_dim, head_units)
        self.classifier = nn.Linear(head_units, n_classes)

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, n_mels, frames) or (batch, 1, n_mels, frames) → (logits, embedding)."""
        x = mel if mel.dim() == 4 else mel.unsqueeze(1)
        x = self.last(self.blocks(self.stem(x)))
        emb = x.mean(dim=(2, 3))
        return self.classifier(F.hardswish(self.hidden(emb))), emb
