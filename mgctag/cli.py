"""The mgctag command line: parsing and printing only; the work happens in pipeline and friends."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="mgctag",
    help="Tag a local music library with genres by listening to it.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """Tag a local music library with genres by listening to it."""
