"""The pipeline over real files: one odd track never ends a run; tiny and silent files are skipped;
the tagger protocol is what the pipeline runs (every kind through the same code)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import stored
from conftest import cli
from media import LIBROSA, clip_path, encode, real_clip

from mgctag import analysis, pipeline
from mgctag.audio import decode
from mgctag.library.db import Library
from mgctag.library.rows import Track
from mgctag.library.scan import scan
from mgctag.models.catalog import get_tagger, list_taggers
from mgctag.models.inputs import MIN_AUDIBLE_SECONDS, InputPlan, InputSpec, prepare
from mgctag.models.protocol import Tagger

CLIPS = ("Kevin_MacLeod_-_Vibe_Ace", "music/electronic/northern_lights_1")


def _music(root: Path) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in CLIPS:
        y, sr = real_clip(name, seconds=8.0)
        paths.append(encode(y, sr, root / f"{Path(name).name}.flac"))
    return paths


def test_an_exception_in_the_decode_worker_fails_that_track_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real decoder, made to raise what PyAV's seek raised on an odd MP3 (issue 18, item 12):
    that track is one failure (type recorded), the others are analysed and tagged."""
    good = _music(tmp_path / "Music")
    odd = shutil.copy(good[0], tmp_path / "Music" / "odd.flac")
    real = decode.load_windows

    def load_windows(path, *args, **kwargs):
        if Path(path).name == "odd.flac":
            raise OverflowError("Python int too large to convert to C long")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(decode, "load_windows", load_windows)
    with Library(tmp_path / "lib.db") as lib:
        summary = pipeline.tag_paths(lib, [tmp_path / "Music"], pipeline.TagOptions())
        assert summary.failures == [
            (str(odd), "cannot analyse: Python int too large to convert to C long")
        ]
        assert summary.failure_types == {str(odd): "OverflowError"}
        assert summary.analysed == 2 and summary.tagged == 2
        assert summary.skipped == 0 and summary.skips == []  # failed once, never also skipped
        got = [(f["stage"], f["reason"]) for f in stored.failures(lib, summary.run_id)]
        assert got == [("decode", f"{summary.failures[0][1]} [OverflowError]")]
        assert lib.get_run(summary.run_id)["status"] == "partial"


def test_the_exception_class_is_shown_with_verbose_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = _music(tmp_path / "Music")
    real = decode.load_windows

    def load_windows(path, *args, **kwargs):
        if Path(path) == good[0]:
            raise OverflowError("Python int too large to convert to C long")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(decode, "load_windows", load_windows)
    plain = cli("tag", tmp_path / "Music", "--db", tmp_path / "a.db", "--dry-run")
    verbose = cli("-v", "tag", tmp_path / "Music", "--db", tmp_path / "b.db", "--dry-run")
    line = "cannot analyse: Python int too large to convert to C long"
    assert plain.code == verbose.code == 1 and "Traceback" not in plain.output + verbose.output
    assert line in plain.stderr and "OverflowError" not in plain.stderr
    assert f"{line} (OverflowError)" in verbose.stderr


def test_an_exception_in_a_model_fails_only_the_track_that_caused_it(tmp_path: Path) -> None:
    """A batch whose forward pass raises is rerun track by track: only the track whose input
    breaks the model (a mel of the wrong shape) fails; the rest of the batch is stored."""
    good = _music(tmp_path / "Music")
    tagger = get_tagger("musicnn")
    with Library(tmp_path / "lib.db") as lib:
        summary = pipeline.Summary(run_id=lib.start_run("tag", {}))
        scan(lib, [tmp_path / "Music"])
        tracks = lib.tracks_needing_analysis("musicnn")
        plan = InputPlan((tagger.inputs,))
        batch = [prepare(t, plan) for t in tracks]
        batch[0].features["mel"] = batch[0].features["mel"][:, :, :50]  # a shape it cannot take
        analysis._run_batch(lib, batch, [tagger], summary, pipeline.default_map(), None)
        assert summary.analysed == 1 and summary.failed == 1
        assert summary.failures[0][0] == batch[0].track["path"]
        assert summary.failures[0][0] in {str(p) for p in good}
        assert len(lib.tracks_needing_analysis("musicnn")) == 1
        analysis._run_batch(lib, batch[:1], [tagger], summary, pipeline.default_map(), None)
        assert summary.failed == 2 and summary.failure_types[batch[0].track["path"]]


@pytest.mark.slow
class _Recorded(pipeline.Progress):
    """The pipeline's progress reports, as the CLI's bar receives them."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []

    def stage(self, name: str, total: int) -> None:
        self.events.append((name, total))

    def advance(self, n: int = 1) -> None:
        self.events.append(("advance", n))


@pytest.mark.slow
def test_progress_says_loading_models_and_moves_from_the_first_file(tmp_path: Path) -> None:
    """Models load as a stage of their own, and the analysis bar advances after the first file,
    not after a whole batch of twenty (issue 17)."""
    _music(tmp_path / "Music")
    progress = _Recorded()
    with Library(tmp_path / "lib.db") as lib:
        pipeline.tag_paths(lib, [tmp_path / "Music"], pipeline.TagOptions(), progress=progress)
    assert progress.events[:2] == [("loading models", 1), ("advance", 1)]
    start = progress.events.index(("analysing", 2))
    assert progress.events[start + 1] == ("advance", 1)


@pytest.mark.slow
def test_summary_counts_add_up_and_every_skip_is_listed(tmp_path: Path) -> None:
    """Music, a file already tagged (fill: unchanged), digital silence and a broken file: each
    file counted once (a failure is not also a skip) and each skip listed with its reason in the
    table and in --json (issue 17)."""
    root = tmp_path / "Music"
    music = _music(root)
    from mgctag.tags import write_genres

    write_genres(music[1], ["Jazz"])
    sf.write(root / "silence.wav", np.zeros(4 * 16000, np.float32), 16000)
    (root / "broken.mp3").write_bytes(b"not audio at all " * 64)
    result = cli("tag", root, "--db", tmp_path / "lib.db", "--dry-run", "--json")
    assert result.code == 1, result.output
    report = json.loads(result.stdout)
    counts = report["counts"]
    assert counts["scanned"] == 4 and counts["failed"] == 1 and counts["skipped"] == 1
    assert len(report["changes"]) + counts["unchanged"] + counts["skipped"] + counts["failed"] == 4
    assert [(s["path"], s["reason"][:6]) for s in report["skips"]] == [
        (str(root / "silence.wav"), "silent")
    ]
    table = cli("tag", root, "--db", tmp_path / "lib.db", "--dry-run").stdout
    assert "silence.wav" in table and table.count("skipped: ") == 1, table
    assert "analysed 0, would tag 1, unchanged 1, skipped 1, failed 1" in table


@pytest.mark.slow
def test_tiny_and_silent_files_are_skipped_not_failed(tmp_path: Path) -> None:
    """A 0.5 s clip, a 15 ms click in 5 s of silence and digital silence: skipped with a reason,
    no genre written, exit 0; real music beside them is tagged."""
    root = tmp_path / "Music"
    _music(root)
    y, sr = real_clip(seconds=0.5)
    encode(y, sr, root / "tiny.flac")
    click = np.zeros(5 * 16000, np.float32)
    click[40000:40240] = 0.8
    sf.write(root / "click.wav", click, 16000)
    sf.write(root / "silence.wav", np.zeros(4 * 16000, np.float32), 16000)
    with Library(tmp_path / "lib.db") as lib:
        summary = pipeline.tag_paths(lib, [root], pipeline.TagOptions())
    skips = dict(summary.skips)
    assert summary.failed == 0 and summary.tagged == 2
    assert skips[str(root / "silence.wav")].startswith("silent")
    assert skips[str(root / "tiny.flac")].startswith("too short: 0.5 s")
    assert skips[str(root / "click.wav")].startswith("too short")
    result = cli("tag", root, "--db", tmp_path / "lib2.db", "--dry-run", "--json")
    assert result.code == 0, result.output
    assert dict((s["path"], s["reason"]) for s in json.loads(result.stdout)["skips"]) == skips
    result = cli("tag", root, "--db", tmp_path / "lib3.db", "--dry-run")
    assert result.code == 0 and result.stdout.count("skipped: ") == 3, result.output
    assert "error" not in result.stderr


def test_the_minimum_is_audible_seconds_not_file_length(tmp_path: Path) -> None:
    """3 s of music: analysed; 1.5 s of music then 1.5 s of silence: skipped as too short."""
    y, sr = real_clip(seconds=3.0)
    loud = encode(y, sr, tmp_path / "loud.flac")
    half = y.copy()
    half[:, len(y[0]) // 2 :] = 0.0
    quiet = encode(half, sr, tmp_path / "half.flac")
    plan = InputPlan((InputSpec("mel"),))
    assert MIN_AUDIBLE_SECONDS == 2.0
    assert prepare(Track.of_file(loud), plan).skip is None
    assert "too short" in prepare(Track.of_file(quiet), plan).skip


def test_one_decode_at_the_highest_rate_serves_every_input() -> None:
    """A 32 kHz waveform tagger beside musicnn's 16 kHz mel: one decode at 32 kHz; the mel made
    from it is what a 16 kHz decode gives, to resampling precision."""
    path = str(LIBROSA / f"{CLIPS[0]}.hq.ogg")
    track = Track.of_file(path)
    both = InputPlan((InputSpec("mel"), InputSpec("waveform", sample_rate=32000)))
    assert both.decode_rate(None) == 32000
    item = prepare(track, both)
    mel16 = prepare(track, InputPlan((InputSpec("mel"),))).features["mel"]
    windows = item.features["waveform@32000"]
    assert len(windows) == 3 and all(w.shape == (320000,) for w in windows)
    assert item.features["mel"].shape == mel16.shape
    assert np.abs(item.features["mel"] - mel16).max() < 0.05


@pytest.mark.parametrize("name", ["musicnn", "vgg", "crnn_small", "swishnet_slim", "stemcnn_sep"])
@pytest.mark.slow
def test_every_tagger_kind_meets_the_protocol(name: str) -> None:
    tagger = get_tagger(name)
    assert isinstance(tagger, Tagger) and tagger.name == name
    assert name in {row["name"] for row in list_taggers()}
    separator = pipeline.separator_for([tagger], pipeline.TagOptions())
    track = Track.of_file(clip_path(CLIPS[1]))
    item = prepare(track, InputPlan((tagger.inputs,), windows=1), separator)
    (out,) = tagger.analyse([item])
    assert all(len(p) == item.units for p in out.tags.values())
    rows = tagger.predictions(out, pipeline.default_map())
    assert rows[-1].model == name and rows[-1].genres
    assert [g for g, _ in rows[-1].genres] == sorted(
        (g for g, _ in rows[-1].genres), key=dict(rows[-1].genres).get, reverse=True
    )


@pytest.mark.slow
def test_audio_taggers_in_one_pass_decode_each_track_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """musicnn and a student together: one decode per track, both results stored, each the same
    as when that tagger runs alone."""
    root = tmp_path / "Music"
    _music(root)
    chain = [get_tagger("musicnn"), get_tagger("crnn_small")]
    assert pipeline.passes(chain) == [chain]
    real, opened = decode.load_windows, []

    def load_windows(path, *args, **kwargs):
        opened.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(decode, "load_windows", load_windows)
    opts, stop = pipeline.TagOptions(), pipeline.StopFlag()
    together, alone = Library(tmp_path / "together.db"), Library(tmp_path / "alone.db")
    for lib, passes in ((together, [chain]), (alone, [chain[:1], chain[1:]])):
        scan(lib, [root])
        summary = pipeline.Summary()
        for group in passes:
            pipeline.analyse_chain(lib, [root], group, opts, summary, pipeline.Progress(), stop)
    assert sorted(opened[:2]) == sorted(p.name for p in root.iterdir()) and len(opened) == 2 + 4
    for track in together.tracks():
        mine = together.get_predictions(track["id"])
        theirs = alone.get_predictions(alone.track_by_path(track["path"])["id"])
        for name in ("musicnn", "crnn_small"):
            assert mine[name]["genres"] == theirs[name]["genres"]


class LevelTagger:
    """A real, tiny waveform tagger (loudness per 10 s window at 32 kHz), the shape an AudioSet
    model has: it plugs in through the catalog, with no change to the pipeline."""

    name = "level32k"
    inputs = InputSpec("waveform", sample_rate=32000, window_seconds=10.0)
    requires: tuple[str, ...] = ()
    labels = {"level": ["Rock", "Ambient"]}

    def analyse(self, batch):
        from mgctag.models.protocol import TaggerOutput

        outs = []
        for item in batch:
            windows = item.features["waveform@32000"]
            rms = np.array([np.sqrt(np.mean(np.square(w))) for w in windows], np.float32)
            loud = np.clip(rms * 20, 0, 1)  # music at -30 dBFS and louder: "loud"
            outs.append(
                TaggerOutput(
                    tags={"level": np.stack([loud, 1 - loud], axis=1)},
                    embeddings={"mix": np.stack([rms, loud], axis=1)},
                    extra={"samples": np.array([len(w) for w in windows])},
                )
            )
        return outs

    def predictions(self, output, gmap):
        from mgctag.models.protocol import Prediction, ranked, unit_mean

        mean = output.tags["level"].mean(axis=0).tolist()
        genres = ranked(list(zip(self.labels["level"], mean, strict=True)))
        return [Prediction(self.name, {}, genres, {"mix": unit_mean(output.embeddings["mix"])})]


def test_a_new_waveform_tagger_plugs_in_through_the_catalog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Registered like mn04 will be: decoded once at its 32 kHz, analysed, stored, written."""
    from mgctag.models import catalog

    root = tmp_path / "Music"
    _music(root)
    monkeypatch.setattr(catalog, "_BUILTIN", dict(catalog._BUILTIN))
    catalog.register_tagger("level32k", lambda device: LevelTagger(), lambda cards: {"arch": "rms"})
    assert "level32k" in {row["name"] for row in catalog.list_taggers()}
    real, rates = decode.load_windows, []

    def load_windows(path, sr, *args, **kwargs):
        rates.append(sr)
        return real(path, sr, *args, **kwargs)

    monkeypatch.setattr(decode, "load_windows", load_windows)
    with Library(tmp_path / "lib.db") as lib:
        summary = pipeline.tag_paths(lib, [root], pipeline.TagOptions(model="level32k"))
        assert rates == [32000, 32000] and summary.analysed == 2 and summary.tagged == 2
        for track in lib.tracks():
            stored = lib.get_predictions(track["id"])["level32k"]
            assert stored["genres"][0][0] == "Rock"
            assert set(lib.get_embeddings(track["id"], "level32k")) == {"mix"}
