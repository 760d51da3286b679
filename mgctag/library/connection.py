"""The connection to a library database: opening it safely, transactions, and the SQL plumbing
every part of the library shares (mgctag/library/{tracks,analyses,runs,writes}.py).

Only the library package speaks SQL. Every value reaches SQLite as a bound parameter; the only
names ever put into SQL text are column names checked against the schema, never anything read
from a file.

Two mgctag processes may share one database: it runs in WAL mode with a busy timeout, and every
write opens with ``BEGIN IMMEDIATE`` so a writer waits for the lock up front instead of failing
half-way ("database is locked") when another process committed in between.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from mgctag.errors import MgctagError, reason_of
from mgctag.library.rows import Row, scalar_param

BUSY_TIMEOUT_S = 30.0
MMAP_BYTES = 512 << 20
_SQLITE_MAGIC = b"SQLite format 3\x00"
R = TypeVar("R", bound=Row)
S = TypeVar("S", bound="Store")


class LibraryError(MgctagError):
    """The database cannot be used (not a library, unreadable, corrupt, full); one line why."""

    exit_code = 2


class JournalError(LibraryError):
    """The write journal cannot be written (database deleted, replaced or full): no file may be
    written without it, so a run stops before its next write."""


class SchemaTooNewError(LibraryError):
    """The database was written by a newer mgctag; opening it here could damage it."""


class Store:
    """An open library database and its plumbing; `Library` adds the queries. One per thread."""

    def __init__(self, path: Path | str, *, timeout: float = BUSY_TIMEOUT_S) -> None:
        self.path = Path(path).expanduser()
        try:
            _check_before_open(self.path, timeout)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise LibraryError(
                f"cannot open the library database: {reason_of(exc)}", self.path
            ) from exc
        self.db = sqlite_utils.Database(conn)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            conn.execute("PRAGMA foreign_keys = ON")
            if _set_wal(conn, timeout) != "wal":
                raise LibraryError("SQLite cannot use WAL mode on this file system", self.path)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")  # embedding loads read pages in place
            self._prepare()
            self._identity = _file_identity(self.path)
        except sqlite3.DatabaseError as exc:  # locked past the timeout, read-only, disk full
            conn.close()
            raise LibraryError(
                _problem(exc, self.path, "cannot open the library"), self.path
            ) from exc
        except LibraryError:
            conn.close()
            raise

    # -- plumbing --

    def close(self) -> None:
        self.db.close()

    def check_journal(self) -> None:
        """JournalError unless the database file is still the one opened (not deleted, moved or
        replaced): SQLite would go on writing into a deleted file, and no journal is no undo."""
        try:
            same = _file_identity(self.path) == self._identity
        except OSError:
            same = False
        if not same:
            raise JournalError(
                "the library database was deleted or replaced during the run; stopping before"
                " the next tag write (no journal, no undo)",
                self.path,
            )

    def __enter__(self: S) -> S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction, taking the write lock up front; nests as a savepoint."""
        conn = self.db.conn
        if conn.in_transaction:
            with self.db.atomic():
                yield
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise LibraryError(_problem(exc, self.path), self.path) from exc
        try:
            yield
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError):  # disk full, I/O error, read-only
                raise LibraryError(_problem(exc, self.path), self.path) from exc
            raise

    def _prepare(self) -> None:
        """Bring the opened database up to date (the façade migrates it)."""

    def _exec(self, sql: str, params: Sequence = ()) -> sqlite3.Cursor:
        """Run one statement; numpy scalars are bound as numbers (sqlite3 would bind a blob)."""
        return self.db.conn.execute(sql, [scalar_param(p) for p in params])

    def _rows(self, cls: type[R], sql: str, params: Sequence = ()) -> list[R]:
        cursor = self._exec(sql, params)
        return [cls.from_sql(cursor, values) for values in cursor.fetchall()]

    def _one(self, cls: type[R], sql: str, params: Sequence = ()) -> R | None:
        rows = self._rows(cls, sql, params)
        return rows[0] if rows else None

    def _scalar(self, sql: str, params: Sequence = ()) -> Any:
        row = self._exec(sql, params).fetchone()
        return row[0] if row else None


def _file_identity(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino)


def _check_before_open(path: Path, timeout: float) -> None:
    """Refuse, touching nothing, what is not (or cannot become) an mgctag library.

    Opening switches the database to WAL mode, which rewrites its header: another
    application's SQLite file must be recognised first, read-only. A device, FIFO or folder
    (``MGCTAG_DB=/dev/null``) is refused before SQLite creates a ``-journal`` beside it.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return  # a new library
    if not stat.S_ISREG(st.st_mode):
        raise LibraryError("not a regular file; the library database must be one", path)
    if _hot_journal(path):
        # A process was killed mid-transaction (while creating the library, say): only a
        # read-write connection may roll its journal back, and SQLite does so when it first
        # reads. Then the file is what it was before that transaction, and is checked as such.
        try:
            _roll_back_hot_journal(path, timeout)
            st = os.stat(path)
        except (OSError, sqlite3.DatabaseError) as exc:
            raise LibraryError(_problem(exc, path, "cannot recover the library"), path) from exc
    if st.st_size == 0:
        return
    with open(path, "rb") as fh:
        if fh.read(16) != _SQLITE_MAGIC:
            raise LibraryError("not an SQLite database (so not an mgctag library)", path)
    try:
        names, version = _read_only_look(path, timeout)
    except sqlite3.DatabaseError as exc:
        raise LibraryError(_problem(exc, path, "not a usable mgctag library"), path) from exc
    if names and version is None:
        raise LibraryError("an SQLite database, but not an mgctag library", path)


def _read_only_look(path: Path, timeout: float) -> tuple[set[str], Any]:
    """The database's table names and stored schema_version, read without writing anything."""
    uri = Path(os.path.abspath(path)).as_uri() + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
    try:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        version = None
        if "meta" in names:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = row[0] if row else None
        return names, version
    finally:
        conn.close()


_JOURNAL_MAGIC = bytes.fromhex("d9d505f920a163d7")  # the header of a live rollback journal


def _hot_journal(path: Path) -> bool:
    try:
        with open(f"{path}-journal", "rb") as fh:
            return fh.read(8) == _JOURNAL_MAGIC
    except OSError:
        return False


def _roll_back_hot_journal(path: Path, timeout: float) -> None:
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    finally:
        conn.close()


#: Below this many free bytes on the database's file system, an SQLite I/O error is a full disk.
LOW_SPACE = 1 << 20


def _problem(exc: Exception, path: Path, context: str = "cannot write to the library") -> str:
    """An SQLite error as what the user can do about it: a full disk and another process's lock
    are named as such (not as an unusable library)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc)
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        return "locked by another process (waited for it); try again when it has finished"
    free = _free_bytes(path)
    if name == "SQLITE_FULL" or (name.startswith("SQLITE_IOERR") and free < LOW_SPACE):
        return f"disk full ({free // 1024} KB free where the database is); free some space"
    if name.startswith("SQLITE_READONLY") or "readonly" in text:
        return "cannot write to it (the file or its folder is read-only)"
    return f"{context}: {text}"


def _free_bytes(path: Path) -> int:
    try:
        st = os.statvfs(path.parent if not path.is_dir() else path)
    except OSError:
        return LOW_SPACE
    return st.f_bavail * st.f_frsize


def _set_wal(conn: sqlite3.Connection, timeout: float) -> str:
    """Switch to WAL, waiting out other processes' locks.

    Changing the journal mode needs an exclusive lock, and SQLite answers "database is locked"
    at once (without its busy handler) while another process opening the same new file holds
    one, so the wait is ours.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return conn.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
