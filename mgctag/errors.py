"""The one error contract of mgctag.

Every problem a user can cause or meet (a bad file, a bad option, a broken config) is raised as a
subclass of `MgctagError`. The CLI catches this one class and prints one line; anything else is
a bug and keeps its traceback. `exit_code` says what the process exits with when the error ends a
command: 1 for a per-file failure (the run goes on), 2 for a usage or config problem.

This module imports nothing from mgctag and nothing heavy, so every layer can use it.
"""

from __future__ import annotations

import os
from pathlib import Path


class MgctagError(Exception):
    """An expected problem, told to the user as one line: `PATH: reason` or just `reason`."""

    exit_code: int = 1

    def __init__(self, reason: str, path: str | os.PathLike[str] | None = None) -> None:
        self.reason = one_line(reason)
        self.path = Path(path) if path is not None else None
        super().__init__(f"{self.path}: {self.reason}" if self.path is not None else self.reason)


class UsageError(MgctagError):
    """A bad option, argument or setting: nothing was done (exit 2)."""

    exit_code = 2


class ConfigError(UsageError):
    """A malformed config.toml, genres.json or environment variable (exit 2)."""


def one_line(text: str) -> str:
    """Collapse a message to one line (a reason must never forge extra output lines)."""
    return " ".join(str(text).split()) or "unknown error"


def reason_of(exc: BaseException) -> str:
    """Any exception as one line for the user; OSError without its repeated file name."""
    if isinstance(exc, MgctagError):
        return exc.reason
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, UnicodeError):
        return "the file name or a text field is not valid UTF-8"
    return one_line(str(getattr(exc, "reason", None) or exc)) if str(exc) else type(exc).__name__
