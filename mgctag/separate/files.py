"""Separate whole files into stem files, laid out like the demucs CLI: OUT/<track>/<stem>.flac."""

from __future__ import annotations

import ctypes
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from functools import cache
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from mgctag.atomicio import atomic_path, write_atomic
from mgctag.audio.decode import load
from mgctag.errors import MgctagError

from .base import STEMS, Separator

FORMATS = {"flac": "FLAC", "wav": "WAV"}
BLOCK_S = 20.0  # seconds separated at a time: memory stays bounded for a file of any length
FADE_S = 2.0  # overlap between blocks, crossfaded (about a 25 % HTDemucs segment overlap)


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

    The file is decoded, separated and written `BLOCK_S` seconds at a time (`separated_blocks`),
    so memory stays bounded whatever the length. Raises DecodeError for unreadable input,
    SeparationError when separation fails, OutputError when a stem would leave `out_dir` or
    replace a file (unless `overwrite`), OSError when writing fails; a stem file appears only
    complete (written under a temporary name, then renamed).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use {' or '.join(FORMATS)}")
    t0 = time.perf_counter()
    sr = separator.sample_rate
    folder = track_folder(path, out_dir)
    _check_targets(folder, fmt, out_dir, overwrite)  # before the (slow) separation too
    blocks = separated_blocks(path, separator, sr)
    first = next(blocks)
    channels = first[STEMS[0]].shape[0]
    folder.mkdir(parents=True, exist_ok=True)
    targets = {stem: folder / f"{stem}.{fmt}" for stem in STEMS}
    samples = 0
    with ExitStack() as stack:  # files close (LIFO) before their atomic renames
        tmps = {stem: stack.enter_context(atomic_path(dest)) for stem, dest in targets.items()}
        files = {
            stem: stack.enter_context(
                sf.SoundFile(tmp, "w", sr, channels, subtype="PCM_24", format=FORMATS[fmt])
            )
            for stem, tmp in tmps.items()
        }
        for block in chain([first], blocks):
            for stem in STEMS:
                files[stem].write(np.clip(block[stem], -1.0, 1.0).T)
            samples += block[STEMS[0]].shape[-1]
    return StemFiles(path, folder, targets, samples / sr, time.perf_counter() - t0)


def separated_blocks(
    path: Path, separator: Separator, sr: int, block: float = BLOCK_S, fade: float = FADE_S
) -> Iterator[dict[str, np.ndarray]]:
    """The stems of the whole file, in order, as `(channels, n)` pieces of about `block` seconds.

    Each block is decoded with `fade` seconds more than it keeps; the overlap with the next block
    is crossfaded linearly (the demucs way of joining segments, one level up), so both blocks'
    stems, each summing to the mix, still sum to it. Raises DecodeError for an unreadable file.
    """
    n_block, n_fade = int(block * sr), int(fade * sr)
    tail: dict[str, np.ndarray] | None = None
    start = 0
    while True:
        y = load(path, sr, offset=start / sr, duration=(n_block + n_fade) / sr, mono=False)
        if y.shape[-1] == 0:
            if tail is not None:
                yield tail
            return
        stems = separator.separate(y, sr)
        if tail is not None:
            k = min(tail[STEMS[0]].shape[-1], y.shape[-1])
            w = (np.arange(1, k + 1, dtype=np.float32) / (k + 1))[None]
            for s in STEMS:
                stems[s][:, :k] = tail[s][:, :k] * (1 - w) + stems[s][:, :k] * w
        if y.shape[-1] <= n_block:  # the last block
            yield stems
            return
        yield {s: v[:, :n_block] for s, v in stems.items()}
        tail = {s: v[:, n_block:].copy() for s, v in stems.items()}
        del stems, y
        release_freed_memory()
        start += n_block


def release_freed_memory() -> None:
    """Hand memory freed by the last block back to the OS (glibc's malloc_trim).

    A model's large temporary tensors leave glibc's heap fragmented; without this, a long
    HTDemucs run holds ~500 MiB more between blocks (docs/separation.md). Elsewhere: a no-op.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@cache
def _malloc_trim() -> Any:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl)
        return None


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
