"""Time-frequency masking in bounded memory: the shared engine of the cascade and hpss separators.

The track is cut into blocks of STFT frames on one global frame grid. Each block is analysed with
some context frames on either side (so median filters and the U-Net see across the cut), masks
are kept for the block's own frames only, and those frames are inverted and overlap-added into the
output. Overlap-add is linear in the frames, so the result equals a whole-track STFT, mask and
inverse, while memory stays that of one block however long the track is. The masks of the four
stems sum to one, so the stems sum back to the mix.

The STFT follows Spleeter: `n_fft` zeros are prepended, frames are periodic-Hann windowed with no
centring, and the inverse is a plain windowed overlap-add scaled by hop / sum(window²).
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np
import torch

from .base import STEMS, Separator


class MaskSeparator(Separator):
    """A separator that computes one soft mask per stem on an STFT, block by block."""

    n_fft: int = 4096
    hop: int = 1024
    block: int = 512  # frames per block (~11.9 s at 44.1 kHz, Spleeter's T)
    context: int = 32  # extra frames either side of a block, for filters that look around

    def __init__(self) -> None:
        self._window = torch.hann_window(self.n_fft, periodic=True)
        self._scale = self.hop / float((self._window**2).sum())

    def _separate(self, y: np.ndarray) -> dict[str, np.ndarray]:
        x = torch.from_numpy(np.ascontiguousarray(y))
        n = x.shape[-1]
        n_frames = -(-(n + self.n_fft) // self.hop)
        out = torch.zeros((len(STEMS), *x.shape))
        for core_lo in range(0, n_frames, self.block):
            core_hi = min(core_lo + self.block, n_frames)
            lo, hi = max(core_lo - self.context, 0), min(core_hi + self.context, n_frames)
            spec = self._stft(x, lo, hi)
            masks = self.masks(spec)
            core = slice(core_lo - lo, core_hi - lo)
            stems = torch.stack([masks[stem][..., core] * spec[..., core] for stem in STEMS])
            self._overlap_add(out, stems, core_lo)
        return dict(zip(STEMS, out.numpy(), strict=True))

    @abstractmethod
    def masks(self, spec: torch.Tensor) -> dict[str, torch.Tensor]:
        """Masks in [0, 1] summing to one, broadcastable to `spec` (channels, bins, frames)."""

    def _stft(self, x: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        """Complex STFT frames [lo, hi) of the global grid, as (channels, bins, frames)."""
        # frame f covers samples [f * hop - n_fft, f * hop): the prepended n_fft zeros
        seg = _padded_slice(x, lo * self.hop - self.n_fft, (hi - 1) * self.hop)
        return torch.stft(
            seg, self.n_fft, self.hop, window=self._window, center=False, return_complex=True
        )

    def _overlap_add(self, out: torch.Tensor, spec: torch.Tensor, first: int) -> None:
        """Invert frames (..., bins, frames) starting at global frame `first`; add into `out`.

        Each frame is cut into n_fft / hop pieces of one hop; piece k of frame t lands on hop
        slot t + k, so overlap-add is n_fft / hop shifted sums (torch's fold is far slower).
        """
        frames = torch.fft.irfft(spec, n=self.n_fft, dim=-2) * self._window[:, None]
        lead, n_frames = frames.shape[:-2], frames.shape[-1]
        pieces = self.n_fft // self.hop
        frames = frames.reshape(*lead, pieces, self.hop, n_frames)
        slots = frames.new_zeros((*lead, self.hop, n_frames + pieces - 1))
        for k in range(pieces):
            slots[..., k : k + n_frames] += frames[..., k, :, :]
        signal = slots.transpose(-1, -2).reshape(*lead, -1)
        start = first * self.hop - self.n_fft
        a, b = max(start, 0), min(start + signal.shape[-1], out.shape[-1])
        if b > a:
            out[..., a:b] += self._scale * signal[..., a - start : b - start]


def _padded_slice(x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """x[:, start:stop] with zeros where the range runs outside the signal."""
    n = x.shape[-1]
    a, b = max(start, 0), min(stop, n)
    seg = x[:, a:b] if b > a else x[:, :0]
    before = a - start
    return torch.nn.functional.pad(seg, (before, stop - start - before - seg.shape[-1]))
