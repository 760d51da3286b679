"""The content gate: music / speech / other per window and per track, on rules and on real clips."""

from __future__ import annotations

from pathlib import Path

import media
import numpy as np
import pytest
import torch

from mgctag.audio import decode, segment
from mgctag.audio.features import efficientat_mel
from mgctag.content import (
    MUSIC,
    OTHER,
    SPEECH,
    ContentGate,
    skip_reason,
    track_class,
    window_class,
)
from mgctag.genres import default_map
from mgctag.models.registry import load_model


@pytest.fixture(scope="module")
def mn04():
    return load_model("audioset_mn04")


@pytest.fixture(scope="module")
def gate(mn04):
    return ContentGate.for_labels(mn04[1].labels, default_map().tags)


def test_evidence_families(gate, mn04):
    labels = mn04[1].labels
    music = {labels[i] for i in gate.music_idx}
    speech = {labels[i] for i in gate.speech_idx}
    assert {"Music", "Rapping", "Singing", "Hip hop music", "Reggae", "A capella"} <= music
    assert {"Speech", "Narration, monologue", "Conversation"} <= speech
    assert not music & speech
    assert "Happy music" not in music and "Dog" not in music  # moods and noises are not evidence


def test_music_wins_over_speech(gate):
    # rap: Speech fires strongly, but Music / Rapping / Hip hop reach the music floor
    assert window_class(gate.music_floor, 0.95, gate) == MUSIC
    assert window_class(gate.music_floor - 0.01, 0.95, gate) == SPEECH
    assert window_class(0.0, gate.speech_floor - 0.01, gate) == OTHER


def test_classify_reads_the_strongest_class_of_each_family(gate, mn04):
    labels = mn04[1].labels
    probs = np.zeros((3, len(labels)), np.float32)
    probs[0, labels.index("Rapping")] = 0.9
    probs[0, labels.index("Speech")] = 0.9
    probs[1, labels.index("Narration, monologue")] = 0.9
    probs[2, labels.index("Dog")] = 0.9
    assert gate.classify(probs) == [MUSIC, SPEECH, OTHER]


def test_track_class_by_majority_with_ties_to_music():
    assert track_class([MUSIC, SPEECH, SPEECH]) == SPEECH
    assert track_class([MUSIC, MUSIC, SPEECH]) == MUSIC
    assert track_class([MUSIC, SPEECH]) == MUSIC
    assert track_class([SPEECH, OTHER, OTHER]) == OTHER
    assert track_class([SPEECH, SPEECH, OTHER]) == SPEECH
    assert track_class([]) == OTHER
    assert skip_reason(MUSIC) is None
    assert "speech" in skip_reason(SPEECH) and "--content all" in skip_reason(SPEECH)


def _windows(gate, model, path: Path) -> list[str]:
    plan = segment.plan_windows(decode.probe(path).duration, n=3, length=10.0)
    audio = decode.load_windows(path, 32000, plan)
    with torch.inference_mode():
        probs = [
            torch.sigmoid(model(torch.from_numpy(efficientat_mel(y))[None])[0][0]) for y in audio
        ]
    return gate.classify(torch.stack(probs).numpy())


def test_real_speech_is_speech_and_a_real_sung_song_is_music(gate, mn04):
    model = mn04[0]
    speech = _windows(gate, model, media.LIBROSA / "198-209-0000.hq.ogg")
    assert track_class(speech) == SPEECH
    song = _windows(gate, model, media.LIBROSA / "Karissa_Hobbs_-_Lets_Go_Fishin.hq.ogg")
    assert track_class(song) == MUSIC


def test_real_rap_is_music(gate, mn04):
    rap = media.need(media.MUSDB) / "train" / "ANiMAL - Clinic A.stem.mp4"
    assert track_class(_windows(gate, mn04[0], rap)) == MUSIC


def test_decide_takes_genres_from_the_music_windows(gate, mn04):
    from mgctag.content import decide

    labels = mn04[1].labels
    probs = np.zeros((3, len(labels)), np.float32)
    probs[0, labels.index("Narration, monologue")] = 0.9  # a spoken intro
    probs[1, labels.index("Music")] = 0.8
    probs[2, labels.index("Reggae")] = 0.6
    d = decide(gate, probs, [12.0, 40.5, 69.0])
    assert d.content == MUSIC and d.genre_windows == [1, 2]
    assert [w["content"] for w in d.windows] == [SPEECH, MUSIC, MUSIC]
    assert d.windows[0] == {"offset": 12.0, "content": SPEECH, "music": 0.0, "speech": 0.9}
    speech_only = decide(gate, probs[:1], [0.0])
    assert speech_only.content == SPEECH and speech_only.genre_windows == [0]
