"""What the tag modules share: the errors and the result types."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from mgctag.errors import MgctagError


class TagError(MgctagError):
    """A tag could not be read or written; one line naming the file and why."""

    def __init__(self, reason: str, path: str | os.PathLike[str] | None = None) -> None:
        super().__init__(reason, path)


class TagReadError(TagError):
    """The file is missing, not audio, or its tags cannot be parsed."""


class TagWriteError(TagError):
    """Genres were not written; the file is exactly as it was."""


@dataclass(frozen=True)
class FileTags:
    """The tags mgctag cares about, normalised across formats."""

    path: Path
    family: str  # tag family the values came from: "id3", "vorbis", "mp4", "asf", "ape"
    artist: str | None
    album: str | None
    title: str | None
    genres: list[str] = field(default_factory=list)
    writable: bool = False  # write_genres would be attempted (format supported, file writable)


@dataclass(frozen=True)
class WriteResult:
    """What write_genres did, with what the journal needs to notice later edits."""

    path: Path
    old: list[str]
    new: list[str]
    changed: bool  # False when the file already held exactly these genres (it was not touched)
    size_after: int
    mtime_after: float
    method: str = ""  # "in place" (same size, patched) or "replaced" (a new copy renamed over)
