"""segment: window planning over the middle of a track, silence on real decoded audio."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from media import real_clip

from mgctag.audio.decode import load_windows, probe
from mgctag.audio.segment import Window, audible_seconds, plan_windows, rms_db, select_windows


def test_three_windows_spread_over_the_middle():
    windows = plan_windows(180.0)
    assert windows == [(18.0, 10.0), (85.0, 10.0), (152.0, 10.0)]
    assert windows == plan_windows(180.0)  # deterministic


@pytest.mark.parametrize("duration", [0.5, 3.0, 9.99, 10.0])
def test_short_track_is_one_window_of_everything(duration):
    assert plan_windows(duration) == [(0.0, duration)]


def test_track_too_short_for_the_middle_tiles_without_overlap():
    assert plan_windows(12.0) == [(1.0, 10.0)]
    assert plan_windows(25.0) == [(2.5, 10.0), (12.5, 10.0)]
    assert plan_windows(35.0) == [(2.5, 10.0), (12.5, 10.0), (22.5, 10.0)]


@pytest.mark.parametrize(
    "n,length,span", [(3, 10.0, 0.8), (1, 10.0, 0.8), (5, 3.0, 0.5), (4, 30.0, 1.0)]
)
def test_plan_invariants_over_many_durations(n, length, span):
    for duration in np.concatenate([np.linspace(0.05, 200, 997), [600.0, 3600.0, 7200.5]]):
        windows = plan_windows(float(duration), n=n, length=length, span=span)
        expected = 1 if duration <= length else min(n, int(duration // length))
        assert len(windows) == expected
        ends = [o + d for o, d in windows]
        assert all(o >= 0 for o, _ in windows) and max(ends) <= duration + 1e-9
        assert all(ends[i] <= windows[i + 1][0] + 1e-9 for i in range(len(windows) - 1))
        if span * duration >= n * length:  # room enough: all inside the middle span
            margin = (1 - span) / 2 * duration
            assert windows[0][0] >= margin - 1e-3 and ends[-1] <= duration - margin + 1e-9


@pytest.mark.parametrize("duration", [0.0, -1.0, math.nan, math.inf])
def test_no_usable_duration_gives_no_windows(duration):
    assert plan_windows(duration) == []


@pytest.mark.parametrize("kwargs", [{"n": 0}, {"length": 0.0}, {"span": 0.0}, {"span": 1.5}])
def test_bad_plan_parameters(kwargs):
    with pytest.raises(ValueError):
        plan_windows(100.0, **kwargs)


def test_levels_in_dbfs():
    t = np.arange(16000) / 16000
    assert rms_db(np.sign(np.sin(2 * np.pi * 100 * t + 0.1))) == pytest.approx(0.0, abs=1e-6)
    assert rms_db(np.sin(2 * np.pi * 100 * t)) == pytest.approx(-3.0103, abs=1e-3)
    assert rms_db(np.zeros(100, np.float32)) == -math.inf
    assert rms_db(np.zeros(0, np.float32)) == -math.inf


def test_audible_seconds_on_real_music():
    y, sr = real_clip(seconds=5.0)
    music = y.mean(axis=0)
    assert audible_seconds(music, sr) == pytest.approx(5.0, abs=0.05)
    assert audible_seconds(np.zeros_like(music), sr) == 0.0
    assert audible_seconds(music * 10 ** (-60 / 20), sr) < 0.5  # 60 dB down: a fade tail
    tail = np.concatenate(
        [np.zeros(sr, np.float32), music[: sr // 2], np.zeros(3 * sr, np.float32)]
    )
    assert audible_seconds(tail, sr) == pytest.approx(0.5, abs=0.06)  # silence around: not counted
    gap = np.concatenate([music[: sr // 2], np.zeros(sr, np.float32), music[: sr // 2]])
    assert audible_seconds(gap, sr) == pytest.approx(2.0, abs=0.06)  # a pause inside: counted
    assert audible_seconds(music[:0], sr) == 0.0


def test_select_drops_silent_and_empty_windows(long_mp3: Path):
    windows = plan_windows(probe(long_mp3).duration)
    audio = load_windows(long_mp3, 16000, windows)
    fade = audio[0] * 1e-3
    plan = [*windows, (200.0, 10.0), (210.0, 10.0), (220.0, 10.0)]
    kept = select_windows(plan, [*audio, np.zeros(160000, np.float32), fade, np.zeros(0)])
    assert [w.offset for w in kept] == [o for o, _ in windows]
    assert all(isinstance(w, Window) and not w.silent and w.audio.shape == (160000,) for w in kept)
    assert all(w.level_db == pytest.approx(rms_db(a)) for w, a in zip(kept, audio, strict=True))


def test_all_silent_keeps_the_loudest_marked():
    y, _ = real_clip(seconds=2.0)
    quiet = y.mean(axis=0) * 1e-3
    kept = select_windows([(0.0, 2.0), (5.0, 2.0)], [np.zeros_like(quiet), quiet])
    assert len(kept) == 1 and kept[0].silent and kept[0].offset == 5.0
    assert select_windows([(0.0, 2.0)], [np.zeros(0, np.float32)]) == []
    with pytest.raises(ValueError):
        select_windows([(0.0, 2.0)], [])


def test_windows_of_a_track_with_a_silent_tail(tmp_path):
    """Real music then a long digital-silence tail (a hidden track gap): the tail window goes."""
    y, sr = real_clip(seconds=30.0)
    path = tmp_path / "with_gap.flac"
    sf.write(path, np.concatenate([y, np.zeros((2, 40 * sr), np.float32)], axis=1).T, sr)
    windows = plan_windows(probe(path).duration)  # 70 s: windows at 7, 30, 53 s
    kept = select_windows(windows, load_windows(path, 16000, windows))
    assert [w.offset for w in kept] == [windows[0][0]]
