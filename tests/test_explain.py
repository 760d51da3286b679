"""`mgctag explain`: the timeline, the terms, stem occlusion, auralisation, the report, bad input.

Real models (musicnn, mn04, the stem CNN), the real cascade separator and real recordings from
tests/data; the slow ones run a whole explanation.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import cli
from media import LIBROSA, encode, real_clip

from mgctag.audio import decode
from mgctag.audio.features import SR
from mgctag.explain.analysis import (
    COMBINED,
    STEM_MODEL,
    envelope,
    explain_file,
    model_scores,
    stem_occlusion,
    to_json,
    window_bounds,
)

SPEECH = LIBROSA / "198-209-0000.hq.ogg"  # LibriSpeech: a woman reading Sense and Sensibility


@pytest.fixture(scope="module")
def jazz_wav(tmp_path_factory: pytest.TempPathFactory):
    """25 s of a real jazz recording (Vibe Ace), as a WAV in a temp dir, under a name that
    is HTML markup and matplotlib mathtext (the report must show it, not run or parse it)."""
    y, sr = real_clip("Kevin_MacLeod_-_Vibe_Ace", seconds=25.0)
    name = "vibe <b onclick=x>ace & $co$ $\\frac{.wav"  # markup, and mathtext for matplotlib
    return encode(y, sr, tmp_path_factory.mktemp("explain") / name)


@pytest.fixture(scope="module")
def jazz(jazz_wav):
    """One full explanation (stems with the cascade, two auralised filters of 1.5 s)."""
    return explain_file(jazz_wav, auralise=2, auralise_seconds=1.5)


def test_windows_cover_every_sample_with_no_short_tail() -> None:
    for n, rate, seconds in [(61 * 100, 100, 10.0), (62 * 100 + 50, 100, 10.0), (500, 100, 10.0)]:
        bounds = window_bounds(n, rate, seconds)
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(b[1] == c[0] for b, c in zip(bounds, bounds[1:], strict=False))
        assert all(stop - start >= min(n, 3 * rate) for start, stop in bounds)
    assert len(window_bounds(61 * 100, 100, 10.0)) == 6  # the 1 s tail joins the last window


def test_envelope_keeps_the_peak() -> None:
    y = np.zeros(10_000, np.float32)
    y[1234] = -0.8
    env = envelope(y, points=100)
    assert len(env) == 100 and env.max() == pytest.approx(0.8)


@pytest.mark.parametrize("kind", ["text", "missing", "folder", "empty"])
def test_bad_input_is_one_clear_line(tmp_path, kind: str) -> None:
    path = tmp_path / "song.mp3"
    if kind == "text":
        path.write_text("this is not audio\n" * 50)
    elif kind == "folder":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    result = cli("explain", path, "--no-stems")
    lines = result.output.strip().splitlines()
    # a path that is not there: as for tag, segments and separate, a usage error (exit 2)
    assert result.code == (2 if kind == "missing" else 1), result.output
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0]
    assert "Traceback" not in result.output


def test_a_bad_layer_is_a_usage_error(jazz_wav) -> None:
    result = cli("explain", jazz_wav, "--auralise", "2", "--layer", "conv9", "--no-stems")
    assert result.code == 2 and "unknown layer" in result.output


@pytest.mark.slow
def test_timeline_covers_the_whole_track(jazz, jazz_wav) -> None:
    tl = jazz.timeline
    assert tl.offsets[0] == 0.0
    ends = [o + ln for o, ln in zip(tl.offsets, tl.lengths, strict=True)]
    assert all(abs(e - o) < 1e-3 for e, o in zip(ends, tl.offsets[1:], strict=False))
    assert ends[-1] == pytest.approx(decode.probe(jazz_wav).duration, abs=0.01)
    assert len(tl.offsets) == 3 and len(tl.content) == 3
    for scores in tl.scores.values():
        assert scores.shape == (3, len(tl.genres)) and np.isfinite(scores).all()


@pytest.mark.slow
def test_written_genres_are_what_tag_writes(jazz, jazz_wav) -> None:
    """The explanation's track-level numbers are the default tagger's own prediction."""
    from mgctag.genres import default_map
    from mgctag.library.rows import Track
    from mgctag.models.catalog import DEFAULT_TAGGER, get_tagger
    from mgctag.models.inputs import InputPlan, prepare

    tagger = get_tagger(DEFAULT_TAGGER)
    track = Track.of_file(jazz_wav, decode.probe(jazz_wav).duration)
    (out,) = tagger.analyse([prepare(track, InputPlan((tagger.inputs,)))])
    combined = dict(tagger.predictions(out, default_map())[-1].genres)
    assert model_scores(tagger, out, default_map())[0][COMBINED] == pytest.approx(combined)
    assert jazz.content == "music" and jazz.written
    # under bfloat16 (a CPU with AVX-512 BF16: models/tagger.py) the two runs' batches differ
    # and probabilities move by up to ~0.01; the decision below must still agree exactly
    from mgctag.models.audioset import BF16_MARGIN

    near = BF16_MARGIN if getattr(tagger, "musicnn", tagger).bf16 else 1e-3
    for g in jazz.genres:
        assert g.score == pytest.approx(combined.get(g.genre, 0.0), abs=near)
        assert g.score == pytest.approx(sum(g.terms.values()), abs=2e-4)
    assert jazz.written[0] == max(combined, key=combined.get)
    top = jazz.genres[0]
    assert any(top.tags.values()), "the top genre names the model tags behind it"


@pytest.mark.slow
def test_auralised_filters_have_the_asked_length_and_sound(jazz) -> None:
    a = jazz.auralisation
    assert a is not None and len(a.filters) == 2
    assert len({f.index for f in a.filters}) == 2
    for f in a.filters:
        assert len(f.audio) == round(1.5 * SR)
        assert float(np.sqrt(np.mean(f.audio**2))) > 1e-3
        assert f.projection.min() >= 0.0 and f.projection.max() == pytest.approx(1.0)
    assert len(a.clip) == round(1.5 * SR)
    assert not np.allclose(a.filters[0].audio, a.filters[1].audio)


@pytest.mark.slow
def test_occluding_a_silent_stem_changes_nothing() -> None:
    """A stem made silent (its sound moved into `other`, so the stems still sum to the mix)
    changes no score when taken out; taking out `other`, which now holds it, does."""
    from mgctag.genres import default_map
    from mgctag.models.catalog import DEFAULT_TAGGER, get_tagger
    from mgctag.models.tagger import StudentTagger
    from mgctag.separate import get_separator

    y, sr = real_clip("Kevin_MacLeod_-_Vibe_Ace", seconds=7.0)
    sep = get_separator("cascade", "cpu")
    (stems,) = sep.separate_batch([y], sr)
    stems = dict(stems)
    stems["other"] = stems["other"] + stems["drums"]
    stems["drums"] = np.zeros_like(stems["drums"])
    tagger, stemnet = get_tagger(DEFAULT_TAGGER), StudentTagger(STEM_MODEL)
    fx = stem_occlusion(tagger, stemnet, default_map(), [y], [stems], sr, [0.0])
    assert set(fx.delta["drums"]) == {"musicnn", "audioset_mn04", COMBINED, STEM_MODEL}
    for model, deltas in fx.delta["drums"].items():
        assert max(abs(v) for v in deltas.values()) < 1e-3, model
    assert STEM_MODEL not in fx.delta["vocals"]  # the stem CNN does not read vocals
    moved = max(abs(v) for d in fx.delta["other"].values() for v in d.values())
    assert moved > 0.01


@pytest.mark.slow
def test_speech_clip_says_speech() -> None:
    expl = explain_file(SPEECH, separator=None)
    assert expl.content == "speech" and expl.written == [] and "speech" in expl.skip
    assert expl.timeline.content.count("speech") > len(expl.timeline.content) / 2


@pytest.mark.slow
def test_report_json_png_and_wavs(jazz, jazz_wav, tmp_path) -> None:
    from mgctag.explain.report import report_html, summary_png, write_wavs

    page = report_html(jazz, tmp_path / "r.html").read_text("utf-8")
    assert 'id="timeline"' in page and page.count("<audio") == 3
    assert not re.search(r"""(src|href)=["'](?!data:)""", page), "only data: URIs"
    assert "<script" not in page
    assert "<b onclick" not in page and "vibe &lt;b onclick=x&gt;ace &amp; $co$" in page
    png = summary_png(jazz, tmp_path / "r.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000
    wavs = write_wavs(jazz, tmp_path / "w")
    assert [decode.probe(w).duration for w in wavs] == pytest.approx([1.5, 1.5], abs=1e-3)
    doc = json.loads(json.dumps(to_json(jazz)))
    assert doc["written"] == jazz.written
    assert doc["timeline"]["windows"][0]["offset"] == 0.0
    assert set(doc["stems"]["delta"]) == {"drums", "bass", "other", "vocals"}


@pytest.mark.slow
def test_cli_json(jazz_wav) -> None:
    result = cli("explain", jazz_wav, "--json", "--no-stems")
    assert result.code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["content"] == "music" and doc["stems"] is None and doc["timeline"]["windows"]


@pytest.mark.slow
def test_cli_writes_the_report_png_and_one_wav_per_filter(jazz_wav, tmp_path) -> None:
    html, png = tmp_path / "report.html", tmp_path / "summary.png"
    result = cli(
        "explain", jazz_wav, "--no-stems", "--html", html, "--png", png,
        "--auralise", "2", "--auralise-seconds", "1", "--layer", "midend1",
    )  # fmt: skip
    assert result.code == 0, result.output
    wavs = sorted((tmp_path / "report-filters").glob("midend1-filter*.wav"))
    assert len(wavs) == 2 and html.is_file() and png.read_bytes().startswith(b"\x89PNG")
    assert [decode.probe(w).duration for w in wavs] == pytest.approx([1.0, 1.0], abs=1e-3)
    assert "written" in result.stdout and str(html) in result.stdout
