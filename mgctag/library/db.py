"""The library database: schema, versioned migrations and every query mgctag runs.

Only this module speaks SQL. Every value reaches SQLite as a bound parameter; the only names ever
put into SQL text are column names checked against the schema, never anything read from a file.

Two mgctag processes may share one database: it runs in WAL mode with a busy timeout, and every
write opens with ``BEGIN IMMEDIATE`` so a writer waits for the lock up front instead of failing
half-way ("database is locked") when another process committed in between.

Paths are stored as TEXT when they are valid UTF-8 and as a BLOB of the raw bytes when they are not
(a file named in Latin-1 on Linux), so every path round-trips exactly to the ``str`` that
``os.fsdecode`` gives and the file can be opened again.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import stat
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils

from mgctag.errors import MgctagError, reason_of
from mgctag.export import to_jsonable

BUSY_TIMEOUT_S = 30.0
MMAP_BYTES = 512 << 20
TRACK_STATUSES = ("ok", "failed", "removed")
_PAGE = 500  # rows per query when iterating, so no statement stays open across a yield


class LibraryError(MgctagError):
    """The database cannot be used (not a library, unreadable, corrupt, full); one line why."""

    exit_code = 2


class JournalError(LibraryError):
    """The write journal cannot be written (database deleted, replaced or full): no file may be
    written without it, so a run stops before its next write."""


class SchemaTooNewError(LibraryError):
    """The database was written by a newer mgctag; opening it here could damage it."""


# --- migrations -------------------------------------------------------------------------------
# Each function takes the schema from version i to i+1 inside one transaction. Never edit one that
# has shipped: add a new one at the end.


def _v1_initial(db: sqlite_utils.Database) -> None:
    """The schema of docs/ARCHITECTURE.md as first published."""
    for sql in (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)",
        """CREATE TABLE tracks (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL UNIQUE,
            size INTEGER,
            mtime INTEGER,
            duration REAL,
            format TEXT,
            codec TEXT,
            sample_rate INTEGER,
            channels INTEGER,
            artist TEXT,
            album TEXT,
            title TEXT,
            genres TEXT,
            status TEXT NOT NULL DEFAULT 'ok',
            error TEXT,
            scanned_at TEXT,
            analyzed_at TEXT,
            analysis_key TEXT)""",
        """CREATE TABLE predictions (
            track_id INTEGER NOT NULL REFERENCES tracks(id) ON DELETE CASCADE,
            model TEXT NOT NULL,
            separator TEXT,
            tags TEXT,
            genres TEXT,
            created_at TEXT,
            PRIMARY KEY (track_id, model))""",
        """CREATE TABLE embeddings (
            track_id INTEGER NOT NULL REFERENCES tracks(id) ON DELETE CASCADE,
            model TEXT NOT NULL,
            stem TEXT NOT NULL,
            separator TEXT,
            dim INTEGER NOT NULL,
            vector BLOB NOT NULL,
            PRIMARY KEY (track_id, model, stem))""",
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            command TEXT NOT NULL,
            args TEXT,
            started_at TEXT,
            finished_at TEXT,
            status TEXT,
            counts TEXT)""",
        """CREATE TABLE writes (
            id INTEGER PRIMARY KEY,
            run_id INTEGER REFERENCES runs(id),
            track_id INTEGER REFERENCES tracks(id) ON DELETE SET NULL,
            path TEXT NOT NULL,
            old TEXT,
            new TEXT,
            written_at TEXT,
            size_after INTEGER,
            mtime_after INTEGER,
            undone_at TEXT)""",
        """CREATE TABLE failures (
            id INTEGER PRIMARY KEY,
            run_id INTEGER REFERENCES runs(id),
            path TEXT NOT NULL,
            stage TEXT,
            reason TEXT,
            at TEXT)""",
    ):
        db.execute(sql)


def _v2_keys_and_indexes(db: sqlite_utils.Database) -> None:
    """Per-model analysis keys, failure→track links, the journal's audio hash, lookup indexes.

    v1 kept one analysis key per track, so analysing with a second model hid that the first model's
    result was stale; the key now lives on each prediction (seeded from the track's).
    """
    db.table("predictions").add_column("analysis_key", str)
    db.execute(
        "UPDATE predictions SET analysis_key ="
        " (SELECT analysis_key FROM tracks WHERE tracks.id = predictions.track_id)"
    )
    db.execute(
        "ALTER TABLE failures ADD COLUMN track_id INTEGER REFERENCES tracks(id) ON DELETE SET NULL"
    )
    db.table("writes").add_column("payload_hash", str)
    db.table("tracks").create_index(["status"], index_name="tracks_status")
    db.table("predictions").create_index(["model"], index_name="predictions_model")
    db.table("embeddings").create_index(["model", "stem"], index_name="embeddings_model_stem")
    db.table("writes").create_index(["run_id"], index_name="writes_run")
    db.table("writes").create_index(["track_id"], index_name="writes_track")
    db.table("failures").create_index(["run_id"], index_name="failures_run")


def _v3_write_ahead(db: sqlite_utils.Database) -> None:
    """Write-ahead journal: a write is recorded as pending before the file is touched.

    A SIGKILL between the rename and the journal insert used to leave a changed file with no entry
    (undo could not restore it). `state` is 'pending' until the write is confirmed ('done') or known
    not to have happened ('failed'); `reverts` links an undo's own write to the write it reverts.
    Rows journaled before v3 were all done.
    """
    db.execute("ALTER TABLE writes ADD COLUMN state TEXT NOT NULL DEFAULT 'done'")
    db.execute("ALTER TABLE writes ADD COLUMN reverts INTEGER REFERENCES writes(id)")
    db.execute("CREATE INDEX writes_pending ON writes(state) WHERE state = 'pending'")


def _v4_content(db: sqlite_utils.Database) -> None:
    """What an analysis heard: the track's content class and each window's decision.

    `content` is 'music', 'speech' or 'other' (mgctag/content.py); `windows` a JSON list of
    {offset, content, music, speech} per analysed window. NULL for analyses without the gate.
    """
    db.execute("ALTER TABLE predictions ADD COLUMN content TEXT")
    db.execute("ALTER TABLE predictions ADD COLUMN windows TEXT")


def _v5_exact_undo(db: sqlite_utils.Database) -> None:
    """What undo needs to put back the very bytes a write replaced.

    `raw` is the genre as it was stored (JSON: raw ID3 frames, Vorbis comments, APEv2 items,
    the ID3v1 genre byte, base64), `method` how the file was changed ('in place' or 'replaced'),
    `backup` the original bytes of each range an in-place write changed (to roll back a write a
    crash tore).
    """
    db.execute("ALTER TABLE writes ADD COLUMN raw TEXT")
    db.execute("ALTER TABLE writes ADD COLUMN method TEXT")
    db.execute("ALTER TABLE writes ADD COLUMN backup TEXT")


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [
    _v1_initial,
    _v2_keys_and_indexes,
    _v3_write_ahead,
    _v4_content,
    _v5_exact_undo,
]
SCHEMA_VERSION = len(MIGRATIONS)

TRACK_COLUMNS = frozenset(
    ("path", "size", "mtime", "duration", "format", "codec", "sample_rate", "channels", "artist")
    + ("album", "title", "genres", "status", "error", "scanned_at", "analyzed_at", "analysis_key")
)
_JSON_COLUMNS = ("genres", "tags", "args", "counts", "old", "new", "windows", "raw", "backup")
_SQLITE_MAGIC = b"SQLite format 3\x00"


# --- value conversions ------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _db_path(path: str | os.PathLike) -> str | bytes:
    """A path as SQLite keeps it: TEXT when it is valid UTF-8, else its raw bytes as a BLOB."""
    text = os.fsdecode(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(text)
    return text


def _py_path(value: str | bytes) -> str:
    return os.fsdecode(value) if isinstance(value, bytes) else value


APPROXIMATE = ":approximate"  # suffix of an approximate result's analysis key (save_analysis)


def _key(size: int | None, mtime: int | None) -> str:
    """What a file looked like when analysed; a different key means the audio may have changed."""
    return f"{size}:{mtime}"


def _scalar_param(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _dumps(value: Any) -> str | None:
    """JSON text for a column. Text holding lone surrogates (a non-UTF-8 file name or argument,
    as Python decodes it) cannot be stored as UTF-8: it is kept as `\\udcXX` escapes instead,
    which `json.loads` turns back into the same string (and os.fsencode into the same bytes)."""
    if value is None:
        return None
    text = json.dumps(to_jsonable(value), ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(to_jsonable(value), ensure_ascii=True)
    return text


def _row(cursor: sqlite3.Cursor, values: tuple) -> dict[str, Any]:
    """A result row as a dict with paths as str and JSON columns decoded."""
    row = {d[0]: v for d, v in zip(cursor.description, values, strict=True)}
    for col in _JSON_COLUMNS:
        if isinstance(row.get(col), str):
            with suppress(ValueError):  # a damaged value is shown as it is, never a crash
                row[col] = json.loads(row[col])
    if "path" in row and row["path"] is not None:
        row["path"] = _py_path(row["path"])
    return row


def _under(roots: Iterable[str | os.PathLike] | None, column: str = "path") -> tuple[str, list]:
    """A WHERE clause selecting paths equal to or below any of the roots (an index range scan).

    Paths below ``/a/b`` sort between ``/a/b/`` and ``/a/b0`` ('0' follows '/'), for TEXT and for
    BLOB paths alike; no LIKE, so '%' or '_' in a folder name match only themselves.
    """
    if roots is None:
        return "1", []
    clauses, params = [], []
    for root in roots:
        text = os.path.abspath(os.fsdecode(root))
        for value in {_db_path(text), os.fsencode(text)}:
            sep: Any  # the same type as value (str or bytes)
            nxt: Any
            sep, nxt = (b"/", b"0") if isinstance(value, bytes) else ("/", "0")
            prefix = value if value.endswith(sep) else value + sep
            clauses.append(f"({column} = ? OR ({column} >= ? AND {column} < ?))")
            params += [value, prefix, prefix[:-1] + nxt]
    return ("(" + " OR ".join(clauses) + ")" if clauses else "0"), params


def _like(text: str) -> list[str]:
    """LIKE patterns for free text in both Unicode normal forms (macOS file names are NFD)."""
    forms = {unicodedata.normalize("NFC", text), unicodedata.normalize("NFD", text)}
    escaped = (f.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") for f in forms)
    return [f"%{e}%" for e in sorted(escaped)]


# --- the library ------------------------------------------------------------------------------


class Library:
    """One mgctag library database. Use one per thread; any number of processes may share a file."""

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
            self._migrate()
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

    def __enter__(self) -> Library:
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

    def _exec(self, sql: str, params: Sequence = ()) -> sqlite3.Cursor:
        """Run one statement; numpy scalars are bound as numbers (sqlite3 would bind a blob)."""
        return self.db.conn.execute(sql, [_scalar_param(p) for p in params])

    def _rows(self, sql: str, params: Sequence = ()) -> list[dict[str, Any]]:
        cursor = self._exec(sql, params)
        return [_row(cursor, values) for values in cursor.fetchall()]

    def _one(self, sql: str, params: Sequence = ()) -> dict[str, Any] | None:
        rows = self._rows(sql, params)
        return rows[0] if rows else None

    def _scalar(self, sql: str, params: Sequence = ()) -> Any:
        row = self._exec(sql, params).fetchone()
        return row[0] if row else None

    @property
    def schema_version(self) -> int:
        if not self.db["meta"].exists():
            return 0
        value = self._scalar("SELECT value FROM meta WHERE key = 'schema_version'")
        try:
            return int(value or 0)
        except (TypeError, ValueError):
            raise LibraryError(
                f"damaged: its schema_version is {str(value)[:40]!r}, not a number"
                " (restore a backup, or start a new library with --db)",
                self.path,
            ) from None

    def _migrate(self) -> None:
        """Bring the schema up to SCHEMA_VERSION, one transaction per step; refuse newer ones.

        A library already current is only read: reading never waits for another process's
        write lock (WAL readers), so `mgctag runs` answers while a run writes."""
        if self.schema_version == SCHEMA_VERSION:
            return
        while True:
            with self.transaction():  # re-read under the write lock: another process may migrate
                version = self.schema_version
                if version > SCHEMA_VERSION:
                    raise SchemaTooNewError(
                        f"written by a newer mgctag (schema {version}; this version"
                        f" knows up to {SCHEMA_VERSION}); upgrade mgctag to use it",
                        self.path,
                    )
                if version == SCHEMA_VERSION:
                    return
                if version == 0 and self.db.table_names():
                    raise LibraryError("an SQLite database, but not an mgctag library", self.path)
                MIGRATIONS[version](self.db)
                self.db.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?)"
                    " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    [str(version + 1)],
                )

    # -- tracks --

    def upsert_track(self, info: Mapping[str, Any]) -> int:
        """Insert or update the track at info["path"] with the given columns; returns its id.

        Only the columns present in `info` change; `scanned_at` is set to now unless given.
        """
        unknown = set(info) - TRACK_COLUMNS
        if unknown or "path" not in info:
            raise ValueError(f"upsert_track: need 'path'; unknown columns {sorted(unknown)}")
        values = {**info, "path": _db_path(info["path"])}
        values.setdefault("scanned_at", _now())
        if "genres" in values:
            values["genres"] = _dumps(values["genres"])
        cols = list(values)
        sets = ", ".join(f"{c} = excluded.{c}" for c in cols if c != "path")
        sql = (
            f"INSERT INTO tracks ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
            f" ON CONFLICT(path) DO UPDATE SET {sets} RETURNING id"
        )
        with self.transaction():
            return self._exec(sql, [values[c] for c in cols]).fetchone()[0]

    def get_track(self, track_id: int) -> dict[str, Any] | None:
        return self._one("SELECT * FROM tracks WHERE id = ?", [track_id])

    def track_by_path(self, path: str | os.PathLike) -> dict[str, Any] | None:
        return self._one("SELECT * FROM tracks WHERE path = ?", [_db_path(path)])

    def find_tracks(
        self, text: str, *, status: str | None = "ok", limit: int = 100
    ) -> list[dict[str, Any]]:
        """Tracks whose artist, album, title or path contains `text` (ASCII case-insensitive)."""
        patterns = _like(text)
        match = " OR ".join(
            f"{col} LIKE ? ESCAPE '\\'"
            for _ in patterns
            for col in ("artist", "album", "title", "path")
        )
        params: list[Any] = [p for p in patterns for _ in range(4)]
        where = f"({match})"
        if status is not None:
            where += " AND status = ?"
            params.append(status)
        return self._rows(
            f"SELECT * FROM tracks WHERE {where} ORDER BY path LIMIT ?", [*params, limit]
        )

    def iter_tracks(
        self, roots: Iterable[str | os.PathLike] | None = None, status: str | None = "ok"
    ) -> Iterator[dict[str, Any]]:
        """Tracks below `roots` (all when None) with `status` (any when None), in path order."""
        where, params = _under(roots)
        if status is not None:
            where += " AND status = ?"
            params.append(status)
        after: Any = None
        while True:
            page_where = where if after is None else f"{where} AND path > ?"
            page_params = params if after is None else [*params, after]
            cursor = self._exec(
                f"SELECT * FROM tracks WHERE {page_where} ORDER BY path LIMIT {_PAGE}", page_params
            )
            raw = cursor.fetchall()
            for values in raw:
                yield _row(cursor, values)
            if len(raw) < _PAGE:
                return
            after = raw[-1][[d[0] for d in cursor.description].index("path")]

    def tracks(self, status: str | None = "ok") -> list[dict[str, Any]]:
        """Every track with `status` (any when None)."""
        return list(self.iter_tracks(None, status))

    def known_files(
        self, roots: Iterable[str | os.PathLike] | None = None
    ) -> dict[str, dict[str, Any]]:
        """path → {id, size, mtime, status, error} of each track below `roots` (what scan needs)."""
        where, params = _under(roots)
        cursor = self._exec(
            f"SELECT id, path, size, mtime, status, error FROM tracks WHERE {where}", params
        )
        return {row["path"]: row for row in (_row(cursor, v) for v in cursor.fetchall())}

    def tracks_needing_analysis(
        self,
        model: str,
        roots: Iterable[str | os.PathLike] | None = None,
        *,
        separator: str | None = None,
    ) -> list[dict[str, Any]]:
        """OK tracks with no prediction from `model` for the file as it is now (size:mtime).

        With `separator`, a prediction made with another separator does not count either.
        """
        where, params = _under(roots, "t.path")
        sep_clause = "" if separator is None else " AND p.separator = ?"
        sep_params = [] if separator is None else [separator]
        return self._rows(
            "SELECT t.* FROM tracks t LEFT JOIN predictions p"
            f" ON p.track_id = t.id AND p.model = ?{sep_clause}"
            " WHERE t.status = 'ok'"
            " AND (p.track_id IS NULL OR p.analysis_key IS NOT (t.size || ':' || t.mtime))"
            f" AND {where} ORDER BY t.path",
            [model, *sep_params, *params],
        )

    def mark_removed(self, paths: Iterable[str | os.PathLike]) -> int:
        """Mark tracks whose files are gone as removed (kept, so history and journal survive)."""
        now = _now()
        with self.transaction():
            cursor = self.db.conn.executemany(
                "UPDATE tracks SET status = 'removed', scanned_at = ?"
                " WHERE path = ? AND status != 'removed'",
                [(now, _db_path(p)) for p in paths],
            )
            return cursor.rowcount

    def relocate_track(
        self,
        track_id: int,
        path: str | os.PathLike,
        size: int,
        mtime: int,
        *,
        moved: bool = False,
    ) -> bool:
        """The track's file now lives at `path` with this size/mtime, its audio unchanged (moved
        or copied there, or its tags rewritten, by a tool such as beets): move the record and its
        current analysis keys along, so the file is not analysed again. A `moved` file takes its
        journal entries along too, so undo finds it where it is now. False (nothing changed)
        when `path` is another track's already."""
        with self.transaction():
            other = self._scalar("SELECT id FROM tracks WHERE path = ?", [_db_path(path)])
            if other is not None and other != track_id:
                return False
            if moved:
                self._exec(
                    "UPDATE writes SET path = ? WHERE track_id = ?"
                    " AND path = (SELECT path FROM tracks WHERE id = ?)",
                    [_db_path(path), track_id, track_id],
                )
            self._exec("UPDATE tracks SET path = ? WHERE id = ?", [_db_path(path), track_id])
            self._own_change(track_id, size, mtime)
        return True

    def status_counts(self) -> dict[str, int]:
        """Number of tracks per status (for `mgctag status`)."""
        rows = self._exec("SELECT status, count(*) FROM tracks GROUP BY status")
        return {status: n for status, n in rows}

    # -- analysis --

    def save_analysis(
        self,
        track_id: int,
        model: str,
        separator: str,
        tags: Mapping[str, Any],
        genres: Sequence[tuple[str, float]],
        embeddings: Mapping[str, np.ndarray],
        *,
        content: str | None = None,
        windows: Sequence[Mapping[str, Any]] | None = None,
        approximate: bool = False,
    ) -> None:
        """Store one track's result from one model in one transaction, replacing the previous one.

        `tags` is any JSON-able mapping (tag → probability, or model → {tag → probability});
        `embeddings` maps stem → 1-D vector, stored as little-endian float32; `content` and
        `windows` are the content gate's track class and per-window decisions, when it ran.
        An `approximate` result (reduced precision) gets an analysis key that never matches the
        file's, so `tracks_needing_analysis(model)` still lists the track.
        """
        now, track_id = _now(), int(track_id)
        vectors = {stem: _vector(v) for stem, v in embeddings.items()}
        with self.transaction():
            row = self._exec("SELECT size, mtime FROM tracks WHERE id = ?", [track_id]).fetchone()
            if row is None:
                raise LibraryError(f"no track with id {track_id}")
            key = _key(*row)
            row_key = key + APPROXIMATE if approximate else key
            self._exec(
                "INSERT OR REPLACE INTO predictions (track_id, model, separator, tags, genres,"
                " created_at, analysis_key, content, windows) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [track_id, model, separator, _dumps(tags), _dumps(genres), now, row_key]
                + [content, _dumps(windows)],
            )
            self._exec("DELETE FROM embeddings WHERE track_id = ? AND model = ?", [track_id, model])
            self.db.conn.executemany(
                "INSERT INTO embeddings (track_id, model, stem, separator, dim, vector)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(track_id, model, s, separator, len(v) // 4, v) for s, v in vectors.items()],
            )
            self._exec(
                "UPDATE tracks SET analyzed_at = ?, analysis_key = ? WHERE id = ?",
                [now, key, track_id],
            )

    def get_predictions(self, track_id: int) -> dict[str, dict[str, Any]]:
        """model → {separator, tags, genres [[genre, p], ...], created_at, analysis_key}."""
        rows = self._rows("SELECT * FROM predictions WHERE track_id = ? ORDER BY model", [track_id])
        return {row.pop("model"): row for row in rows}

    def heard_not_music(self, roots: Iterable[str | os.PathLike] | None) -> list[dict[str, Any]]:
        """Tracks below `roots` whose latest content-gated analysis heard no music.

        One row per track (path, content 'speech' or 'other', model, created_at): the gate of the
        default tagger or the speech / music / noise detector (`segments --store`), whichever ran
        last. Lets a user find the audiobooks, podcasts and field recordings in a music folder.
        """
        where, params = _under(roots, "t.path")
        return self._rows(
            "SELECT t.path, p.content, p.model, p.created_at FROM predictions p"
            " JOIN tracks t ON t.id = p.track_id"
            f" WHERE {where} AND t.status = 'ok' AND p.content IS NOT NULL"
            " AND p.created_at = (SELECT MAX(q.created_at) FROM predictions q"
            "   WHERE q.track_id = p.track_id AND q.content IS NOT NULL)"
            " AND p.content != 'music' GROUP BY t.id ORDER BY t.path",
            params,
        )

    def get_embeddings(self, track_id: int, model: str) -> dict[str, np.ndarray]:
        """stem → float32 vector of one track."""
        rows = self._exec(
            "SELECT stem, vector FROM embeddings WHERE track_id = ? AND model = ?",
            [track_id, model],
        )
        return {stem: np.frombuffer(blob, dtype="<f4").astype(np.float32) for stem, blob in rows}

    def embedding_count(self, model: str, stem: str = "mix") -> int:
        """How many tracks have an embedding of this model and stem."""
        return int(
            self._scalar(
                "SELECT count(*) FROM embeddings WHERE model = ? AND stem = ?", [model, stem]
            )
            or 0
        )

    def embedding_matrix(self, model: str, stem: str = "mix") -> tuple[np.ndarray, np.ndarray]:
        """(track ids int64 (n,) ascending, float32 (n, d) C-contiguous, writable) for OK tracks.

        One query and no per-row parsing: the blobs are joined into one buffer and viewed. Tracks
        are filtered with NOT IN over the (few) non-OK ids and sorted in numpy, which measured
        2-3x faster than a JOIN + ORDER BY at 100k x 200-d (scripts/bench_db.py).
        """
        rows = self._exec(
            "SELECT track_id, dim, vector FROM embeddings WHERE model = ? AND stem = ?"
            " AND track_id NOT IN (SELECT id FROM tracks WHERE status != 'ok')",
            [model, stem],
        ).fetchall()
        if not rows:
            return np.empty(0, np.int64), np.empty((0, 0), np.float32)
        raw_ids, dims, blobs = zip(*rows, strict=True)
        if len(set(dims)) != 1:
            raise LibraryError(f"embeddings of {model}/{stem} have mixed sizes {sorted(set(dims))}")
        matrix = np.frombuffer(bytearray().join(blobs), "<f4").reshape(len(rows), dims[0])
        ids = np.array(raw_ids, dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        if (order != np.arange(len(order))).any():
            ids, matrix = ids[order], matrix[order]
        return ids, matrix.astype(np.float32, copy=False)

    # -- runs, journal, failures --

    def start_run(self, command: str, args: Any = None) -> int:
        with self.transaction():
            return self._exec(
                "INSERT INTO runs (command, args, started_at, status) VALUES (?, ?, ?, 'running')"
                " RETURNING id",
                [command, _dumps(args), _now()],
            ).fetchone()[0]

    def finish_run(self, run_id: int, status: str, counts: Mapping[str, Any] | None = None) -> None:
        with self.transaction():
            self._exec(
                "UPDATE runs SET finished_at = ?, status = ?, counts = ? WHERE id = ?",
                [_now(), status, _dumps(counts), run_id],
            )

    def get_run(self, run_id: int) -> dict[str, Any] | None:
        return self._one("SELECT * FROM runs WHERE id = ?", [run_id])

    def list_runs(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Runs, newest first."""
        return self._rows(
            "SELECT * FROM runs ORDER BY id DESC LIMIT ?", [-1 if limit is None else limit]
        )

    def last_run_id(self, command: str | None = None) -> int | None:
        if command is None:
            return self._scalar("SELECT max(id) FROM runs")
        return self._scalar("SELECT max(id) FROM runs WHERE command = ?", [command])

    def record_write(
        self,
        run_id: int | None,
        track_id: int | None,
        path: str | os.PathLike,
        old: Sequence[str],
        new: Sequence[str],
        size_after: int,
        mtime_after: int,
        *,
        payload_hash: str | None = None,
    ) -> int:
        """Journal a tag write that already happened (begin + confirm in one call).

        mgctag's own tag write leaves the audio alone, so the track's analysis stays current: its
        stored size/mtime and analysis keys move to the new values, and the next scan or analysis
        pass does not treat the file as changed.
        """
        write_id = self.begin_write(run_id, track_id, path, old, new)
        self.confirm_write(write_id, size_after, mtime_after, payload_hash=payload_hash)
        return write_id

    def _own_change(
        self, track_id: int, size: int, mtime: int, genres: list[str] | None = None
    ) -> None:
        """Move a track and its current analysis keys to the file's state after our own write."""
        row = self._exec("SELECT size, mtime FROM tracks WHERE id = ?", [track_id]).fetchone()
        if row is None:
            return
        old, new = _key(*row), _key(size, mtime)
        self._exec(
            "UPDATE tracks SET size = ?, mtime = ?, genres = coalesce(?, genres),"
            " analysis_key = CASE WHEN analysis_key = ? THEN ? ELSE analysis_key END WHERE id = ?",
            [size, mtime, _dumps(genres), old, new, track_id],
        )
        self._exec(
            "UPDATE predictions SET analysis_key = ? WHERE track_id = ? AND analysis_key = ?",
            [new, track_id, old],
        )

    def begin_write(
        self,
        run_id: int | None,
        track_id: int | None,
        path: str | os.PathLike,
        old: Sequence[str],
        new: Sequence[str],
        *,
        reverts: int | None = None,
    ) -> int:
        """Journal a tag write as pending *before* the file is touched; returns its id.

        Confirm it with `confirm_write` once the file holds `new`, or `fail_write` if it was not
        written. A pending entry left by a killed process is settled by reading the file.
        """
        with self.transaction():
            return self._exec(
                "INSERT INTO writes (run_id, track_id, path, old, new, state, reverts)"
                " VALUES (?, ?, ?, ?, ?, 'pending', ?) RETURNING id",
                [run_id, track_id, _db_path(path), _dumps(list(old)), _dumps(list(new)), reverts],
            ).fetchone()[0]

    def confirm_write(
        self, write_id: int, size_after: int, mtime_after: int, *, payload_hash: str | None = None
    ) -> None:
        """The file now holds the pending write's genres: mark it done (and what it reverts
        undone) and move its track to the file's new size/mtime, in one transaction."""
        with self.transaction():
            row = self._exec(
                "UPDATE writes SET state = 'done', written_at = ?, size_after = ?,"
                " mtime_after = ?, payload_hash = coalesce(?, payload_hash)"
                " WHERE id = ? RETURNING track_id, new, reverts",
                [_now(), size_after, mtime_after, payload_hash, write_id],
            ).fetchone()
            if row is None:
                raise LibraryError(f"no journaled write with id {write_id}")
            track_id, new, reverts = row
            if reverts is not None:
                self._exec(
                    "UPDATE writes SET undone_at = coalesce(undone_at, ?) WHERE id = ?",
                    [_now(), reverts],
                )
            if track_id is not None:
                self._own_change(track_id, size_after, mtime_after, genres=json.loads(new))

    def record_commit(
        self, write_id: int, raw: Any, method: str, backup: Sequence[tuple[int, bytes]]
    ) -> None:
        """Before a pending write touches its file: the genre exactly as stored (for an exact
        undo), how the file will be changed, the original bytes of each range patched in place."""
        self.check_journal()
        encoded = [[off, base64.b64encode(data).decode("ascii")] for off, data in backup]
        with self.transaction():
            self._exec(
                "UPDATE writes SET raw = ?, method = ?, backup = ? WHERE id = ?",
                [_dumps(raw), method, _dumps(encoded) if encoded else None, write_id],
            )

    def last_changing_run(self) -> int | None:
        """The newest run of mgctag's own (not an undo, not the beets plugin's) with a write that
        reached a file."""
        return self._scalar(
            "SELECT max(w.run_id) FROM writes w JOIN runs r ON r.id = w.run_id"
            " WHERE w.state = 'done' AND r.command != 'undo' AND r.command NOT LIKE 'beet %'"
        )

    def beets_changed_files(self) -> bool:
        """Whether a run of the beets plugin has a write that reached a file (those runs are
        undone with `beet mgctag-undo`, not `mgctag undo`)."""
        return bool(
            self._scalar(
                "SELECT 1 FROM writes w JOIN runs r ON r.id = w.run_id"
                " WHERE w.state = 'done' AND r.command LIKE 'beet %' LIMIT 1"
            )
        )

    def fail_write(self, write_id: int) -> None:
        """The pending write did not happen (the file is as it was)."""
        with self.transaction():
            self._exec("UPDATE writes SET state = 'failed' WHERE id = ?", [write_id])

    def pending_writes(self) -> list[dict[str, Any]]:
        """Writes journaled as pending: in flight in another process, or left by a killed one."""
        return self._rows("SELECT * FROM writes WHERE state = 'pending' ORDER BY id")

    def tracks_tagged_by_mgctag(self) -> set[int]:
        """Tracks whose genres are still what mgctag's last (not undone) write put there."""
        rows = self._exec(
            "SELECT w.track_id, w.new, t.genres FROM writes w JOIN tracks t ON t.id = w.track_id"
            " WHERE w.undone_at IS NULL AND w.id = (SELECT max(id) FROM writes"
            " WHERE track_id = w.track_id AND undone_at IS NULL)"
        )
        return {
            tid
            for tid, new, genres in rows
            if genres is not None and json.loads(new) == json.loads(genres)
        }

    def writes_for_run(self, run_id: int) -> list[dict[str, Any]]:
        """The journal of one run, in the order the writes happened."""
        return self._rows("SELECT * FROM writes WHERE run_id = ? ORDER BY id", [run_id])

    def mark_undone(
        self, write_id: int, size_after: int | None = None, mtime_after: int | None = None
    ) -> None:
        """Mark a journaled write as reverted; with the file's new size/mtime, update its track."""
        with self.transaction():
            row = self._exec(
                "UPDATE writes SET undone_at = ? WHERE id = ? RETURNING track_id, old",
                [_now(), write_id],
            ).fetchone()
            if row is None:
                raise LibraryError(f"no journaled write with id {write_id}")
            track_id, old = row
            if track_id is not None and size_after is not None and mtime_after is not None:
                self._own_change(track_id, size_after, mtime_after, genres=json.loads(old))

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
                [run_id, track_id, _db_path(path), stage, reason, _now()],
            ).fetchone()[0]

    def failures(self, run_id: int) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM failures WHERE run_id = ? ORDER BY id", [run_id])


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


def _vector(v: np.ndarray) -> bytes:
    """A 1-D embedding as little-endian float32 bytes."""
    a = np.asarray(v)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"an embedding must be a non-empty 1-D vector, got shape {a.shape}")
    return a.astype("<f4", copy=False).tobytes()
