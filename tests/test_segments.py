"""The speech / music / noise detector (issues 13 and 27): shapes, training, weights, the bundled
detector on real held-out recordings, and `mgctag segments`.

Every recording used here comes from a source the detector never trained on (docs/segments.md,
data card: split by package): LibriSpeech, the Dutch Fish Fillets dialogue and the Italian
digits (speech), Frets on Fire and librosa's music, Flare's rain / wind / thunder and the
humpback whale (noise).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mgctag.audio import decode
from mgctag.content import ContentGate
from mgctag.models.cards import ModelCard
from mgctag.models.registry import load_model, save_model
from mgctag.models.swishnet import SwishNet
from mgctag.options import DEFAULT_SEGMENTER, SEGMENTERS
from mgctag.segments.detector import (
    CLASSES,
    FPS,
    SR,
    Segmenter,
    context_mean,
    frame_db,
    merge_short,
    mfcc,
    runs,
    silence_floor,
    silent_frames,
    swishnet_frame_logits,
    teacher_probs,
    to_intervals,
)
from mgctag.train.distill import DistillConfig
from tests.conftest import cli
from tests.media import LIBROSA, SOUNDS
from tests.media import MUSIC as MUSIC_SET
from tools.experiments import segmenter_training as seg

SPEECH = LIBROSA / "198-209-0000.hq.ogg"
SPEECH2 = LIBROSA / "3436-172162-0000.hq.ogg"
MUSIC = MUSIC_SET / "metal" / "armygeddon_1.ogg"
JAZZ = MUSIC_SET / "jazz" / "vibe_ace_1.ogg"
WALTZ = LIBROSA / "Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra).hq.ogg"
HELD_OUT = {  # file → its class
    SPEECH: "speech",
    SPEECH2: "speech",
    SOUNDS / "speech_dutch_dialogue.ogg": "speech",
    SOUNDS / "speech_italian_digits.ogg": "speech",  # a spoken number list
    MUSIC: "music",
    JAZZ: "music",
    LIBROSA / "sorohanro_-_solo-trumpet-06.hq.ogg": "music",
    SOUNDS / "rain.ogg": "noise",
    SOUNDS / "wind.ogg": "noise",
    SOUNDS / "thunder.ogg": "noise",
    SOUNDS / "humpback_whale.ogg": "noise",
}


@pytest.fixture(scope="module")
def detector() -> Segmenter:
    return Segmenter()


def _load(path, seconds: float) -> np.ndarray:
    return decode.load(path, SR, duration=seconds)


def test_frame_features_shapes_and_forward_is_their_mean() -> None:
    torch.manual_seed(0)
    net = SwishNet(n_classes=3, width=2).eval()
    x = torch.randn(2, 62, 20)
    feats = net.frame_features(x)
    assert feats.shape == (2, 80, 62)
    logits, emb = net(x)
    assert logits.shape == (2, 3) and emb.shape == (2, 80)
    assert torch.allclose(emb, feats.mean(dim=2), atol=1e-6)


def test_frame_logits_equal_the_clip_network_where_the_window_is_whole() -> None:
    """A frame's logits are those of its context window's mean features: for the middle frame
    of an input exactly one window long, the same as the network on the whole clip."""
    torch.manual_seed(0)
    net = SwishNet(n_classes=3).eval()
    x = np.random.default_rng(0).standard_normal((63, 20)).astype(np.float32)
    frames = swishnet_frame_logits(net, x, 63)
    assert frames.shape == (63, 3)
    with torch.inference_mode():
        clip = net(torch.from_numpy(x)[None])[0][0].numpy()
    np.testing.assert_allclose(frames[31], clip, atol=1e-5)


def test_context_mean_matches_a_direct_window_mean() -> None:
    x = np.random.default_rng(1).standard_normal((50, 3)).astype(np.float32)
    got = context_mean(x, 7)
    for t in (0, 3, 25, 49):
        lo, hi = max(0, t - 3), min(50, t + 4)
        np.testing.assert_allclose(got[t], x[lo:hi].mean(0), atol=1e-5)


def test_intervals_from_labels_and_silence_by_energy() -> None:
    labels = np.array([0] * 10 + [-1] * 5 + [1] * 20)
    probs = np.full((35, 3), 1 / 3, np.float32)
    iv = to_intervals(labels, probs, 35 / FPS)
    assert [i.label for i in iv] == ["speech", "silence", "music"]
    assert iv[1].start == pytest.approx(10 / FPS) and iv[-1].end == pytest.approx(35 / FPS)
    assert runs(np.array([2, 2, 0])) == [(0, 2), (2, 3)]
    y = np.concatenate([np.zeros(SR, np.float32), 0.3 * np.ones(SR, np.float32)])
    quiet = silent_frames(frame_db(y))
    assert quiet[: int(0.9 * FPS)].all() and not quiet[int(1.1 * FPS) :].any()


def test_a_quiet_recording_lowers_its_silence_floor_a_loud_one_does_not() -> None:
    """-50 dBFS for a recording at ordinary level; 30 dB under a quiet one's loud level, but
    never under -70 dBFS (digital silence and hiss stay silence)."""
    rng = np.random.default_rng(0)
    loud = np.concatenate([0.3 * rng.standard_normal(SR), 1e-4 * rng.standard_normal(SR)])
    assert silence_floor(frame_db(loud.astype(np.float32))) == -50.0
    quiet = 10 ** (-55 / 20) * rng.standard_normal(2 * SR).astype(np.float32)
    assert silence_floor(frame_db(quiet)) == pytest.approx(-70.0)
    assert silence_floor(frame_db(quiet * 10 ** (15 / 20))) == pytest.approx(-70.0, abs=0.5)
    assert silence_floor(frame_db(quiet * 10 ** (25 / 20))) == pytest.approx(-60.0, abs=0.5)
    assert not silent_frames(frame_db(quiet), silence_floor(frame_db(quiet))).any()


def test_quiet_wind_is_noise_not_silence(tmp_path) -> None:
    """A real wind recording played back 35 dB down (about -55 dBFS, where a field recording or a
    game's ambience loop sits) is still wind: noise, not silence."""
    y = _load(SOUNDS / "wind.ogg", 10.0)
    y = y * 10 ** (-55 / 20) / np.sqrt(np.mean(y**2))
    sf.write(tmp_path / "quiet_wind.wav", y, SR)
    res = cli("segments", tmp_path / "quiet_wind.wav", "--json")
    assert res.code == 0, res.output
    (rec,) = json.loads(res.stdout)
    assert rec["shares"]["silence"] < 0.5 and _majority(rec) == "noise", rec["shares"]


def test_a_lone_short_sound_between_silences_keeps_its_class() -> None:
    """A 0.2 s sound in silence grows to the minimum row instead of vanishing into silence; a
    short run between two sounds still joins the likelier of them."""
    labels = np.array([-1] * 40 + [2] * 12 + [-1] * 200)
    probs = np.tile(np.array([0.1, 0.1, 0.8], np.float32), (len(labels), 1))
    out = merge_short(labels, probs, 62)
    assert runs(out) == [(0, 62), (62, 252)] and out[0] == 2 and out[-1] == -1
    labels = np.array([-1] * 100 + [0] * 12 + [-1] * 100)
    out = merge_short(labels, probs, 62)
    assert 0 in out and all(b - a >= 62 for a, b in runs(out)), runs(out)
    labels = np.array([0] * 100 + [2] * 10 + [1] * 100)
    probs = np.zeros((210, 3), np.float32)
    probs[:, 1] = 0.6
    probs[:, 0] = 0.3
    out = merge_short(labels, probs, 62)
    assert (out[:100] == 0).all() and (out[100:] == 1).all()


def test_teacher_targets_are_distributions_with_music_first() -> None:
    labels = ["Music", "Speech", "Singing", "Dog"]
    gate = ContentGate.for_labels(labels)
    p = teacher_probs(
        np.array([[0.9, 0.9, 0.0, 0.0], [0.0, 0.9, 0.0, 0.0], [0.0, 0.0, 0.0, 0.9]]), gate
    )
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-6)
    assert list(p.argmax(1)) == [1, 0, 2]  # music wins over speech; nothing heard: noise


@pytest.fixture(scope="module")
def real_clips() -> seg.Clips:
    """1 s clips of real speech and music MFCCs, standardised over themselves."""
    parts = []
    feats = [mfcc(_load(SPEECH, 8.0)), mfcc(_load(MUSIC, 8.0))]
    allf = np.concatenate(feats)
    mean, std = allf.mean(0), allf.std(0) + 1e-6
    for k, f in zip((0, 1), feats, strict=True):
        x = (f - mean) / std
        teacher = np.tile(np.eye(3, dtype=np.float32)[k] * 0.8 + 0.2 / 3, (20, 1))
        parts.append(seg.cut_clips(x, np.zeros(len(x), bool), teacher, k, 62, 16))
    return seg.concat(parts)


@pytest.mark.slow  # ~20 s each on 2 cores: training runs belong to the full suite
@pytest.mark.parametrize(("alpha", "augment"), [(0.0, False), (0.5, False), (0.5, True)])
def test_a_few_training_steps_lower_the_loss_on_real_features(
    real_clips: seg.Clips, alpha: float, augment: bool
) -> None:
    net = SwishNet(n_classes=3)
    aug = DistillConfig(augment="frames", tempo=0.06, mixup=0.3) if augment else None
    hist = seg.train_clips(
        net, real_clips, epochs=4, alpha=alpha, T=2.0, lr=3e-3, batch=16, augment=aug
    )
    assert hist[-1] < hist[0]


def test_frame_baselines_learn_real_frames(real_clips: seg.Clips) -> None:
    f = [seg.with_deltas(mfcc(_load(p, 6.0))) for p in (SPEECH, MUSIC)]
    x = np.concatenate(f).astype(np.float32)
    y = np.concatenate([np.full(len(f[0]), 0), np.full(len(f[1]), 1)])
    mlp = seg.FrameMlp(n_in=60)
    hist = seg.train_frames(mlp, (x - x.mean(0)) / x.std(0), y, epochs=4, batch=64)
    assert hist[-1] < hist[0]


def test_safetensors_round_trip(tmp_path) -> None:
    torch.manual_seed(0)
    net = SwishNet(n_classes=3, width=1).eval()
    card = ModelCard(
        name="seg_test",
        arch="swishnet",
        labels=list(CLASSES),
        arch_args={"n_classes": 3, "width": 1},
    )
    path = save_model(net, card, tmp_path)
    back, card2 = load_model(path)
    x = torch.randn(1, 62, 20)
    with torch.inference_mode():
        assert torch.equal(net(x)[0], back(x)[0])
    assert card2.labels == list(CLASSES)


def test_bundled_detector_hears_held_out_speech_and_music(detector: Segmenter) -> None:
    speech = _voiced(detector.segment(_load(SPEECH, 12.0)).shares())
    # jazz: the default (mel-CNN) calls distorted metal noise, MISSED below keeps that in view
    music = _voiced(detector.segment(_load(JAZZ, 12.0)).shares())
    assert speech["speech"] > 0.7, speech
    assert music["music"] > 0.8, music
    clips = detector.clip_probs([_load(SPEECH, 6.0)[SR * 3 :], _load(WALTZ, 6.0)[SR * 3 :]])
    assert [CLASSES[i] for i in clips.argmax(1)] == ["speech", "music"]


def _voiced(shares: dict[str, float]) -> dict[str, float]:
    """Class shares of the non-silent time."""
    total = sum(v for k, v in shares.items() if k != "silence")
    return {k: v / total for k, v in shares.items() if k != "silence"}


def test_bundled_card_describes_the_detector(detector: Segmenter) -> None:
    card = detector.card
    assert card.labels == list(CLASSES)
    assert {"context_seconds", "median_seconds", "standardize"} <= card.preprocessing.keys()


def _halves(tmp_path):
    speech = _load(SPEECH2, 12.0)
    music = _load(WALTZ, 12.0)
    path = tmp_path / "talk_then_music.wav"
    sf.write(path, np.concatenate([speech, music]), SR)
    return path, len(speech) / SR


def test_segments_finds_the_speech_music_boundary(tmp_path) -> None:
    path, boundary = _halves(tmp_path)
    res = cli("segments", path, "--json", "--png", tmp_path / "strip.png")
    assert res.code == 0, res.output
    (rec,) = json.loads(res.stdout)
    voiced = [iv for iv in rec["intervals"] if iv["class"] != "silence"]
    first_music = next(iv for iv in voiced if iv["class"] == "music")
    assert abs(first_music["start"] - boundary) <= 1.0, rec["intervals"]
    assert all(iv["class"] == "speech" for iv in voiced if iv["end"] <= boundary - 1.0)
    assert (tmp_path / "strip.png").stat().st_size > 1000


def test_segments_table_and_bad_input(tmp_path) -> None:
    path, _ = _halves(tmp_path)
    bad = tmp_path / "broken.mp3"
    bad.write_bytes(b"not audio at all" * 100)
    res = cli("segments", bad, path)
    assert res.code == 1
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "broken.mp3" in errors[0], res.stderr
    assert "Traceback" not in res.output
    assert "speech" in res.stdout and "music" in res.stdout


def test_stored_intervals_show_in_info(tmp_path) -> None:
    folder = tmp_path / "lib"
    folder.mkdir()
    path, _ = _halves(folder)
    db = tmp_path / "library.db"
    assert cli("scan", folder, "--db", db).code == 0
    res = cli("segments", path, "--store", "--db", db, "--json")
    assert res.code == 0, res.output
    assert json.loads(res.stdout)[0]["stored"] is True
    info = cli("info", path, "--db", db)
    assert DEFAULT_SEGMENTER in info.stdout and "speech" in info.stdout, info.output
    data = json.loads(cli("info", path, "--db", db, "--json").stdout)
    windows = data["predictions"][DEFAULT_SEGMENTER]["windows"]
    assert {w["content"] for w in windows} >= {"speech", "music"}


def test_scan_lists_the_stored_speech_recordings(tmp_path) -> None:
    """`segments --store` then `scan`: the talk is listed as not music, the waltz is not."""
    folder = tmp_path / "lib"
    folder.mkdir()
    sf.write(folder / "talk.wav", _load(SPEECH, 12.0), SR)
    sf.write(folder / "waltz.wav", _load(WALTZ, 12.0), SR)
    db = tmp_path / "library.db"
    assert cli("scan", folder, "--db", db).code == 0
    assert cli("segments", folder, "--store", "--db", db, "--json").code == 0
    res = cli("scan", folder, "--db", db, "--json")
    assert res.code == 0, res.output
    listed = {Path(r["path"]).name: r for r in json.loads(res.stdout)["not_music"]}
    assert set(listed) == {"talk.wav"}, listed
    assert listed["talk.wav"]["content"] == "speech"
    assert listed["talk.wav"]["model"] == DEFAULT_SEGMENTER
    text = cli("scan", folder, "--db", db).stdout
    assert "talk.wav" in text and "waltz.wav" not in text


def _copies(tmp_path: Path, files: list[Path], seconds: float = 20.0) -> list[Path]:
    """16 kHz WAV copies (at most `seconds`) with the class in the name, in one folder."""
    out = []
    for k, path in enumerate(files):
        dest = tmp_path / f"{k:02d}_{HELD_OUT.get(path, 'mix')}_{path.stem[:20]}.wav"
        sf.write(dest, _load(path, seconds), SR)
        out.append(dest)
    return out


def _majority(rec: dict) -> str:
    """The class holding most of a record's non-silent time."""
    time: dict[str, float] = {}
    for iv in rec["intervals"]:
        if iv["class"] != "silence":
            time[iv["class"]] = time.get(iv["class"], 0.0) + iv["end"] - iv["start"]
    return max(time, key=lambda c: time[c]) if time else "silence"


class HeldOutRecords:
    """`mgctag segments --json --model M` over every held-out clip at once, once per detector:
    (class, record) per clip."""

    def __init__(self, folder: Path) -> None:
        self.files = _copies(folder, list(HELD_OUT))
        self.records: dict[str, list[tuple[str, dict]]] = {}

    def __call__(self, model: str = DEFAULT_SEGMENTER) -> list[tuple[str, dict]]:
        if model not in self.records:
            res = cli("segments", *self.files, "--json", "--model", model)
            assert res.code == 0, res.output
            recs = json.loads(res.stdout)
            self.records[model] = [
                (HELD_OUT[src], rec) for src, rec in zip(HELD_OUT, recs, strict=True)
            ]
        return self.records[model]


@pytest.fixture(scope="module")
def held_out_records(tmp_path_factory) -> HeldOutRecords:
    return HeldOutRecords(tmp_path_factory.mktemp("held_out"))


# What each bundled detector still gets wrong on these (docs/segments.md): strict, so a detector
# that gets them right fails here until the mark is removed.
MISSED = {
    "segmenter_swishnet": {
        "sorohanro_-_solo-trumpet-06.hq": "a lone trumpet between pauses is called noise",
        "thunder": "thunder is called music",
    },
    "segmenter_melcnn": {
        "sorohanro_-_solo-trumpet-06.hq": "a lone trumpet between pauses is called noise",
        "armygeddon_1": "distorted metal guitars are called noise (3 of tests/data's 10 metal)",
    },
}


@pytest.mark.parametrize(
    ("model", "index"),
    [
        pytest.param(m, k, marks=pytest.mark.xfail(strict=True, reason=MISSED[m][p.stem]))
        if p.stem in MISSED[m]
        else (m, k)
        for m in SEGMENTERS
        for k, p in enumerate(HELD_OUT)
    ],
    ids=[f"{m}-{p.stem}" for m in SEGMENTERS for p in HELD_OUT],
)
def test_real_held_out_clips_are_classified_through_the_cli(
    held_out_records, model: str, index: int
) -> None:
    """Real speech (read, dialogue, spoken digits), music and outdoor noise, none of it from a
    training source: the clip's main class is right, and only music counts as music."""
    cls, rec = held_out_records(model)[index]
    assert _majority(rec) == cls, rec["shares"]
    assert (rec["content"] == "music") == (cls == "music"), rec


def test_merged_rows_never_overlap_and_cover_the_file(held_out_records) -> None:
    """Rows follow each other from 0 to the end; none is shorter than the default minimum
    (1 s) unless the recording is."""
    for _, rec in held_out_records():
        ivs = rec["intervals"]
        assert ivs[0]["start"] == 0 and ivs[-1]["end"] == pytest.approx(rec["duration"], abs=0.02)
        for a, b in zip(ivs, ivs[1:], strict=False):
            assert a["end"] == pytest.approx(b["start"], abs=0.011) and a["class"] != b["class"]
        if rec["duration"] >= 2.0:
            assert all(iv["end"] - iv["start"] >= 0.99 for iv in ivs), ivs


def test_min_segment_zero_keeps_every_decision_and_larger_merges_more(tmp_path) -> None:
    (path,) = _copies(tmp_path, [SOUNDS / "speech_dutch_dialogue.ogg"])
    rows = {}
    for m in ("0", "1", "4"):
        res = cli("segments", path, "--json", "--min-segment", m)
        assert res.code == 0, res.output
        rows[m] = json.loads(res.stdout)[0]["intervals"]
    assert len(rows["0"]) >= len(rows["1"]) >= len(rows["4"]) >= 1
    assert all(iv["end"] - iv["start"] >= 3.99 for iv in rows["4"])
    bad = cli("segments", path, "--min-segment", "-1")
    assert bad.code == 2 and "Traceback" not in bad.output


def test_speech_over_a_music_bed_is_speech(tmp_path) -> None:
    """A voice with an orchestra 12 dB under it (made here from two held-out recordings) is
    speech, as a broadcast host talking over a jingle is."""
    voice = _load(SPEECH2, 14.0)
    bed = _load(WALTZ, 14.0)[: len(voice)]
    bed = bed * (np.sqrt(np.mean(voice**2)) / np.sqrt(np.mean(bed**2))) * 10 ** (-12 / 20)
    path = tmp_path / "voice_over_music.wav"
    sf.write(path, (voice + bed) / max(1.0, float(np.abs(voice + bed).max()) / 0.99), SR)
    for model in SEGMENTERS:
        res = cli("segments", path, "--json", "--model", model)
        assert res.code == 0, res.output
        (rec,) = json.loads(res.stdout)
        assert _majority(rec) == "speech", (model, rec["shares"])


def test_a_bad_file_is_one_line_and_the_others_finish(tmp_path) -> None:
    first, second = _copies(tmp_path, [SOUNDS / "rain.ogg", SPEECH], seconds=8.0)
    bad = tmp_path / "01_truncated.flac"
    bad.write_bytes(b"fLaC" + b"\x00" * 300)
    res = cli("segments", first, bad, second, "--json")
    assert res.code == 1
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "01_truncated.flac" in errors[0], res.stderr
    assert "Traceback" not in res.output
    done = [Path(r["path"]).name for r in json.loads(res.stdout)]
    assert done == [first.name, second.name]
