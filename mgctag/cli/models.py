"""The models group: list, show, use, remove. Parsing and printing only."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from mgctag import config
from mgctag.cli.common import JsonOption
from mgctag.cli.output import mark, out, print_json, shown
from mgctag.errors import UsageError

models_app = typer.Typer(help="Bundled and user-trained genre models.", no_args_is_help=True)


@models_app.command("list")
def models_list(json_out: JsonOption = False) -> None:
    """Every model mgctag can tag with (bundled, then yours)."""
    from mgctag.models.registry import list_models

    cards = list_models()
    default = config.default_model()
    builtin = _builtin_taggers({c.name: c for c in cards})
    if json_out:
        rows = [{**b, "default": b["name"] == default} for b in builtin]
        print_json(rows + [{**c.to_dict(), "default": c.name == default} for c in cards])
        return
    table = Table()
    for col in ("name", "arch", "source", "genres/tags", "default"):
        table.add_column(col)
    for b in builtin:
        table.add_row(
            shown(b["name"]),
            shown(b["arch"]),
            "bundled",
            str(b["outputs"]),
            mark(default == b["name"]),
        )
    for c in cards:
        kind = c.source.get("kind", "bundled") if isinstance(c.source, dict) else "bundled"
        table.add_row(
            shown(c.name), shown(c.arch), shown(kind), str(len(c.labels)), mark(c.name == default)
        )
    out.print(table)


def _builtin_taggers(cards: dict[str, Any]) -> list[dict[str, Any]]:
    """The taggers that are not one card: the musicnn pair, and musicnn blended with a student."""
    from mgctag.models.tagger import BLENDS, DEFAULT_TAGGER, MUSICNN_MODELS

    pair = list(MUSICNN_MODELS)
    rows = [{"name": DEFAULT_TAGGER, "arch": " + ".join(pair) + " on the mix",
             "kind": "ensemble", "models": pair,
             "outputs": sum(len(cards[m].labels) for m in pair),
             "source": {"kind": "bundled"}}]  # fmt: skip
    for name, (student, weight) in BLENDS.items():
        rows.append({"name": name, "arch": f"musicnn {weight:g} + {student} {1 - weight:g}",
                     "kind": "blend", "models": pair, "student": student, "musicnn_weight": weight,
                     "outputs": len(cards[student].labels),
                     "source": {"kind": "bundled"},
                     "measured": "docs/models.md, 'The default tagger, and why'"})  # fmt: skip
    return rows


@models_app.command("show")
def models_show(name: str) -> None:
    """A model's card: source, licence, labels, preprocessing, measured quality."""
    from mgctag.models.registry import list_models, resolve

    builtin = {b["name"]: b for b in _builtin_taggers({c.name: c for c in list_models()})}
    if name in builtin:
        print_json(builtin[name])
        return
    print_json(json.loads(resolve(name).with_suffix(".json").read_text("utf-8")))


@models_app.command("use")
def models_use(name: str) -> None:
    """Make NAME the model `mgctag tag` uses by default (musicnn: back to the bundled one)."""
    from mgctag.models.registry import resolve
    from mgctag.models.tagger import BLENDS, DEFAULT_TAGGER

    if name != DEFAULT_TAGGER and name not in BLENDS:
        resolve(name)
    config.set_default_model(name)
    out.print(f"mgctag tag now uses {shown(name)}")


@models_app.command("remove")
def models_remove(name: str) -> None:
    """Delete a user-trained model (bundled models cannot be removed)."""
    from mgctag.models.registry import resolve
    from mgctag.models.tagger import DEFAULT_TAGGER

    path = resolve(name)
    if config.user_models_dir() not in path.parents:
        raise UsageError("a bundled model; only your own models can be removed", name)
    for p in path.parent.glob(f"{path.stem}.*"):
        p.unlink()
    if config.default_model() == name:
        config.set_default_model(DEFAULT_TAGGER)
    out.print(f"removed {shown(name)}")
