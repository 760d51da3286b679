"""The offline default: Spleeter 2-stem U-Nets for vocals, then HPSS + a band split for the rest.

vocals = Spleeter's vocal ratio mask on the mix; the accompaniment (1 - that mask) is split into
drums (its percussive part), bass (its harmonic part below ~200 Hz) and other (the harmonic rest).
Everything runs on one 4096/1024 STFT at 44.1 kHz, so the four masks sum to one and the stems sum
back to the mix. Bundled weights only: it never downloads.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .hpss import CROSSOVER_HZ, band_split, hpss_masks, stem_masks
from .masking import MaskSeparator
from .spleeter import SAMPLE_RATE, load_spleeter

# The percussive median runs across 15 bins (~160 Hz) instead of HPSS's usual 31: on the MUSDB
# previews drums 2.63 -> 2.71 dB and bass 3.22 -> 3.80 dB median (docs/separation.md).
FREQ_KERNEL = 15


class CascadeSeparator(MaskSeparator):
    """Spleeter vocals + HPSS drums + band-split bass/other."""

    name = "cascade"
    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        device: str = "cpu",
        weights: Path | None = None,
        crossover_hz: float = CROSSOVER_HZ,
        freq_kernel: int = FREQ_KERNEL,
    ) -> None:
        super().__init__()
        self.device = torch.device(device)
        self.model = load_spleeter(weights).to(self.device)
        self._low = band_split(self.n_fft, self.sample_rate, crossover_hz)
        self.freq_kernel = freq_kernel

    @torch.inference_mode()
    def masks(self, spec: torch.Tensor) -> dict[str, torch.Tensor]:
        mag = spec.abs()
        stereo = mag if mag.shape[0] == 2 else mag.expand(2, -1, -1)  # the U-Nets want 2 channels
        vocals = self.model(stereo.to(self.device)).cpu()
        if mag.shape[0] == 1:
            vocals = vocals.mean(0, keepdim=True)
        rest = 1 - vocals
        harmonic, percussive = hpss_masks(mag * rest, freq_kernel=self.freq_kernel)
        masks = stem_masks(rest, harmonic, percussive, self._low)
        masks["vocals"] = vocals
        return masks
