"""The library's schema: versioned migrations, and bringing a database up to date.

Each migration takes the schema from version i to i+1 inside one transaction. Never edit one that
has shipped: add a new one at the end. A migration that must rewrite every row (v6: typed blobs)
changes the schema in its transaction and leaves a progress marker in `meta`; the rows are then
converted in batches of tracks, one transaction each, the marker moving with every batch, so a
conversion killed at any moment resumes where it stopped the next time the library is opened.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import sqlite_utils

from mgctag.library import blobs
from mgctag.library.analyses import scores_value
from mgctag.library.connection import LibraryError, SchemaTooNewError

if TYPE_CHECKING:
    from mgctag.library.connection import Store


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


#: meta key of a conversion in progress: the rows of tracks with a larger id are still to convert
COMPACT_AFTER = "compact_after"
COMPACT_BATCH = 500  # tracks per transaction (~14 MB of v5 rows at the default tagger's size)


def _v6_compact(db: sqlite_utils.Database) -> None:
    """Typed blobs instead of JSON for scores and embeddings (library/blobs.py): label lists once
    in `vocabularies`, float16 tag scores, float32 genre scores, float16 embeddings where they
    hold. The rows are converted after this step, in batches (`finish_conversion`)."""
    db.execute("CREATE TABLE vocabularies (id INTEGER PRIMARY KEY, labels TEXT NOT NULL)")
    db.execute("INSERT INTO meta (key, value) VALUES (?, '-1')", [COMPACT_AFTER])


def _v7_changes(db: sqlite_utils.Database) -> None:
    """What changed since a similarity index was built: one row per track whose embeddings were
    added, replaced or deleted, or whose status changed, with the generation of its latest
    change (the library's generation is the largest). Kept by triggers, so no writer can forget
    it; an index file records the generation it reflects and catches up from here
    (search/ann.py). `library_id` tells this library's index files from another's."""
    db.execute("CREATE TABLE changes (track_id INTEGER PRIMARY KEY, generation INTEGER NOT NULL)")
    db.execute("CREATE INDEX changes_generation ON changes(generation)")
    bump = (  # an upsert: an outer statement's conflict policy would override "OR REPLACE"
        "INSERT INTO changes (track_id, generation)"
        " VALUES ({id}, (SELECT coalesce(max(generation), 0) + 1 FROM changes))"
        " ON CONFLICT(track_id) DO UPDATE SET generation = excluded.generation;"
    )
    for name, when, ids in (
        ("embeddings_added", "AFTER INSERT ON embeddings", ["NEW.track_id"]),
        ("embeddings_deleted", "AFTER DELETE ON embeddings", ["OLD.track_id"]),
        ("embeddings_updated", "AFTER UPDATE ON embeddings", ["OLD.track_id", "NEW.track_id"]),
        (
            "tracks_status",
            "AFTER UPDATE OF status ON tracks WHEN OLD.status IS NOT NEW.status",
            ["NEW.id"],
        ),
        ("tracks_deleted", "AFTER DELETE ON tracks", ["OLD.id"]),
    ):
        body = " ".join(bump.format(id=i) for i in ids)
        db.execute(f"CREATE TRIGGER {name} {when} BEGIN {body} END")
    db.execute("INSERT INTO meta (key, value) VALUES ('library_id', lower(hex(randomblob(16))))")


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [
    _v1_initial,
    _v2_keys_and_indexes,
    _v3_write_ahead,
    _v4_content,
    _v5_exact_undo,
    _v6_compact,
    _v7_changes,
]
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(store: Store) -> int:
    """The version stored in the database (0 for a new, empty one)."""
    if not store.db["meta"].exists():
        return 0
    value = store._scalar("SELECT value FROM meta WHERE key = 'schema_version'")
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        raise LibraryError(
            f"damaged: its schema_version is {str(value)[:40]!r}, not a number"
            " (restore a backup, or start a new library with --db)",
            store.path,
        ) from None


def migrate(store: Store) -> None:
    """Bring the schema up to SCHEMA_VERSION, one transaction per step; refuse newer ones.

    A library already current is only read: reading never waits for another process's
    write lock (WAL readers), so `mgctag runs` answers while a run writes. A row conversion left
    unfinished (by a kill, a full disk) is finished first."""
    if schema_version(store) == SCHEMA_VERSION and _pending(store) is None:
        return
    _migrate_schema(store)
    finish_conversion(store)


def _migrate_schema(store: Store) -> None:
    while True:
        with store.transaction():  # re-read under the write lock: another process may migrate
            version = schema_version(store)
            if version > SCHEMA_VERSION:
                raise SchemaTooNewError(
                    f"written by a newer mgctag (schema {version}; this version"
                    f" knows up to {SCHEMA_VERSION}); upgrade mgctag to use it",
                    store.path,
                )
            if version == SCHEMA_VERSION:
                return
            if version == 0 and store.db.table_names():
                raise LibraryError("an SQLite database, but not an mgctag library", store.path)
            MIGRATIONS[version](store.db)
            store.db.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [str(version + 1)],
            )


def _pending(store: Store) -> int | None:
    """The track id after which rows still wait for the v6 conversion (None: none wait)."""
    if not store.db["meta"].exists():
        return None
    value = store._scalar("SELECT value FROM meta WHERE key = ?", [COMPACT_AFTER])
    return None if value is None else int(value)


def finish_conversion(store: Store, batch: int = COMPACT_BATCH) -> None:
    """Convert the rows the v6 step left as JSON / float32, `batch` tracks per transaction."""
    log = logging.getLogger("mgctag.library")
    done = 0
    while True:
        with store.transaction():  # re-read under the write lock: another process may convert
            after = _pending(store)
            if after is None:
                return
            upto = store._scalar(
                "SELECT id FROM tracks WHERE id > ? ORDER BY id LIMIT 1 OFFSET ?",
                [after, batch - 1],
            )
            _compact_rows(store, after, upto)
            if upto is None:
                store._exec("DELETE FROM meta WHERE key = ?", [COMPACT_AFTER])
            else:
                store._exec("UPDATE meta SET value = ? WHERE key = ?", [str(upto), COMPACT_AFTER])
        done += batch
        if done % (100 * batch) == 0:
            log.info("library: converted the stored analyses of %d tracks to typed blobs", done)


def _compact_rows(store: Store, after: int, upto: int | None) -> None:
    """Re-encode the JSON scores and float32 embeddings of tracks in (after, upto]."""
    where = "track_id > ?" + ("" if upto is None else " AND track_id <= ?")
    span = [after] if upto is None else [after, upto]
    conn = store.db.conn
    rows = conn.execute(
        "SELECT rowid, tags, genres FROM predictions"
        f" WHERE {where} AND (typeof(tags) = 'text' OR typeof(genres) = 'text')",
        span,
    ).fetchall()
    updates = []
    for rowid, tags, genres in rows:
        updates.append((_repacked(conn, tags, False), _repacked(conn, genres, True), rowid))
    conn.executemany("UPDATE predictions SET tags = ?, genres = ? WHERE rowid = ?", updates)
    vectors = conn.execute(
        f"SELECT rowid, dim, vector FROM embeddings WHERE {where} AND length(vector) = 4 * dim",
        span,
    ).fetchall()
    conn.executemany(
        "UPDATE embeddings SET vector = ? WHERE rowid = ?",
        [(blobs.pack_vector(blobs.unpack_vector(v, dim)), rowid) for rowid, dim, v in vectors],
    )


def _repacked(conn: Any, value: Any, precise: bool) -> Any:
    """A v5 JSON scores value as a typed blob; anything else (NULL, damaged JSON) as it was."""
    if not isinstance(value, str):
        return value
    try:
        decoded = json.loads(value)
    except ValueError:
        return value
    return scores_value(conn, decoded, precise)
