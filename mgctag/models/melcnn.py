"""A small 2-D CNN on log-mel frames for speech / music / noise: the detector's "stronger" option.

Issue 27 asks for one stronger network than SwishNet (a 1-D CNN on 20 MFCCs) if SwishNet cannot
reach its targets. This one reads the 40-band log-mel the MFCCs are computed from (so it sees
the spectral shape SwishNet's truncated DCT smooths away: harmonics under speech, a music bed's
partials), through four 3x3 convolution blocks that pool frequency to 5 bands and time by 4, then
a temporal convolution over the flattened bands. Like SwishNet its head is a time average of
per-frame features followed by a linear layer, so a frame-wise detector
(`mgctag.segments.detector`) runs the convolutions once over a recording and averages the
features over any context window, instead of running the network once per frame.

Input: standardised log-mel ``(batch, frames, n_mels)``; frames are grouped by ``TIME_STRIDE``
(trailing frames that do not fill a group are dropped).
Output: ``(logits (batch, n_classes), embedding (batch, 8 * width))``.
"""

from __future__ import annotations

import torch
from torch import nn

from mgctag.models.config import capture_init


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()
    )


@capture_init
class MelCnn(nn.Module):
    """Log-mel 2-D CNN with a per-frame feature map (time / 4) and a window-mean head."""

    TIME_STRIDE = 4  # input frames per output frame
    RECEPTIVE = 48  # input frames on each side a feature frame depends on (with room to spare)

    def __init__(self, n_classes: int = 3, n_mels: int = 40, width: int = 16) -> None:
        super().__init__()
        if n_mels % 8:
            raise ValueError(f"n_mels must be a multiple of 8, got {n_mels}")
        c1, c2, c3 = width, 2 * width, 4 * width
        self.convs = nn.Sequential(
            _block(1, c1),
            nn.MaxPool2d((2, 2)),  # (time, mel)
            _block(c1, c2),
            nn.MaxPool2d((2, 2)),
            _block(c2, c3),
            nn.MaxPool2d((1, 2)),
            _block(c3, c3),
        )
        bands = n_mels // 8
        self.temporal = nn.Sequential(
            nn.Conv1d(c3 * bands, 8 * width, 3, padding=1), nn.BatchNorm1d(8 * width), nn.ReLU()
        )
        self.classifier = nn.Linear(8 * width, n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.frame_features(x).mean(dim=2)
        return self.classifier(emb), emb

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """Features per output frame (batch, 8 * width, frames // TIME_STRIDE), before the time
        average; output frame j summarises input frames [4j, 4j + 4) and their surroundings."""
        if x.dim() != 3:
            raise ValueError(f"expected (batch, frames, n_mels) log-mel, got {tuple(x.shape)}")
        h = self.convs(x[:, None])  # (batch, c3, frames / 4, n_mels / 8)
        h = h.permute(0, 1, 3, 2).flatten(1, 2)  # (batch, c3 * bands, frames / 4)
        return self.temporal(h)
