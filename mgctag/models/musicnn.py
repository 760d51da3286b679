"""PyTorch ports of musicnn (Pons & Serra, 2019) and its VGG baseline.

The graphs follow ``musicnn/models.py`` of musicnn 0.1.0 layer for layer, so the TF checkpoints map
one-to-one onto these parameters (see scripts/convert_musicnn.py). Every batch norm uses TF1's
epsilon (1e-3). Layouts are PyTorch's: a log-mel patch (B, 187, 96) is treated as an image
(B, 1, time, mel) for the front-ends and as a sequence (B, channels, time) from the mid-end on.

Inference-only shortcuts (exact up to float rounding, used only in eval mode):
- musicnn's front-end applies ReLU -> batch norm -> max over the mel axis. A batch norm is a
  per-channel affine map, so it commutes with the max when its scale is positive (and turns it
  into a min when negative); pooling first lets the norm touch 1/59 of the values.
- the batch norm right before the first dense layer is folded into that layer's weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

TF_BN_EPS = 1e-3  # tf.compat.v1.layers.batch_normalization default


def _bn(channels: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(channels, eps=TF_BN_EPS)


def _bn_affine(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) with bn(x) == x * scale + shift in eval mode."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def _same_pad(kernel: int) -> tuple[int, int]:
    """TF's 'same' padding: the odd extra pad goes after."""
    total = kernel - 1
    return total // 2, total - total // 2


class PooledConv(nn.Module):
    """One musicnn front-end branch: Conv2d -> ReLU -> BatchNorm -> max over the whole mel axis.

    Input (B, T + kernel_time - 1, mel), already padded in time; output (B, filters, T).
    The parameters keep TF's layout (a 1-channel Conv2d); eval mode computes the same numbers
    through a faster route (see ``_pooled``): ReLU is monotonic and batch norm affine, so both
    move after the max, and a negative batch-norm scale is handled by negating that filter (its
    max then yields minus the min the norm needs).
    """

    def __init__(self, filters: int, kernel: tuple[int, int]):
        super().__init__()
        self.conv = nn.Conv2d(1, filters, kernel)
        self.bn = _bn(filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return _bn_then_max(self.bn, F.relu(self.conv(x.unsqueeze(1))))
        scale, shift = _bn_affine(self.bn)
        sign = torch.where(scale < 0, -1.0, 1.0).to(scale.dtype)
        pooled = self._signed_conv_max(
            x, self.conv.weight * sign[:, None, None, None], self.conv.bias * sign
        )
        return F.relu(pooled * sign[:, None]) * scale[:, None] + shift[:, None]

    def _signed_conv_max(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor):
        """max over mel of conv(x) (B, filters, T), choosing the fastest layout for the kernel."""
        k_time, k_mel = weight.shape[2:]
        if k_mel == 1:
            # Temporal filter (k x 1): the same 1-D filter runs along time in every mel band.
            b, t, m = x.shape
            bands = x.transpose(1, 2).reshape(b * m, 1, t)
            out = F.conv1d(bands, weight[:, :, :, 0], bias)  # (B*mel, filters, T)
            return out.view(b, m, -1, out.shape[-1]).amax(dim=1)
        # Timbral filter (7 x f): feed the 7 time taps as input channels of a (1 x f) conv in
        # channels-last layout, which oneDNN runs much faster than a 1-channel 7 x f conv.
        taps = x.unfold(1, k_time, 1).permute(0, 3, 1, 2)  # (B, 7, T, mel) as NHWC strides
        taps = taps.contiguous(memory_format=torch.channels_last)
        kernel = weight.permute(0, 2, 1, 3).contiguous(memory_format=torch.channels_last)
        return F.conv2d(taps, kernel, bias).amax(dim=3)


def _bn_then_max(bn: nn.BatchNorm1d, y: torch.Tensor) -> torch.Tensor:
    """Training path, in TF's literal order: batch norm over all positions, then max over mel."""
    b, c, t, m = y.shape
    normed = bn(y.permute(0, 1, 3, 2).reshape(b, c, m * t)).reshape(b, c, m, t)
    return normed.amax(dim=2)


class MidendConv(nn.Module):
    """Conv1d over time (kernel 7, TF 'same' via zero pad 3) -> ReLU -> BatchNorm."""

    def __init__(self, in_channels: int, filters: int):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, filters, 7, padding=3)
        self.bn = _bn(filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(F.relu(self.conv(x)))


class Musicnn(nn.Module):
    """musicnn: musically motivated front-end, dense mid-end, temporal-pooling back-end.

    forward(x: (B, 187, 96) log-mel) -> (logits (B, n_tags), embedding (B, n_units)), where the
    embedding is the penultimate dense layer after its batch norm (musicnn's ``penultimate``).
    Works on any number of frames >= 1; the bundled weights were trained on 187.
    """

    def __init__(
        self, n_tags: int = 50, n_mels: int = 96, midend_filters: int = 64, n_units: int = 200
    ):
        super().__init__()
        timbral, temporal = int(1.6 * 128), int(1.6 * 32)
        self.input_bn = nn.BatchNorm2d(1, eps=TF_BN_EPS)
        self.timbral = nn.ModuleList(
            [PooledConv(timbral, (7, int(f * n_mels))) for f in (0.4, 0.7)]
        )
        self.temporal_kernels = (128, 64, 32)
        self.temporal = nn.ModuleList([PooledConv(temporal, (k, 1)) for k in self.temporal_kernels])
        frontend = 2 * timbral + 3 * temporal
        self.midend = nn.ModuleList(
            [MidendConv(frontend, midend_filters)]
            + [MidendConv(midend_filters, midend_filters) for _ in range(2)]
        )
        pooled = 2 * (frontend + 3 * midend_filters)
        self.pool_bn = _bn(pooled)
        self.dense = nn.Linear(pooled, n_units)
        self.dense_bn = _bn(n_units)
        self.classifier = nn.Linear(n_units, n_tags)

    def frontend(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, mel) -> (B, 561, T): timbral (7x38, 7x67) and temporal (128/64/32 x 1) maps."""
        x = self.input_bn(x.unsqueeze(1)).squeeze(1)
        padded = F.pad(x, (0, 0, 3, 3))
        branches = [conv(padded) for conv in self.timbral]
        for kernel, conv in zip(self.temporal_kernels, self.temporal, strict=True):
            branches.append(conv(F.pad(x, (0, 0, *_same_pad(kernel)))))
        return torch.cat(branches, dim=1)

    def midend_features(self, front: torch.Tensor) -> torch.Tensor:
        """Dense connections: front-end maps + three residual conv layers, (B, 753, T)."""
        first = self.midend[0](front)
        second = self.midend[1](first) + first
        third = self.midend[2](second) + second
        return torch.cat([front, first, second, third], dim=1)

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        """Max and mean over time, interleaved per channel as TF's concat + flatten leaves them."""
        return torch.stack([features.amax(dim=2), features.mean(dim=2)], dim=2).flatten(1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.pool(self.midend_features(self.frontend(x)))
        if self.training:
            hidden = F.dropout(self.pool_bn(pooled), 0.5, True)
            embedding = self.dense_bn(F.relu(self.dense(hidden)))
            return self.classifier(F.dropout(embedding, 0.5, True)), embedding
        scale, shift = _bn_affine(self.pool_bn)
        hidden = F.linear(pooled, self.dense.weight * scale, self.dense(shift))
        embedding = self.dense_bn(F.relu(hidden))
        return self.classifier(embedding), embedding


class VggBlock(nn.Module):
    """3x3 'same' conv -> ReLU -> BatchNorm -> max pool, on (B, C, time, mel)."""

    def __init__(
        self, in_channels: int, filters: int, pool: tuple[int, int], stride: tuple[int, int]
    ):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, filters, 3, padding=1)
        self.bn = nn.BatchNorm2d(filters, eps=TF_BN_EPS)
        self.pool = nn.MaxPool2d(pool, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.bn(F.relu(self.conv(x))))


class Vgg(nn.Module):
    """musicnn's VGG-like baseline: five 3x3 conv blocks and a linear classifier.

    forward(x: (B, 187, 96)) -> (logits (B, n_tags), feature (B, 256)), the feature being the
    flattened last pooling (``pool5``) in TF's (time, mel, channel) order.
    Needs exactly 187 frames x 96 mels (the classifier's input size depends on it).
    """

    def __init__(self, n_tags: int = 50, filters: int = 128):
        super().__init__()
        self.input_bn = nn.BatchNorm2d(1, eps=TF_BN_EPS)
        specs = [((4, 1), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2))]
        specs.append(((4, 4), (4, 4)))
        channels = [1] + [filters] * 5
        self.blocks = nn.ModuleList(
            VggBlock(channels[i], filters, pool, stride) for i, (pool, stride) in enumerate(specs)
        )
        self.classifier = nn.Linear(2 * 1 * filters, n_tags)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.input_bn(x.unsqueeze(1))
        for i, block in enumerate(self.blocks):
            h = block(F.dropout(h, 0.25, self.training) if i else h)
        feature = h.permute(0, 2, 3, 1).flatten(1)
        dropped = F.dropout(feature, 0.5, self.training)
        return self.classifier(dropped), feature
