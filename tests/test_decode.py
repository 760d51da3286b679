"""decode: every format on real audio, windows via seeking, odd PCM, damaged and non-audio files."""

from __future__ import annotations

import math
import os
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
import soxr
from media import (
    FORMATS,
    LIBROSA,
    MUSDB,
    MUSICNN_CLIPS,
    encode,
    make_library,
    musicnn_reference,
    need,
    real_clip,
)

from mgctag.audio import decode
from mgctag.audio.decode import AudioInfo, DecodeError, load, load_windows, probe

LOSSLESS = {"flac", "alac.m4a", "wav", "aiff"}
EXPECTED = {  # ext -> (container, codec) as probe reports them
    "mp3": ("mp3", "mp3"),
    "flac": ("flac", "flac"),
    "ogg": ("ogg", "vorbis"),
    "opus": ("ogg", "opus"),
    "m4a": ("mp4", "aac"),
    "alac.m4a": ("mp4", "alac"),
    "wav": ("wav", "pcm_s16"),
    "aiff": ("aiff", "pcm_s16"),
    "wma": ("asf", "wmav2"),
}
STEM = MUSDB / "train" / "A Classic Education - NightOwl.stem.mp4"


@pytest.fixture(scope="module")
def clip() -> tuple[np.ndarray, int]:
    return real_clip(seconds=12.0)


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> dict[str, Path]:
    """The same 12 s real clip in every format."""
    paths = make_library(tmp_path_factory.mktemp("lib"), seconds=12.0)
    return {ext: p for ext, p in zip(FORMATS, paths, strict=True)}


@pytest.fixture(scope="module")
def long_library(tmp_path_factory, long_mp3: Path) -> dict[str, Path]:
    """30 s of real music per format, long enough that windows far apart make the PyAV reader seek.

    MP3 and Vorbis are real full-length files (conftest's `long_mp3`, an in-repo recording).
    """
    y, sr = real_clip(seconds=30.0)
    root = tmp_path_factory.mktemp("long")
    paths = {
        e: encode(y, sr, root / f"vibe_ace.{e}", e) for e in FORMATS if e not in ("mp3", "ogg")
    }
    return {**paths, "mp3": long_mp3, "ogg": LIBROSA / "Kevin_MacLeod_-_Vibe_Ace.hq.ogg"}


def _mono_snr_db(a: np.ndarray, b: np.ndarray) -> float:
    noise = np.sum((a - b).astype(np.float64) ** 2)
    return 10 * math.log10(np.sum(b.astype(np.float64) ** 2) / noise) if noise else math.inf


# --- every format --------------------------------------------------------------------------


@pytest.mark.parametrize("ext", list(FORMATS))
def test_probe_every_format(library, ext):
    info = probe(library[ext])
    assert isinstance(info, AudioInfo)
    assert (info.format, info.codec) == EXPECTED[ext]
    assert info.sample_rate == (48000 if ext == "opus" else 44100)
    assert info.channels == 2
    assert info.duration == pytest.approx(12.0, abs=0.05)
    assert info.bits == (16 if ext in ("flac", "wav", "aiff") else None)


@pytest.mark.parametrize("ext", list(FORMATS))
def test_load_every_format_matches_the_source(library, clip, ext):
    y, sr = clip
    source = y.mean(axis=0)
    x = load(library[ext], sr)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - len(source)) < 0.05 * sr  # codec padding and delay: a few frames
    n = min(len(x), len(source))
    if ext in LOSSLESS:  # 16-bit quantisation of the source, nothing more
        np.testing.assert_allclose(x[:n], source[:n], atol=2.0**-15 + 1e-6)
    elif ext == "wma":  # FFmpeg's WMA decoder drops the encoder delay without shifting: find it
        lag = max(range(-4096, 4097, 64), key=lambda k: _corr(x, source, k))
        assert _corr(x, source, lag) > 0.99
    else:
        assert _corr(x, source, 0) > 0.99


def _corr(x: np.ndarray, ref: np.ndarray, lag: int) -> float:
    a, b = x[8192 + lag : len(ref) - 8192 + lag], ref[8192 : len(ref) - 8192]
    return float(np.corrcoef(a, b)[0, 1])


@pytest.mark.parametrize("ext", list(FORMATS))
def test_stereo_and_16k(library, ext):
    stereo = load(library[ext], None, mono=False)
    assert stereo.shape[0] == 2 and stereo.dtype == np.float32
    mono = load(library[ext], None)
    np.testing.assert_array_equal(mono, stereo.mean(axis=0))
    y16 = load(library[ext], 16000)
    assert len(y16) == math.ceil(stereo.shape[1] * 16000 / probe(library[ext]).sample_rate)


# --- parity with librosa (what the musicnn references were made with) ------------------------


@pytest.mark.parametrize("key", list(MUSICNN_CLIPS))
def test_matches_musicnn_reference_waveform(key):
    ref = musicnn_reference()[f"{key}__y16k"]
    y = load(LIBROSA / f"{MUSICNN_CLIPS[key]}.hq.ogg", 16000, duration=12.0)
    np.testing.assert_allclose(y, ref, atol=1e-6)


def test_matches_librosa_load_with_offset_on_real_mp3(long_mp3: Path):
    ours = load(long_mp3, 16000, offset=61.5, duration=10.0)
    theirs, _ = librosa.load(long_mp3, sr=16000, offset=61.5, duration=10.0)
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


# --- windows: one open, seeking, equal to a cut of a full decode ----------------------------


@pytest.mark.parametrize("ext", list(FORMATS))
def test_windows_equal_cuts_of_a_full_decode(long_library, ext):
    path = long_library[ext]
    rate = probe(path).sample_rate
    full = load(path, None, mono=False)
    windows = [(21.3, 3.0), (2.25, 2.0), (12.7, 2.0), (0.0, 0.5)]  # out of order, far apart
    got = load_windows(path, None, windows, mono=False)
    for (offset, length), w in zip(windows, got, strict=True):
        start = round(offset * rate)
        assert w.shape == (2, round(length * rate))
        cut = full[:, start : start + w.shape[1]]
        if ext == "m4a":  # FFmpeg's AAC encoder uses noise substitution: decoder noise differs
            assert _mono_snr_db(w.mean(0), cut.mean(0)) > 25
        elif ext == "wma":  # ASF timestamps are whole milliseconds: windows land within 1 ms
            lag = min(range(-45, 46), key=lambda k: _shifted_err(w, full, start + k))
            assert abs(lag) <= 45 and _shifted_err(w, full, start + lag) < 1e-6
        else:
            np.testing.assert_allclose(w, cut, atol=1e-6)


def _shifted_err(w: np.ndarray, full: np.ndarray, start: int) -> float:
    cut = full[:, max(start, 0) : max(start, 0) + w.shape[1]]
    return float(np.abs(w[:, : cut.shape[1]] - cut).max()) if cut.shape[1] else math.inf


def test_resampled_windows_equal_load_with_offset_and_a_full_decode_inside(long_mp3: Path):
    windows = [(120.0, 10.0), (30.5, 10.0), (75.25, 10.0)]
    got = load_windows(long_mp3, 16000, windows)
    full = load(long_mp3, 16000)
    for (offset, length), w in zip(windows, got, strict=True):
        np.testing.assert_array_equal(w, load(long_mp3, 16000, offset=offset, duration=length))
        cut = full[round(offset * 16000) :][: len(w)]
        assert len(w) == 160000
        np.testing.assert_allclose(w[256:-256], cut[256:-256], atol=1e-5)  # edges: resampler


def test_window_past_the_end_is_short_or_empty(library):
    tail, beyond = load_windows(library["m4a"], 16000, [(11.0, 5.0), (20.0, 5.0)])
    assert 0 < len(tail) < 5 * 16000 and len(beyond) == 0


def test_bad_window_is_rejected(library):
    with pytest.raises(ValueError):
        load_windows(library["wav"], 16000, [(-1.0, 2.0)])


# --- MUSDB .stem.mp4: stream 0 is the mixture ---------------------------------------------


def test_stem_mp4_reads_the_mixture_by_default():
    need(STEM)
    mix = load(STEM, None)
    np.testing.assert_array_equal(mix, load(STEM, None, stream=0))
    stems = [load(STEM, None, stream=k) for k in range(1, 5)]
    assert _mono_snr_db(sum(stems), mix) > 20  # the mixture is the sum of its stems
    assert _mono_snr_db(stems[3], mix) < 3  # and not the vocals alone
    w = load_windows(STEM, 16000, [(5.0, 1.0), (0.5, 1.0)], stream=4)
    np.testing.assert_array_equal(w[1], load(STEM, 16000, offset=0.5, duration=1.0, stream=4))
    with pytest.raises(DecodeError, match="no audio stream 5 .it has 5"):
        load(STEM, None, stream=5)


# --- odd PCM: rates, widths, channel counts, tiny and silent files --------------------------

SUBTYPES = {"PCM_U8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32, "FLOAT": 32, "DOUBLE": 64}


@pytest.mark.parametrize("subtype", list(SUBTYPES))
@pytest.mark.parametrize("rate", [8000, 22050, 96000, 192000])
def test_odd_wavs(tmp_path, clip, subtype, rate):
    y, sr = clip
    y = soxr.resample(y[:, : sr // 2].T, sr, rate).T.astype(np.float32)  # 0.5 s of real music
    y = np.concatenate([y, y[::-1], 0.5 * y])  # 6 channels (5.1)
    path = tmp_path / "odd.wav"
    sf.write(path, y.T, rate, subtype=subtype)
    info = probe(path)
    assert (info.sample_rate, info.channels, info.bits) == (rate, 6, SUBTYPES[subtype])
    assert info.duration == pytest.approx(0.5, abs=1e-3)
    got = load(path, None, mono=False)
    np.testing.assert_allclose(got, y, atol=2.0 ** (1 - min(SUBTYPES[subtype], 24)))
    mono16 = load(path, 16000)
    assert mono16.shape == (8000,) and mono16.dtype == np.float32
    assert np.max(np.abs(mono16)) > 0.01


def test_digital_silence_loads(tmp_path):
    path = tmp_path / "silence.flac"
    sf.write(path, np.zeros((44100, 2), np.float32), 44100, subtype="PCM_16")
    y = load(path, 16000)
    assert y.shape == (16000,) and not y.any()


def test_no_samples_is_an_error(tmp_path):
    path = tmp_path / "nothing.wav"
    sf.write(path, np.zeros((0, 2), np.float32), 44100)
    for call in (probe, lambda p: load(p, 16000)):
        with pytest.raises(DecodeError, match="no audio samples"):
            call(path)


# --- damaged and non-audio files ------------------------------------------------------------


def _truncate(src: Path, dest: Path, fraction: float) -> Path:
    data = src.read_bytes()
    dest.write_bytes(data[: int(len(data) * fraction)])
    return dest


@pytest.mark.parametrize("ext", ["wav", "flac", "mp3", "ogg", "opus", "wma"])
def test_truncated_file_decodes_what_is_there(library, tmp_path, ext):
    path = _truncate(library[ext], tmp_path / f"cut.{ext}", 0.5)
    whole = load(library[ext], 16000)
    part = load(path, 16000)
    assert 0.2 * len(whole) < len(part) < 0.9 * len(whole)
    n = len(part) - 2000  # the last frame before the cut may differ
    assert _mono_snr_db(part[:n], whole[:n]) > 30
    near, far = load_windows(path, 16000, [(1.0, 2.0), (11.0, 1.0)])
    assert len(near) == 32000 and len(far) == 0


@pytest.mark.parametrize("ext", ["m4a", "alac.m4a"])
def test_truncated_mp4_without_index_is_an_error(library, tmp_path, ext):
    path = _truncate(library[ext], tmp_path / f"cut.{ext}", 0.5)  # FFmpeg writes moov at the end
    with pytest.raises(DecodeError, match="not audio or corrupt"):
        load(path, 16000)


def _bad_files(root: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    files = {
        "empty.mp3": b"",
        "text.mp3": (Path(__file__).read_text() * 3).encode(),
        "random.mp3": rng.bytes(200_000),
        "random.flac": rng.bytes(200_000),
        "random.m4a": rng.bytes(200_000),
        "riff_garbage.wav": b"RIFF\x24\x00\x01\x00WAVE" + rng.bytes(70_000),
        "ogg_garbage.ogg": b"OggS" + rng.bytes(70_000),
        "id3_only.mp3": b"ID3\x04\x00\x00\x00\x00\x00\x10" + bytes(16) + rng.bytes(1000),
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    return {name: root / name for name in files}


@pytest.mark.parametrize(
    "name",
    [
        "empty.mp3",
        "text.mp3",
        "random.mp3",
        "random.flac",
        "random.m4a",
        "riff_garbage.wav",
        "ogg_garbage.ogg",
        "id3_only.mp3",
    ],
)
def test_bad_files_raise_a_one_line_decode_error(tmp_path, name):
    path = _bad_files(tmp_path)[name]
    before = path.read_bytes()
    for call in (probe, lambda p: load(p, 16000), lambda p: load_windows(p, 16000, [(1.0, 1.0)])):
        with pytest.raises(DecodeError) as err:
            call(path)
        message = str(err.value)
        assert message.startswith(f"{path}: ") and "\n" not in message
        assert len(err.value.reason) > 5
    assert path.read_bytes() == before  # never damaged


def test_specific_reasons(tmp_path):
    bad = _bad_files(tmp_path)
    with pytest.raises(DecodeError, match="empty file"):
        probe(bad["empty.mp3"])
    with pytest.raises(DecodeError, match="file not found"):
        load(tmp_path / "missing.flac", 16000)
    with pytest.raises(DecodeError, match="not a regular file"):
        probe(tmp_path)
    # a real-world text file with an audio name: a symbolic link checked out as text (as git does
    # where links are off), built here rather than relying on one checkout of ../shared
    link_as_text = tmp_path / "Karissa_Hobbs_-_Let's_Go_Fishin'.hq.ogg"
    link_as_text.write_text("Karissa_Hobbs_-_Lets_Go_Fishin.hq.ogg")
    with pytest.raises(DecodeError, match="not audio or corrupt"):
        probe(link_as_text)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(library, tmp_path):
    path = tmp_path / "locked.flac"
    path.write_bytes(library["flac"].read_bytes())
    path.chmod(0)
    with pytest.raises(DecodeError, match="permission denied"):
        load(path, 16000)


# --- bounds: pathological files end in a DecodeError, not a hang --------------------------


@pytest.mark.parametrize("ext", ["flac", "m4a"])
def test_time_limit_stops_a_decode(library, monkeypatch, ext):
    monkeypatch.setattr(decode, "TIME_LIMIT", -1.0)
    with pytest.raises(DecodeError, match="took longer than"):
        load(library[ext], 16000)


@pytest.mark.parametrize("ext", ["wav", "wma"])
def test_whole_file_length_cap(library, monkeypatch, ext):
    monkeypatch.setattr(decode, "MAX_SECONDS", 5.0)
    with pytest.raises(DecodeError, match="longer than 5 s"):
        load(library[ext], 16000)
    assert len(load(library[ext], 16000, offset=2.0, duration=3.0)) == 48000


# --- issue #18: headers that lie about the length -------------------------------------------


@pytest.fixture(scope="module")
def five_seconds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lying")
    exts = ("flac", "wav", "mp3", "m4a")
    return dict(zip(exts, make_library(root, exts, seconds=5.0), strict=True))


def _streamed_flac(src: Path, dest: Path) -> Path:
    """A legal FLAC as an encoder writing to a pipe leaves it: 0 total samples in STREAMINFO."""
    data = bytearray(src.read_bytes())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO first
    body = 8
    data[body + 13] &= 0xF0  # the 36-bit sample count: low 4 bits of byte 13, bytes 14-17
    data[body + 14 : body + 18] = bytes(4)
    dest.write_bytes(bytes(data))
    return dest


def _streamed_wav(src: Path, dest: Path) -> Path:
    data = bytearray(src.read_bytes())
    data[4:8] = b"\xff\xff\xff\xff"
    i = data.index(b"data")
    data[i + 4 : i + 8] = b"\xff\xff\xff\xff"
    dest.write_bytes(bytes(data))
    return dest


def _ten_hour_xing(src: Path, dest: Path) -> Path:
    data = bytearray(src.read_bytes())
    i = max(data.find(b"Xing"), data.find(b"Info"))
    assert i > 0 and data[i + 7] & 1  # the frame-count field is present
    data[i + 8 : i + 12] = (10 * 3600 * 44100 // 1152).to_bytes(4, "big")
    dest.write_bytes(bytes(data))
    return dest


@pytest.mark.parametrize(
    ("ext", "make"),
    [("flac", _streamed_flac), ("wav", _streamed_wav), ("mp3", _ten_hour_xing)],
)
def test_lying_lengths_are_measured_and_the_audio_decodes(
    five_seconds: dict[str, Path], tmp_path: Path, ext: str, make
) -> None:
    path = make(five_seconds[ext], tmp_path / f"odd.{ext}")
    info = probe(path)
    assert info.duration == pytest.approx(5.0, abs=0.1)
    from mgctag.audio import segment

    windows = segment.plan_windows(info.duration, n=3, length=3.0)
    (y,) = load_windows(path, 16000, windows)
    assert y.size == 48000 and np.abs(y).max() > 0.01
    assert load(path, 16000).size == pytest.approx(80000, abs=1200)  # whole file (separate)


def test_m4a_with_a_title_that_is_not_utf8(five_seconds: dict[str, Path], tmp_path: Path) -> None:
    from mutagen.mp4 import MP4

    from mgctag import tags

    path = tmp_path / "latin1.m4a"
    path.write_bytes(five_seconds["m4a"].read_bytes())
    audio = MP4(path)
    audio["\xa9nam"] = ["QQQQ"]
    audio.save()
    data = path.read_bytes()
    path.write_bytes(data.replace(b"QQQQ", b"Bj\xf6r"))  # Latin-1 bytes where UTF-8 belongs
    assert probe(path).duration == pytest.approx(5.0, abs=0.1)
    assert len(tags.audio_payload_hash(path)) == 64  # was: "cannot read the audio data"
    before = path.read_bytes()
    with pytest.raises(tags.TagWriteError, match="byte-identical"):  # mutagen would re-encode it
        tags.write_genres(path, ["Rock"])
    assert path.read_bytes() == before


def test_libmpg123_noise_stays_off_the_terminal(
    five_seconds: dict[str, Path], tmp_path: Path
) -> None:
    """libmpg123 prints every concealed MP3 frame error straight to fd 2; the filter drops those
    lines and forwards everything else (C-level and Python-level) unchanged."""
    import random
    import subprocess
    import sys

    data = bytearray(five_seconds["mp3"].read_bytes())
    rng = random.Random(1)
    for _ in range(200):
        data[rng.randrange(4000, len(data))] = rng.randrange(256)
    bad = tmp_path / "damaged.mp3"
    bad.write_bytes(bytes(data))
    script = (
        "import os, sys\n"
        "from mgctag.audio import decode\n"
        "if sys.argv[2] == 'filter': decode.filter_decoder_noise()\n"
        "os.write(2, b'C-level line\\n')\n"
        "print('python line', file=sys.stderr)\n"
        "print(decode.load(sys.argv[1], 16000).shape)\n"
    )
    runs = {
        mode: subprocess.run(
            [sys.executable, "-c", script, str(bad), mode], capture_output=True, timeout=120
        )
        for mode in ("plain", "filter")
    }
    assert b"[src/libmpg123/" in runs["plain"].stderr  # the noise is real without the filter
    quiet = runs["filter"]
    assert quiet.returncode == 0 and b"(80000,)" in quiet.stdout
    assert b"libmpg123" not in quiet.stderr
    assert b"C-level line" in quiet.stderr and b"python line" in quiet.stderr
