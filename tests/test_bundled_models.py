"""The bundled distilled students load from weights/ and follow their teacher on real music.

Each student is fed exactly what its card's `preprocessing.input` names (mix log-mel, MFCC, or
the stem log-mels of the separator its card names), computed by the same
`distill.window_features` its training data came from, on a 10 s window of seven real recordings
(tests/data: jazz, orchestral, orchestral game music, metal, electronic, solo trumpet).
The teacher, the default tagger (musicnn per patch, mn04 on the window), gives the targets as in
training. A student must be much closer to them (KL) than an untrained copy of itself, and agree
on the first genre more often than it: what distillation is for. Random weights fail this.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from media import clip_path

from mgctag.audio import decode
from mgctag.genres import GenreMap
from mgctag.models.audioset import AUDIOSET_RATE
from mgctag.models.catalog import DEFAULT_TAGGER
from mgctag.models.registry import ARCHITECTURES, load_model
from mgctag.models.tagger import prepare_input
from mgctag.separate import get_separator
from mgctag.train import distill

pytestmark = pytest.mark.slow  # every test here runs models on real audio

CLIPS = (
    "Kevin_MacLeod_-_Vibe_Ace",
    "music/classical/p_i_tchaikovsky_dance_of_the_sugar_plum_fairy_1",
    "Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra)",
    "music/metal/war_of_freedom_1",
    "music/classical/knolls_1",
    "music/electronic/northern_lights_1",
    "sorohanro_-_solo-trumpet-06",
)
STUDENTS = (
    "stemcnn_mix",
    "ecapa_ccs_fsa",
    "swishnet_slim",
    "stemcnn_sep",
    "stemcnn_cascade",
    "crnn_small",
    "mobilenetv2_half",
)
SHAPES = {"mel": (187, 96), "mfcc": (187, 20), "stems": (3, 187, 96)}


class Windows:
    """10 s of each clip; each separator's patches made once, as the training cache made them."""

    def __init__(self) -> None:
        self.audio = []
        for name in CLIPS:
            path = clip_path(name)
            offset = min(20.0, max(0.0, decode.probe(path).duration - 10.0) / 3)
            self.audio.append(decode.load(path, distill.DECODE_SR, offset=offset, duration=10.0,
                                          mono=False))  # fmt: skip
        self._features: dict[str, list[dict[str, np.ndarray]]] = {}

    def features(self, separator: str = "none") -> list[dict[str, np.ndarray]]:
        if separator not in self._features:
            sep = None if separator == "none" else get_separator(separator, "cpu")
            feats = [distill.window_features(a, distill.DECODE_SR, sep) for a in self.audio]
            assert all(f is not None for f in feats)
            self._features[separator] = feats  # type: ignore[assignment]
        return self._features[separator]


@pytest.fixture(scope="module")
def windows() -> Windows:
    return Windows()


@pytest.fixture(scope="module")
def teacher() -> distill.CombinedTeacher:
    return distill.CombinedTeacher()


@pytest.fixture(scope="module")
def targets(windows, teacher) -> torch.Tensor:
    """The default tagger's per-patch targets, exactly as `load_patches` makes them."""
    gmap = GenreMap.load()
    classes = distill.combined_classes(gmap, teacher.labels)
    rows = []
    for audio, feats in zip(windows.audio, windows.features(), strict=True):
        wave = decode.convert(audio, distill.DECODE_SR, AUDIOSET_RATE)
        mel = feats["mel"]
        rows.append(distill.combined_targets(
            teacher(mel), teacher.windows([wave]), np.zeros(len(mel), int), teacher.labels,
            gmap, classes,
        ))  # fmt: skip
    return torch.from_numpy(np.concatenate(rows))


@pytest.mark.parametrize("name", STUDENTS)
def test_bundled_student_follows_its_teacher(name, windows, teacher, targets):
    model, card = load_model(name)
    prep = card.preprocessing
    kind = prep["input"]
    feats = windows.features(prep.get("separator", "none") if kind == "stems" else "none")
    x = prepare_input(np.concatenate([f[kind] for f in feats]), prep)
    assert x.shape[1:] == SHAPES[kind]
    assert card.labels == distill.combined_classes(GenreMap.load(), teacher.labels)
    assert card.source["teacher_tagger"] == DEFAULT_TAGGER
    assert card.outputs["content_classes"] == distill.CONTENT_LABELS
    with torch.inference_mode():
        logits, emb = model(x)
    assert logits.shape == (len(x), len(card.labels))
    assert emb.shape == (len(x), card.embedding_dim)
    assert torch.isfinite(logits).all()
    torch.manual_seed(0)
    untrained = ARCHITECTURES[card.arch](**card.arch_args)
    trained, chance = (distill.teacher_agreement(m, x, targets) for m in (model, untrained))
    assert trained["kl"] < 0.7 * chance["kl"], (name, trained, chance)
    assert trained["agreement"] > chance["agreement"], (name, trained, chance)
