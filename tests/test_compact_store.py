"""The compact store (schema 6): typed blobs for scores and embeddings, and the migration that
converts a release-5 library in place, resumable after a SIGKILL.

The release-5 library is made by the real pipeline tagging real excerpts from tests/data with real
tag writes, stored through release 5's own `save_analysis` (tests/library_v5.py)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import media
import numpy as np
import pytest
from library_v5 import LibraryV5, grow, snapshot

from mgctag import pipeline
from mgctag.library import blobs
from mgctag.library.db import SCHEMA_VERSION, Library
from mgctag.options import TagOptions
from mgctag.writes import undo

# --- the blobs themselves -----------------------------------------------------------------------


def test_scores_round_trip_in_every_shape_json_keeps_the_rest() -> None:
    nested = {"MSD_musicnn": {"rock": 0.75, "jazz": 0.125}, "MTT_musicnn": {"guitar": 0.5}}
    pairs = [["Jazz", 0.2373925], ["Rock", 0.21322600000000003], ["Pop", 0.0]]
    for value, precise in ((nested, False), ({"rock": 0.5}, False), (pairs, True), ({}, False)):
        packed = blobs.pack_scores(value, precise=precise)
        assert packed is not None
        vocab = {v.id: v.labels for v in packed.vocabularies}
        back = blobs.unpack_scores(packed.blob, vocab)
        assert json.dumps(back, sort_keys=False) == json.dumps(_rounded(value), sort_keys=False), (
            back
        )
    # the same label set in another order is the same vocabulary (one row in the table)
    other = blobs.pack_scores([["Pop", 0.5], ["Jazz", 0.25], ["Rock", 0.1]], precise=True)
    first = blobs.pack_scores(pairs, precise=True)
    assert other and first and other.vocabularies == first.vocabularies
    # what the format does not hold stays JSON: repeated labels, text, nesting, booleans
    for odd in ([["Jazz", 0.5], ["Jazz", 0.4]], {"a": "x"}, {"a": {"b": {"c": 1.0}}}, {"a": True}):
        assert blobs.pack_scores(odd) is None


def _rounded(value):
    """What the blob keeps: float32 genre scores read back as their shortest decimal."""
    if isinstance(value, list):
        return [[g, float(str(np.float32(p)))] for g, p in value]
    if value and isinstance(next(iter(value.values())), dict):
        return {k: {t: float(str(np.float16(p))) for t, p in v.items()} for k, v in value.items()}
    return {t: float(str(np.float16(p))) for t, p in value.items()}


def test_unit_vectors_are_float16_and_extreme_ones_keep_float32() -> None:
    rng = np.random.default_rng(0)
    v = rng.standard_normal(584).astype(np.float32)
    v /= np.linalg.norm(v)
    blob = blobs.pack_vector(v)
    assert len(blob) == 2 * 584
    back = blobs.unpack_vector(blob, 584)
    assert back.dtype == np.float32 and float(back @ v) / float(np.linalg.norm(back)) > 0.9999999
    extreme = v.copy()
    extreme[0] = -3.4e38
    assert blobs.unpack_vector(blobs.pack_vector(extreme), 584).tobytes() == extreme.tobytes()
    mixed = blobs.unpack_matrix([blob, blobs.pack_vector(extreme)], 584)
    assert mixed.shape == (2, 584) and mixed[1].tobytes() == extreme.tobytes()


def test_saved_analysis_reads_back_as_saved(tmp_path: Path) -> None:
    with Library(tmp_path / "lib.db") as lib:
        tid = lib.upsert_track({"path": "/m/a.mp3", "size": 1, "mtime": 1})
        tags = {"audioset_mn04": {"Music": 0.8752, "Speech": 0.0183}}
        lib.save_analysis(tid, "m", "none", tags, [("Jazz", 0.453619)], {"mix": np.ones(8)})
        pred = lib.get_predictions(tid)["m"]
        assert pred.tags == {"audioset_mn04": {"Music": 0.875, "Speech": 0.0183}}  # float16
        assert pred.genres == [["Jazz", 0.453619]]  # float32, read back as written
        kinds = lib.db.conn.execute("SELECT typeof(tags), typeof(genres) FROM predictions")
        assert kinds.fetchone() == ("blob", "blob")
        (size,) = lib.db.conn.execute("SELECT length(vector) FROM embeddings").fetchone()
        assert size == 16  # 8 float16 values


# --- migrating a real release-5 library -----------------------------------------------------------


@pytest.fixture(scope="module")
def v5_library(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    """Real excerpts tagged (tags written) by the real pipeline into a release-5 database:
    (music folder, database, sha256 of each file before tagging)."""
    root = tmp_path_factory.mktemp("v5")
    music = root / "Music"
    music.mkdir()
    for path, _, _ in media.songs()[:4]:
        shutil.copy(path, music / path.name)
    shutil.copy(media.clip_path("198-209-0000"), music / "speech.ogg")  # heard as not music
    before = {p.name: _sha(p) for p in music.iterdir()}
    with LibraryV5(root / "lib.db") as lib:
        summary = pipeline.tag_paths(lib, [music], TagOptions(stems="off"))
        assert summary.tagged >= 3 and lib.schema_version == 5, summary
    return music, root / "lib.db", before


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _copy(v5: tuple[Path, Path, dict[str, str]], dest: Path) -> tuple[Path, Path]:
    from conftest import copy_library

    music, db, _ = v5
    return copy_library(music, db, dest)


def _expected(rows: dict[str, list[tuple]]) -> tuple[dict, dict]:
    """(track, model) -> (tags, genres) as JSON-decoded, and (track, model, stem) -> float32."""
    preds = {(r[0], r[1]): (json.loads(r[3]), json.loads(r[4])) for r in rows["predictions"]}
    vectors = {(r[0], r[1], r[2]): np.frombuffer(r[5], "<f4") for r in rows["embeddings"]}
    return preds, vectors


def _check_converted(lib: Library, preds: dict, vectors: dict, every: int = 1) -> None:
    """Every analysis (of every `every`-th track) reads back as release 5 stored it (float16
    tags to 1e-3, float32 genres to 1e-6, embeddings to a cosine of 0.99999), and every row is
    stored as typed blobs."""
    preds = {k: v for k, v in preds.items() if k[0] % every == 0}
    vectors = {k: v for k, v in vectors.items() if k[0] % every == 0}
    for (tid, model), (tags, genres) in preds.items():
        got = lib.get_predictions(tid)[model]
        have, want = _flat(got.tags), _flat(tags)
        assert have.keys() == want.keys()
        assert np.allclose(list(have.values()), list(want.values()), rtol=1e-3, atol=1e-4)
        assert [g for g, _ in got.genres or []] == [g for g, _ in genres]
        assert np.allclose([p for _, p in got.genres or []], [p for _, p in genres], atol=1e-6)
    for (tid, model, stem), v in vectors.items():
        got = lib.get_embeddings(tid, model)[stem]
        assert got.shape == v.shape
        assert float(got @ v) / float(np.linalg.norm(got) * np.linalg.norm(v)) > 0.99999
    conn = lib.db.conn
    text = "SELECT count(*) FROM predictions WHERE typeof(tags) = 'text' OR typeof(genres) = 'text'"
    assert conn.execute(text).fetchone()[0] == 0
    wide = conn.execute("SELECT count(*) FROM embeddings WHERE length(vector) = 4 * dim")
    assert wide.fetchone()[0] == 0
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _flat(tags: dict) -> dict:
    if tags and isinstance(next(iter(tags.values())), dict):
        return {(k, t): p for k, v in tags.items() for t, p in v.items()}
    return dict(tags)


@pytest.mark.slow
def test_migration_keeps_every_analysis_and_undo_entry(v5_library, tmp_path: Path) -> None:
    music, db = _copy(v5_library, tmp_path)
    old = snapshot(db)
    assert old["writes"], "the release-5 run wrote tags: its journal is what undo needs"
    preds, vectors = _expected(old)
    with Library(db) as lib:
        assert lib.schema_version == SCHEMA_VERSION
        _check_converted(lib, preds, vectors)
    new = snapshot(db)
    for table in ("tracks", "runs", "writes", "failures"):
        assert new[table] == old[table], table
    assert [r[:3] for r in new["embeddings"]] == [r[:3] for r in old["embeddings"]]
    assert [r[:2] + r[5:] for r in new["predictions"]] == [
        r[:2] + r[5:] for r in old["predictions"]
    ]
    assert sum(len(r[5]) for r in new["embeddings"]) * 2 == sum(
        len(r[5]) for r in old["embeddings"]
    )

    # The release-5 run's writes undo after the migration: every file is its old self again.
    with Library(db) as lib:
        (run,) = [r for r in lib.list_runs() if r["command"] == "tag"]
        report = undo.undo_run(lib, run["id"])
        assert report.count("failed") == report.count("refused") == 0
    assert {p.name: _sha(p) for p in music.iterdir()} == v5_library[2]


@pytest.mark.slow
def test_sigkill_mid_migration_then_the_next_open_finishes(v5_library, tmp_path: Path) -> None:
    _, db = _copy(v5_library, tmp_path)
    tracks = grow(db, 800)  # real rows, 8 batches of conversion
    preds, vectors = _expected(snapshot(db))
    code = f"from mgctag.library.db import Library; Library({str(db)!r}).close()"
    proc = subprocess.Popen([sys.executable, "-c", code])
    marker = _wait_for_progress(db, proc)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    # Killed half-way: schema 6 (so release 5 refuses it), rows up to the marker converted.
    state = _read(db, "SELECT value FROM meta WHERE key IN ('schema_version', 'compact_after')")
    assert sorted(r[0] for r in state) == sorted([str(SCHEMA_VERSION), str(_marker(db))])
    assert 0 < _marker(db) < tracks and _marker(db) >= marker
    left = _read(db, "SELECT count(*) FROM embeddings WHERE length(vector) = 4 * dim")[0][0]
    assert left > 0
    with Library(db) as lib:  # the next open finishes the conversion
        assert _marker(db) is None
        _check_converted(lib, preds, vectors, every=7)  # tracks on both sides of the kill


def _read(db: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _marker(db: Path) -> int | None:
    rows = _read(db, "SELECT value FROM meta WHERE key = 'compact_after'")
    return int(rows[0][0]) if rows else None


def _wait_for_progress(db: Path, proc: subprocess.Popen, timeout: float = 120.0) -> int:
    """The conversion's marker once it has moved past the first batch (the process still busy)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the migration finished before it could be killed"
        try:
            marker = _marker(db)
        except sqlite3.OperationalError:  # schema being changed: not there yet
            marker = None
        if marker is not None and marker > 0:
            return marker
        time.sleep(0.005)
    proc.kill()
    raise AssertionError("the conversion never started")


def test_an_old_library_refuses_nothing_and_stays_readable_mid_conversion(tmp_path: Path) -> None:
    """A release-5 database with hand-made rows: JSON that the blob format cannot hold (repeated
    labels, damaged JSON) is kept as it was; the library opens and reads it."""
    db = tmp_path / "lib.db"
    with LibraryV5(db) as lib:
        tid = lib.upsert_track({"path": "/m/a.mp3", "size": 1, "mtime": 1})
        lib.save_analysis(tid, "m", "none", {"x": 0.5}, [("Jazz", 0.5), ("Jazz", 0.4)], {})
        lib.db.conn.execute("UPDATE predictions SET tags = '{broken'")
    with Library(db) as lib:
        pred = lib.get_predictions(tid)["m"]
        assert pred.tags == "{broken" and pred.genres == [["Jazz", 0.5], ["Jazz", 0.4]]
    assert os.path.getsize(db) > 0
