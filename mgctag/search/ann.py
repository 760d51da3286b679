"""A persistent approximate index for `similar` in big libraries: usearch HNSW beside the database.

Exact search reads every vector on every query and, in a fresh process, first loads them all
(309 s at a million tracks, docs/scale.md). Past `ANN_MIN_TRACKS` tracks mgctag keeps instead an
HNSW graph of int8 vectors (usearch: cosine, connectivity 32, expansion 128 when adding and when
searching) in its own file next to the database, memory-maps it in a fraction of a second, asks it
for the `CANDIDATES` nearest tracks and re-scores them with their stored vectors (float32
arithmetic), which restores what the 1-byte coordinates misorder; a seed the graph does not find
for itself is searched again wider, then exactly (recall@10 0.997 at a million, docs/scale.md).
The re-scoring vectors come from a second file beside it, written and kept current with it
(search/vectorfile.py: the stored float16 rows addressed by track id, a page a candidate where
SQLite walks a B-tree), checked the same way and rewritten on its own when it cannot be used.
A build lays the graph out for locality (`_lay_out`), which halves the pages a search touches
(cold p50 7.5 -> 3.5 ms at a million tracks with the vector file's prefetch, docs/scale.md).

Keeping the file honest, since a wrong index gives wrong answers without an error:

- It records the library's id and *generation* (schema v7: triggers bump it with every change of
  an embedding or a track's status), the model, stem and dimension, how many vectors it holds, and
  a checksum of its bytes, in a small JSON file beside it (`.usearch.json`), written after it.
- Opening checks all of that. A file from another library, another model or a newer generation,
  a count that does not add up, a header usearch rejects, bytes that changed since the checksum
  (verified whenever the file's size, inode or mtime differ from what was recorded: a corrupt
  graph would crash usearch, not raise), or sampled vectors that disagree with the store: rebuilt,
  with one line saying why.
- An older generation is caught up: the tracks changed since (the `changes` table) are removed
  and re-added from the store, and the file saved again. Many changes (over a fifth of the index)
  or many deletions rebuild it instead, as HNSW quality drops with patched-out nodes.

Tag runs and scans call `refresh` for every index that exists, so `similar` rarely waits.
"""

from __future__ import annotations

import glob
import json
import mmap
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mgctag.atomicio import atomic_path
from mgctag.errors import reason_of
from mgctag.search import vectorfile
from mgctag.search.vectorfile import VectorFile, VectorsProblem, checksum

#: Below this many tracks `similar` searches exactly (docs/similar.md, "Exact or approximate"):
#: measured, an exact query took 3.9 ms (p50) at 10 000 tracks and 8.4 ms at 30 000, the index
#: 1.6 and 2.4 ms with a third of the memory, built in 1.7 and 6.8 s.
ANN_MIN_TRACKS = 20_000
# 16 links a node missed true neighbours among near-duplicate vectors (1 build in 15 on 1 292
# overlapping windows of real audio: 15 queries below recall 1); 32 missed none in 15 builds.
CONNECTIVITY = 32
EXPANSION_ADD = 128
EXPANSION_SEARCH = 128
CANDIDATES = 40  # asked of the graph, then re-scored with the stored vectors
#: madvise for the mapped index file (a name in `mmap`, or "" for the kernel's default). The
#: default read-ahead measured best: with MADV_RANDOM every page a cold search misses is its own
#: read (cold p50 19 ms instead of 3-4 at a million tracks, docs/scale.md).
INDEX_ADVICE = ""
FORMAT = 1
_SPOT_CHECKS = 8
_MIN_SPOT_COSINE = 0.95  # int8 coordinates of a unit vector agree with it to ~0.996
_REBUILD_FRACTION = 0.2
_BUILD_BATCH = 20_000
# Concurrent inserts into a small graph sometimes leave a region badly linked (measured on 1 292
# overlapping windows of real audio: 1 build in 3 with two threads missed true neighbours of 31
# queries, 0 in 6 single-threaded); past this size the graph is dense enough to add in parallel.
_SERIAL_BELOW = 10_000

Say = Callable[[str], None]


class IndexStore(vectorfile.VectorStore, Protocol):
    """What the index needs of `mgctag.library.db.Library`: what its vector file needs, and
    where the database is and how many tracks have an embedding."""

    path: Path

    def ok_embedding_count(self, model: str, stem: str = "mix") -> int: ...


class IndexProblem(Exception):
    """Why an index file cannot be used as it is (said in one line, then it is rebuilt)."""


@dataclass(frozen=True)
class IndexInfo:
    """The JSON beside an index file: what it holds and what it was checked against."""

    format: int
    library: str
    model: str
    stem: str
    dim: int
    generation: int
    count: int
    removed: int  # vectors patched out since the build (HNSW keeps their nodes as tombstones)
    size: int
    inode: int
    mtime_ns: int
    checksum: str


def index_path(db: Path, model: str, stem: str) -> Path:
    """Where the index of `model`'s `stem` embeddings of the library at `db` lives."""
    slug = re.sub(r"[^A-Za-z0-9._+-]", "_", model)[:60]
    return Path(f"{db}.similar.{slug}.{stem}.usearch")


class Ann:
    """An open index: the usearch graph, what it reflects, and where it lives."""

    def __init__(
        self, index: Any, info: IndexInfo, path: Path, viewed: bool, mapping: Any = None
    ) -> None:
        self.index, self.info, self.path, self.viewed = index, info, path, viewed
        self.mapping = mapping  # the file's pages a viewed index points into (see `_view`)
        self.vectors: VectorFile | None = None  # the re-scoring rows (vectorfile.py)
        self.checked: list[int] = []  # keys spot-checked against the store when opened

    def __len__(self) -> int:
        return len(self.index)

    def stored(self, ids: Iterable[int]) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """(ids, float32 vectors) of these tracks from the vector file, and the ids it does not
        hold (read them from the store)."""
        if self.vectors is None:
            return np.empty(0, np.int64), np.empty((0, 0), np.float32), [int(i) for i in ids]
        return self.vectors.get([int(i) for i in ids])

    def search(self, vector: np.ndarray, count: int, expect: Iterable[int] = ()) -> np.ndarray:
        """Keys (track ids) of the `count` nearest vectors, nearest first (approximate).

        `expect`: tracks that must come back (a seed's own vector is nearest to itself). When
        none does, the graph search stayed in a wrong region (2 of 300 seeds at a million
        real-ish vectors, docs/scale.md): it is searched again 16 times wider, then exactly
        (usearch's brute force over its own int8 vectors, ~0.1 s at a million)."""
        count = min(count, len(self.index))
        if count <= 0:
            return np.empty(0, np.int64)
        q = np.asarray(vector, np.float32)
        wanted = {int(i) for i in expect}
        for width in (1, 16):
            self.index.expansion_search = max(EXPANSION_SEARCH * width, count)
            keys = np.asarray(self.index.search(q, count, threads=1).keys, dtype=np.int64)
            if not wanted or wanted & set(keys.tolist()):
                return keys
        return np.asarray(self.index.search(q, count, exact=True, threads=1).keys, np.int64)

    def neighbours(self, vectors: np.ndarray, count: int) -> np.ndarray:
        """(n, count) keys of the nearest vectors of each row (-1 pads where fewer exist)."""
        count = min(count, len(self.index))
        self.index.expansion_search = max(EXPANSION_SEARCH, count)
        found = self.index.search(np.asarray(vectors, np.float32), count, threads=0)
        keys = np.asarray(found.keys, dtype=np.int64).reshape(len(vectors), -1)
        counts = np.asarray(found.counts).reshape(-1)
        for row, n in enumerate(counts):
            keys[row, n:] = -1
        return keys


def _new_index(dim: int) -> Any:
    from usearch.index import Index

    return Index(
        ndim=dim,
        metric="cos",
        dtype="i8",
        connectivity=CONNECTIVITY,
        expansion_add=EXPANSION_ADD,
        expansion_search=EXPANSION_SEARCH,
    )


def _add(index: Any, keys: np.ndarray, matrix: np.ndarray) -> None:
    """Add vectors, one thread while the graph is small (see `_SERIAL_BELOW`), then all."""
    serial = max(0, min(len(keys), _SERIAL_BELOW - len(index)))
    if serial:
        index.add(keys[:serial], matrix[:serial], threads=1)
    if serial < len(keys):
        index.add(keys[serial:], matrix[serial:], threads=0)


def build(lib: IndexStore, model: str, stem: str, path: Path | None = None) -> Ann:
    """A new index of every OK track's embedding, saved beside the database.

    The generation is read before the vectors, so a change made while building is caught up
    afterwards (re-adding a vector is harmless): no long read transaction is needed. The vector
    file the queries re-score from is written in the same pass."""
    path = path or index_path(lib.path, model, stem)
    generation = lib.generation()
    index = None
    with vectorfile.writing(lib, model, stem, vectorfile.vectors_path(path), generation) as rows:
        for ids, matrix in lib.iter_embeddings(model, stem, _BUILD_BATCH):
            if index is None:
                index = _new_index(matrix.shape[1])
            keys = ids.astype(np.uint64)
            new = ~np.asarray(index.contains(keys), dtype=bool).reshape(-1)  # re-analysed since
            _add(index, keys[new], matrix[new])
            rows.put(ids, matrix)
    if index is None or rows.file is None:
        raise IndexProblem(f"no {model}/{stem} embeddings to index")
    info = IndexInfo(FORMAT, lib.library_id, model, stem, index.ndim, generation, 0, 0, 0, 0, 0, "")
    ann = Ann(index, info, path, viewed=False)
    _catch_up(lib, ann)
    _lay_out(index)
    save(ann)
    del index
    ann.index, ann.mapping = _view(path)  # the laid-out graph is only ever used from its file
    ann.viewed = True
    ann.vectors = vectorfile.catch_up(lib, rows.file)
    return ann


def _lay_out(index: Any) -> None:
    """Put the graph's nodes, and their vectors, in an order that keeps a search's pages
    together (usearch's compaction: the upper layers first, then every node beside the
    upper-layer node its search descends to). The same graph and the same answers; a search
    from a cold page cache touches fewer pages of the file (measured in docs/scale.md).

    usearch 2.26 leaves the index it compacted in memory unsafe to change (an `add` after it
    corrupted the heap here), so `build` saves it and continues from the file. A usearch
    without it (a private member) builds as before: the order only changes speed."""
    compact = getattr(getattr(index, "_compiled", None), "compact", None)
    if compact is not None:
        compact(0)


def save(ann: Ann) -> None:
    """Write the index (atomically), then its JSON with the file's identity and checksum."""
    with atomic_path(ann.path) as tmp:
        ann.index.save(str(tmp))
    st = ann.path.stat()
    info = IndexInfo(
        **{
            **asdict(ann.info),
            "count": len(ann.index),
            "size": st.st_size,
            "inode": st.st_ino,
            "mtime_ns": st.st_mtime_ns,
            "checksum": checksum(ann.path),
        }
    )
    with atomic_path(vectorfile.info_path(ann.path)) as tmp:
        tmp.write_text(json.dumps(asdict(info)), encoding="utf-8")
    ann.info = info


def _catch_up(lib: IndexStore, ann: Ann) -> int:
    """Apply the library's changes since the index's generation; how many tracks changed."""
    generation = lib.generation()
    if generation == ann.info.generation:
        return 0
    changed = lib.changed_since(ann.info.generation)
    keys = np.array(changed, dtype=np.uint64)
    present = np.asarray(ann.index.contains(keys), dtype=bool).reshape(-1) if len(keys) else keys
    removed = int(present.sum()) if len(keys) else 0
    if removed:
        ann.index.remove(keys[present])
    for start in range(0, len(changed), _BUILD_BATCH):
        part = changed[start : start + _BUILD_BATCH]
        ids, matrix = lib.embeddings_of(part, ann.info.model, ann.info.stem)
        if len(ids):
            _add(ann.index, ids.astype(np.uint64), matrix)
    ann.info = IndexInfo(
        **{**asdict(ann.info), "generation": generation, "removed": ann.info.removed + removed}
    )
    return len(changed)


_OPEN: dict[Path, Ann] = {}


def open_index(
    lib: IndexStore, model: str, stem: str, *, say: Say | None = None, build_missing: bool = True
) -> Ann | None:
    """The library's index of `model`/`stem`, checked and up to date (None when there is none
    and `build_missing` is False). Problems are said in one line and the index rebuilt."""
    say = say or (lambda _: None)
    path = index_path(lib.path, model, stem)
    cached = _OPEN.get(path)
    if cached is not None and cached.info.library == lib.library_id:
        _update(lib, cached, say)
        _open_vectors(lib, cached, say)
        return cached
    if not path.exists() and not vectorfile.info_path(path).exists():
        if not build_missing:
            return None
        say("building the similarity index of this library (once; tag runs keep it current)")
        return _remember(build(lib, model, stem, path))
    try:
        ann = _load(lib, model, stem, path)
    except IndexProblem as problem:
        say(f"similarity index {path.name}: {problem}; rebuilding it")
        return _remember(build(lib, model, stem, path))
    _update(lib, ann, say)
    _open_vectors(lib, ann, say)
    return _remember(ann)


def _open_vectors(lib: IndexStore, ann: Ann, say: Say) -> None:
    """Give the index its vector file, checked and caught up; one that cannot be used is
    rewritten from the store (one line said). Without one (a read-only folder) the queries
    read their vectors from the store: slower, never different."""
    path = vectorfile.vectors_path(ann.path)
    info = ann.info
    try:
        if ann.vectors is None:
            try:
                loaded = vectorfile.catch_up(lib, vectorfile.load(lib, info.model, info.stem, path))
                vectorfile.check(lib, loaded, ann.checked)
                ann.vectors = loaded
                return
            except VectorsProblem as problem:
                ann.vectors = None
                say(f"similarity vectors {path.name}: {problem}; rewriting them")
                ann.vectors = vectorfile.rewrite(lib, info.model, info.stem, path)
                return
        ann.vectors = vectorfile.catch_up(lib, ann.vectors)
    except (OSError, VectorsProblem) as exc:
        ann.vectors = None
        say(f"similarity vectors {path.name}: cannot be written ({reason_of(exc)})")


def _remember(ann: Ann) -> Ann:
    _OPEN.clear()  # one index at a time per process: an old one would only hold memory
    _OPEN[ann.path] = ann
    return ann


def forget() -> None:
    """Drop the indexes this process holds (tests; a library replaced under it)."""
    _OPEN.clear()


def _update(lib: IndexStore, ann: Ann, say: Say) -> None:
    """Catch up with the library; rebuild when it changed too much for patching to keep quality."""
    pending = lib.generation() != ann.info.generation
    if not pending:
        return
    changed = len(lib.changed_since(ann.info.generation))
    worn = changed + ann.info.removed > _REBUILD_FRACTION * max(len(ann), 1)
    if worn:
        say(f"similarity index: {changed} tracks changed since it was built; rebuilding it")
        rebuilt = build(lib, ann.info.model, ann.info.stem, ann.path)
        ann.index, ann.info, ann.viewed = rebuilt.index, rebuilt.info, rebuilt.viewed
        ann.mapping = rebuilt.mapping  # after the index that points into it
        ann.vectors = rebuilt.vectors
        return
    if ann.viewed:  # a memory-mapped index cannot change: load it
        ann.index = _restore(ann.path)
        ann.viewed, ann.mapping = False, None
    _catch_up(lib, ann)
    try:
        save(ann)
    except OSError as exc:  # a read-only folder: use the caught-up index, keep the old file
        say(f"similarity index {ann.path.name}: cannot save the update ({reason_of(exc)})")


def _load(lib: IndexStore, model: str, stem: str, path: Path) -> Ann:
    """The index file, checked against its JSON and the library (IndexProblem says why not)."""
    expected = (FORMAT, lib.library_id, model, stem)
    info, _ = vectorfile.described(path, IndexInfo, IndexProblem, lib, expected)
    index, mapping = _view(path)
    if index.ndim != info.dim or len(index) != info.count:
        raise IndexProblem("its header does not match its description (damaged)")
    ann = Ann(index, info, path, viewed=True, mapping=mapping)
    ann.checked = _spot_check(lib, ann)
    return ann


def _restore(source: Any, *, view: bool = False) -> Any:
    """usearch's index from a path (loaded) or from mapped bytes (viewed in place)."""
    from usearch.index import Index

    try:
        index = Index.restore(source if view else str(source), view=view)
    except (RuntimeError, ValueError) as exc:
        raise IndexProblem(f"usearch cannot read it ({reason_of(exc)})") from None
    if index is None:
        raise IndexProblem("usearch cannot read it")
    return index


def _view(path: Path) -> tuple[Any, mmap.mmap]:
    """The index file memory-mapped (read-only) and viewed by usearch in place, with
    `INDEX_ADVICE` for the kernel's read-ahead. The mapping is returned to be kept as long as
    the index: usearch points into it without holding it."""
    try:
        with open(path, "rb") as f:
            mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as exc:
        raise IndexProblem(f"cannot be mapped ({reason_of(exc)})") from None
    advice = getattr(mmap, INDEX_ADVICE, None) if INDEX_ADVICE else None
    if advice is not None:
        mapping.madvise(advice)
    return _restore(memoryview(mapping), view=True), mapping


def _spot_check(lib: IndexStore, ann: Ann) -> list[int]:
    """A few of the index's vectors against the store's: a file that is not this library's
    index (or not any more) disagrees, whatever its description says. Returns the keys checked
    (the vector file's rows are checked for the same tracks)."""
    keys = np.asarray(ann.index.keys, dtype=np.int64) if len(ann.index) <= _SPOT_CHECKS else None
    if keys is None:
        rng = np.random.default_rng(time.time_ns())
        slots = rng.choice(len(ann.index), _SPOT_CHECKS, replace=False)
        keys = np.array([int(ann.index.keys[int(s)]) for s in slots], dtype=np.int64)
    ids, stored = lib.embeddings_of(keys.tolist(), ann.info.model, ann.info.stem)
    if len(ids) == 0:
        return []
    vectors = ann.index.get(ids.astype(np.uint64), dtype=np.float32)
    got = np.stack([np.asarray(v, np.float32).ravel() for v in vectors])
    cos = np.einsum("ij,ij->i", _unit_rows(got), _unit_rows(stored))
    if np.any(cos < _MIN_SPOT_COSINE):
        raise IndexProblem("its vectors disagree with the library's (stale or damaged)")
    return ids.tolist()


def _unit_rows(m: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    norms[norms == 0] = 1
    return m / norms


def refresh(lib: IndexStore, say: Say | None = None) -> int:
    """Bring every index of this library up to date (after a tag run or a scan); how many."""
    done = 0
    pattern = glob.escape(Path(lib.path).name) + ".similar.*.usearch.json"
    for info_file in Path(lib.path).parent.glob(pattern):
        try:
            info = json.loads(info_file.read_text(encoding="utf-8"))
            model, stem = str(info["model"]), str(info["stem"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a damaged description: the next search rebuilds that index
        if open_index(lib, model, stem, say=say, build_missing=False) is not None:
            done += 1
    return done
