"""The persistent similarity index (search/ann.py) on a real SQLite library: it agrees with exact
search, follows the library's changes; a stale, foreign or damaged file is rebuilt (one line).

The vectors are real: standardised MFCC statistics of 1-s windows of the in-repo genre excerpts
(tests/data), ~1500 tracks, so the graph has real neighbourhoods to get wrong."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import media
import numpy as np
import pytest

from mgctag.audio.decode import load
from mgctag.audio.features import mfcc
from mgctag.library.db import Library
from mgctag.search import ann, vectorfile
from mgctag.search.similar import clear_cache, similar_tracks

MODEL = "mfcc-windows"


@pytest.fixture(scope="module")
def window_vectors() -> np.ndarray:
    """Mean and spread of MFCCs of 1-s windows (hop 0.25 s) of every genre excerpt."""
    rows = []
    for path, _, _ in media.genre_set():
        c = mfcc(load(path, 16000))
        per_s = 16000 // 256  # frames a second at the MFCC hop
        for start in range(0, len(c) - per_s + 1, per_s // 4):
            w = c[start : start + per_s]
            rows.append(np.concatenate([w.mean(axis=0), w.std(axis=0)]))
    x = np.asarray(rows, np.float32)
    return (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-6)


def _library(path: Path, vectors: np.ndarray, start: int = 0) -> Library:
    lib = Library(path)
    with lib.transaction():
        for i, v in enumerate(vectors, start):
            tid = lib.upsert_track({"path": f"/music/{i:05d}.ogg", "size": i, "mtime": 1})
            lib.save_analysis(tid, MODEL, "none", {}, [], {"mix": v})
    return lib


@pytest.fixture
def lib(tmp_path: Path, window_vectors: np.ndarray) -> Library:
    clear_cache()
    library = _library(tmp_path / "lib.db", window_vectors)
    yield library
    library.close()
    clear_cache()


def _ids(hits: list[dict]) -> list[int]:
    return [int(h["id"]) for h in hits]


def _both(lib: Library, seed: int, k: int = 10) -> tuple[list[int], list[int]]:
    """The exact and the indexed top k (ids); asserts they agree: the same tracks, each rank's
    score equal (float32 sums in another order may swap two tracks whose scores tie)."""
    exact = similar_tracks(lib, [seed], model=MODEL, k=k, method="exact", all_versions=True)
    approx = similar_tracks(lib, [seed], model=MODEL, k=k, method="ann", all_versions=True)
    assert set(_ids(approx)) == set(_ids(exact)), seed
    assert np.allclose([h["score"] for h in approx], [h["score"] for h in exact], atol=1e-5)
    return _ids(exact), _ids(approx)


def test_index_agrees_with_exact_search(lib: Library) -> None:
    said: list[str] = []
    index = ann.open_index(lib, MODEL, "mix", say=said.append)
    assert index is not None and len(index) > 1000
    assert said and "building the similarity index" in said[0]
    seeds = np.random.default_rng(0).choice(len(index), 100, replace=False) + 1
    recall = []
    for seed in seeds:
        exact, approx = _both(lib, int(seed))
        assert int(seed) not in approx
        recall.append(len(set(exact) & set(approx)) / len(exact))
    assert np.mean(recall) == 1.0
    # the file and its description are beside the database
    path = ann.index_path(lib.path, MODEL, "mix")
    info = json.loads(Path(f"{path}.json").read_text())
    assert path.is_file() and info["count"] == len(index) and info["generation"] == lib.generation()


def _levels_in_file_order(path: Path) -> np.ndarray:
    """Each node's HNSW level, in the order the nodes are stored in usearch's file (its format:
    the int8 vectors as rows x cols after two uint32, a 64-byte head, a 40-byte graph header of
    five uint64 starting with the node count, then one int16 level a node)."""
    raw = path.read_bytes()
    rows, cols = np.frombuffer(raw[:8], "<u4").astype(int)
    at = 8 + rows * cols + 64
    count = int(np.frombuffer(raw[at : at + 8], "<u8")[0])
    return np.frombuffer(raw[at + 40 : at + 40 + 2 * count], "<i2")


def test_built_index_is_laid_out_for_locality(lib: Library) -> None:
    """`build` stores the upper layers' nodes first (then each node beside the upper-layer node
    it descends to): a search from a cold cache reads fewer pages. Same answers, and the index
    keeps following changes after it (usearch's compaction left an index unsafe to change in
    memory: `build` continues from the file)."""
    index = ann.open_index(lib, MODEL, "mix")
    assert index is not None and index.viewed
    levels = _levels_in_file_order(index.path)
    assert len(levels) == len(index) and levels.max() > 0
    assert np.all(np.diff(levels) <= 0)  # inserted in track order, levels would be random
    for seed in (1, 100, 1000):
        _both(lib, seed)
    lib.save_analysis(3, MODEL, "none", {}, [], {"mix": np.ones(index.info.dim, np.float32)})
    lib.db.conn.execute("DELETE FROM tracks WHERE id = 4")
    for seed in (3, 100):
        _both(lib, seed)
    assert not ann.open_index(lib, MODEL, "mix").index.contains(4)


def test_index_follows_new_removed_and_deleted_tracks(
    lib: Library, window_vectors: np.ndarray
) -> None:
    ann.open_index(lib, MODEL, "mix")
    before = lib.generation()
    # new tracks, one removed by a scan, one deleted outright, one re-analysed
    rng = np.random.default_rng(1)
    fresh = window_vectors[:20] + 0.01 * rng.standard_normal((20, window_vectors.shape[1]))
    with lib.transaction():
        for i, v in enumerate(fresh):
            tid = lib.upsert_track({"path": f"/new/{i}.ogg", "size": 1, "mtime": 1})
            lib.save_analysis(tid, MODEL, "none", {}, [], {"mix": v.astype(np.float32)})
    new_id = lib.track_by_path("/new/0.ogg")["id"]
    removed = _ids(similar_tracks(lib, [new_id], model=MODEL, k=1, method="exact"))[0]
    lib.mark_removed([lib.get_track(removed)["path"]])
    lib.db.conn.execute("DELETE FROM tracks WHERE id = 7")
    lib.save_analysis(9, MODEL, "none", {}, [], {"mix": -window_vectors[9]})
    assert lib.generation() > before

    said: list[str] = []
    exact, approx = _both(lib, new_id)
    assert removed not in approx
    index = ann.open_index(lib, MODEL, "mix", say=said.append)
    assert index is not None and not said  # caught up in place, not rebuilt
    assert len(index) == lib.ok_embedding_count(MODEL, "mix")
    assert index.info.generation == lib.generation()
    assert not index.index.contains(7) and not index.index.contains(removed)
    for seed in (9, new_id, int(lib.track_by_path("/new/19.ogg")["id"])):
        _both(lib, seed)
    # the caught-up index was saved: a fresh process opens it without re-applying anything
    ann.forget()
    reopened = ann.open_index(lib, MODEL, "mix", say=said.append)
    assert reopened is not None and reopened.viewed and not said


def test_every_kind_of_change_moves_the_generation(lib: Library) -> None:
    """A rescan that finds a file unreadable upserts the track as failed (an INSERT ... ON
    CONFLICT DO UPDATE, whose conflict policy once overrode the trigger's own)."""
    index = ann.open_index(lib, MODEL, "mix")
    assert index is not None
    for change in (
        lambda: lib.upsert_track({"path": "/music/00004.ogg", "status": "failed", "error": "x"}),
        lambda: lib.upsert_track({"path": "/music/00004.ogg", "status": "ok", "error": None}),
        lambda: lib.mark_removed(["/music/00004.ogg"]),
        lambda: lib.db.conn.execute("DELETE FROM embeddings WHERE track_id = 6"),
    ):
        before = lib.generation()
        change()
        assert lib.generation() > before
    index = ann.open_index(lib, MODEL, "mix")
    assert index is not None and not index.index.contains(5) and not index.index.contains(6)


def test_many_changes_rebuild_instead_of_patching(lib: Library) -> None:
    index = ann.open_index(lib, MODEL, "mix")
    assert index is not None
    paths = [t["path"] for t in list(lib.iter_tracks())[: len(index) // 3]]
    lib.mark_removed(paths)
    said: list[str] = []
    index = ann.open_index(lib, MODEL, "mix", say=said.append)
    assert index is not None and len(index) == lib.ok_embedding_count(MODEL, "mix")
    assert len(said) == 1 and "rebuilding" in said[0], said
    # the process goes on with the rebuilt index (memory-mapped from its new file) and follows
    # the library's next change in place
    kept = int(lib.db.conn.execute("SELECT max(id) FROM tracks WHERE status = 'ok'").fetchone()[0])
    _both(lib, kept)
    lib.save_analysis(kept, MODEL, "none", {}, [], {"mix": np.ones(index.info.dim, np.float32)})
    _both(lib, kept)
    assert len(said) == 1


def _rebuilt_with_one_line(lib: Library, words: str) -> None:
    """A fresh process finds the index unusable: it says so in one line, rebuilds, answers."""
    ann.forget()
    said: list[str] = []
    index = ann.open_index(lib, MODEL, "mix", say=said.append)
    assert len(said) == 1 and words in said[0] and "rebuilding" in said[0], said
    assert "\n" not in said[0]
    assert index is not None and len(index) == lib.ok_embedding_count(MODEL, "mix")
    _both(lib, 5)


@pytest.mark.parametrize(
    "damage, words",
    [
        ("middle", "bytes changed"),
        ("truncate", "bytes where"),
        ("header", "bytes changed"),
        ("description", "description file is unreadable"),
        ("no description", "description file is missing"),
    ],
)
def test_damaged_index_file_is_rebuilt(lib: Library, damage: str, words: str) -> None:
    ann.open_index(lib, MODEL, "mix")
    path = ann.index_path(lib.path, MODEL, "mix")
    info = Path(f"{path}.json")
    data = bytearray(path.read_bytes())
    if damage == "middle":  # a damaged graph would crash usearch: the checksum catches it first
        data[len(data) // 2 : len(data) // 2 + 4096] = os.urandom(4096)
        path.write_bytes(data)
    elif damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "header":
        data[:64] = bytes(64)
        path.write_bytes(data)
    elif damage == "description":
        info.write_text("{not json")
    else:
        info.unlink()
    _rebuilt_with_one_line(lib, words)


def test_stale_or_foreign_index_is_rebuilt(
    lib: Library, tmp_path: Path, window_vectors: np.ndarray
) -> None:
    ann.open_index(lib, MODEL, "mix")
    path = ann.index_path(lib.path, MODEL, "mix")
    saved = tmp_path / "saved"
    saved.mkdir()
    for f in (path, Path(f"{path}.json")):
        shutil.copy2(f, saved / f.name)
    # a change, so that every later index holds other bytes than the saved one (builds are
    # deterministic: the same vectors give the same file)
    lib.save_analysis(9, MODEL, "none", {}, [], {"mix": -window_vectors[9]})

    # The database goes back to an older state (a backup): the index is newer than it.
    lib.db.conn.execute("UPDATE changes SET generation = 0")
    _rebuilt_with_one_line(lib, "newer than the library")

    # Another library's index under this library's name.
    other = _library(tmp_path / "other.db", window_vectors[:300])
    ann.open_index(other, MODEL, "mix")
    for f in (path, Path(f"{path}.json")):
        f.unlink()
    other_path = ann.index_path(other.path, MODEL, "mix")
    shutil.copy2(other_path, path)
    shutil.copy2(Path(f"{other_path}.json"), Path(f"{path}.json"))
    _rebuilt_with_one_line(lib, "another library")
    other.close()

    # An old index file put back beside a newer description: its bytes do not match. (Its
    # mtime is set a second on, as a later restore gives: copied within the clock tick of the
    # last save, size, inode and mtime could all equal what the description recorded.)
    shutil.copy(saved / path.name, path)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    _rebuilt_with_one_line(lib, "bytes")


def test_description_that_lies_about_the_vectors_is_caught(lib: Library) -> None:
    """The description says the index is current, but the vectors were changed behind the
    generation counter (triggers dropped): the spot check against the store notices."""
    ann.open_index(lib, MODEL, "mix")
    lib.db.conn.execute("DROP TRIGGER embeddings_updated")
    lib.db.conn.execute(
        "UPDATE embeddings SET vector = (SELECT vector FROM embeddings WHERE rowid = 1)"
    )
    _rebuilt_with_one_line(lib, "disagree")


def test_refresh_updates_every_index_after_changes(lib: Library, window_vectors) -> None:
    ann.open_index(lib, MODEL, "mix")
    lib.mark_removed(["/music/00003.ogg"])
    assert ann.refresh(lib) == 1
    info = json.loads(Path(f"{ann.index_path(lib.path, MODEL, 'mix')}.json").read_text())
    assert info["generation"] == lib.generation()
    assert ann.refresh(Library(lib.path.parent / "empty.db")) == 0


@pytest.mark.slow
def test_map_takes_its_neighbourhoods_from_the_index(lib: Library) -> None:
    from mgctag.search import map as libmap
    from mgctag.search.similar import library_index

    li = library_index(lib, MODEL, "mix")
    near = libmap.index_neighbours(lib, MODEL, "mix", li.index.ids, li.index.matrix)
    assert near.shape == (len(li.index), 93)
    sims = li.index.matrix @ li.index.matrix.T
    exact = np.argsort(-sims, axis=1)[:, :93]
    recall = np.mean([len(set(a) & set(b)) / 93 for a, b in zip(near, exact, strict=True)])
    assert recall > 0.95, recall  # the graph's own answers, not re-scored
    result = libmap.make_map(lib, model=MODEL, method="tsne", index="ann", threads=1)
    assert len(result["points"]) == len(li.index)
    assert all(np.isfinite([p["x"], p["y"]]).all() for p in result["points"])


# --- the vector file the queries re-score from (search/vectorfile.py) ---------------------------


def _vector_files(lib: Library) -> tuple[Path, Path]:
    path = vectorfile.vectors_path(ann.index_path(lib.path, MODEL, "mix"))
    return path, Path(f"{path}.json")


def _file_agrees_with_store(lib: Library, index: ann.Ann) -> None:
    """Every indexed track's row is its stored vector (float16 values, as stored); no other
    track has one."""
    ids, stored = lib.embeddings_of(np.asarray(index.index.keys).tolist(), MODEL, "mix")
    got, rows, rest = index.stored(ids.tolist())
    assert not rest and np.array_equal(got, ids) and np.array_equal(rows, stored)
    assert index.vectors is not None
    held = np.flatnonzero(np.any(index.vectors.matrix != 0, axis=1))
    assert set(held.tolist()) == set(ids.tolist())


def test_queries_rescore_from_the_vector_file(lib: Library) -> None:
    index = ann.open_index(lib, MODEL, "mix")
    assert index is not None and index.vectors is not None
    path, info = _vector_files(lib)
    assert path.is_file() and json.loads(info.read_text())["generation"] == lib.generation()
    _file_agrees_with_store(lib, index)
    # the rows are read from the file: rows changed in it (behind its checksum's back, in this
    # process's mapping only) change the scores, so the store is not what is read
    seed = 5
    exact = similar_tracks(lib, [seed], model=MODEL, k=3, method="exact", all_versions=True)
    index.vectors.matrix = index.vectors.matrix.copy()
    index.vectors.matrix[int(exact[0]["id"])] *= -1
    moved = similar_tracks(lib, [seed], model=MODEL, k=3, method="ann", all_versions=True)
    assert int(exact[0]["id"]) not in _ids(moved)


def test_prefetching_rows_reads_the_same_rows(lib: Library, monkeypatch) -> None:
    """The kernel is asked for a query's rows before they are read (MADV_WILLNEED): every row,
    the file's last included (its page ends past the file), reads the same with and without."""
    index = ann.open_index(lib, MODEL, "mix")
    assert index is not None and index.vectors is not None
    ids = list(range(len(index.vectors.matrix) + 2))  # past the end: not held
    with_prefetch = index.vectors.get(ids)
    monkeypatch.setattr(vectorfile, "PREFETCH", 0)
    without = index.vectors.get(ids)
    assert index.vectors.path.stat().st_size % 4096  # the last row's page ends past the file
    assert np.array_equal(with_prefetch[0], without[0]) and with_prefetch[2] == without[2]
    assert np.array_equal(with_prefetch[1], without[1])
    assert len(without[0]) == len(index)


def test_vector_file_follows_changes_and_its_own_generation(
    lib: Library, window_vectors: np.ndarray, tmp_path: Path
) -> None:
    ann.open_index(lib, MODEL, "mix")
    path, info = _vector_files(lib)
    (tmp_path / "saved").mkdir()
    for f in (path, info):
        shutil.copy2(f, tmp_path / "saved" / f.name)
    lib.db.conn.execute("DELETE FROM tracks WHERE id = 7")
    lib.mark_removed(["/music/00010.ogg"])  # track 11
    lib.save_analysis(9, MODEL, "none", {}, [], {"mix": -window_vectors[9]})
    with lib.transaction():
        tid = lib.upsert_track({"path": "/new/a.ogg", "size": 1, "mtime": 1})
        lib.save_analysis(tid, MODEL, "none", {}, [], {"mix": window_vectors[3] + 0.01})
    said: list[str] = []
    index = ann.open_index(lib, MODEL, "mix", say=said.append)
    assert index is not None and not said
    _file_agrees_with_store(lib, index)
    assert index.stored([7, 11])[2] == [7, 11]  # deleted, removed: not held
    for seed in (9, tid, 13):
        _both(lib, seed)
    # a fresh process finding the vector file older than the index catches it up, silently
    ann.forget()
    for f in (path, info):
        shutil.copy2(tmp_path / "saved" / f.name, f)
    index = ann.open_index(lib, MODEL, "mix", say=said.append)
    assert index is not None and not said
    assert json.loads(info.read_text())["generation"] == lib.generation()
    _file_agrees_with_store(lib, index)


@pytest.mark.parametrize(
    "damage, words",
    [
        ("middle", "bytes changed"),
        ("truncate", "bytes where"),
        ("description", "description file is unreadable"),
        ("no description", "description file is missing"),
        ("no file", "cannot be read"),
        ("foreign", "another library"),
        ("stale rows", "disagree"),
    ],
)
def test_damaged_or_stale_vector_file_is_rewritten(
    lib: Library, tmp_path: Path, window_vectors: np.ndarray, damage: str, words: str
) -> None:
    ann.open_index(lib, MODEL, "mix")
    path, info = _vector_files(lib)
    data = bytearray(path.read_bytes())
    if damage == "middle":
        data[len(data) // 2 : len(data) // 2 + 4096] = os.urandom(4096)
        path.write_bytes(data)
    elif damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "description":
        info.write_text("{not json")
    elif damage == "no description":
        info.unlink()
    elif damage == "no file":
        path.unlink()
    elif damage == "foreign":
        other = _library(tmp_path / "other.db", window_vectors[:300])
        ann.open_index(other, MODEL, "mix")
        other_path = vectorfile.vectors_path(ann.index_path(other.path, MODEL, "mix"))
        shutil.copy2(other_path, path)
        shutil.copy2(Path(f"{other_path}.json"), info)
        other.close()
    else:  # vectors changed behind the generation counter (trigger dropped): rows now differ
        # (opened first: opened after the change, the index's own random spot check may
        # notice it and rebuild both files, leaving nothing for this check to find)
        ann.forget()
        index = ann.open_index(lib, MODEL, "mix")
        assert index is not None
        lib.db.conn.execute("DROP TRIGGER embeddings_updated")
        lib.db.conn.execute(
            "UPDATE embeddings SET vector = (SELECT vector FROM embeddings WHERE rowid = 1)"
            " WHERE track_id IN (SELECT track_id FROM embeddings ORDER BY track_id LIMIT 8)"
        )
        index.checked = list(range(1, 9))  # the tracks the graph's spot check would sample
        index.vectors = None
        said: list[str] = []
        ann._open_vectors(lib, index, said.append)
        assert len(said) == 1 and words in said[0] and "rewriting" in said[0], said
        assert index.vectors is not None and index.stored([1, 2])[2] == []
        return
    ann.forget()
    said = []
    index = ann.open_index(lib, MODEL, "mix", say=said.append)
    assert len(said) == 1 and words in said[0] and "rewriting" in said[0], said
    assert "\n" not in said[0] and "similarity vectors" in said[0]
    assert index is not None
    _file_agrees_with_store(lib, index)
    _both(lib, 5)


def test_a_vector_float16_cannot_hold_is_read_from_the_store(lib: Library) -> None:
    big = np.zeros(lib.embeddings_of([1], MODEL)[1].shape[1], np.float32)
    big[:3] = (1e6, 3e5, 1.0)  # past float16's range: stored as float32
    lib.save_analysis(4, MODEL, "none", {}, [], {"mix": big})
    index = ann.open_index(lib, MODEL, "mix")
    assert index is not None and index.vectors is not None
    assert np.isnan(index.vectors.matrix[4, 0])
    got, rows, rest = index.stored([4, 5])
    assert got.tolist() == [5] and rest == [4]
    _both(lib, 4)
