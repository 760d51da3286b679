"""Start a network from a distilled student (`mgctag train/eval --arch ARCH --init STUDENT`).

Retraining a seed-paper network from random weights on a few dozen labelled tracks learns little
(docs/training.md); the bundled students have already learned what music sounds like from hours of
it. Transfer keeps everything a student learned except its output layer, which names the teacher's
genres: that layer is replaced by a fresh one for the user's genres, and the whole network is then
fine-tuned on the user's labels. The features are the student's own (its card's input, separator,
stems and MFCC statistics), since its first layers only make sense on what they learned from.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, cast

from torch import nn

from mgctag.models.cards import ModelCard, ModelError, list_models
from mgctag.models.registry import NETWORK_INPUTS, load_model
from mgctag.models.stemcnn import PAPER_STEMS

# Patch features a student can read (the pipeline's `prepare` makes them for every track).
PATCH_INPUTS = ("mel", "mfcc", "stems")

# Adam's step size from scratch and from a student. From a student, a third of it: the fresh output
# layer starts random, so its first gradients are large and flow into every layer; at full size
# they overwrite what distillation put there before the new layer has settled, and a small label
# set cannot teach it back (the "forgetting" fine-tuning is known for).
SCRATCH_LR = 1e-3
FINE_TUNE_LR = 3e-4


@dataclass(frozen=True)
class Student:
    """A trained network to start from, and the card that says how it was fed."""

    name: str
    model: nn.Module
    card: ModelCard

    @property
    def preprocessing(self) -> dict[str, Any]:
        """The card's features, copied (the user's model card gets its own)."""
        return copy.deepcopy(self.card.preprocessing)


def is_student(card: ModelCard) -> bool:
    """A patch network mgctag trained: distilled (bundled) or retrained by a user (`--arch`)."""
    trained = "trained_by" in card.source or card.source.get("kind") == "user"
    reads = card.preprocessing.get("input") in PATCH_INPUTS
    return card.arch in NETWORK_INPUTS and reads and trained


def students() -> list[str]:
    """Names of the models `--init` can start from, for the refusal's hint."""
    return [card.name for card in list_models() if is_student(card)]


def load_student(name: str, arch: str) -> Student:
    """The student NAME, checked to be a trained network of the architecture `--arch` asked for.

    Loaded uncached: it is trained further, and the cached copy belongs to `tag`.
    """
    try:
        model, card = load_model(name, cache=False)
    except ModelError as exc:
        raise ModelError(f"--init {exc}") from None
    if not is_student(card):
        reads = card.preprocessing.get("input")
        what = f"{card.arch} on {reads}" if reads else card.arch
        raise ModelError(
            f"--init {name}: not a genre network mgctag trained ({what}); "
            f"use one of {', '.join(students())}"
        )
    if card.arch != arch:
        raise ModelError(f"--init {name}: a {card.arch} network, not --arch {arch}")
    return Student(card.name, model, card)


def network_input(
    arch: str, student: Student | None, separator: str = "hpss"
) -> tuple[str, str | None, tuple[str, ...]]:
    """(feature, separator, stems) a network reads: the student's card's, or the arch's own.

    The card decides, not the architecture: `stemcnn_mix` is a stem CNN that reads the mix's mel.
    `separator` is for a network from scratch that reads stems.
    """
    if student is None:
        kind = NETWORK_INPUTS[arch]
        return kind, separator if kind == "stems" else None, PAPER_STEMS
    prep = student.card.preprocessing
    kind = prep["input"]
    if kind != "stems":
        return kind, None, PAPER_STEMS
    return kind, prep.get("separator", "cascade"), tuple(prep.get("stems", PAPER_STEMS))


def with_new_output(student: Student, n_classes: int) -> nn.Module:
    """A copy of the student with a new output layer for `n_classes` genres, all else kept.

    Every network `--arch` trains ends in `self.classifier`: a Linear, or a Sequential whose last
    module is one. The recorded constructor arguments follow (`n_classes`), so the saved card
    rebuilds the network that is saved.

    The new layer starts at zero (as BiT, Kolesnikov et al. 2020, starts its new heads): every
    genre is equally likely at first and the first gradients reach only that layer, so the
    student's features are not pushed about by a random layer's errors. A randomly initialised
    layer also barely moves in the few dozen fine-tuning steps a small label set gives, and its
    random preferences then decide the predictions: from `swishnet_slim` on the MUSDB previews
    (10 grouped 80/20 trials, 15 epochs), 0.103 accuracy with a random layer, 0.365 from zero.
    """
    model = copy.deepcopy(student.model)
    head = getattr(model, "classifier", None)
    last = head[-1] if isinstance(head, nn.Sequential) else head
    if not isinstance(last, nn.Linear):
        raise ModelError(f"--init {student.name}: its classifier does not end in a linear layer")
    fresh = nn.Linear(last.in_features, n_classes, bias=last.bias is not None)
    nn.init.zeros_(fresh.weight)
    if fresh.bias is not None:
        nn.init.zeros_(fresh.bias)
    if isinstance(head, nn.Sequential):
        head[-1] = fresh
    else:
        model.classifier = fresh
    config = {**cast(dict[str, Any], model.config), "n_classes": n_classes}
    model.config = config  # type: ignore[assignment]  # set by capture_init, not a Module
    return model
