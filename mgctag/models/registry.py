"""Model weights (safetensors) + model cards (JSON), bundled with mgctag or trained by the user.

A model is two files side by side: ``NAME.safetensors`` (the state dict) and ``NAME.json`` (its
card: architecture, labels, preprocessing, provenance, licence, quality). Only safetensors are ever
loaded, because pickled checkpoints (.pt/.pth/.ckpt/.pkl) can run arbitrary code when opened.
Loaded models are cached per process so the pipeline never loads a model per track.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from threading import Lock
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from mgctag import config
from mgctag.atomicio import write_atomic
from mgctag.errors import UsageError, reason_of
from mgctag.models.crnn import Cnn1d, Cnn2d, Crnn
from mgctag.models.ecapa import EcapaTdnn
from mgctag.models.efficientat import EfficientAT
from mgctag.models.head import GenreHead
from mgctag.models.mobilenet import MobileNetV2
from mgctag.models.musicnn import Musicnn, Vgg
from mgctag.models.stemcnn import StemCnn
from mgctag.models.swishnet import SwishNet

# arch name (as written in model cards) -> nn.Module class built with the card's arch_args.
ARCHITECTURES: dict[str, type[nn.Module]] = {
    "genre_head": GenreHead,
    "musicnn": Musicnn,
    "vgg": Vgg,
    "stemcnn": StemCnn,
    "ecapa_tdnn": EcapaTdnn,
    "swishnet": SwishNet,
    "cnn2d": Cnn2d,
    "cnn1d": Cnn1d,
    "crnn": Crnn,
    "mobilenetv2": MobileNetV2,
    "efficientat": EfficientAT,
}

# The networks `mgctag train --arch` retrains from audio, with the input each declares (INPUT).
NETWORK_INPUTS: dict[str, str] = {
    arch: spec for arch, cls in ARCHITECTURES.items() if (spec := getattr(cls, "INPUT", None))
}

PICKLE_SUFFIXES = {".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin", ".joblib", ".npy", ".npz"}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


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


def _is_file(path: Path) -> bool:
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
        if not _is_file(path):
            raise ModelError(f"{path}: no such model file")
        if path.suffix != ".safetensors":
            raise ModelError(f"{path}: not a .safetensors file")
        return path
    for folder in _search_dirs():
        candidate = folder / f"{name}.safetensors"
        if _is_file(candidate):
            return candidate
    known = ", ".join(card.name for card in list_models()) or "none"
    raise UnknownModel(f"{name}: unknown model (available: {known})")


def where_is(path: str | os.PathLike) -> Path:
    """The absolute location of a model file: its folder resolved (`..`, symlinked folders),
    the file itself not followed, so a symlinked model is where its link is."""
    absolute = Path(path).expanduser().absolute()
    return absolute.parent.resolve() / absolute.name


def remove_model(name: str | os.PathLike) -> list[Path]:
    """Delete one user-trained model: exactly NAME.safetensors and NAME.json, nothing else.

    The model is looked up in the user models folder only, a path is resolved first (`..` and
    symlinks) and must lie directly in that folder, so no name can reach a file elsewhere, and
    `rock` never touches `rock.v2.*` or `rock.old-backup`. Returns the files removed.
    """
    folder = config.user_models_dir().resolve()
    given = Path(name)
    if given.suffix == ".safetensors" or len(given.parts) > 1:
        path = where_is(given)
        if path.parent == config.bundled_weights_dir().resolve():
            raise ModelError(f"{name}: a bundled model; only your own models can be removed")
        if path.parent != folder or path.suffix != ".safetensors":
            raise ModelError(
                f"{name}: not a model in your models folder ({folder}) but a file elsewhere;"
                " mgctag removes only models in that folder (delete it yourself if you want)"
            )
        stem = path.stem
    else:
        stem = str(name)
        if not _NAME_RE.match(stem):
            raise ModelError(f"{name!r}: not a model name")
    weights = folder / f"{stem}.safetensors"
    if not os.path.lexists(weights):
        if _is_file(config.bundled_weights_dir() / f"{stem}.safetensors"):
            raise ModelError(f"{stem}: a bundled model; only your own models can be removed")
        raise ModelError(f"{stem}: no such model in {folder}")
    removed = []
    for path in (weights, weights.with_suffix(".json")):
        if os.path.lexists(path):
            path.unlink()  # a symlink is removed, never what it points to
            removed.append(path)
    clear_cache()
    return removed


#: arch_args that give the network's number of outputs, one per label of the card.
OUTPUT_ARGS = ("n_classes", "n_tags")


def build(card: ModelCard) -> nn.Module:
    """An untrained module of the card's architecture."""
    if card.arch not in ARCHITECTURES:
        raise ModelError(f"{card.name}: unknown architecture {card.arch!r}")
    for key in OUTPUT_ARGS:
        n = card.arch_args.get(key)
        if isinstance(n, int) and n != len(card.labels):
            raise ModelError(
                f"{card.name}: the card lists {len(card.labels)} labels but its network has"
                f" {n} outputs ({key}); card and weights do not belong together"
            )
    cls = ARCHITECTURES[card.arch]
    try:
        with torch.device("meta"):  # sized first without memory: a card can ask for anything
            size = sum(p.numel() for p in cls(**card.arch_args).parameters())
    except TypeError as exc:
        raise ModelError(f"{card.name}: arch_args do not fit {card.arch} ({exc})") from exc
    except Exception:  # noqa: BLE001 - some constructors compute on real tensors; built below
        size = 0
    if size > MAX_PARAMETERS:
        raise ModelError(f"{card.name}: arch_args ask for {size:,} parameters; not a usable model")
    try:
        return cls(**card.arch_args)
    except (TypeError, ValueError, RuntimeError, MemoryError, OverflowError) as exc:
        raise ModelError(
            f"{card.name}: arch_args do not fit {card.arch} ({reason_of(exc)})"
        ) from exc


_CACHE: dict[tuple[str, int, str], tuple[nn.Module, ModelCard]] = {}
_CACHE_LOCK = Lock()


def load_model(
    name: str | os.PathLike, *, device: str | torch.device = "cpu", cache: bool = True
) -> tuple[nn.Module, ModelCard]:
    """Load a model in eval mode with its card; by name (bundled, then user dir) or by path.

    With cache=True (the default) the same module object is returned for the same file and device
    for the life of the process: treat it as read-only (use cache=False to get a copy to train).
    """
    path = resolve(name).resolve()
    key = (str(path), path.stat().st_mtime_ns, str(torch.device(device)))
    with _CACHE_LOCK:
        if cache and key in _CACHE:
            return _CACHE[key]
        loaded = _load(path, torch.device(device))
        if cache:
            _CACHE[key] = loaded
        return loaded


def _load(path: Path, device: torch.device) -> tuple[nn.Module, ModelCard]:
    card_path = path.with_suffix(".json")
    if not card_path.is_file():
        raise ModelError(f"{path}: no model card ({card_path.name}) beside it")
    card = ModelCard.read(card_path)
    try:
        module = build(card)
    except ModelError as exc:
        raise ModelError(f"{path}: {exc}") from exc
    try:
        state = load_file(path, device=str(device))
        module.load_state_dict(state, strict=True)
    except (SafetensorError, OSError, RuntimeError) as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]  # torch lists every key
        raise ModelError(f"{path}: weights do not fit {card.arch} ({reason})") from exc
    return module.to(device).eval(), card


def clear_cache() -> None:
    """Forget loaded models (after a user model was retrained in place, for instance)."""
    with _CACHE_LOCK:
        _CACHE.clear()


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


def save_model(module: nn.Module, card: ModelCard, dest_dir: Path) -> Path:
    """Write DEST_DIR/NAME.safetensors + NAME.json; return the .safetensors path."""
    if not _NAME_RE.match(card.name):
        raise ModelError(f"{card.name!r}: model names may use letters, digits, '.', '_', '-'")
    if card.arch not in ARCHITECTURES or not isinstance(module, ARCHITECTURES[card.arch]):
        raise ModelError(f"{card.name}: module is {type(module).__name__}, card says {card.arch}")
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    weights = dest_dir / f"{card.name}.safetensors"
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    meta = {"name": card.name, "arch": card.arch}
    write_atomic(weights, lambda p: save_file(state, str(p), metadata=meta))
    text = json.dumps(card.to_dict(), indent=2, ensure_ascii=False) + "\n"
    write_atomic(weights.with_suffix(".json"), lambda p: p.write_text(text, encoding="utf-8"))
    clear_cache()
    return weights
