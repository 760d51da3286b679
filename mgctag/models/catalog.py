"""Every tagger mgctag can tag with, by name: the one registry `tag`, `models list/show/use` read.

Two sources. Built-in taggers that are not one model card (the musicnn pair, the VGG pair, the
blends) are registered here with `register_tagger`. Every model card that is a genre model is a
tagger too: its card says which kind (`"tagger"` key, else a genre head by its arch, else a
distilled student by its `preprocessing.input`), and `register_card_tagger` maps a kind to a
class. A new tagger family (an AudioSet model) adds one of either, nothing in the pipeline.

Descriptions are plain dicts, so the CLI only prints them. Tagger classes (and torch) are
imported only when a tagger is built.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mgctag.models.cards import ModelCard, ModelError, UnknownModel, list_models, resolve
from mgctag.models.names import (
    AUDIOSET_MODEL,
    DEFAULT_SELECTION,
    ENSEMBLES,
    MUSICNN_MODELS,
    PATCH_FEATURES,
    SELECTION,
)
from mgctag.options import DEFAULT_TAGGER, MUSICNN_TAGGER

if TYPE_CHECKING:
    from mgctag.models.protocol import Tagger

# Names for a tagger chosen for a purpose: alias -> the tagger it stands for (results are stored
# under the real name). "fast": the best student by accuracy per cost (docs/models.md).
ALIASES = {"fast": "swishnet_slim"}


def canonical(name: str) -> str:
    """The tagger a name stands for (an alias resolved; any other name as given).

    A removed tagger's name is a ModelError that says why and what to use instead.
    """
    if name in REMOVED:
        raise ModelError(f"{name}: {REMOVED[name]}")
    return ALIASES.get(name, name)


def selection(name: str) -> tuple[int, float, float]:
    """(max genres, absolute floor, relative floor) a tagger's genres are written with.

    Built-in rules first; a model card may carry its own (`"selection"`, e.g. the students
    distilled from the default tagger write as the default does); else the 0.2 default.
    """
    name = canonical(name)
    if name in SELECTION:
        return SELECTION[name]
    if name in _BUILTIN:
        return DEFAULT_SELECTION
    try:
        chosen = _card(name).extra.get("selection")
    except (ModelError, OSError, ValueError):
        return DEFAULT_SELECTION
    if isinstance(chosen, list) and len(chosen) == 3:
        return int(chosen[0]), float(chosen[1]), float(chosen[2])
    return DEFAULT_SELECTION


# Taggers that were there and are not any more: name -> why, and what to use instead.
REMOVED = {
    "musicnn+crnn": "removed in 0.3: blended with the re-distilled crnn_small it wrote worse "
    "genres than musicnn alone (docs/models.md); use musicnn+mn04 (the default) or musicnn",
}


@dataclass(frozen=True)
class TaggerEntry:
    """A built-in tagger: how to build it (on a device) and how to describe it (plain data)."""

    name: str
    build: Callable[[str], Tagger]
    describe: Callable[[dict[str, ModelCard]], dict[str, Any]]


_BUILTIN: dict[str, TaggerEntry] = {}
# card kind -> "module:Class" of the tagger built from such a card (Class(name, device))
_CARD_TAGGERS: dict[str, str] = {
    "student": "mgctag.models.tagger:StudentTagger",
    "head": "mgctag.models.tagger:HeadTagger",
    "audioset": "mgctag.models.audioset:AudiosetTagger",
}


def register_tagger(
    name: str,
    build: Callable[[str], Tagger],
    describe: Callable[[dict[str, ModelCard]], dict[str, Any]],
) -> None:
    """Make `name` a built-in tagger: `build(device)` gives it, `describe(cards)` its row."""
    _BUILTIN[name] = TaggerEntry(name, build, describe)


def register_card_tagger(kind: str, target: str) -> None:
    """Cards whose `"tagger"` key is `kind` are built by `target` ("module:Class")."""
    _CARD_TAGGERS[kind] = target


def card_kind(card: ModelCard) -> str | None:
    """Which kind of tagger a model card makes, or None when it is not a genre model alone."""
    explicit = card.extra.get("tagger")
    if isinstance(explicit, str):
        return explicit
    if card.arch == "genre_head":
        return "head"
    prep = card.preprocessing if isinstance(card.preprocessing, dict) else {}
    return "student" if prep.get("input") in PATCH_FEATURES else None


def get_tagger(name: str, device: str = "cpu") -> Tagger:
    """The tagger called `name` (built-in, an alias, or a genre model card), ready on `device`."""
    name = canonical(name)
    if name in _BUILTIN:
        return _BUILTIN[name].build(device)
    card = _tagger_card(name)
    kind = card_kind(card)
    if kind not in _CARD_TAGGERS:
        raise ModelError(f"{name}: not a genre model; `mgctag models list` shows them")
    module, cls = _CARD_TAGGERS[kind].split(":")
    return getattr(importlib.import_module(module), cls)(name, device)


def list_taggers() -> list[dict[str, Any]]:
    """Every name `--model` accepts, described (built-ins first, then genre model cards)."""
    cards = list_models()
    rows = [_builtin_row(e, cards) for e in _BUILTIN.values()] + _alias_rows(cards)
    return rows + [{**c.to_dict(), "kind": card_kind(c)} for c in cards if card_kind(c)]


def catalog(problems: list[str] | None = None) -> list[dict[str, Any]]:
    """`models list`: the built-in taggers, then every model card (taggers or their parts);
    broken cards are left out and told in `problems`."""
    cards = list_models(problems)
    rows = [_builtin_row(e, cards) for e in _BUILTIN.values()] + _alias_rows(cards)
    return rows + [{**c.to_dict(), "kind": card_kind(c) or "part"} for c in cards]


def describe(name: str) -> dict[str, Any]:
    """`models show`: a built-in tagger's description, or a model's card as stored."""
    canonical(name)  # a removed tagger says so
    if name in ALIASES:
        return {**describe(ALIASES[name]), "alias": name, "stands_for": ALIASES[name]}
    if name in _BUILTIN:
        return _builtin_row(_BUILTIN[name], list_models())
    return ModelCard.read(resolve(name).with_suffix(".json")).to_dict()


def check_tagger(name: str) -> None:
    """Raise ModelError unless `name` is something `mgctag tag --model` can use."""
    name = canonical(name)
    if name in _BUILTIN:
        return
    if card_kind(_tagger_card(name)) not in _CARD_TAGGERS:
        raise ModelError(f"{name}: not a genre model; `mgctag models list` shows them")


def _card(name: str) -> ModelCard:
    return ModelCard.read(resolve(name).with_suffix(".json"))


def _tagger_card(name: str) -> ModelCard:
    """The card of the genre model `--model NAME` names; an unknown name is told with the names
    `--model` takes (the aliases users type included), not every model file."""
    try:
        return _card(name)
    except UnknownModel:
        names = ", ".join(row["name"] for row in list_taggers())
        raise ModelError(
            f"{name}: unknown model; --model takes {names} (`mgctag models list` describes them)"
        ) from None


def _builtin_row(entry: TaggerEntry, cards: list[ModelCard]) -> dict[str, Any]:
    return {"name": entry.name, **entry.describe({c.name: c for c in cards})}


def _alias_rows(cards: list[ModelCard]) -> list[dict[str, Any]]:
    """One row per alias whose tagger is there: what it stands for, and that tagger's labels."""
    by_name = {c.name: c for c in cards}
    return [
        {
            "name": alias,
            "arch": f"= {target}",
            "kind": "alias",
            "stands_for": target,
            "labels": list(by_name[target].labels),
            "source": {"kind": "bundled"},
        }  # fmt: skip
        for alias, target in ALIASES.items()
        if target in by_name
    ]


def _labels(cards: dict[str, ModelCard], names: list[str]) -> int:
    return sum(len(cards[m].labels) for m in names if m in cards)


# --- the built-in taggers -----------------------------------------------------------------------


def _ensemble(name: str, models: tuple[str, ...]) -> None:
    pair = list(models)

    def build(device: str) -> Tagger:
        from mgctag.models.tagger import EnsembleTagger

        return EnsembleTagger(device, name=name, models=pair)

    def describe(cards: dict[str, ModelCard]) -> dict[str, Any]:
        return {"arch": " + ".join(pair) + " on the mix", "kind": "ensemble", "models": pair,
                "outputs": _labels(cards, pair), "source": {"kind": "bundled"}}  # fmt: skip

    register_tagger(name, build, describe)


def _combined() -> None:
    def build(device: str) -> Tagger:
        from mgctag.models.audioset import CombinedTagger

        return CombinedTagger(device)

    def describe(cards: dict[str, ModelCard]) -> dict[str, Any]:
        models = [*MUSICNN_MODELS, AUDIOSET_MODEL]
        return {"arch": "musicnn (MSD + MTT) and EfficientAT mn04 (AudioSet) in one pass; "
                "genres: their mean; content gate: music / speech / other",
                "kind": "combined", "models": models, "outputs": _labels(cards, models),
                "selection": dict(zip(("max_genres", "min_confidence", "relative_floor"),
                                      selection(DEFAULT_TAGGER), strict=True)),
                "source": {"kind": "bundled"},
                "measured": "docs/models.md, 'Genres from musicnn and mn04'"}  # fmt: skip

    register_tagger(DEFAULT_TAGGER, build, describe)


def _register_builtins() -> None:
    _combined()
    _ensemble(MUSICNN_TAGGER, ENSEMBLES[MUSICNN_TAGGER])
    _ensemble("vgg", ENSEMBLES["vgg"])


_register_builtins()
