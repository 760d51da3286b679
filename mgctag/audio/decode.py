"""Any supported audio file → float32 PCM at a requested rate, decoding only the spans asked for.

soundfile (libsndfile) reads WAV/AIFF/FLAC/Ogg Vorbis/Opus/MP3 with frame-accurate seeking and is
what librosa uses, so its output matches the musicnn reference waveforms; PyAV (the FFmpeg in its
wheel) reads everything else (AAC/ALAC in MP4, WMA, ...) and what libsndfile refuses (some
truncated files). Downmix (mean of channels) and resampling (soxr "HQ", length ceil(n * ratio))
follow `librosa.load(path, sr=..., mono=True)` exactly.

Every decode is bounded: reads are capped at `MAX_SECONDS` of audio, PyAV gives up after
`MAX_BAD_PACKETS` undecodable packets in a row, and the loops check a wall-clock budget of
`TIME_LIMIT` seconds between blocks/packets, so a pathological file ends in a `DecodeError`
instead of a hang (a single FFmpeg call that never returns can only be stopped by a worker process).
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import re
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import av
import numpy as np
import soundfile as sf
import soxr

from mgctag.errors import MgctagError
from mgctag.tags import id3raw  # the one ID3v2 header parser

MAX_SECONDS = 3600.0  # longest span one call decodes (a whole-file load of a longer file fails)
#: Sample rates audio is recorded at. A header outside them is damaged or hostile: a WAV claiming
#: 1 Hz over 8 s of PCM "lasts" 49 h, and resampling it to 16 kHz would need 11 GB.
MIN_SAMPLE_RATE = 4000
MAX_SAMPLE_RATE = 768_000
TIME_LIMIT = 120.0  # wall-clock seconds one call may spend decoding
MAX_BAD_PACKETS = 64  # consecutive undecodable packets before a file counts as corrupt
PREROLL = 0.5  # seconds decoded before a PyAV seek target, so codecs with overlap settle
SEEK_GAP = 5.0  # a PyAV read further ahead than this seeks instead of decoding through
_BLOCK = 1 << 20  # frames per soundfile read between deadline checks


class DecodeError(MgctagError):
    """A file that cannot be decoded; `str()` is one line naming the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(reason, path)


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, read from its headers (duration may be an estimate for VBR MP3)."""

    path: Path
    format: str  # container: wav, aiff, flac, ogg, mp3, mp4, asf, ...
    codec: str  # pcm_s16, flac, vorbis, opus, mp3, aac, alac, wmav2, ...
    duration: float  # seconds
    sample_rate: int
    channels: int
    bits: int | None = None  # bits per sample where the codec has them (PCM, FLAC)


# --- public API ------------------------------------------------------------------------------

#: C-level lines on file descriptor 2 that are decoder noise, not news for the user: libmpg123
#: (inside libsndfile) reports every damaged MP3 frame it conceals, and no API turns that off.
DECODER_NOISE = re.compile(rb"^\[src/libmpg123/[^\]]*\] (error|warning|note)")
_noise_filter: list[int] = []  # the real stderr's fd once the filter is installed


def filter_decoder_noise(log: logging.Logger | None = None) -> None:
    """Keep C libraries' decoder noise (DECODER_NOISE) off the terminal; call once at start-up.

    File descriptor 2 becomes a pipe read by a daemon thread that forwards every line except the
    noise (which goes to `log` at debug level, shown with -v) to the real stderr. Python's own
    `sys.stderr` is re-pointed at the real stderr, so rich output and tracebacks never pass
    through the thread. Process-wide: for the CLI, not for library use.
    """
    if _noise_filter:
        return
    log = log or logging.getLogger("mgctag.decode")
    sys.stderr.flush()
    real = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    _noise_filter.append(real)
    if _writes_to_fd2(sys.stderr):  # a captured sys.stderr (tests, an embedding app) stays
        sys.stderr = open(  # noqa: SIM115 (lives as long as the process)
            real, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False
        )

    def pump() -> None:
        with open(read_end, "rb", buffering=0) as pipe:
            for line in iter(pipe.readline, b""):
                if DECODER_NOISE.match(line):
                    log.debug("%s", line.decode("utf-8", "replace").rstrip())
                else:
                    os.write(real, line)

    thread = threading.Thread(target=pump, name="mgctag-stderr-filter", daemon=True)
    thread.start()

    def drain() -> None:  # at exit: fd 2 back to the terminal, the last piped lines forwarded
        os.dup2(real, 2)  # closes the pipe's write end held as fd 2: the pump sees EOF
        thread.join(timeout=2.0)

    atexit.register(drain)


def _writes_to_fd2(stream: object) -> bool:
    try:
        return stream.fileno() == 2  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return False


def probe(path: str | os.PathLike) -> AudioInfo:
    """Read format, codec, duration, rate and channels without decoding the audio.

    A duration the headers cannot vouch for (a streamed FLAC with 0 total samples, a Xing header
    claiming 10 h in a 100 kB MP3, sizes of 0xFFFFFFFF) is measured from the packets instead.
    """
    path = Path(path)
    info = _probe_headers(path)
    if not _plausible(info, path):
        info = replace(info, duration=_measured_duration(path))
    return info


#: No real audio stream holds a second in fewer bits (a silent FLAC frame needs ~1 kbit/s).
MIN_BITS_PER_SECOND = 500


def _plausible(info: AudioInfo, path: Path) -> bool:
    """Whether the header duration fits the file's size."""
    d = info.duration
    if not math.isfinite(d) or d <= 0:
        return False
    if info.codec.startswith("pcm") and info.bits:
        size = path.stat().st_size
        return d <= size * 8 / (info.sample_rate * info.channels * info.bits) * 1.01 + 1
    return _fits_size(path, d)


def _fits_size(path: Path, seconds: float) -> bool:
    """Whether a claimed duration could be true for a file of this size (any codec)."""
    return seconds <= path.stat().st_size * 8 / MIN_BITS_PER_SECOND + 1


def _measured_duration(path: Path) -> float:
    """Seconds of audio, from the end of the last packet FFmpeg demuxes (no decoding)."""
    deadline = _Deadline(path)
    container = _av_open(path)
    try:
        stream = _av_stream(path, container, 0)
        end = 0
        for packet in container.demux(stream):
            deadline.check()
            if packet.pts is not None:
                end = max(end, packet.pts + (packet.duration or 0))
        seconds = float(end * stream.time_base) if stream.time_base else 0.0
    except av.error.FFmpegError as e:
        raise DecodeError(path, f"cannot decode ({_av_reason(e)})") from None
    finally:
        container.close()
    if seconds <= 0:
        raise DecodeError(path, "contains no audio samples")
    return seconds


def _probe_headers(path: Path) -> AudioInfo:
    if _soundfile_can_try(path):
        try:
            return _sf_probe(path)
        except (sf.LibsndfileError, RuntimeError):
            pass  # libsndfile refused it: FFmpeg may still read it
    try:
        return _av_probe(path)
    except av.error.FFmpegError as e:  # anything FFmpeg raises that the reader did not expect
        raise DecodeError(path, f"cannot decode ({_av_reason(e)})") from None


def load(
    path: str | os.PathLike,
    sr: int | None,
    *,
    offset: float = 0.0,
    duration: float | None = None,
    mono: bool = True,
    stream: int = 0,
) -> np.ndarray:
    """Decode `duration` s from `offset` (all of it by default) as float32 at `sr` (None: native).

    Returns `(n,)` if mono else `(channels, n)`. `stream` picks the audio stream (MUSDB `.stem.mp4`:
    0 is the mixture). A span past the end gives an empty array; a file with no samples raises.
    """
    (y,) = load_windows(path, sr, [(offset, duration)], mono=mono, stream=stream)
    if y.shape[-1] == 0 and offset <= 0:
        raise DecodeError(path, "contains no audio samples")
    return y


def load_windows(
    path: str | os.PathLike,
    sr: int | None,
    windows: Sequence[tuple[float, float | None]],
    *,
    mono: bool = True,
    stream: int = 0,
) -> list[np.ndarray]:
    """Decode only these `(offset, duration)` windows: one open of the file, seeking between them.

    Each window is processed like `load(path, sr, offset=..., duration=...)`; windows reaching past
    the end come back shorter (possibly empty), e.g. on truncated files.
    """
    path = Path(path)
    for offset, duration in windows:
        if offset < 0 or (duration is not None and duration < 0):
            raise ValueError(f"bad window ({offset}, {duration}): offset and duration must be >= 0")
    deadline = _Deadline(path)
    native = None
    if _soundfile_can_try(path):
        try:
            native, rate = _sf_read(path, windows, stream, deadline)
        except (sf.LibsndfileError, RuntimeError):
            native = None  # libsndfile refused it (or a truncated FLAC): FFmpeg may still read it
    if native is None:
        try:
            native, rate = _av_read(path, windows, stream, deadline)
        except av.error.FFmpegError as e:  # anything FFmpeg raises that the reader did not expect
            raise DecodeError(path, f"cannot decode ({_av_reason(e)})") from None
    return [_finish(y, rate, sr, mono) for y in native]


def convert(y: np.ndarray, rate: int, sr: int | None, *, mono: bool = True) -> np.ndarray:
    """Audio already in memory → mono/stereo at `sr`, exactly as `load` would have returned it."""
    return _finish(np.atleast_2d(np.asarray(y, np.float32)), rate, sr, mono)


# --- shared helpers --------------------------------------------------------------------------


class _Deadline:
    """Wall-clock budget for one call; `check()` raises once it is spent."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.end = time.monotonic() + TIME_LIMIT

    def check(self) -> None:
        if time.monotonic() > self.end:
            raise DecodeError(self.path, f"decoding took longer than {TIME_LIMIT:.0f} s; gave up")


def _finish(y: np.ndarray, rate: int, sr: int | None, mono: bool) -> np.ndarray:
    """(channels, n) native float32 → mono/stereo at `sr`, the way librosa.load does it."""
    if mono:
        y = y.mean(axis=0)  # float32 mean of channels, as librosa.to_mono
    if sr is not None and sr != rate:
        n_out = math.ceil(y.shape[-1] * sr / rate)
        if y.shape[-1] == 0:
            y = np.zeros(y.shape[:-1] + (0,), np.float32)
        elif y.ndim == 1:
            y = soxr.resample(y, rate, sr, quality="soxr_hq")
        else:
            y = np.stack([soxr.resample(c, rate, sr, quality="soxr_hq") for c in y])
        y = _fix_length(y, n_out)
    return np.ascontiguousarray(y, dtype=np.float32)


def _fix_length(y: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad the last axis to n samples (librosa.util.fix_length)."""
    if y.shape[-1] >= n:
        return y[..., :n]
    pad = [(0, 0)] * (y.ndim - 1) + [(0, n - y.shape[-1])]
    return np.pad(y, pad)


def _span_frames(offset: float, duration: float | None, rate: int) -> tuple[int, int]:
    """(start, count) in samples; count is capped at MAX_SECONDS (a whole-file read asks for it)."""
    cap = int(MAX_SECONDS * rate)
    count = cap if duration is None else min(int(round(duration * rate)), cap)
    return int(round(offset * rate)), count


def _too_long(path: Path) -> DecodeError:
    return DecodeError(
        path,
        f"longer than {MAX_SECONDS:.0f} s, the most this command reads at once; cut it into"
        f" shorter files (e.g. ffmpeg -i IN -t {MAX_SECONDS:.0f} -c copy OUT) or use"
        " `mgctag tag` / `mgctag segments`, which read any length",
    )


def check_rate(path: str | os.PathLike, rate: int) -> int:
    """`rate` when it is one audio uses, else a DecodeError naming it: every decode and probe
    calls this before it sizes anything by the rate, so a lying header cannot size a buffer."""
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise DecodeError(
            path,
            f"the header claims a sample rate of {rate} Hz, which no audio uses"
            f" ({MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz); the file is damaged",
        )
    return rate


def _open_head(path: Path, n: int = 64) -> bytes:
    """The first bytes of the file, turning OS errors into DecodeErrors with a plain reason."""
    try:
        if not path.exists():
            raise DecodeError(path, "file not found")
        if not path.is_file():
            raise DecodeError(path, "not a regular file")
        with open(path, "rb") as f:
            head = f.read(n)
    except PermissionError:
        raise DecodeError(path, "cannot read file: permission denied") from None
    except OSError as e:
        raise DecodeError(path, f"cannot read file: {e.strerror or e}") from None
    if not head:
        raise DecodeError(path, "empty file (0 bytes)")
    return head


def _soundfile_can_try(path: Path) -> bool:
    """True when the header is one libsndfile should read.

    libsndfile's MP3 reader resyncs through anything, so it 'opens' random bytes as MP3; headers are
    checked first and files without a known one go to FFmpeg, whose probe is stricter.
    """
    head = _open_head(path)
    if head[:3] == b"ID3":  # ID3v2 in front of MP3 (or FLAC): look past it
        with open(path, "rb") as f:

            def read_at(offset: int, n: int) -> bytes:
                f.seek(offset)
                return f.read(n)

            f.seek(id3raw.skip_tags(read_at))
            after = f.read(4)
        return after[:4] == b"fLaC" or _mpeg_sync(after)
    if head[:4] in (b"RIFF", b"RF64", b"fLaC", b"OggS", b"caff", b".snd"):
        return head[:4] != b"RIFF" or head[8:12] == b"WAVE"
    if head[:4] == b"FORM":
        return head[8:12] in (b"AIFF", b"AIFC")
    return _mpeg_sync(head)


def _mpeg_sync(b: bytes) -> bool:
    """An MPEG audio frame header (layer I-III, not ADTS AAC) at the start of b."""
    return len(b) >= 2 and b[0] == 0xFF and (b[1] & 0xE0) == 0xE0 and (b[1] & 0x06) != 0


# --- soundfile -------------------------------------------------------------------------------

_SF_CODECS = {
    "PCM_S8": ("pcm_s8", 8),
    "PCM_U8": ("pcm_u8", 8),
    "PCM_16": ("pcm_s16", 16),
    "PCM_24": ("pcm_s24", 24),
    "PCM_32": ("pcm_s32", 32),
    "FLOAT": ("pcm_f32", 32),
    "DOUBLE": ("pcm_f64", 64),
    "ULAW": ("pcm_mulaw", 8),
    "ALAW": ("pcm_alaw", 8),
    "VORBIS": ("vorbis", None),
    "OPUS": ("opus", None),
    "MPEG_LAYER_I": ("mp1", None),
    "MPEG_LAYER_II": ("mp2", None),
    "MPEG_LAYER_III": ("mp3", None),
}


def _sf_probe(path: Path) -> AudioInfo:
    info = sf.info(os.fsencode(path))
    check_rate(path, info.samplerate)
    if info.frames <= 0:
        raise DecodeError(path, "contains no audio samples")
    codec, bits = _SF_CODECS.get(info.subtype, (info.subtype.lower(), None))
    container = {"WAVEX": "wav"}.get(info.format, info.format.lower())
    if container == "flac":
        codec = "flac"
    return AudioInfo(
        path=path,
        format=container,
        codec=codec,
        duration=info.frames / info.samplerate,
        sample_rate=info.samplerate,
        channels=info.channels,
        bits=bits,
    )


def _sf_read(
    path: Path, windows: Sequence[tuple[float, float | None]], stream: int, deadline: _Deadline
) -> tuple[list[np.ndarray], int]:
    """Native-rate (channels, n) spans via libsndfile: seek + bounded block reads."""
    if stream != 0:
        raise DecodeError(path, f"has no audio stream {stream} (it has 1)")
    out = []
    with sf.SoundFile(os.fsencode(path)) as f:
        rate = check_rate(path, f.samplerate)
        for offset, duration in windows:
            start, count = _span_frames(offset, duration, rate)
            claimed_too_long = f.frames - start > count and _fits_size(path, f.frames / rate)
            if duration is None and claimed_too_long:
                raise _too_long(path)
            if start >= f.frames:
                out.append(np.zeros((f.channels, 0), np.float32))
                continue
            f.seek(start)
            blocks = []
            while count > 0:
                deadline.check()
                block = f.read(frames=min(count, _BLOCK), dtype="float32", always_2d=True)
                if len(block) == 0:
                    break
                blocks.append(block)
                count -= len(block)
            if duration is None and count <= 0 and len(f.read(frames=1)):
                raise _too_long(path)  # the header understated it: more than the cap is there
            y = np.concatenate(blocks) if blocks else np.zeros((0, f.channels), np.float32)
            out.append(y.T)
    return out, rate


# --- PyAV ------------------------------------------------------------------------------------

_CONTAINERS = {"mov,mp4,m4a,3gp,3g2,mj2": "mp4", "matroska,webm": "matroska"}
_INT_SCALE = {"s16": 2.0**-15, "s32": 2.0**-31, "s64": 2.0**-63}


def _av_open(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), metadata_errors="replace")
    except av.error.FFmpegError as e:
        raise DecodeError(path, f"not audio or corrupt ({_av_reason(e)})") from None


def _av_reason(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


def _av_stream(path: Path, container: av.container.InputContainer, index: int) -> av.AudioStream:
    audio = container.streams.audio
    if not audio:
        raise DecodeError(path, "no audio stream in the file")
    if index >= len(audio):
        raise DecodeError(path, f"has no audio stream {index} (it has {len(audio)})")
    stream = audio[index]
    ctx = stream.codec_context
    if ctx is None or ctx.codec is None or not ctx.codec.is_decoder:
        raise DecodeError(path, f"unsupported codec {ctx.name if ctx else 'unknown'}")
    if not ctx.sample_rate or not ctx.channels:
        raise DecodeError(path, "not audio or corrupt (no valid audio header found)")
    return stream


def _av_duration(container: av.container.InputContainer, stream: av.AudioStream) -> float:
    """Duration from the headers (nan when the container does not say)."""
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return math.nan


def _av_probe(path: Path) -> AudioInfo:
    """Header facts from FFmpeg, once one frame decodes (FFmpeg 'opens' some random bytes)."""
    with _AvReader(path, 0, _Deadline(path)) as reader:
        reader.first_frame()
        container, stream = reader.container, reader.stream
        ctx = stream.codec_context
        codec = ctx.codec.canonical_name
        return AudioInfo(
            path=path,
            format=_CONTAINERS.get(container.format.name, container.format.name.split(",")[0]),
            codec=codec,
            duration=_av_duration(container, stream),
            sample_rate=ctx.sample_rate,
            channels=ctx.channels,
            bits=ctx.format.bits if codec.startswith("pcm_") and ctx.format else None,
        )


def _av_read(
    path: Path, windows: Sequence[tuple[float, float | None]], stream: int, deadline: _Deadline
) -> tuple[list[np.ndarray], int]:
    """Native-rate (channels, n) spans via FFmpeg, visiting windows in file order."""
    with _AvReader(path, stream, deadline) as reader:
        out: list[np.ndarray] = [np.zeros((0, 0), np.float32)] * len(windows)
        for i in sorted(range(len(windows)), key=lambda i: windows[i][0]):
            offset, duration = windows[i]
            claimed = _av_duration(reader.container, reader.stream)
            if duration is None and claimed > MAX_SECONDS and _fits_size(path, claimed):
                raise _too_long(path)  # known from the headers: do not decode hours first
            start, count = _span_frames(offset, duration, reader.rate)
            out[i] = reader.read(start, count)
            if duration is None and out[i].shape[1] >= count:
                raise _too_long(path)
        return out, reader.rate


def _frame_to_float(frame: av.AudioFrame) -> np.ndarray:
    """A decoded frame as (channels, n) float32 in [-1, 1], whatever its sample format."""
    a = frame.to_ndarray()
    if not frame.format.is_planar:
        a = a.reshape(-1, len(frame.layout.channels)).T
    kind = frame.format.name.rstrip("p")
    if kind == "u8":
        return (a.astype(np.float32) - 128.0) / 128.0
    if kind in _INT_SCALE:
        return (a * _INT_SCALE[kind]).astype(np.float32)
    return a.astype(np.float32, copy=False)


class _NoTimestamps(Exception):
    """Frames after a seek carry no timestamp: the reader decodes from the top instead."""


class _AvReader:
    """Sequential reader over one audio stream that seeks when a span lies behind or far ahead.

    Sample positions come from the first frame's timestamp after each (re)start, relative to the
    first frame of the file, then by counting samples: FFmpeg's timestamps already account for
    encoder delay (MP3/AAC priming), so spans line up with a decode from the start.
    """

    def __init__(self, path: Path, stream_index: int, deadline: _Deadline) -> None:
        self.path, self.stream_index, self.deadline = path, stream_index, deadline
        self.channels: int | None = None
        self.origin: int | None = None  # pts of the first frame of the file
        self._open()

    def __enter__(self) -> _AvReader:
        return self

    def __exit__(self, *exc) -> None:
        self.container.close()

    def _open(self) -> None:
        """(Re)open the file and start decoding from its first packet."""
        self.container = _av_open(self.path)
        try:
            self.stream = _av_stream(self.path, self.container, self.stream_index)
        except DecodeError:
            self.container.close()
            raise
        try:
            self.rate = check_rate(self.path, self.stream.codec_context.sample_rate)
        except DecodeError:
            self.container.close()
            raise
        self.frames = self._decode(seeked=False)
        self.pending: tuple[int, np.ndarray] | None = None  # next frame not yet consumed
        self.end = 0  # position just after the last frame decoded

    def first_frame(self) -> tuple[int, np.ndarray]:
        """Decode (and keep) the first frame: proves the stream really decodes."""
        if self.pending is None:
            self.pending = next(self.frames, None)
        if self.pending is None:
            raise DecodeError(self.path, "contains no audio samples")
        return self.pending

    def read(self, start: int, count: int) -> np.ndarray:
        """Samples [start, start + count) as (channels, n), shorter if the file ends first."""
        if self.origin is None:
            self.first_frame()
        pos = self.pending[0] if self.pending is not None else self.end
        if start < pos or start - pos > SEEK_GAP * self.rate:
            self._seek(start)
        parts, want_end = [], start + count
        while self.pending is not None:
            pos, a = self.pending
            end = pos + a.shape[1]
            if pos >= want_end:
                break
            if end > start:
                parts.append(a[:, max(0, start - pos) : min(a.shape[1], want_end - pos)])
            if end > want_end:
                break  # keep this frame: the next span may start inside it
            self.pending = next(self.frames, None)
        if not parts:
            return np.zeros((self.channels or self.stream.codec_context.channels, 0), np.float32)
        return np.concatenate(parts, axis=1)

    def _seek(self, start: int) -> None:
        """Seek PREROLL before `start`, further back if that lands late, else decode from 0."""
        for back in (PREROLL, 10 * PREROLL):
            target_s = max(0.0, start / self.rate - back)
            assert self.origin is not None and self.stream.time_base is not None  # see _position
            ts = self.origin + int(target_s / self.stream.time_base)
            try:
                self.container.seek(ts, stream=self.stream, backward=True, any_frame=False)
            except av.error.FFmpegError:
                break  # not seekable: decode from the start instead
            self.frames = self._decode(seeked=True)
            try:
                self.pending = next(self.frames, None)
            except _NoTimestamps:
                break
            if self.pending is None or self.pending[0] <= start:
                return
        self.container.close()
        self._open()
        self.pending = next(self.frames, None)

    def _decode(self, *, seeked: bool):
        """Yield (position, samples); skip a few bad packets, give up after MAX_BAD_PACKETS.

        A demuxer error after good audio ends the stream there (a damaged or truncated tail).
        """
        pos, bad, last_error = None, 0, ""
        packets = self.container.demux(self.stream)
        while True:
            self.deadline.check()
            try:
                packet = next(packets, None)
                if packet is None:
                    break
                frames = packet.decode()
            except (av.error.InvalidDataError, av.error.UndefinedError) as e:
                bad, last_error = bad + 1, _av_reason(e)
                if bad >= MAX_BAD_PACKETS or (self.origin is None and bad >= 8):
                    raise DecodeError(self.path, f"not audio or corrupt ({last_error})") from None
                continue
            except av.error.FFmpegError as e:
                if self.origin is not None:
                    break
                raise DecodeError(self.path, f"cannot decode ({_av_reason(e)})") from None
            for frame in frames:
                a = _frame_to_float(frame)
                if self.channels is None:
                    self.channels = a.shape[0]
                elif a.shape[0] != self.channels:
                    raise DecodeError(self.path, "channel count changes mid-stream")
                if self.origin is None:
                    self.origin = frame.pts or 0
                if pos is None:
                    pos = self._position(frame, seeked)
                bad, self.end = 0, pos + a.shape[1]
                yield pos, a
                pos = self.end
        if self.origin is None and last_error:
            raise DecodeError(self.path, f"not audio or corrupt ({last_error})")

    def _position(self, frame: av.AudioFrame, seeked: bool) -> int:
        if frame.pts is None:
            if seeked:
                raise _NoTimestamps
            return 0
        # origin is set from the first frame before any position; demuxed streams have a time base
        assert self.origin is not None and self.stream.time_base is not None
        return int(round(float((frame.pts - self.origin) * self.stream.time_base) * self.rate))
