"""ECAPA-TDNN for genres, with convolution channel separation (CCS) and frequency sub-band
aggregation (FSA).

ECAPA-TDNN (Desplanques et al. 2020) treats the log-mel as a 1-D signal whose channels are mel bins:
a front-end convolution, SE-Res2Blocks with dilations 2, 3, 4, multi-layer feature aggregation (MFA:
the outputs of all blocks concatenated, then a 1x1 convolution) and attentive statistics pooling.

CCS: each block emits ``stop + cont`` channels. All of them go to the aggregation (as in ECAPA's
MFA), but only the ``cont`` "continue" channels are fed to the next block, so ``stop`` channels are
features that are kept for pooling without being refined further. With ``stop=0`` this is exactly
ECAPA-TDNN (tests/test_architectures.py checks it against a plain ECAPA wiring of the same weights).

FSA: the mel axis is split into ``n_bands`` contiguous bands; each band gets its own front-end
convolution (or one shared front-end when ``shared_frontend`` and the bands are equal), so that a
filter learns one register (bass lines, cymbals) instead of all at once; the band features are
then concatenated and mixed by a 1x1 convolution. ``n_bands=1`` is the plain front-end.

Input: log-mel ``(batch, frames, n_mels)``. Output: ``(logits, embedding (batch, embedding_dim))``.
"""

from __future__ import annotations

import torch
from torch import nn

from mgctag.models.config import capture_init


class TdnnLayer(nn.Module):
    """Conv1d + ReLU + BN, the unit ECAPA-TDNN is built from."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv1d(
            in_ch, out_ch, kernel, dilation=dilation, padding=dilation * (kernel // 2)
        )
        self.bn = nn.BatchNorm1d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(torch.relu(self.conv(x)))


class Res2Conv(nn.Module):
    """Res2Net's hierarchical convolution: split into `scale` groups, each sees the previous one."""

    def __init__(self, channels: int, kernel: int, dilation: int, scale: int) -> None:
        super().__init__()
        if channels % scale:
            raise ValueError(f"channels {channels} not divisible by res2 scale {scale}")
        self.scale = scale
        width = channels // scale
        self.convs = nn.ModuleList(
            TdnnLayer(width, width, kernel, dilation) for _ in range(scale - 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        chunks = torch.chunk(x, self.scale, dim=1)
        out = [chunks[0]]
        y = None
        for conv, chunk in zip(self.convs, chunks[1:], strict=True):
            y = conv(chunk if y is None else chunk + y)
            out.append(y)
        return torch.cat(out, dim=1)


class SqueezeExcite(nn.Module):
    """Channel gates from the time-averaged features."""

    def __init__(self, channels: int, bottleneck: int) -> None:
        super().__init__()
        self.fc = nn.Sequential(
            nn.Conv1d(channels, bottleneck, 1),
            nn.ReLU(inplace=True),
            nn.Conv1d(bottleneck, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean(dim=2, keepdim=True))


class SeRes2Block(nn.Module):
    """1x1 -> dilated Res2 conv -> 1x1 -> SE, with a residual (1x1-projected when widths differ)."""

    def __init__(
        self, in_ch: int, out_ch: int, dilation: int, scale: int = 8, se_bottleneck: int = 128
    ) -> None:
        super().__init__()
        self.body = nn.Sequential(
            TdnnLayer(in_ch, out_ch, 1),
            Res2Conv(out_ch, 3, dilation, scale),
            TdnnLayer(out_ch, out_ch, 1),
            SqueezeExcite(out_ch, se_bottleneck),
        )
        self.shortcut = nn.Identity() if in_ch == out_ch else nn.Conv1d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class AttentiveStatsPool(nn.Module):
    """Attention-weighted mean and std over time, attention conditioned on global context."""

    def __init__(self, channels: int, attention: int = 128) -> None:
        super().__init__()
        self.attention = nn.Sequential(
            TdnnLayer(channels * 3, attention, 1),
            nn.Tanh(),
            nn.Conv1d(attention, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[2]
        mean = x.mean(dim=2, keepdim=True)
        std = x.var(dim=2, keepdim=True, unbiased=False).clamp(min=1e-5).sqrt()
        context = torch.cat([x, mean.expand(-1, -1, t), std.expand(-1, -1, t)], dim=1)
        w = torch.softmax(self.attention(context), dim=2)
        mu = (w * x).sum(dim=2)
        sigma = ((w * x * x).sum(dim=2) - mu * mu).clamp(min=1e-5).sqrt()
        return torch.cat([mu, sigma], dim=1)


def band_edges(n_mels: int, n_bands: int) -> list[int]:
    """Contiguous, near-equal mel bands: edges [0, ..., n_mels]."""
    if not 1 <= n_bands <= n_mels:
        raise ValueError(f"n_bands must be in 1..{n_mels}, got {n_bands}")
    return [round(i * n_mels / n_bands) for i in range(n_bands + 1)]


class SubBandFrontEnd(nn.Module):
    """FSA: a front-end TDNN layer per mel band (or one shared), concatenated and mixed by 1x1."""

    def __init__(
        self, n_mels: int, channels: int, n_bands: int, shared: bool, kernel: int = 5
    ) -> None:
        super().__init__()
        self.edges = band_edges(n_mels, n_bands)
        widths = {b - a for a, b in zip(self.edges[:-1], self.edges[1:], strict=True)}
        if shared and len(widths) != 1:
            raise ValueError(f"a shared front-end needs equal bands; {n_mels} mels / {n_bands}")
        n_convs = 1 if shared else n_bands
        sizes = [b - a for a, b in zip(self.edges[:-1], self.edges[1:], strict=True)]
        self.convs = nn.ModuleList(TdnnLayer(sizes[i], channels, kernel) for i in range(n_convs))
        self.mix = TdnnLayer(n_bands * channels, channels, 1) if n_bands > 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bands = [x[:, a:b] for a, b in zip(self.edges[:-1], self.edges[1:], strict=True)]
        convs = self.convs if len(self.convs) == len(bands) else [self.convs[0]] * len(bands)
        return self.mix(torch.cat([conv(b) for conv, b in zip(convs, bands, strict=True)], dim=1))


@capture_init
class EcapaTdnn(nn.Module):
    """ECAPA-TDNN with CCS (``stop``/``cont`` channels per block) and FSA (``n_bands``)."""

    INPUT = "mel"  # what it reads (models.names.FEATURES): `train --arch` feeds it this

    def __init__(
        self,
        n_classes: int,
        n_mels: int = 96,
        cont: int = 256,
        stop: int = 0,
        dilations: tuple[int, ...] | list[int] = (2, 3, 4),
        scale: int = 8,
        mfa_channels: int = 768,
        embedding_dim: int = 192,
        n_bands: int = 1,
        shared_frontend: bool = False,
    ) -> None:
        super().__init__()
        self.stop = stop
        self.frontend = SubBandFrontEnd(n_mels, cont, n_bands, shared_frontend)
        self.blocks = nn.ModuleList(SeRes2Block(cont, stop + cont, d, scale) for d in dilations)
        self.mfa = TdnnLayer(len(dilations) * (stop + cont), mfa_channels, 1)
        self.pool = AttentiveStatsPool(mfa_channels)
        self.pool_bn = nn.BatchNorm1d(2 * mfa_channels)
        self.embed = nn.Linear(2 * mfa_channels, embedding_dim)
        self.embed_bn = nn.BatchNorm1d(embedding_dim)
        self.classifier = nn.Linear(embedding_dim, n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 3:
            raise ValueError(f"expected (batch, frames, mels) log-mel, got {tuple(x.shape)}")
        h = self.frontend(x.transpose(1, 2))  # (B, mels, T) -> (B, cont, T)
        outs = []
        for block in self.blocks:
            out = block(h)
            outs.append(out)  # stop + continue channels both reach the aggregation
            h = out[:, self.stop :]  # only the continue channels go on
        pooled = self.pool_bn(self.pool(self.mfa(torch.cat(outs, dim=1))))
        emb = self.embed_bn(self.embed(pooled))
        return self.classifier(emb), emb
