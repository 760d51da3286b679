"""The library database: one `Library` object over one SQLite file.

A thin façade: the connection and its plumbing live in connection.py, the schema and its
migrations in schema_migrations.py, and the queries by table in tracks.py, analyses.py, runs.py and
writes.py; rows leave as the frozen dataclasses of rows.py. Only the library package speaks SQL.
"""

from __future__ import annotations

from mgctag.library import schema_migrations
from mgctag.library.analyses import APPROXIMATE, Analyses
from mgctag.library.connection import (
    BUSY_TIMEOUT_S,
    JournalError,
    LibraryError,
    SchemaTooNewError,
)
from mgctag.library.rows import NotMusic, Run, StoredPrediction, Track, WriteEntry
from mgctag.library.runs import Runs
from mgctag.library.schema_migrations import SCHEMA_VERSION
from mgctag.library.tracks import TRACK_COLUMNS, TRACK_STATUSES, Tracks
from mgctag.library.writes import Writes

__all__ = [
    "APPROXIMATE",
    "BUSY_TIMEOUT_S",
    "SCHEMA_VERSION",
    "TRACK_COLUMNS",
    "TRACK_STATUSES",
    "JournalError",
    "Library",
    "LibraryError",
    "NotMusic",
    "Run",
    "SchemaTooNewError",
    "StoredPrediction",
    "Track",
    "WriteEntry",
]


class Library(Tracks, Analyses, Runs, Writes):
    """One mgctag library database. Use one per thread; any number of processes may share a file."""

    def _prepare(self) -> None:
        schema_migrations.migrate(self)

    @property
    def schema_version(self) -> int:
        return schema_migrations.schema_version(self)
