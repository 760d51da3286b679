"""Separate whole files into stem files, laid out like the demucs CLI: OUT/<track>/<stem>.flac."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from mgctag.atomicio import write_atomic
from mgctag.audio.decode import load
from mgctag.errors import MgctagError

from .base import STEMS, Separator

FORMATS = {"flac": "FLAC", "wav": "WAV"}


class OutputError(MgctagError, ValueError):
    """A stem file would land outside the output folder or replace an existing file."""


@dataclass(frozen=True)
class StemFiles:
    """What one input became."""

    source: Path
    folder: Path
    stems: dict[str, Path]
    duration: float  # seconds of audio separated
    seconds: float  # wall time spent decoding, separating and writing


def track_folder(path: Path, out_dir: Path) -> Path:
    """OUT/<file name without its last extension>, as demucs names it; the whole name where
    that would be empty, "." or ".." (a file named "...wav" must not map to OUT/..)."""
    name = path.name.rsplit(".", 1)[0]
    if not name.strip("."):
        name = path.name if path.name.strip(".") else "_" + path.name
    return out_dir / name


def separate_file(
    path: Path,
    out_dir: Path,
    separator: Separator,
    fmt: str = "flac",
    *,
    overwrite: bool = False,
) -> StemFiles:
    """Decode `path` at the separator's rate, separate it, write one 24-bit file per stem.

    Raises DecodeError for unreadable input, SeparationError when separation fails, OutputError
    when a stem would leave `out_dir` or replace a file (unless `overwrite`), OSError when writing
    fails; a stem file appears only complete (written under a temporary name, then renamed).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use {' or '.join(FORMATS)}")
    t0 = time.perf_counter()
    sr = separator.sample_rate
    folder = track_folder(path, out_dir)
    _check_targets(folder, fmt, out_dir, overwrite)  # before the (slow) separation too
    y = load(path, sr, mono=False)
    stems = separator.separate(y, sr)
    written = write_stems(stems, sr, folder, fmt, out_dir=out_dir, overwrite=overwrite)
    return StemFiles(path, folder, written, y.shape[-1] / sr, time.perf_counter() - t0)


def write_stems(
    stems: dict[str, np.ndarray],
    sr: int,
    folder: Path,
    fmt: str = "flac",
    *,
    out_dir: Path | None = None,
    overwrite: bool = True,
) -> dict[str, Path]:
    """One 24-bit file per stem in `folder` (FOLDER/<stem>.<fmt>), each complete or absent.

    With `out_dir`, `folder` must resolve inside it; without `overwrite`, no existing file is
    replaced (checked for every stem before the first is written).
    """
    _check_targets(folder, fmt, out_dir, overwrite)
    folder.mkdir(parents=True, exist_ok=True)
    return {stem: _write(folder / f"{stem}.{fmt}", stems[stem], sr, fmt) for stem in STEMS}


def _check_targets(folder: Path, fmt: str, out_dir: Path | None, overwrite: bool) -> None:
    if out_dir is not None and not folder.resolve().is_relative_to(out_dir.resolve()):
        raise OutputError("would be written outside the output folder; not written", folder)
    if not overwrite:
        for stem in STEMS:
            dest = folder / f"{stem}.{fmt}"
            if dest.exists() or dest.is_symlink():
                raise OutputError("exists; not overwritten (use overwrite)", dest)


def _write(dest: Path, y: np.ndarray, sr: int, fmt: str) -> Path:
    """Through the atomic-write helper: temp name, fsync, rename; no partial file ever stays."""
    data = np.clip(y, -1.0, 1.0).T
    return write_atomic(
        dest, lambda tmp: sf.write(tmp, data, sr, format=FORMATS[fmt], subtype="PCM_24")
    )
