"""Separate whole files into stem files, laid out like the demucs CLI: OUT/<track>/<stem>.flac."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from mgctag.audio.decode import load

from .base import STEMS, Separator

FORMATS = {"flac": "FLAC", "wav": "WAV"}


@dataclass(frozen=True)
class StemFiles:
    """What one input became."""

    source: Path
    folder: Path
    stems: dict[str, Path]
    duration: float  # seconds of audio separated
    seconds: float  # wall time spent decoding, separating and writing


def track_folder(path: Path, out_dir: Path) -> Path:
    """OUT/<file name without its last extension>, as demucs names it."""
    return out_dir / path.name.rsplit(".", 1)[0]


def separate_file(path: Path, out_dir: Path, separator: Separator, fmt: str = "flac") -> StemFiles:
    """Decode `path` at the separator's rate, separate it, write one 24-bit file per stem.

    Raises DecodeError for unreadable input, SeparationError when separation fails, OSError when
    writing fails; a stem file appears only complete (written under a temporary name, then renamed).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use {' or '.join(FORMATS)}")
    t0 = time.perf_counter()
    sr = separator.sample_rate
    y = load(path, sr, mono=False)
    stems = separator.separate(y, sr)
    folder = track_folder(path, out_dir)
    written = write_stems(stems, sr, folder, fmt)
    return StemFiles(path, folder, written, y.shape[-1] / sr, time.perf_counter() - t0)


def write_stems(
    stems: dict[str, np.ndarray], sr: int, folder: Path, fmt: str = "flac"
) -> dict[str, Path]:
    """One 24-bit file per stem in `folder` (FOLDER/<stem>.<fmt>), each complete or absent."""
    folder.mkdir(parents=True, exist_ok=True)
    return {stem: _write(folder / f"{stem}.{fmt}", stems[stem], sr, fmt) for stem in STEMS}


def _write(dest: Path, y: np.ndarray, sr: int, fmt: str) -> Path:
    part = dest.with_name(dest.name + ".part")
    sf.write(part, np.clip(y, -1.0, 1.0).T, sr, format=FORMATS[fmt], subtype="PCM_24")
    os.replace(part, dest)
    return dest
