"""PyTorch ports of musicnn (Pons & Serra, 2019) and its VGG baseline.

The graphs follow ``musicnn/models.py`` of musicnn 0.1.0 layer for layer, so the TF checkpoints map
one-to-one onto these parameters (see tools/convert/musicnn.py). Every batch norm uses TF1's
epsilon (1e-3). Layouts are PyTorch's: a log-mel patch (B, 187, 96) is treated as an image
(B, 1, time, mel) for the front-ends and as a sequence (B, channels, time) from the mid-end on.

Inference-only shortcuts (exact up to float rounding, used only in eval mode; set ``fused =
False`` on a block to get TF's literal op order):
- conv -> ReLU -> batch norm -> max pool is computed as conv -> max pool -> ReLU -> affine (see
  ``relu_bn_pool``), so the element-wise work shrinks by the pooling factor (59x for musicnn's
  timbral branches).
- 1-channel convolutions see their time taps as input channels (``taps_conv2d``), which puts
  them on oneDNN's fast channels-last kernels.
- the batch norm right before the first dense layer is folded into that layer's weights.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from mgctag.models.config import capture_init

TF_BN_EPS = 1e-3  # tf.compat.v1.layers.batch_normalization default


def _bn(channels: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(channels, eps=TF_BN_EPS)


def _bn_affine(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) with bn(x) == x * scale + shift in eval mode."""
    assert bn.running_var is not None and bn.running_mean is not None  # _bn tracks running stats
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def same_pad(kernel: int) -> tuple[int, int]:
    """TF's 'same' padding: the odd extra pad goes after."""
    total = kernel - 1
    return total // 2, total - total // 2


def taps_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """conv2d of a 1-channel image (B, H, W) with weight (out, 1, kh, kw); channels-last output.

    oneDNN's fast (brgemm, channels-last) kernels are only chosen when the input has more than
    one channel; a 1-channel conv lands on a slow blocked kernel plus a costly reorder of its
    large output. So rows (time taps) become input channels: all of them for short kernels, pairs
    with dilation 2 for long ones. Same numbers, 2-3x faster.
    """
    filters, _, kh, kw = weight.shape
    taps = kh if kh < 16 else 2
    channels_last = torch.channels_last
    x = x.unfold(1, taps, 1).permute(0, 3, 1, 2).contiguous(memory_format=channels_last)
    kernel = weight.view(filters, kh // taps, taps, kw).permute(0, 2, 1, 3)
    kernel = kernel.contiguous(memory_format=channels_last)
    return F.conv2d(x, kernel, bias, dilation=(taps, 1))


def relu_bn_pool(
    conv_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    conv: nn.Conv2d,
    bn: nn.modules.batchnorm._BatchNorm,
    pool_fn: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """pool(bn(relu(conv(...)))) for max pooling, in eval mode, computed as pool first.

    ReLU is monotonic and an eval batch norm is a per-channel affine map, so both commute with
    a max when the scale is positive. A channel with a negative scale needs the min instead: its
    filter is negated, so the max of the negated output is minus the min. The norm then touches
    only the pooled values. ``conv_fn(weight, bias)`` runs the convolution.
    """
    scale, shift = _bn_affine(bn)
    assert conv.bias is not None  # every conv here has a bias
    sign = torch.where(scale < 0, -1.0, 1.0).to(scale.dtype)
    pooled = pool_fn(conv_fn(conv.weight * sign[:, None, None, None], conv.bias * sign))
    shape = (-1,) + (1,) * (pooled.dim() - 2)
    sign, scale, shift = sign.view(shape), scale.view(shape), shift.view(shape)
    return F.relu(pooled * sign) * scale + shift


def _max_over_width(y: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(y, (1, y.shape[3])).squeeze(3)


class PooledConv(nn.Module):
    """One musicnn front-end branch: Conv2d -> ReLU -> BatchNorm -> max over the whole mel axis.

    Input (B, T + kernel_time - 1, mel), already padded in time; output (B, filters, T).
    The parameters keep TF's layout (a 1-channel Conv2d); eval mode computes the same numbers
    faster (``taps_conv2d`` + ``relu_bn_pool``).
    """

    def __init__(self, filters: int, kernel: tuple[int, int]):
        super().__init__()
        self.conv = nn.Conv2d(1, filters, kernel)
        self.bn = _bn(filters)
        self.fused = True  # False: TF's literal op order in eval too (for benchmarks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or not self.fused:
            return _bn_then_max(self.bn, F.relu(self.conv(x.unsqueeze(1))))
        return relu_bn_pool(lambda w, b: taps_conv2d(x, w, b), self.conv, self.bn, _max_over_width)


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


@capture_init
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
            branches.append(conv(F.pad(x, (0, 0, *same_pad(kernel)))))
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
        self.fused = True  # False: TF's literal op order in eval too (for benchmarks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or not self.fused:
            return self.pool(self.bn(F.relu(self.conv(x))))
        if self.conv.in_channels == 1:
            padded = F.pad(x[:, 0], (1, 1, 1, 1))
            return relu_bn_pool(
                lambda w, b: taps_conv2d(padded, w, b), self.conv, self.bn, self.pool
            )
        x = x.contiguous(memory_format=torch.channels_last)
        return relu_bn_pool(
            lambda w, b: F.conv2d(x, w, b, padding=1), self.conv, self.bn, self.pool
        )


@capture_init
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
