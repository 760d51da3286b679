"""The models group: list, show, use, remove. Parsing and printing only."""

from __future__ import annotations

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
    from mgctag.models.catalog import catalog

    rows = catalog()
    default = config.default_model()
    if json_out:
        print_json([{**row, "default": row["name"] == default} for row in rows])
        return
    table = Table()
    for col in ("name", "arch", "source", "genres/tags", "default"):
        table.add_column(col)
    for row in rows:
        source = row.get("source")
        kind = source.get("kind", "bundled") if isinstance(source, dict) else "bundled"
        count = row["outputs"] if "models" in row else len(row.get("labels") or [])
        table.add_row(
            shown(row["name"]),
            shown(str(row["arch"])),
            shown(kind),
            str(count),
            mark(row["name"] == default),
        )
    out.print(table)


@models_app.command("show")
def models_show(name: str) -> None:
    """A model's card: source, licence, labels, preprocessing, measured quality."""
    from mgctag.models.catalog import describe

    print_json(describe(name))


@models_app.command("use")
def models_use(name: str) -> None:
    """Make NAME the model `mgctag tag` uses by default (musicnn: back to the bundled one)."""
    from mgctag.models.catalog import check_tagger

    check_tagger(name)
    config.set_default_model(name)
    out.print(f"mgctag tag now uses {shown(name)}")


@models_app.command("remove")
def models_remove(name: str) -> None:
    """Delete a user-trained model (bundled models cannot be removed)."""
    from mgctag.models.registry import resolve
    from mgctag.options import DEFAULT_TAGGER

    path = resolve(name)
    if config.user_models_dir() not in path.parents:
        raise UsageError("a bundled model; only your own models can be removed", name)
    for p in path.parent.glob(f"{path.stem}.*"):
        p.unlink()
    if config.default_model() == name:
        config.set_default_model(DEFAULT_TAGGER)
    out.print(f"removed {shown(name)}")
