"""Baseline genre networks on the log-mel: 2-D CNN (shallow or deep), 1-D CNN over time, CRNN.

These are the comparison points the seed papers report against; they share one shape contract.
Input: log-mel ``(batch, frames, n_mels)`` (the 2-D CNN also takes stacked stems
``(batch, in_channels, frames, n_mels)``). Output: ``(logits (batch, n_classes), embedding)``;
the embedding is the pooled feature vector the classifier reads, not normalised.
"""

from __future__ import annotations

import torch
from torch import nn

from mgctag.models.config import capture_init
from mgctag.models.stemcnn import spectrogram_batch


def conv_block(in_ch: int, out_ch: int, pool: tuple[int, int] | list[int]) -> nn.Sequential:
    """3x3 conv + BN + ReLU + max-pool: the block every 2-D baseline stacks."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(tuple(pool), ceil_mode=True),
    )


@capture_init
class Cnn2d(nn.Module):
    """A VGG-style 2-D CNN; ``channels`` sets the depth: (32, 64) shallow, (32, 64, 128, 128, 256)
    deep.

    Each block halves time and frequency; features are max-pooled over frequency and averaged over
    time, so any patch length works.
    """

    INPUT = "mel"  # what it reads (models.names.FEATURES): `train --arch` feeds it this

    def __init__(
        self,
        n_classes: int,
        channels: tuple[int, ...] | list[int] = (32, 64),
        in_channels: int = 1,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        chans = [in_channels, *channels]
        self.features = nn.Sequential(
            *(conv_block(a, b, (2, 2)) for a, b in zip(chans[:-1], chans[1:], strict=True))
        )
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(chans[-1], n_classes))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(spectrogram_batch(x, self.in_channels))
        emb = h.amax(dim=3).mean(dim=2)
        return self.classifier(emb), emb


@capture_init
class Cnn1d(nn.Module):
    """Convolutions over time with the mel bins as channels (frequency is never shifted)."""

    INPUT = "mel"  # what it reads (models.names.FEATURES): `train --arch` feeds it this

    def __init__(
        self,
        n_classes: int,
        n_mels: int = 96,
        channels: tuple[int, ...] | list[int] = (128, 128, 256),
        kernel: int = 3,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = n_mels
        for ch in channels:
            layers += [
                nn.Conv1d(prev, ch, kernel, padding="same", bias=False),
                nn.BatchNorm1d(ch),
                nn.ReLU(inplace=True),
                nn.MaxPool1d(2, ceil_mode=True),
            ]
            prev = ch
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * prev, n_classes))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 3:
            raise ValueError(f"expected (batch, frames, mels) log-mel, got {tuple(x.shape)}")
        h = self.features(x.transpose(1, 2))
        emb = torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1)  # average and strongest response
        return self.classifier(emb), emb


@capture_init
class Crnn(nn.Module):
    """CNN blocks that pool frequency away, then stacked LSTMs over time (Choi et al. 2017 style).

    The pools take 96 mel bins to 1 while time keeps 1/8 of its frames for the LSTM; the embedding
    is the last layer's final hidden state.
    """

    INPUT = "mel"  # what it reads (models.names.FEATURES): `train --arch` feeds it this

    POOLS = ((2, 2), (2, 3), (2, 4), (1, 4))

    def __init__(
        self,
        n_classes: int,
        channels: tuple[int, ...] | list[int] = (64, 128, 128, 128),
        hidden: int = 128,
        lstm_layers: int = 2,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        if len(channels) != len(self.POOLS):
            raise ValueError(f"Crnn needs {len(self.POOLS)} conv channel counts, got {channels}")
        chans = [1, *channels]
        self.features = nn.Sequential(
            *(
                conv_block(a, b, p)
                for a, b, p in zip(chans[:-1], chans[1:], self.POOLS, strict=True)
            )
        )
        self.rnn = nn.LSTM(
            chans[-1],
            hidden,
            num_layers=lstm_layers,
            batch_first=True,
            dropout=dropout if lstm_layers > 1 else 0.0,
        )
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, n_classes))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(spectrogram_batch(x, 1))  # (B, C, T', F')
        seq = h.amax(dim=3).transpose(1, 2)  # (B, T', C); F' is 1 for 96 mels
        _, (hn, _) = self.rnn(seq)
        emb = hn[-1]
        return self.classifier(emb), emb
