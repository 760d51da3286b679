"""Model weights (safetensors) + model cards (JSON), bundled with mgctag or trained by the user.

A model is two files side by side: ``NAME.safetensors`` (the state dict) and ``NAME.json`` (its
card: architecture, labels, preprocessing, provenance, licence, quality). Only safetensors are ever
loaded, because pickled checkpoints (.pt/.pth/.ckpt/.pkl) can run arbitrary code when opened.
Loaded models are cached per process so the pipeline never loads a model per track.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from threading import Lock

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from mgctag import config
from mgctag.atomicio import write_atomic
from mgctag.errors import reason_of
from mgctag.models.cards import (
    MAX_PARAMETERS,
    NAME_RE,
    ModelCard,
    ModelError,
    is_file,
    resolve,
    where_is,
)
from mgctag.models.crnn import Cnn1d, Cnn2d, Crnn
from mgctag.models.ecapa import EcapaTdnn
from mgctag.models.efficientat import EfficientAT
from mgctag.models.head import GenreHead
from mgctag.models.melcnn import MelCnn
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
    "melcnn": MelCnn,
}

# The networks `mgctag train --arch` retrains from audio, with the input each declares (INPUT).
NETWORK_INPUTS: dict[str, str] = {
    arch: spec for arch, cls in ARCHITECTURES.items() if (spec := getattr(cls, "INPUT", None))
}


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
        if not NAME_RE.match(stem):
            raise ModelError(f"{name!r}: not a model name")
    weights = folder / f"{stem}.safetensors"
    if not os.path.lexists(weights):
        if is_file(config.bundled_weights_dir() / f"{stem}.safetensors"):
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


def save_model(module: nn.Module, card: ModelCard, dest_dir: Path) -> Path:
    """Write DEST_DIR/NAME.safetensors + NAME.json; return the .safetensors path."""
    if not NAME_RE.match(card.name):
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
