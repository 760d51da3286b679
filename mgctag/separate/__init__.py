"""Stem separation: every separator returns drums, bass, other, vocals at the input's rate, length.

`get_separator("auto")` prefers HTDemucs when its weights are installed (`mgctag models get
htdemucs`, or demucs's own caches), else the offline cascade (Spleeter U-Nets + HPSS) with one
line saying how to get better stems; `hpss` is the fastest and needs no model at all.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from mgctag.errors import UsageError
from mgctag.options import SEPARATORS  # the one list of names `--separator` takes

from .base import STEMS, SeparationError, Separator, WeightsUnavailableError

BETTER_STEMS = (
    "using the cascade separator (offline); for much better stems: "
    "pip install 'mgctag[demucs]' && mgctag models get htdemucs"
)

__all__ = [
    "SEPARATORS",
    "STEMS",
    "SeparationError",
    "Separator",
    "WeightsUnavailableError",
    "get_separator",
    "resolve_device",
]


def resolve_device(device: str = "auto") -> str:
    """'auto' -> cuda, else mps, else cpu; an explicit device that is not there is an error."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: CUDA is not available on this machine")
    return device


def get_separator(
    name: str = "auto", device: str = "auto", model_path: Path | None = None
) -> Separator:
    """A ready separator. `model_path` is a Demucs weight file or repo folder (demucs/auto only).

    Under "auto", HTDemucs runs when its weights are here (`mgctag models get htdemucs`, or
    demucs's caches; auto never downloads); else the cascade, with a warning saying how to get
    better stems. Asking for "demucs" by name, or giving `model_path`, raises instead.
    """
    if name not in SEPARATORS:
        raise SeparationError(f"unknown separator {name!r}; choose one of {', '.join(SEPARATORS)}")
    dev = resolve_device(device)
    if name in ("auto", "demucs"):
        from .demucs import DemucsSeparator

        try:
            # auto never downloads: the weights it uses are the ones the user asked for
            return DemucsSeparator.load(
                device=dev, model_path=model_path, download=name == "demucs"
            )
        except SeparationError:
            if name == "demucs" or model_path is not None:
                raise
            warnings.warn(BETTER_STEMS, stacklevel=2)
    if name == "hpss":
        from .hpss import HpssSeparator

        return HpssSeparator()
    from .cascade import CascadeSeparator

    return CascadeSeparator(device=dev)
