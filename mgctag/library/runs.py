"""The library's runs: each command run, its status and counts, and the files it failed on."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from mgctag.library.connection import Store
from mgctag.library.rows import Run, db_path, dumps, now


class Runs(Store):
    """Queries on the runs and failures tables (mixed into `Library`)."""

    def start_run(self, command: str, args: Any = None) -> int:
        with self.transaction():
            return self._exec(
                "INSERT INTO runs (command, args, started_at, status) VALUES (?, ?, ?, 'running')"
                " RETURNING id",
                [command, dumps(args), now()],
            ).fetchone()[0]

    def finish_run(self, run_id: int, status: str, counts: Mapping[str, Any] | None = None) -> None:
        with self.transaction():
            self._exec(
                "UPDATE runs SET finished_at = ?, status = ?, counts = ? WHERE id = ?",
                [now(), status, dumps(counts), run_id],
            )

    def get_run(self, run_id: int) -> Run | None:
        return self._one(Run, "SELECT * FROM runs WHERE id = ?", [run_id])

    def list_runs(self, limit: int | None = None) -> list[Run]:
        """Runs, newest first."""
        return self._rows(
            Run, "SELECT * FROM runs ORDER BY id DESC LIMIT ?", [-1 if limit is None else limit]
        )

    def record_failure(
        self,
        run_id: int | None,
        path: str | os.PathLike,
        stage: str,
        reason: str,
        *,
        track_id: int | None = None,
    ) -> int:
        with self.transaction():
            return self._exec(
                "INSERT INTO failures (run_id, track_id, path, stage, reason, at)"
                " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                [run_id, track_id, db_path(path), stage, reason, now()],
            ).fetchone()[0]
