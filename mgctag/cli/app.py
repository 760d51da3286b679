"""The `mgctag` application: builds the typer app from the command groups and runs it.

Every command module imports only typer, rich and light mgctag modules at the top; the heavy
ones (torch, the pipeline) are imported inside the commands, so `mgctag --help` and `mgctag runs`
start fast (tools/bench/startup.py measures it).
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

from mgctag import __version__
from mgctag.cli import common, library, output, search, segments, separate, settings, train
from mgctag.cli.explain import explain
from mgctag.cli.models import models_app
from mgctag.cli.output import err, shown
from mgctag.errors import MgctagError

app = typer.Typer(
    name="mgctag",
    help="Tag a local music library with genres by listening to it.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)


def _version(flag: bool) -> None:
    if flag:
        output.out.print(f"mgctag {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def main(
    db: Annotated[
        Path | None,
        typer.Option(
            "--db", envvar="MGCTAG_DB", help="SQLite database for every command (default: XDG)."
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also show library warnings as log lines.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bars: errors and summaries only.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Tag a local music library with genres by listening to it."""
    if verbose and quiet:
        raise typer.BadParameter("use -v or -q, not both", param_hint="-v/-q")
    common.state.db = db
    output.set_verbosity(1 if verbose else (-1 if quiet else 0))


for command in (library.scan, library.tag, library.info, library.runs, library.undo):
    app.command()(command)
app.command()(search.similar)
app.command()(search.dupes)
app.command()(search.playlist)
app.command()(separate.separate)
app.command()(segments.segments)
app.command()(train.labels)
app.command()(train.train)
app.command("eval")(train.evaluate)
app.add_typer(models_app, name="models")
app.command("config")(settings.config_command)
app.command("map")(search.map_command)
app.command()(explain)


class AsWrittenCommand(TyperCommand):
    """A command whose help shows what was written (see `plain_help`)."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _as_written(self)
        super().format_help(ctx, formatter)


class AsWrittenGroup(TyperGroup):
    """A group whose help, and its listing of commands, show what was written."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        for command in [self, *self.commands.values()]:
            _as_written(command)
        super().format_help(ctx, formatter)


def plain_help(typer_app: typer.Typer) -> None:
    """Help shows what was written: rich markup in a help text is escaped (`"mgctag[ray]"`
    stays as typed) and a docstring's paragraphs are reflowed to the terminal instead of keeping
    the source's line breaks (indented lines and lists keep theirs)."""
    typer_app.info.cls = AsWrittenGroup
    for info in typer_app.registered_commands:
        info.cls = AsWrittenCommand
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            plain_help(group.typer_instance)


def _as_written(command: Any) -> None:
    """Escape and reflow a command's help once (typer builds the command for each call)."""
    if getattr(command, "_as_written", False):
        return
    command._as_written = True
    command.help = _reflow(escape(inspect.cleandoc(command.help or "")))
    for param in command.params:
        if getattr(param, "help", None):
            param.help = escape(param.help)


def _reflow(text: str) -> str:
    """Join the lines of each paragraph, except paragraphs laid out by hand."""
    paragraphs = []
    for para in text.split("\n\n"):
        lines = para.split("\n")
        by_hand = any(ln.startswith((" ", "- ", "* ", "\b")) for ln in lines[1:])
        paragraphs.append(para if by_hand else " ".join(ln.strip() for ln in lines))
    return "\n\n".join(paragraphs)


plain_help(app)


def expected(exc: BaseException) -> bool:
    """An expected problem (told in one line), as opposed to a bug (keeps its traceback)."""
    return isinstance(exc, MgctagError)


def report(exc: BaseException) -> int:
    """Print an expected problem as one `error:` line; the exit status it ends the command with."""
    err.print(f"[red]error[/red]: {shown(exc)}", highlight=False)
    return int(getattr(exc, "exit_code", 2))


# Commands that decode audio: C decoders' own warnings (libmpg123) are kept off the terminal.
_DECODING = frozenset({"scan", "tag", "info", "separate", "train", "eval", "explain", "segments"})
# Help decodes nothing: it starts without the decoder (numpy, PyAV), as `mgctag --help` does.
_HELP = frozenset({"--help", "-h"})


def run(argv: list[str] | None = None) -> None:
    """The console script: an expected problem becomes one red line and its exit status."""
    words = set(sys.argv[1:])
    if argv is None and _DECODING & words and not _HELP & words:  # the console script's own argv
        from mgctag.audio.decode import filter_decoder_noise

        filter_decoder_noise()
    try:
        app(args=argv)
    except Exception as exc:
        if not expected(exc):
            raise
        sys.exit(report(exc))
