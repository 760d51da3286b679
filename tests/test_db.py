"""The library database on real SQLite files: schema, migrations, concurrency, queries, journal."""

from __future__ import annotations

import multiprocessing as mp
import os
import sqlite3
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import stored

from mgctag.library.db import SCHEMA_VERSION, Library, LibraryError, SchemaTooNewError

# The schema as mgctag's first release wrote it, typed out as that release left it on disk.
V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE tracks (id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, size INTEGER, mtime INTEGER,
  duration REAL, format TEXT, codec TEXT, sample_rate INTEGER, channels INTEGER, artist TEXT,
  album TEXT, title TEXT, genres TEXT, status TEXT NOT NULL DEFAULT 'ok', error TEXT,
  scanned_at TEXT, analyzed_at TEXT, analysis_key TEXT);
CREATE TABLE predictions (track_id INTEGER NOT NULL REFERENCES tracks(id) ON DELETE CASCADE,
  model TEXT NOT NULL, separator TEXT, tags TEXT, genres TEXT, created_at TEXT,
  PRIMARY KEY (track_id, model));
CREATE TABLE embeddings (track_id INTEGER NOT NULL REFERENCES tracks(id) ON DELETE CASCADE,
  model TEXT NOT NULL, stem TEXT NOT NULL, separator TEXT, dim INTEGER NOT NULL,
  vector BLOB NOT NULL, PRIMARY KEY (track_id, model, stem));
CREATE TABLE runs (id INTEGER PRIMARY KEY, command TEXT NOT NULL, args TEXT, started_at TEXT,
  finished_at TEXT, status TEXT, counts TEXT);
CREATE TABLE writes (id INTEGER PRIMARY KEY, run_id INTEGER REFERENCES runs(id),
  track_id INTEGER REFERENCES tracks(id) ON DELETE SET NULL, path TEXT NOT NULL, old TEXT,
  new TEXT, written_at TEXT, size_after INTEGER, mtime_after INTEGER, undone_at TEXT);
CREATE TABLE failures (id INTEGER PRIMARY KEY, run_id INTEGER REFERENCES runs(id),
  path TEXT NOT NULL, stage TEXT, reason TEXT, at TEXT);
INSERT INTO meta VALUES ('schema_version', '1');
"""


@pytest.fixture
def lib(tmp_path: Path) -> Library:
    with Library(tmp_path / "lib.db") as library:
        yield library


def _track(lib: Library, path: str, size: int = 1000, mtime: int = 1, **cols) -> int:
    return lib.upsert_track({"path": path, "size": size, "mtime": mtime, "status": "ok", **cols})


# --- opening, pragmas, migrations -------------------------------------------------------------


def test_new_library_creates_folder_wal_and_current_schema(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "lib.db"
    with Library(path) as lib:
        conn = lib.db.conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30000
        assert lib.schema_version == SCHEMA_VERSION
        assert {"meta", "tracks", "predictions", "embeddings", "runs", "writes", "failures"} <= set(
            lib.db.table_names()
        )
    with Library(path) as again:  # reopening an up-to-date library changes nothing
        assert again.schema_version == SCHEMA_VERSION


def test_v1_library_is_upgraded_keeping_its_data(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path)
    conn.executescript(V1_SCHEMA)
    conn.execute(
        "INSERT INTO tracks (id, path, size, mtime, genres, status, analysis_key)"
        " VALUES (7, '/music/a.flac', 10, 20, '[\"Jazz\"]', 'ok', '10:20')"
    )
    conn.execute(
        "INSERT INTO predictions VALUES (7, 'musicnn', 'none', '{\"jazz\": 0.9}',"
        " '[[\"Jazz\", 0.9]]', 'then')"
    )
    conn.execute("INSERT INTO runs (id, command) VALUES (1, 'tag')")
    conn.execute(
        "INSERT INTO failures (run_id, path, stage, reason) VALUES (1, '/x', 'scan', 'bad')"
    )
    conn.commit()
    conn.close()

    with Library(path) as lib:
        assert lib.schema_version == SCHEMA_VERSION
        assert lib.get_track(7)["genres"] == ["Jazz"]
        pred = lib.get_predictions(7)["musicnn"]
        assert pred["genres"] == [["Jazz", 0.9]]
        assert pred["analysis_key"] == "10:20"  # seeded from the v1 track key
        assert lib.tracks_needing_analysis("musicnn") == []  # not re-analysed after the upgrade
        assert (
            stored.failures(lib, 1)[0]["track_id"] is None
            and stored.failures(lib, 1)[0]["reason"] == "bad"
        )
        indexes = {i.name for i in lib.db["writes"].indexes}
        assert "writes_run" in indexes


def test_library_from_a_newer_mgctag_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    with Library(path) as lib:
        lib.db.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION + 3)]
        )
    before = path.read_bytes()
    with pytest.raises(SchemaTooNewError, match="newer mgctag"):
        Library(path)
    assert path.read_bytes() == before


def test_files_that_are_not_libraries_are_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite at all " * 100)
    with pytest.raises(LibraryError, match="junk.db"):
        Library(junk)
    assert junk.read_bytes() == b"not sqlite at all " * 100

    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    with pytest.raises(LibraryError, match="not an mgctag library"):
        Library(other)


# --- concurrency -------------------------------------------------------------------------------


def _hammer(db_path: str, worker: int, n: int, start: mp.Barrier, errors: mp.Queue) -> None:
    """One mgctag-like process: open (maybe migrate) the library, then write as fast as it can."""
    try:
        start.wait()
        with Library(db_path) as lib:
            run = lib.start_run("tag", {"worker": worker})
            for i in range(n):
                path = f"/music/w{worker}/{i:04d}.mp3"
                tid = _track(lib, path, size=i, mtime=i)
                vec = np.full(8, worker + i / n, np.float32)
                lib.save_analysis(
                    tid, "musicnn", "none", {"rock": 0.5}, [("Rock", 0.5)], {"mix": vec}
                )
                lib.confirm_write(lib.begin_write(run, tid, path, [], ["Rock"]), i + 1, i + 1)
                lib.tracks_needing_analysis("musicnn")  # reads interleaved with the other's writes
            lib.finish_run(run, "ok", {"tagged": n})
    except Exception as exc:  # noqa: BLE001 - the parent asserts on what came back
        errors.put(f"worker {worker}: {type(exc).__name__}: {exc}")


def test_two_processes_write_one_library_without_locking_errors(tmp_path: Path) -> None:
    ctx = mp.get_context("fork")
    db_path, n = str(tmp_path / "shared.db"), 150
    start, errors = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(db_path, w, n, start, errors)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    problems = []
    while not errors.empty():
        problems.append(errors.get())
    assert problems == []
    assert [p.exitcode for p in procs] == [0, 0]
    with Library(db_path) as lib:
        assert stored.status_counts(lib) == {"ok": 2 * n}
        ids, matrix = lib.embedding_matrix("musicnn")
        assert matrix.shape == (2 * n, 8)
        assert sorted(r["status"] for r in lib.list_runs()) == ["ok", "ok"]
        assert sum(len(lib.writes_for_run(r["id"])) for r in lib.list_runs()) == 2 * n


# --- tracks ------------------------------------------------------------------------------------


def test_sql_metacharacters_in_tags_and_paths_are_stored_verbatim(lib: Library) -> None:
    evil = "Guns N' Roses\"; DROP TABLE tracks; --"
    path = "/music/it's; DELETE FROM tracks; --/%_\\.mp3"
    tid = _track(lib, path, artist=evil, title="'); --", genres=["Rock'n'Roll; --", "%"])
    row = lib.get_track(tid)
    assert (row["path"], row["artist"], row["title"]) == (path, evil, "'); --")
    assert row["genres"] == ["Rock'n'Roll; --", "%"]
    assert lib.track_by_path(path)["id"] == tid
    assert [t["id"] for t in lib.find_tracks("N' Roses\"; DROP")] == [tid]
    assert lib.find_tracks("%") == lib.find_tracks("/%_")  # % and _ match only themselves
    _track(lib, "/music/plain.mp3", artist="Plain")
    assert [t["id"] for t in lib.find_tracks("_")] == [tid]
    assert stored.status_counts(lib) == {"ok": 2}


def test_upsert_updates_in_place_and_rejects_unknown_columns(lib: Library) -> None:
    tid = _track(lib, "/m/a.mp3", artist="A")
    assert _track(lib, "/m/a.mp3", size=5, title="T") == tid
    row = lib.get_track(tid)
    assert (row["size"], row["artist"], row["title"]) == (5, "A", "T")
    with pytest.raises(ValueError, match="unknown columns"):
        lib.upsert_track({"path": "/m/b.mp3", "size; DROP TABLE tracks": 1})


def test_iter_tracks_selects_by_root_exactly_and_pages(lib: Library, tmp_path: Path) -> None:
    for i in range(1203):  # more than two pages
        _track(lib, f"/lib/a/{i:05d}.flac")
    _track(lib, "/lib/ab/sibling.flac")  # shares the prefix "/lib/a" but is not below it
    _track(lib, "/lib/a%/x.flac")
    _track(lib, "/lib/a/gone.flac", status="removed")
    under_a = [t["path"] for t in lib.iter_tracks(["/lib/a"])]
    assert len(under_a) == 1203 and under_a == sorted(under_a)
    assert "/lib/ab/sibling.flac" not in under_a
    assert [t["path"] for t in lib.iter_tracks(["/lib/a%"])] == ["/lib/a%/x.flac"]
    assert [t["path"] for t in lib.iter_tracks(["/lib/a/00007.flac"])] == ["/lib/a/00007.flac"]
    assert len(list(lib.iter_tracks(None, status=None))) == 1206
    assert [t["path"] for t in lib.iter_tracks(["/lib/a/"], status="removed")] == [
        "/lib/a/gone.flac"
    ]
    assert len(lib.tracks()) == 1205


def test_non_utf8_and_unicode_forms_round_trip(lib: Library) -> None:
    latin1 = os.fsdecode(b"/lib/caf\xe9/d\xe9j\xe0.mp3")  # a Latin-1 name on a UTF-8 system
    nfd = unicodedata.normalize("NFD", "/lib/Sigur Rós/ágætis.flac")
    nfc = unicodedata.normalize("NFC", nfd)
    ids = [_track(lib, p) for p in (latin1, nfd, nfc)]
    assert len(set(ids)) == 3  # the two normal forms are two different files
    for tid, path in zip(ids, (latin1, nfd, nfc), strict=True):
        assert lib.get_track(tid)["path"] == path
        assert os.fsencode(lib.track_by_path(path)["path"]) == os.fsencode(path)
    assert [t["id"] for t in lib.iter_tracks([os.fsdecode(b"/lib/caf\xe9")])] == [ids[0]]
    assert {t["id"] for t in lib.iter_tracks(["/lib"])} == set(ids)
    assert {t["id"] for t in lib.find_tracks("Sigur Rós")} == {ids[1], ids[2]}
    lib.mark_removed([latin1])
    assert lib.get_track(ids[0])["status"] == "removed"


# --- analysis -----------------------------------------------------------------------------------


def test_embedding_matrix_round_trips_vectors_exactly(lib: Library) -> None:
    rng = np.random.default_rng(0)
    specials = np.array([0.0, -0.0, 1e-45, -3.4e38, np.pi, 1 / 3], np.float32)
    vectors = {}
    for i in range(40):
        tid = _track(lib, f"/m/{i:02d}.mp3")
        v = rng.standard_normal(200).astype(np.float32)
        v[:6] = specials
        # float64 input is stored as float32; big-endian input is stored little-endian
        given = v.astype(np.float64) if i % 3 == 0 else v.astype(">f4") if i % 3 == 1 else v
        lib.save_analysis(tid, "musicnn", "none", {}, [], {"mix": given, "drums": v[::-1]})
        vectors[tid] = v
    first = min(vectors)  # re-analysed last: stored after the others, still returned in id order
    lib.save_analysis(
        first, "musicnn", "none", {}, [], {"mix": vectors[first], "drums": vectors[first][::-1]}
    )
    gone = _track(lib, "/m/gone.mp3")
    lib.save_analysis(gone, "musicnn", "none", {}, [], {"mix": np.ones(200, np.float32)})
    lib.mark_removed(["/m/gone.mp3"])

    ids, matrix = lib.embedding_matrix("musicnn")
    assert ids.dtype == np.int64 and ids.tolist() == sorted(vectors)
    assert matrix.dtype == np.float32 and matrix.flags.c_contiguous and matrix.flags.writeable
    expected = np.stack([vectors[i] for i in ids.tolist()])
    assert matrix.tobytes() == expected.tobytes()  # bit-exact, including -0.0 and denormals
    _, drums = lib.embedding_matrix("musicnn", "drums")
    assert drums.tobytes() == expected[:, ::-1].copy().tobytes()
    assert lib.get_embeddings(ids[0], "musicnn")["mix"].tobytes() == vectors[ids[0]].tobytes()
    empty_ids, empty = lib.embedding_matrix("no-such-model")
    assert empty_ids.shape == (0,) and empty.shape == (0, 0)


def test_save_analysis_is_one_transaction_and_replaces(lib: Library) -> None:
    tid = _track(lib, "/m/a.mp3", size=10, mtime=20)
    assert [t["id"] for t in lib.tracks_needing_analysis("musicnn")] == [tid]
    lib.save_analysis(
        tid,
        "musicnn",
        "demucs",
        {"rock": np.float32(0.75)},
        [("Rock", 0.75)],
        {"mix": np.ones(4), "vocals": np.zeros(4)},
    )
    assert lib.tracks_needing_analysis("musicnn") == []
    assert lib.tracks_needing_analysis("musicnn", separator="none") != []
    assert [t["id"] for t in lib.tracks_needing_analysis("other-model")] == [tid]
    track = lib.get_track(tid)
    assert track["analysis_key"] == "10:20" and track["analyzed_at"]
    pred = lib.get_predictions(tid)["musicnn"]
    assert pred["tags"] == {"rock": 0.75} and pred["genres"] == [["Rock", 0.75]]

    # Re-analysis with fewer stems leaves no stale stem behind.
    lib.save_analysis(tid, "musicnn", "none", {"pop": 0.5}, [("Pop", 0.5)], {"mix": np.ones(4)})
    assert set(lib.get_embeddings(tid, "musicnn")) == {"mix"}

    # A bad vector fails before anything is written; an unknown track rolls back.
    with pytest.raises(ValueError, match="1-D"):
        lib.save_analysis(tid, "musicnn", "none", {}, [], {"mix": np.ones((2, 2))})
    with pytest.raises(LibraryError, match="no track"):
        lib.save_analysis(9999, "musicnn", "none", {}, [], {"mix": np.ones(4)})
    assert lib.get_predictions(tid)["musicnn"]["genres"] == [["Pop", 0.5]]
    assert lib.db.conn.execute("SELECT count(*) FROM predictions").fetchone()[0] == 1

    # The file changes on disk → it needs analysis again.
    _track(lib, "/m/a.mp3", size=11, mtime=21)
    assert [t["id"] for t in lib.tracks_needing_analysis("musicnn", ["/m"])] == [tid]
    assert lib.tracks_needing_analysis("musicnn", ["/elsewhere"]) == []


# --- runs, journal, failures --------------------------------------------------------------------


def test_runs_journal_and_failures(lib: Library) -> None:
    tid = _track(lib, "/m/a.mp3", size=10, mtime=20, genres=["Rock"])
    lib.save_analysis(tid, "musicnn", "none", {}, [("Jazz", 0.9)], {"mix": np.ones(4)})
    scan_run = lib.start_run("scan", {"roots": ["/m"]})
    run = lib.start_run("tag", {"roots": ["/m"], "dry_run": False})
    assert stored.last_run_id(lib) == run and stored.last_run_id(lib, "scan") == scan_run
    assert stored.last_run_id(lib, "undo") is None

    wid = lib.begin_write(run, tid, "/m/a.mp3", ["Rock"], ["Rock", "Jazz"])
    lib.confirm_write(wid, 12, 30, payload_hash="abc")
    # Our own tag write does not make the track look changed, nor its analysis stale.
    track = lib.get_track(tid)
    assert (track["size"], track["mtime"], track["genres"]) == (12, 30, ["Rock", "Jazz"])
    assert lib.tracks_needing_analysis("musicnn") == []
    (write,) = lib.writes_for_run(run)
    assert (write["id"], write["old"], write["new"], write["undone_at"]) == (
        wid,
        ["Rock"],
        ["Rock", "Jazz"],
        None,
    )
    assert write["payload_hash"] == "abc" and write["written_at"]

    lib.record_failure(run, "/m/b.mp3", "decode", "not an audio file")
    lib.finish_run(run, "failed", {"tagged": 1, "failed": 1})
    assert [(f["path"], f["stage"], f["reason"]) for f in stored.failures(lib, run)] == [
        ("/m/b.mp3", "decode", "not an audio file")
    ]
    runs = lib.list_runs()
    assert [r["id"] for r in runs] == [run, scan_run] and lib.list_runs(limit=1)[0]["id"] == run
    assert runs[0]["counts"] == {"tagged": 1, "failed": 1} and runs[0]["finished_at"]
    assert runs[0]["args"] == {"roots": ["/m"], "dry_run": False}

    lib.mark_undone(wid, size_after=10, mtime_after=40)
    assert lib.writes_for_run(run)[0]["undone_at"]
    track = lib.get_track(tid)
    assert (track["size"], track["mtime"], track["genres"]) == (10, 40, ["Rock"])
    assert lib.tracks_needing_analysis("musicnn") == []
    with pytest.raises(LibraryError, match="no journaled write"):
        lib.mark_undone(12345)


def test_content_gate_decisions_are_stored_beside_the_prediction(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(V1_SCHEMA)
    conn.execute("INSERT INTO tracks (path, size, mtime, status) VALUES ('/m/a.flac', 9, 1, 'ok')")
    conn.execute("INSERT INTO predictions (track_id, model, genres) VALUES (1, 'musicnn', '[]')")
    conn.commit()
    conn.close()
    with Library(path) as lib:  # migrated: old rows have no content
        assert lib.get_predictions(1)["musicnn"]["content"] is None
        windows = [{"offset": 12.5, "content": "speech", "music": 0.03, "speech": 0.91}]
        lib.save_analysis(1, "default", "none", {}, [], {}, content="speech", windows=windows)
        pred = lib.get_predictions(1)["default"]
        assert pred["content"] == "speech" and pred["windows"] == windows
