"""Options and helpers shared by the command groups: the database, track lookup, stopping."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mgctag import config
from mgctag.errors import UsageError
from mgctag.options import TAG, StopFlag

if TYPE_CHECKING:
    from mgctag.library.db import Library
    from mgctag.library.rows import Track

DbOption = Annotated[
    Path | None,
    typer.Option("--db", envvar="MGCTAG_DB", help="SQLite database (default: XDG data dir)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document for scripts.")]
PathsArg = Annotated[list[Path], typer.Argument(help="Files or folders.", exists=False)]


@dataclass
class Globals:
    """Options given before the command (`mgctag --db X tag ...`)."""

    db: Path | None = None


state = Globals()


def use_db(db: Path | None) -> None:
    """--db given after a command that does not open the library itself (config shows it; the
    others take it as every command does, so a script can pass it to any command)."""
    if db is not None:
        state.db = db


def require_existing(paths: Iterable[Path]) -> None:
    """A path named on the command line that is not there: the same one line and exit 2, before
    any work, for tag, scan, explain, segments and separate."""
    for path in paths:
        if not os.path.exists(path):
            raise UsageError(f"{os.path.abspath(path)}: no such file or folder")


def open_library(db: Path | None) -> Library:
    """The library at --db (after or before the command), else the default one (created if new).

    A path the user typed into a folder that does not exist is a typo, not a new library."""
    from mgctag.library.db import Library

    path = db or state.db
    if path is None:
        return Library(config.default_db_path())
    if not path.expanduser().parent.is_dir():
        raise UsageError("no such folder for the database (create it first)", path)
    return Library(path.expanduser())


def resolve_track(lib: Library, query: str) -> Track:
    """QUERY as a path, a track id, or text matching artist/title/path (exactly one track)."""
    if os.path.exists(query):
        track = lib.track_by_path(os.path.abspath(query))
        if track is None:
            raise UsageError("not in the library yet; run `mgctag tag` on it first", query)
        return track
    if query.isdigit() and (track := lib.get_track(int(query))):
        return track
    matches = lib.find_tracks(query, limit=6)
    if not matches:
        raise UsageError("no track matches (give a path, a track id, or artist/title text)", query)
    if len(matches) > 1:
        listed = "; ".join(f"{t.id} {track_label(t)}" for t in matches[:5])
        more = ", …" if len(matches) > 5 else ""
        raise UsageError(
            f"matches several tracks ({listed}{more}); give a track id or a path", query
        )
    return matches[0]


def track_label(track: Track) -> str:
    """`Artist — Title` from the tags, or the file name where the tags say nothing."""
    artist, title = track.artist, track.title
    if artist or title:
        return f"{artist or '?'} — {title or Path(track.path).stem}"
    return Path(track.path).name


class Interrupt:
    """Which stop signal arrived (Ctrl-C, SIGTERM, SIGHUP); `stop` is what the work loops check."""

    def __init__(self, stop: Any) -> None:
        self.stop = stop
        self.signum: int | None = None

    def exit_code(self, default: int) -> int:
        """128 + the signal's number, as a shell reports a process ended by it."""
        return 128 + self.signum if self.signum is not None else default


STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


@contextmanager
def interruptible(stop: Any = None) -> Iterator[Interrupt]:
    """Ctrl-C, SIGTERM and SIGHUP ask the work to stop after the current file instead of killing
    it mid-write; a second signal aborts (the journal rolls the current file back)."""
    state = Interrupt(stop if stop is not None else StopFlag())

    def handler(signum: int, frame: object) -> None:  # noqa: ARG001
        if state.stop:
            raise KeyboardInterrupt
        state.signum = signum
        state.stop.set()
        # A bare write: the signal may land inside an import, where printing through rich (which
        # may import) would deadlock on the import lock.
        name = signal.Signals(signum).name
        os.write(2, f"{name}: stopping after the current file… (again to abort)\n".encode())

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield state
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def given(ctx: typer.Context, *names: str) -> list[str]:
    """Which of the parameters `names` the user typed (or set in the environment)."""
    typed = ("COMMANDLINE", "ENVIRONMENT")  # typer may vendor click: compare by name
    return [n for n in names if getattr(ctx.get_parameter_source(n), "name", None) in typed]


def refuse(ctx: typer.Context, names: tuple[str, ...], why: str) -> None:
    """Options a mode would ignore are refused, never silently accepted."""
    unused = given(ctx, *names)
    if unused:
        flags = ", ".join("--" + n.replace("_", "-") for n in unused)
        raise UsageError(f"{flags}: {why}")


def check_device(device: str) -> str:
    """--device is checked when parsed, whatever else the command is asked to do."""
    return _check("device", device)


def check_separator(separator: str) -> str:
    return _check("separator", separator)


def _check(name: str, value: Any) -> Any:
    """A command's own option checked by the rules of the tag options table."""
    option = TAG[name]
    problem = option.problem(value, quoted=False)
    if problem is not None:
        raise typer.BadParameter(problem, param_hint=option.flag)
    return value
