"""What tests read straight from a library's SQLite file: facts mgctag itself never asks for
(failures are written for the record, counts by status only checked), read on a connection of
their own so the library under test is not involved."""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from mgctag.library.db import Library


def _query(lib: Library, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
    conn = sqlite3.connect(lib.path)
    try:
        cursor = conn.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
    finally:
        conn.close()


def failures(lib: Library, run_id: int) -> list[dict[str, Any]]:
    """The failures a run recorded, in order (paths as str)."""
    rows = _query(lib, "SELECT * FROM failures WHERE run_id = ? ORDER BY id", (run_id,))
    return [{**r, "path": os.fsdecode(r["path"])} for r in rows]


def status_counts(lib: Library) -> dict[str, int]:
    """Number of tracks per status."""
    rows = _query(lib, "SELECT status, count(*) AS n FROM tracks GROUP BY status")
    return {r["status"]: r["n"] for r in rows}


def last_run_id(lib: Library, command: str | None = None) -> int | None:
    """The newest run (of `command`, when given)."""
    if command is None:
        return _query(lib, "SELECT max(id) AS id FROM runs")[0]["id"]
    return _query(lib, "SELECT max(id) AS id FROM runs WHERE command = ?", (command,))[0]["id"]
