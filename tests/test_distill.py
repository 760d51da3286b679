"""Distillation from the default tagger: its per-patch targets, the batch augmentation, and the
students' own content gate (the not-music outputs the targets teach)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mgctag.content import MUSIC, SPEECH
from mgctag.genres import GenreMap
from mgctag.models.cards import ModelCard, resolve
from mgctag.models.catalog import AUDIOSET_MODEL, MUSICNN_MODELS
from mgctag.models.tagger import student_decision
from mgctag.train import distill


@pytest.fixture(scope="module")
def labels() -> dict[str, list[str]]:
    """The real label lists of the default tagger's three models (from their cards)."""
    return {
        name: list(ModelCard.read(resolve(name).with_suffix(".json")).labels)
        for name in (*MUSICNN_MODELS, AUDIOSET_MODEL)
    }


def test_combined_targets_follow_the_default_rule_and_the_gate(labels):
    gmap = GenreMap.load()
    classes = distill.combined_classes(gmap, labels)
    assert classes[-2:] == ["(speech)", "(other sound)"]
    assert {"Reggae", "Rock", "Classical"} <= set(classes)  # both vocabularies
    net = labels[AUDIOSET_MODEL]
    windows = np.full((2, len(net)), 0.01, np.float32)
    windows[0, net.index("Music")] = 0.9
    windows[0, net.index("Reggae")] = 0.9  # mn04 is sure: reggae
    windows[1, net.index("Speech")] = 0.9  # the second window is someone talking
    tag_probs = {m: np.full((4, len(labels[m])), 0.05, np.float32) for m in MUSICNN_MODELS}
    targets = distill.combined_targets(
        tag_probs, windows, np.array([0, 0, 1, 1]), labels, gmap, classes
    )
    assert targets.shape == (4, len(classes))
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-5)
    assert {classes[i] for i in targets[:2].argmax(axis=1)} == {"Reggae"}
    speech = classes.index("(speech)")
    assert (targets[2:, speech] >= distill.NOT_MUSIC_TARGET).all()
    assert (targets[:2, speech] < 0.01).all()


def test_augment_keeps_shapes_and_targets_valid():
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(8, 187, 96) * 3  # log10(10000 mel + 1) is 0..~4
    teacher = torch.softmax(torch.randn(8, 5), dim=1)
    labels = teacher.argmax(1)
    cfg = distill.DistillConfig(augment="mel")
    xa, ta, la = distill.augment(x.clone(), teacher, labels, cfg, gen)
    assert xa.shape == x.shape and torch.isfinite(xa).all() and (xa >= 0).all()
    assert not torch.allclose(xa, x)
    torch.testing.assert_close(ta.sum(1), torch.ones(8))
    assert torch.equal(la, labels)
    stems = torch.rand(4, 3, 187, 96)
    assert distill.augment(stems, teacher[:4], labels[:4], cfg, gen)[0].shape == stems.shape
    plain = distill.DistillConfig()
    assert distill.augment(x, teacher, labels, plain, gen)[0] is x


def test_student_gate_keeps_speech_windows_out_of_the_genres():
    labels = ["Rock", "Jazz", "(speech)", "(other sound)"]
    content = {SPEECH: "(speech)", "other": "(other sound)"}
    music = [0.1, 0.8, 0.05, 0.05]  # jazz
    talk = [0.3, 0.0, 0.7, 0.0]  # speech, with some rock-like mass
    probs = np.array([music] * 3 + [talk] * 3, np.float32)
    decision, scores = student_decision(probs, [3, 3], [0.0, 10.0], labels, content)
    assert [w["content"] for w in decision.windows] == [MUSIC, SPEECH]
    assert decision.genre_windows == [0]
    assert decision.content == MUSIC  # half its windows are music
    assert max(scores, key=lambda g: scores[g]) == "Jazz"
    assert set(scores) == {"Rock", "Jazz"}
    assert sum(scores.values()) == pytest.approx(1.0)
    spoken, _ = student_decision(np.array([talk] * 6, np.float32), [3, 3], [0, 10], labels, content)
    assert spoken.content == SPEECH
