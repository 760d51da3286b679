"""One recorded run: every command that may change files (tag, the beets plugin, undo) starts,
settles and finishes its run here, so a run's status means the same whoever made it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from mgctag.errors import one_line
from mgctag.library.db import Library
from mgctag.options import Summary
from mgctag.writes.journal import settle_pending


class Outcome(Protocol):
    """What a run reports when it finishes: its counts and whether it was stopped."""

    interrupted: bool

    def counts(self) -> Mapping[str, Any]: ...

    def done_and_failed(self) -> tuple[int, int]: ...


@dataclass
class Restores:
    """The outcome of an undo run that counts as it goes (the beets plugin's)."""

    restored: int = 0
    failed: int = 0
    interrupted: bool = False

    def counts(self) -> dict[str, int]:
        return {"restored": self.restored, "failed": self.failed}

    def done_and_failed(self) -> tuple[int, int]:
        return self.restored + self.failed, self.failed


def run_status(outcome: Outcome) -> str:
    """The one status rule: interrupted (stopped by Ctrl-C), ok (nothing failed), partial (some
    files failed, others were done) or failed (every file failed)."""
    if outcome.interrupted:
        return "interrupted"
    total, failed = outcome.done_and_failed()
    if not failed:
        return "ok"
    return "partial" if total > failed else "failed"


@contextmanager
def recorded_run(
    lib: Library, command: str, args: Any, outcome: Outcome, *, settle: bool = True
) -> Iterator[int]:
    """Start a run (yielding its id), settle the writes a killed run left pending
    (`settle`: not in a dry run, which changes nothing), and finish it however the block ends:
    interrupted by a second Ctrl-C, failed by an exception, else by `run_status`."""
    run_id = lib.start_run(command, args)
    try:
        if settle:  # before anything reads the files a killed run was writing
            settle_pending(lib)
        yield run_id
    except KeyboardInterrupt:  # the journal rolls the file being written back
        lib.finish_run(run_id, "interrupted", outcome.counts())
        raise
    except BaseException:
        lib.finish_run(run_id, "failed", outcome.counts())
        raise
    lib.finish_run(run_id, run_status(outcome), outcome.counts())


def record_failure(
    lib: Library,
    summary: Summary,
    path: str,
    stage: str,
    reason: str,
    error_type: str | None = None,
) -> None:
    """One track's failure: counted, listed, and recorded (with the exception class, if any)."""
    reason = one_line(reason)
    summary.fail(path, reason, error_type)
    stored = f"{reason} [{error_type}]" if error_type else reason
    lib.record_failure(summary.run_id, path, stage, stored)
