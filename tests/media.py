"""Make real test audio in every format mgctag handles, from real recordings in ../shared/audio.

Tests must never write into ../shared, and the repo keeps no audio: files are encoded on the fly
into a temp dir with PyAV (FFmpeg's encoders ship in its wheel).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soundfile as sf

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
AUDIO = SHARED / "audio"
LIBROSA = AUDIO / "librosa"
MUSDB = AUDIO / "musdb18-7s"

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


def real_clip(
    name: str = "Kevin_MacLeod_-_Vibe_Ace", seconds: float = 12.0
) -> tuple[np.ndarray, int]:
    """A real stereo 44.1 kHz recording from ../shared/audio/librosa, as (channels, n) float32."""
    y, sr = sf.read(LIBROSA / f"{name}.hq.ogg", dtype="float32", always_2d=True)
    return np.ascontiguousarray(y[: int(seconds * sr)].T), sr


def encode(y: np.ndarray, sr: int, dest: Path, ext: str | None = None) -> Path:
    """Encode (channels, n) float32 audio to `dest` in the format its extension names."""
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
        ctx = stream.codec_context
        ctx.bit_rate = ctx.bit_rate or 128_000
        resampler = av.AudioResampler(
            format=ctx.codec.audio_formats[0].name, layout=layout, rate=ctx.rate
        )
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
