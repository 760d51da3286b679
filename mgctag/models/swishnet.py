"""SwishNet: a light 1-D CNN over MFCC frames (Hussain & Haque 2018), trained by distillation.

Causal gated convolutions (tanh x sigmoid, each half of the filters) in two kernel widths, a few
residual dilated layers, the outputs of four depths concatenated, swish, then a 1x1 convolution to
the classes and a global average over time. The paper's slim and wide variants are ``width=1`` and
``width=2`` (the multiplier on every filter count). Because the 1x1 convolution and the time average
are both linear, the classifier is applied to the time-averaged swish features, which are the
embedding. It learns from a bigger teacher with `mgctag.train.distill.distillation_loss`.

Input: MFCC ``(batch, frames, n_mfcc)`` from `mgctag.audio.features.mfcc`.
Output: ``(logits (batch, n_classes), embedding (batch, 40 * width))``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mgctag.models.config import capture_init


class CausalGatedConv1d(nn.Module):
    """tanh(conv_a(x)) * sigmoid(conv_b(x)), left-padded so frame t sees only frames <= t.

    Emits ``filters // 2`` channels, as in the reference implementation.
    """

    def __init__(self, in_ch: int, filters: int, kernel: int, dilation: int = 1) -> None:
        super().__init__()
        self.pad = (kernel - 1) * dilation
        self.tanh = nn.Conv1d(in_ch, filters // 2, kernel, dilation=dilation)
        self.gate = nn.Conv1d(in_ch, filters // 2, kernel, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (self.pad, 0))
        return torch.tanh(self.tanh(x)) * torch.sigmoid(self.gate(x))


class TwoWidths(nn.Module):
    """Kernel 3 and kernel 6 gated convolutions side by side, concatenated."""

    def __init__(self, in_ch: int, filters: int) -> None:
        super().__init__()
        self.short = CausalGatedConv1d(in_ch, filters, 3)
        self.long = CausalGatedConv1d(in_ch, filters, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.short(x), self.long(x)], dim=1)


@capture_init
class SwishNet(nn.Module):
    """SwishNet on MFCCs; ``width`` 1 = slim, 2 = wide."""

    INPUT = "mfcc"  # what it reads (models.names.FEATURES): `train --arch` feeds it this

    def __init__(self, n_classes: int, n_mfcc: int = 20, width: int = 1) -> None:
        super().__init__()
        w8, w16, w32 = 8 * width, 16 * width, 32 * width
        self.block1 = TwoWidths(n_mfcc, w16)  # -> w16 channels
        self.block2 = TwoWidths(w16, w8)  # -> w8
        self.block3 = TwoWidths(w8, w8)  # -> w8, residual
        self.loop1 = CausalGatedConv1d(w8, w16, 3, dilation=3)  # -> w8, residual
        self.loop2 = CausalGatedConv1d(w8, w16, 3, dilation=2)
        self.loop3 = CausalGatedConv1d(w8, w16, 3, dilation=2)
        self.forward_branch = CausalGatedConv1d(w8, w16, 3, dilation=2)
        self.loop4 = CausalGatedConv1d(w8, w32, 3, dilation=2)  # -> w16
        self.classifier = nn.Linear(3 * w8 + w16, n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.frame_features(x).mean(dim=2)  # swish, then the global average
        return self.classifier(emb), emb

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """Swish features per frame (batch, 3 * w8 + w16, frames), before the time average; a
        frame-wise detector (mgctag.segments.detector) averages them over any window it likes."""
        if x.dim() != 3:
            raise ValueError(f"expected (batch, frames, n_mfcc) MFCCs, got {tuple(x.shape)}")
        h = self.block2(self.block1(x.transpose(1, 2)))
        h = h + self.block3(h)
        h = h + self.loop1(h)
        l2 = self.loop2(h)
        h = h + l2
        l3 = self.loop3(h)
        h = h + l3
        feats = torch.cat([l2, l3, self.forward_branch(h), self.loop4(h)], dim=1)
        return F.silu(feats)
