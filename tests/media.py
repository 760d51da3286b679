"""Make real test audio in every format mgctag handles, from the real recordings in tests/data.

tests/data (tests/data/LICENSES.md) travels with the code; the research-only MUSDB18 previews
stay in ../shared (or $MGCTAG_SHARED) and the tests that need them skip with `need()`'s reason.
Files are encoded on the fly into temp dirs with PyAV (FFmpeg's encoders ship in its wheel);
tests never write into tests/data or ../shared.
"""

from __future__ import annotations

import csv
import functools
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

DATA = Path(__file__).resolve().parent / "data"
LIBROSA = DATA / "librosa"  # librosa's CC BY / public-domain examples, unchanged `.hq.ogg` copies
MUSIC = DATA / "music"  # 10-s excerpts in five genres, listed in MUSIC / "genres.csv"
SOUNDS = DATA / "sounds"  # not music: a whale, an explosion (noise)
MUSICNN_REFERENCE = DATA / "fixtures" / "musicnn_reference.npz"

# Optional research-only data beside the checkout; MGCTAG_SHARED points elsewhere (or at nothing
# to try the suite as a fresh clone: MGCTAG_SHARED=/nonexistent).
SHARED = Path(os.environ.get("MGCTAG_SHARED") or Path(__file__).resolve().parents[2] / "shared")
AUDIO = SHARED / "audio"
MUSDB = AUDIO / "musdb18-7s"
FIXTURES = SHARED / "fixtures"
README = "see tests/README.md"
MISSING = {  # what `need()` knows, and the reason a test skips without it
    root: f"{what} not found at {root}; {README}"
    for root, what in (
        (MUSDB, "MUSDB previews"),
        (FIXTURES / "efficientat", "EfficientAT reference"),
        (SHARED / "gtzan-splits", "GTZAN split lists"),
    )
}


def need(path: Path) -> Path:
    """`path` (in ../shared), or skip the calling test with the one reason the summary counts."""
    for root, reason in MISSING.items():
        if (path == root or root in path.parents) and not root.exists():
            pytest.skip(reason)
    return path


MUSICNN_CLIPS = {  # the reference's clip keys -> the recordings they were computed from
    "vibe_ace": "Kevin_MacLeod_-_Vibe_Ace",
    "hungarian_dance": "Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra)",
    "lets_go_fishin": "Karissa_Hobbs_-_Lets_Go_Fishin",
}


@functools.cache
def musicnn_reference() -> dict[str, np.ndarray]:
    """The original musicnn outputs for the in-repo clips (tests/data/fixtures; see its README in
    ../shared/fixtures/musicnn), plus each clip's `CLIP__y16k` made as the references' inputs were:
    `librosa.load(path, sr=16000, mono=True, duration=12.0)` of the unchanged in-repo file."""
    import librosa  # slow to import: only where the reference is used

    ref = dict(np.load(MUSICNN_REFERENCE))
    for key, name in MUSICNN_CLIPS.items():
        y, _ = librosa.load(LIBROSA / f"{name}.hq.ogg", sr=16000, mono=True, duration=12.0)
        ref[f"{key}__y16k"] = y
    return ref


def genre_set() -> list[tuple[Path, str, str]]:
    """(path, genre, artist) of the in-repo multi-genre excerpts (two per song), in file order:
    17 songs by 9 artists, 34 excerpts; five genres with 10 excerpts or more."""
    with open(MUSIC / "genres.csv", newline="", encoding="utf-8") as f:
        return [(MUSIC / r["file"], r["genre"], r["artist"]) for r in csv.DictReader(f)]


def songs() -> list[tuple[Path, str, str]]:
    """`genre_set()`'s first excerpt of each song: distinct recordings."""
    return [row for row in genre_set() if row[0].stem.endswith("_1")]


# ext -> (container, codec); None: soundfile writes it (libsndfile's own Vorbis encoder).
FORMATS: dict[str, tuple[str, str] | None] = {
    "mp3": ("mp3", "libmp3lame"),
    "flac": ("flac", "flac"),
    "ogg": None,
    "opus": ("ogg", "libopus"),
    "m4a": ("ipod", "aac"),
    "alac.m4a": ("ipod", "alac"),
    "wav": ("wav", "pcm_s16le"),
    "aiff": ("aiff", "pcm_s16be"),
    "wma": ("asf", "wmav2"),
}


def clip_path(name: str) -> Path:
    """A recording in tests/data by name: a librosa example ("Kevin_MacLeod_-_Vibe_Ace") or a
    path below tests/data without its extension ("music/metal/chaos_god_1")."""
    librosa = LIBROSA / f"{name}.hq.ogg"
    path = librosa if librosa.is_file() else DATA / f"{name}.ogg"
    if not path.is_file():  # e.g. librosa's CC BY-NC examples, which may not be redistributed
        known = sorted(p.name.removesuffix(".hq.ogg") for p in LIBROSA.glob("*.hq.ogg"))
        raise FileNotFoundError(
            f"no recording {name!r} in tests/data (tests/data/LICENSES.md); use one of {known} "
            'or a genre excerpt such as "music/electronic/northern_lights_1"'
        )
    return path


def real_clip(
    name: str = "Kevin_MacLeod_-_Vibe_Ace", seconds: float = 12.0
) -> tuple[np.ndarray, int]:
    """A real stereo 44.1 kHz recording from tests/data (`clip_path`), as (channels, n) float32.
    The genre excerpts are 10 s long: asking for more gives 10 s."""
    y, sr = sf.read(clip_path(name), dtype="float32", always_2d=True)
    return np.ascontiguousarray(y[: int(seconds * sr)].T), sr


def encode(
    y: np.ndarray, sr: int, dest: Path, ext: str | None = None, bit_rate: int | None = None
) -> Path:
    """Encode (channels, n) float32 audio to `dest` in the format its extension names (lossy
    codecs at `bit_rate`, else 128 kb/s)."""
    ext = ext or ("alac.m4a" if dest.name.endswith(".alac.m4a") else dest.suffix.lstrip("."))
    spec = FORMATS[ext]
    if spec is None:  # in blocks: one long sf.write of Vorbis crashes libsndfile 1.2.2
        with sf.SoundFile(dest, "w", sr, y.shape[0], format="OGG", subtype="VORBIS") as f:
            for start in range(0, y.shape[1], sr):
                f.write(y[:, start : start + sr].T)
        return dest
    container, codec = spec
    layout = "stereo" if y.shape[0] == 2 else "mono"
    with av.open(str(dest), "w", format=container) as out:
        stream = out.add_stream(codec, rate=48000 if codec == "libopus" else sr, layout=layout)
        assert isinstance(stream, av.AudioStream)  # FORMATS names audio codecs only
        ctx = stream.codec_context
        ctx.bit_rate = bit_rate or ctx.bit_rate or 128_000
        formats = ctx.codec.audio_formats
        assert formats  # an audio encoder lists the sample formats it takes
        resampler = av.AudioResampler(format=formats[0].name, layout=layout, rate=ctx.rate)
        step = 4096
        for start in range(0, y.shape[1], step):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(y[:, start : start + step]), format="fltp", layout=layout
            )
            frame.sample_rate = sr
            frame.pts = start
            frame.time_base = Fraction(1, sr)
            for f in resampler.resample(frame):
                out.mux(stream.encode(f))
        for f in resampler.resample(None):
            out.mux(stream.encode(f))
        out.mux(stream.encode(None))
    return dest


def make_library(
    root: Path, exts: tuple[str, ...] = tuple(FORMATS), seconds: float = 12.0
) -> list[Path]:
    """A small real library: the same real clip encoded once per format under `root`."""
    y, sr = real_clip(seconds=seconds)
    root.mkdir(parents=True, exist_ok=True)
    return [encode(y, sr, root / f"vibe_ace.{ext}", ext) for ext in exts]
