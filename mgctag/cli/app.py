"""The `mgctag` application: builds the typer app from the command groups and runs it.

Every command module imports only typer, rich and light mgctag modules at the top; the heavy
ones (torch, the pipeline) are imported inside the commands, so `mgctag --help` and `mgctag runs`
start fast.
"""

from __future__ import annotations

import sys

import typer

from mgctag.cli import library, search, separate, train
from mgctag.cli.models import models_app
from mgctag.cli.output import err, shown
from mgctag.errors import MgctagError

app = typer.Typer(
    name="mgctag",
    help="Tag a local music library with genres by listening to it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def main() -> None:
    """Tag a local music library with genres by listening to it."""


for command in (library.scan, library.tag, library.info, library.runs, library.undo):
    app.command()(command)
app.command()(search.similar)
app.command()(separate.separate)
app.command()(train.labels)
app.command()(train.train)
app.command("eval")(train.evaluate)
app.add_typer(models_app, name="models")
app.command("map")(search.map_command)


def _expected(exc: Exception) -> bool:
    """An expected problem: MgctagError, or a module error not yet moved onto it."""
    if isinstance(exc, MgctagError):
        return True
    from mgctag.library.db import LibraryError
    from mgctag.library.scan import ScanError
    from mgctag.models.registry import ModelError

    return isinstance(exc, (LibraryError, ScanError, ModelError))


def run() -> None:
    """The console script: an expected problem becomes one red line and its exit status."""
    try:
        app()
    except Exception as exc:
        if not _expected(exc):
            raise
        err.print(f"[red]error[/red]: {shown(exc)}", highlight=False)
        sys.exit(getattr(exc, "exit_code", 2))
