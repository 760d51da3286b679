"""Everything the CLI prints goes through here: two consoles, one escape for untrusted text, JSON.

File names and tag values come from strangers' files: they may hold rich markup (`[/x]` crashes
rich, `[link=...]` forges a hyperlink), terminal escape sequences or newlines that forge extra
`error:` lines. `shown()` is the one helper that makes such text safe to print.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress

from mgctag.options import Progress

if TYPE_CHECKING:
    from rich.table import Table

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
verbosity = 0  # -1 quiet (-q), 0 normal, 1 verbose (-v); set once per command by the app

# C0 controls (newline and tab included), DEL and C1 controls (0x9b is a one-byte CSI).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\e"}


def visible(text: object) -> str:
    """`text` on one line with control characters and undecodable bytes shown as escapes."""
    s = str(text).encode("utf-8", "backslashreplace").decode("utf-8")
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}"), s)


def shown(text: object) -> str:
    """Untrusted text (a path, a tag, a reason) ready to put into a rich markup string."""
    return escape(visible(text))


def error(text: str, path: object = None) -> None:
    """One `error:` line on stderr; `text` and `path` are untrusted and escaped here."""
    where = f"{shown(path)}: " if path is not None else ""
    err.print(f"[red]error[/red]: {where}{shown(text)}", highlight=False)


def warning(text: str) -> None:
    err.print(f"[yellow]warning[/yellow]: {shown(text)}", highlight=False)


# Width a table may take when stdout is not a terminal: its rows are never wrapped (a script or
# `grep` sees each path whole); the table itself is only as wide as its widest row.
PIPED_WIDTH = 10_000


def print_table(table: Table) -> None:
    """A table: on a terminal it fits the window; piped, every row stays on one line."""
    if out.is_terminal:
        out.print(table)
    else:  # rich caps a print's width at the console's (80 on a pipe): a console of its own
        Console(file=out.file, width=PIPED_WIDTH, soft_wrap=True).print(table)


def print_failures(failures: list[tuple[str, str]]) -> None:
    for path, reason in failures:
        error(reason, path)


def print_json(data: object) -> None:
    """The one JSON document a command prints for scripts (valid JSON, no NaN, no raw controls)."""
    from mgctag.jsonable import dumps_json

    text = dumps_json(data, indent=2)
    # a non-UTF-8 file name holds lone surrogates: `\udcff` is also how JSON escapes them
    sys.stdout.write(text.encode("utf-8", "backslashreplace").decode("utf-8") + "\n")


class _ConsoleLog(logging.Handler):
    """Log records as escaped lines on stderr (library warnings arrive as records too)."""

    def emit(self, record: logging.LogRecord) -> None:
        err.print(f"[dim]{record.levelname.lower()}[/dim]: {shown(self.format(record))}")


def set_verbosity(level: int) -> None:
    """-v shows library warnings and details as log lines; by default they stay off the terminal."""
    global verbosity
    verbosity = level
    logging.captureWarnings(False)  # re-hook even if something replaced warnings.showwarning since
    logging.captureWarnings(True)
    root = logging.getLogger()
    for h in [h for h in root.handlers if isinstance(h, _ConsoleLog)]:
        root.removeHandler(h)
    handler = _ConsoleLog()
    handler.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if level > 0 else logging.ERROR)
    for noisy in ("numba", "matplotlib", "PIL", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def progress_enabled(json_out: bool = False) -> bool:
    """A progress bar only on a terminal, and not for --json or -q."""
    return err.is_terminal and not json_out and verbosity >= 0


def mark(flag: bool) -> str:
    return "✓" if flag else ""


#: The ETA comes from the speed over this many seconds: long enough that a slow file (a model
#: batch, a long decode) does not make it jump, short enough to follow a real change of pace.
SPEED_WINDOW_S = 120.0


class CliProgress(Progress):
    """A rich progress bar with ETA, one task per pipeline stage; silent when not a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.bar = RichProgress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err,
            disable=not enabled,
            transient=False,
            speed_estimate_period=SPEED_WINDOW_S,
        )
        self.task: Any = None

    def stage(self, name: str, total: int) -> None:
        """A new bar per stage; the same stage named again (the CLI starts "loading models" before
        importing torch, the pipeline names it too) keeps its bar."""
        if self.task is not None and self.bar.tasks[self.task].description == shown(name):
            self.bar.update(self.task, total=total)
            return
        if self.task is not None:
            self.bar.update(self.task, completed=self.bar.tasks[self.task].total)
        self.task = self.bar.add_task(shown(name), total=total)

    def advance(self, n: int = 1) -> None:
        if self.task is not None:
            self.bar.advance(self.task, n)

    def message(self, text: str) -> None:
        self.bar.console.print(shown(text), highlight=False)
