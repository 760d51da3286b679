"""The bundled distilled students load from weights/ and tag real music the way their cards say.

Each student is fed exactly what its card's `preprocessing.input` names (mix log-mel, MFCC, or
the stem log-mels of the separator its card names), computed by the same
`distill.window_features` its training data came from, on 3.5 s excerpts of two real recordings
(a string orchestra and a drum-and-bass jam). The teacher, the default tagger (musicnn per patch,
mn04 on the excerpt), is run on the same audio; the student must rank the teacher's first genre
among its own top three genres. Random weights fail this.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mgctag.audio import decode
from mgctag.genres import GenreMap
from mgctag.models.audioset import AUDIOSET_RATE
from mgctag.models.catalog import DEFAULT_TAGGER
from mgctag.models.registry import load_model
from mgctag.models.tagger import prepare_input
from mgctag.separate import get_separator
from mgctag.train import distill

SHARED = Path(__file__).resolve().parents[2] / "shared" / "audio"

pytestmark = pytest.mark.slow  # every test here runs models on real audio


CLIPS = {  # name -> (file, offset in seconds)
    "orchestra": ("Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra)", 20.0),
    "drum-bass": ("admiralbob77_-_Choice_-_Drum-bass", 20.0),
}
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


class Excerpt:
    """3.5 s of real music; each separator's patches made once, as the training cache made them."""

    def __init__(self, audio: np.ndarray) -> None:
        self.audio = audio
        self._features: dict[str, dict[str, np.ndarray]] = {}

    def features(self, separator: str = "hpss") -> dict[str, np.ndarray]:
        if separator not in self._features:
            sep = get_separator(separator, "cpu")
            feats = distill.window_features(self.audio, distill.DECODE_SR, sep)
            assert feats is not None
            self._features[separator] = feats
        return self._features[separator]


@pytest.fixture(scope="module", params=list(CLIPS))
def window(request) -> Excerpt:
    name, offset = CLIPS[request.param]
    path = SHARED / "librosa" / f"{name}.hq.ogg"
    return Excerpt(decode.load(path, distill.DECODE_SR, offset=offset, duration=3.5, mono=False))


@pytest.fixture(scope="module")
def teacher() -> distill.CombinedTeacher:
    return distill.CombinedTeacher()


@pytest.fixture(scope="module")
def teacher_top(window, teacher) -> str:
    """The default tagger's first genre for the excerpt, as the training targets make it."""
    gmap = GenreMap.load()
    classes = distill.combined_classes(gmap, teacher.labels)
    mel = window.features()["mel"]
    wave = decode.convert(window.audio, distill.DECODE_SR, AUDIOSET_RATE)
    probs = teacher.windows([wave])
    targets = distill.combined_targets(
        teacher(mel), probs, np.zeros(len(mel), int), teacher.labels, gmap, classes
    )
    return classes[int(targets.mean(axis=0).argmax())]


@pytest.mark.parametrize("name", STUDENTS)
def test_bundled_student_predicts_like_its_card(name, window, teacher, teacher_top):
    model, card = load_model(name)
    kind = card.preprocessing["input"]
    feats = window.features(card.preprocessing.get("separator", "hpss"))
    x = prepare_input(feats[kind], card.preprocessing)
    assert x.shape[1:] == SHAPES[kind]
    assert card.labels == distill.combined_classes(GenreMap.load(), teacher.labels)
    assert card.source["teacher_tagger"] == DEFAULT_TAGGER
    assert card.outputs["content_classes"] == distill.CONTENT_LABELS
    with torch.inference_mode():
        logits, emb = model(x)
    assert logits.shape == (len(x), len(card.labels))
    assert emb.shape == (len(x), card.embedding_dim)
    probs = torch.softmax(logits, dim=1).mean(dim=0)
    assert torch.isfinite(probs).all()
    genres = [card.labels[i] for i in probs.argsort(descending=True)
              if card.labels[i] not in distill.CONTENT_LABELS.values()]  # fmt: skip
    assert teacher_top in genres[:3], f"{name}: teacher says {teacher_top}, student {genres[:3]}"
