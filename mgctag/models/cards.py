"""Model cards (JSON beside each model's safetensors): reading, checking and finding them.

Kept apart from `registry` (which builds and loads the networks) so that listing models, a
shell's completion of `--model` and `models list` never import torch.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from mgctag import config
from mgctag.errors import UsageError, reason_of

PICKLE_SUFFIXES = {".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin", ".joblib", ".npy", ".npz"}


NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class ModelError(UsageError):
    """A model that cannot be found or loaded; the message names the file and the reason."""


class UnknownModel(ModelError):
    """No model of that name, bundled or the user's."""


@dataclass(frozen=True)
class ModelCard:
    """What a model is and how to feed it, as stored in NAME.json next to NAME.safetensors."""

    name: str
    arch: str
    labels: list[str]
    arch_args: dict[str, Any] = field(default_factory=dict)
    preprocessing: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    licence: dict[str, Any] = field(default_factory=dict)
    published: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # any other keys, kept round-trip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        known = {f.name for f in fields(cls)} - {"extra"}
        missing = {"name", "arch", "labels"} - data.keys()
        if missing:
            raise ModelError(f"model card lacks {', '.join(sorted(missing))}")
        _check_types(data)
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(**{k: v for k, v in data.items() if k in known}, extra=extra)

    @classmethod
    def read(cls, path: Path) -> ModelCard:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise ModelError(f"{path}: unreadable model card (not UTF-8)") from None
        except RecursionError:
            raise ModelError(f"{path}: unreadable model card (nested too deeply)") from None
        except (OSError, ValueError) as exc:
            raise ModelError(f"{path}: unreadable model card ({reason_of(exc)})") from exc
        if not isinstance(data, dict):
            raise ModelError(f"{path}: model card is not a JSON object")
        try:
            return cls.from_dict(data)
        except ModelError as exc:
            raise ModelError(f"{path}: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {**{k: v for k, v in data.items() if k != "extra"}, **data["extra"]}

    @property
    def embedding_dim(self) -> int | None:
        """Size of the embedding the model returns beside its logits, if the card says."""
        return self.outputs.get("embedding_dim")


_DICT_FIELDS = ("arch_args", "preprocessing", "outputs", "source", "licence", "published", "parity")


MAX_PARAMETERS = 200_000_000  # far above any genre model; a card asking for more is broken


def _check_types(data: dict[str, Any]) -> None:
    """A card's fields have the types the code reads them as (a user's card may be anything)."""
    if not isinstance(data["name"], str) or not isinstance(data["arch"], str):
        raise ModelError("model card: name and arch must be text")
    labels = data["labels"]
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise ModelError("model card: labels must be a list of text")
    for key in _DICT_FIELDS:
        if key in data and not isinstance(data[key], dict):
            raise ModelError(f"model card: {key} must be an object")
    if "selection" in data and not _valid_selection(data["selection"]):
        raise ModelError(
            "model card: selection must be [max genres (a whole number >= 1), confidence floor"
            f" (0 to 1), floor relative to the top genre (0 to 1)], not {data['selection']!r}"[:300]
        )
    if "tagger" in data and not isinstance(data["tagger"], str):
        raise ModelError("model card: tagger must be text")


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _valid_selection(value: Any) -> bool:
    """[at most N genres, absolute floor, relative floor], as `catalog.selection` reads it."""
    if not isinstance(value, list) or len(value) != 3 or not all(map(_number, value)):
        return False
    most, floor, relative = value
    return float(most).is_integer() and most >= 1 and 0 <= floor <= 1 and 0 <= relative <= 1


def is_file(path: Path) -> bool:
    """Whether `path` is a file; a name the OS refuses (too long, NUL) is simply no file."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _search_dirs() -> list[Path]:
    return [config.bundled_weights_dir(), config.user_models_dir()]


def resolve(name: str | os.PathLike) -> Path:
    """The .safetensors file for a model name (bundled first, then user) or an explicit path."""
    path = Path(name)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ModelError(
            f"{path}: refusing to load {path.suffix} weights (pickles can run code); "
            "convert them to .safetensors with a model card"
        )
    if path.suffix == ".safetensors" or len(path.parts) > 1:
        if not is_file(path):
            raise ModelError(f"{path}: no such model file")
        if path.suffix != ".safetensors":
            raise ModelError(f"{path}: not a .safetensors file")
        return path
    for folder in _search_dirs():
        candidate = folder / f"{name}.safetensors"
        if is_file(candidate):
            return candidate
    known = ", ".join(card.name for card in list_models()) or "none"
    raise UnknownModel(f"{name}: unknown model (available: {known})")


def where_is(path: str | os.PathLike) -> Path:
    """The absolute location of a model file: its folder resolved (`..`, symlinked folders),
    the file itself not followed, so a symlinked model is where its link is."""
    absolute = Path(path).expanduser().absolute()
    return absolute.parent.resolve() / absolute.name


def list_models(problems: list[str] | None = None) -> list[ModelCard]:
    """Cards of every bundled and user model that has both files, bundled first.

    A broken card is left out (it must not hide the others); its one-line reason is appended to
    `problems` when given.
    """
    cards: list[ModelCard] = []
    for folder in _search_dirs():
        if not folder.is_dir():
            continue
        for card_path in sorted(folder.glob("*.json")):
            if not card_path.with_suffix(".safetensors").is_file():
                continue
            try:
                cards.append(ModelCard.read(card_path))
            except ModelError as exc:
                if problems is not None and folder == config.user_models_dir():
                    problems.append(str(exc))  # bundled JSON files are not all genre models
    return cards
