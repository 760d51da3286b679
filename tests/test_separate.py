"""Stem separation on real music: MUSDB previews with true stems (optional), real files from
tests/data, real models."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from media import MUSDB, encode, need, real_clip
from typer.testing import CliRunner

from mgctag.audio.decode import load
from mgctag.cli import app
from mgctag.separate import STEMS, SeparationError, WeightsUnavailableError, get_separator
from mgctag.separate.cascade import CascadeSeparator
from mgctag.separate.hpss import HpssSeparator, hpss_masks
from tools.bench.separate import read_stem_mp4, sdr

TRACKS = ("Actions - South Of The Water", "Actions - Devil's Words")


@pytest.fixture(scope="module")
def cascade() -> CascadeSeparator:
    return CascadeSeparator(device="cpu")


@pytest.fixture(scope="module")
def musdb() -> list[tuple[dict[str, np.ndarray], int]]:
    """True stems to score against: the MUSDB previews (optional, research use: ../shared)."""
    return [read_stem_mp4(need(MUSDB) / "train" / f"{t}.stem.mp4") for t in TRACKS]


def check_contract(y: np.ndarray, stems: dict[str, np.ndarray], atol: float) -> None:
    """Four stems, same shape and dtype as the input, summing back to it."""
    assert set(stems) == set(STEMS)
    for s in stems.values():
        assert s.shape == y.shape and s.dtype == np.float32
    np.testing.assert_allclose(sum(stems.values()), y, atol=atol)


@pytest.mark.slow
def test_cascade_beats_a_quarter_of_the_mix_on_every_stem(cascade, musdb) -> None:
    gains = {s: [] for s in STEMS}
    for stems, sr in musdb:
        mix = stems["mixture"]
        est = cascade.separate(mix, sr)
        check_contract(mix, est, atol=1e-4)
        for s in STEMS:
            gains[s].append(sdr(stems[s], est[s]) - sdr(stems[s], mix / 4))
    for s in STEMS:
        assert np.mean(gains[s]) > 1.0, (s, gains[s])  # dB


@pytest.mark.slow
def test_cascade_vocals_are_separated(cascade, musdb) -> None:
    """Spleeter's U-Nets, not just masking: vocal SDR well above what the mix itself scores."""
    stems, sr = musdb[0]
    est = cascade.separate(stems["mixture"], sr)
    assert sdr(stems["vocals"], est["vocals"]) > 4.0
    assert sdr(stems["vocals"], est["vocals"]) > sdr(stems["vocals"], stems["mixture"]) + 5


@pytest.mark.slow
def test_mono_and_other_rates_come_back_as_given(cascade) -> None:
    y, sr = real_clip(seconds=2.5)
    mono = y.mean(0)[::2].copy()  # 22.05 kHz mono
    stems = cascade.separate(mono, sr // 2)
    check_contract(mono, stems, atol=0.02)
    assert np.corrcoef(sum(stems.values()), mono)[0, 1] > 0.999


@pytest.mark.slow
def test_blocks_do_not_change_the_result() -> None:
    """Chunked processing (bounded memory) equals processing the whole track at once."""
    y, sr = real_clip(seconds=5.0)
    whole, chunked = HpssSeparator(), HpssSeparator()
    whole.block, chunked.block = 10_000, 48  # 48 frames is ~1.1 s
    a, b = whole.separate(y, sr), chunked.separate(y, sr)
    for s in STEMS:
        np.testing.assert_allclose(a[s], b[s], atol=1e-5)


def test_hpss_separator(musdb) -> None:
    stems, sr = musdb[0]
    mix = stems["mixture"]
    est = HpssSeparator().separate(mix, sr)
    check_contract(mix, est, atol=1e-4)
    assert not est["vocals"].any()  # documented: hpss gives silent vocals
    for s in ("drums", "bass"):
        assert sdr(stems[s], est[s]) > sdr(stems[s], mix / 4), s


def test_fast_hpss_masks_equal_librosa() -> None:
    import librosa

    y, sr = real_clip(seconds=2.0)
    mag = np.abs(librosa.stft(y, n_fft=4096, hop_length=1024)).astype(np.float32)
    h, p = hpss_masks(torch.from_numpy(mag))
    h_ref, p_ref = librosa.decompose.hpss(mag, kernel_size=31, power=2.0, mask=True)
    np.testing.assert_allclose(h.numpy(), h_ref, atol=1e-5)
    np.testing.assert_allclose(p.numpy(), p_ref, atol=1e-5)


@pytest.mark.parametrize(
    "bad, why",
    [
        (np.full((2, 1000), np.nan, np.float32), "NaN"),
        (np.zeros((3, 1000), np.float32), "channels"),
        (np.zeros((2, 0), np.float32), "empty"),
    ],
)
def test_bad_input_is_a_separation_error(bad, why) -> None:
    with pytest.raises(SeparationError, match=why):
        HpssSeparator().separate(bad, 44100)


def test_unknown_separator_name() -> None:
    with pytest.raises(SeparationError, match="unknown separator"):
        get_separator("spleeter5")


# --- demucs: the real package and code path, with a small randomly initialised HTDemucs --------

SMALL_HTDEMUCS = {"sources": list(STEMS), "channels": 16, "depth": 4, "t_layers": 1, "segment": 2}


@pytest.fixture(scope="module")
def demucs_file(tmp_path_factory) -> Path:
    """A random small HTDemucs saved as demucs's own HF export does (safetensors + metadata)."""
    pytest.importorskip("demucs")
    from demucs.htdemucs import HTDemucs
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = HTDemucs(**SMALL_HTDEMUCS)
    path = tmp_path_factory.mktemp("demucs") / "small.safetensors"
    meta = {"klass": "demucs.htdemucs.HTDemucs", "args": "[]", "kwargs": json.dumps(SMALL_HTDEMUCS)}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), meta)
    return path


@pytest.fixture
def one_thread():
    """The shared CI box is oversubscribed; one intra-op thread keeps the small model quick."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_demucs_from_a_weight_file_in_chunks(demucs_file, one_thread) -> None:
    sep = get_separator("demucs", device="cpu", model_path=demucs_file)
    assert sep.name == "demucs" and sep.sample_rate == 44100
    sep.segment = 1.0  # 3 s of audio -> overlapping 1 s chunks
    y, sr = real_clip(seconds=3.0)
    stems = sep.separate(y, sr)
    assert set(stems) == set(STEMS)
    assert all(s.shape == y.shape and np.isfinite(s).all() for s in stems.values())
    assert np.std(stems["drums"]) > 0
    # batching (what a GPU wants) gives the same stems as one window at a time
    mono = [y[0, :sr], y[1, :sr]]
    singles = [sep.separate(w, sr) for w in mono]
    for one, many in zip(singles, sep.separate_batch(mono, sr), strict=True):
        for s in STEMS:
            assert many[s].shape == (sr,)
            np.testing.assert_allclose(one[s], many[s], atol=1e-4)


def test_demucs_bad_weight_file_names_the_file(tmp_path) -> None:
    pytest.importorskip("demucs")
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(SeparationError, match="broken.safetensors"):
        get_separator("demucs", device="cpu", model_path=bad)


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No network and empty caches: the situation of most users without the weights."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))  # no `models get htdemucs`


def test_missing_demucs_weights_say_how_to_get_them(offline) -> None:
    pytest.importorskip("demucs")
    with pytest.raises(WeightsUnavailableError) as info:
        get_separator("demucs", device="cpu")
    message = str(info.value)
    assert "\n" not in message and "htdemucs" in message and "--separator-model" in message


def test_auto_falls_back_to_cascade_with_a_warning(offline) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sep = get_separator("auto", device="cpu")
    assert sep.name == "cascade"
    assert any("using the cascade" in str(w.message) for w in caught)


# --- the `separate` command ---------------------------------------------------------------------


def test_separate_command_writes_four_stems_per_file(tmp_path) -> None:
    y, sr = real_clip(seconds=3.0)
    src = encode(y, sr, tmp_path / "clip.flac")
    broken = tmp_path / "broken.mp3"
    broken.write_bytes(b"ID3" + bytes(200))
    out = tmp_path / "out"
    args = ["separate", str(src), str(broken), "--out", str(out), "--separator", "hpss"]
    result = CliRunner().invoke(app, [*args, "--format", "wav"])
    assert result.exit_code == 1, result.output  # one file failed
    assert "broken.mp3" in result.output and "Traceback" not in result.output
    for stem in STEMS:
        info = sf.info(out / "clip" / f"{stem}.wav")
        assert (info.frames, info.samplerate, info.channels) == (y.shape[1], sr, 2)
    assert not (out / "broken").exists() or not any((out / "broken").iterdir())


@pytest.mark.slow
def test_separate_command_cascade_flac(tmp_path) -> None:
    y, sr = real_clip(seconds=3.0)
    src = encode(y, sr, tmp_path / "song.m4a")
    out = tmp_path / "out"
    args = ["separate", str(src), "-o", str(out), "--separator", "cascade", "--device", "cpu"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "separated 1 file" in result.output
    mix = load(src, sr, mono=False)  # the decoder's view of the input, the length to match
    summed = sum(sf.read(out / "song" / f"{stem}.flac", dtype="float32")[0] for stem in STEMS)
    assert summed.shape == mix.T.shape
    np.testing.assert_allclose(summed, mix.T, atol=1e-3)  # 24-bit files summing back to the mix
