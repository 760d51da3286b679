"""The vectors a similarity query re-scores, in one memory-mapped file beside its index.

The HNSW index (search/ann.py) returns 40 candidates, whose stored vectors re-rank them. Read from
SQLite that is an SQL statement and 40 blobs to unpack a query; here the same float16 values sit
in one file (`….usearch.f16`) addressed by track id — row `id` holds that track's vector, so a
candidate costs one page of one file, with no map to load — memory-mapped with random-access
advice (no read-ahead of neighbouring rows nobody asked for), and a query's rows are asked of
the kernel together before any is read (`_prefetch`). Measured at a million tracks
(docs/scale.md): a warm query 1.5–3 ms faster than reading SQLite; from a cold cache the rows
cost 0.9–1.0 ms a query instead of 3.1–3.4 ms one page fault after another.

Rows are the stored values bit for bit (float16, as the compact store keeps them), so re-scored
scores equal exact search's. A row of zeros is a track the file does not hold; a row starting with
NaN one whose stored vector float16 cannot hold (the store keeps it as float32): both are read
from the store instead, so the file only ever makes a query faster, never different.

It is kept honest as the index is: a JSON beside it records the library, model, stem, dimension,
the generation it reflects, its size, identity and a checksum; opening checks all of them (and
sampled rows against the store), catches up an older generation from the library's `changes`,
and anything else is rewritten from the store with one line said. Every write goes to a copy
that replaces the file atomically, so a reader keeps a consistent mapping and a killed write
leaves the old file.
"""

from __future__ import annotations

import json
import mmap
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TypeVar

import numpy as np

from mgctag.atomicio import atomic_path
from mgctag.errors import reason_of

FORMAT = 1
_WIDTH = 2  # bytes a value: float16
_SPOT_CHECKS = 8
_IN_CHUNK = 20_000  # changed tracks read from the store at a time
_CHECK_BLOCK = 1 << 22  # 64-bit words per checksum block (32 MB)
#: madvise for a query's candidate rows before they are read (0: none; platforms without it).
PREFETCH = getattr(mmap, "MADV_WILLNEED", 0)


class VectorStore(Protocol):
    """What the vector file needs of `mgctag.library.db.Library`."""

    @property
    def library_id(self) -> str: ...

    def generation(self) -> int: ...

    def changed_since(self, generation: int) -> list[int]: ...

    def iter_embeddings(
        self, model: str, stem: str = "mix", batch: int = ...
    ) -> Iterable[tuple[np.ndarray, np.ndarray]]: ...

    def embeddings_of(
        self, track_ids: Iterable[int], model: str, stem: str = "mix", *, ok_only: bool = True
    ) -> tuple[np.ndarray, np.ndarray]: ...


class Description(Protocol):
    """What `described` reads of a file's JSON description (`VectorsInfo`, `ann.IndexInfo`)."""

    @property
    def format(self) -> int: ...

    @property
    def library(self) -> str: ...

    @property
    def model(self) -> str: ...

    @property
    def stem(self) -> str: ...

    @property
    def generation(self) -> int: ...

    @property
    def size(self) -> int: ...

    @property
    def inode(self) -> int: ...

    @property
    def mtime_ns(self) -> int: ...

    @property
    def checksum(self) -> str: ...


_I = TypeVar("_I", bound=Description)


class VectorsProblem(Exception):
    """Why a vector file cannot be used as it is (said in one line, then it is rewritten)."""


@dataclass(frozen=True)
class VectorsInfo:
    """The JSON beside a vector file."""

    format: int
    library: str
    model: str
    stem: str
    dim: int
    generation: int
    size: int
    inode: int
    mtime_ns: int
    checksum: str


def vectors_path(index: Path) -> Path:
    """The vector file of the index at `index`."""
    return index.with_name(index.name + ".f16")


def info_path(path: Path) -> Path:
    """The JSON description beside a file (the index's or the vector file's)."""
    return path.with_name(path.name + ".json")


def rows_of(matrix: np.ndarray) -> np.ndarray:
    """float32 vectors as the file's float16 rows; a row float16 does not hold exactly (stored
    as float32) starts with NaN: it is read from the store."""
    with np.errstate(over="ignore"):
        rows = np.asarray(matrix, np.float32).astype("<f2")
    inexact = np.any(rows.astype(np.float32) != matrix, axis=1)
    rows[inexact, 0] = np.nan
    return rows


def _write_rows(f: BinaryIO, ids: np.ndarray, rows: np.ndarray) -> None:
    """Write each row at its id's place, one write per run of consecutive ids (a gap past the
    end reads back as zeros: rows not held)."""
    order = np.argsort(ids, kind="stable")
    ids, rows = ids[order], rows[order]
    breaks = np.flatnonzero(np.diff(ids) != 1) + 1
    row_bytes = rows.shape[1] * _WIDTH
    for start, stop in zip(np.r_[0, breaks], np.r_[breaks, len(ids)], strict=True):
        f.seek(int(ids[start]) * row_bytes)
        f.write(np.ascontiguousarray(rows[start:stop]).tobytes())


class VectorFile:
    """An open vector file: its rows memory-mapped (read-only), and what they reflect."""

    def __init__(self, path: Path, info: VectorsInfo) -> None:
        self.path, self.info = path, info
        self._map: mmap.mmap | None = None
        self.matrix = np.empty((0, info.dim), "<f2")
        if info.size:
            with open(path, "rb") as f:
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            if hasattr(mmap, "MADV_RANDOM"):
                self._map.madvise(mmap.MADV_RANDOM)
            self.matrix = np.frombuffer(self._map, "<f2").reshape(-1, info.dim)

    def get(self, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """(ids held, their float32 vectors, ids to read from the store), in the order asked."""
        want = np.asarray(ids, np.int64).reshape(-1)
        inside = (want >= 0) & (want < len(self.matrix))
        self._prefetch(want[inside])
        rows = self.matrix[want[inside]].astype(np.float32)
        usable = np.any(rows != 0, axis=1) & ~np.isnan(rows[:, 0])
        held = np.zeros(len(want), bool)
        held[np.flatnonzero(inside)[usable]] = True
        return want[held], rows[usable], want[~held].tolist()

    def _prefetch(self, rows: np.ndarray) -> None:
        """Ask the kernel for all these rows' pages at once (MADV_WILLNEED: reads started, not
        waited for), so that from a cold page cache a query waits for its 40 candidates' reads
        together, not for one page fault after another (measured in docs/scale.md)."""
        if self._map is None or not PREFETCH or len(rows) < 2:
            return
        row_bytes = self.info.dim * _WIDTH
        first = rows * row_bytes // mmap.PAGESIZE
        last = ((rows + 1) * row_bytes - 1) // mmap.PAGESIZE
        for page, end in zip(first.tolist(), last.tolist(), strict=True):
            self._map.madvise(PREFETCH, page * mmap.PAGESIZE, (end - page + 1) * mmap.PAGESIZE)

    def close(self) -> None:
        """Unmap (when no array of its rows is still in use; else the mapping goes with them)."""
        self.matrix = np.empty((0, self.info.dim), "<f2")
        if self._map is not None:
            with suppress(BufferError):
                self._map.close()
            self._map = None


class Writer:
    """A new vector file being written: rows put in any order (each at its id's place)."""

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.dim = f, 0
        self.file: VectorFile | None = None  # once written and described

    def put(self, ids: np.ndarray, matrix: np.ndarray) -> None:
        if not len(ids):
            return
        self.dim = self.dim or matrix.shape[1]
        if matrix.shape[1] != self.dim:
            raise VectorsProblem(f"vectors of {matrix.shape[1]} and {self.dim} values")
        _write_rows(self.f, np.asarray(ids, np.int64), rows_of(matrix))


@contextmanager
def writing(
    lib: VectorStore, model: str, stem: str, path: Path, generation: int
) -> Iterator[Writer]:
    """A Writer for a new file at `path` holding the library at `generation`; on a clean exit the
    file replaces `path` atomically, described, and is opened as `writer.file` (None when no
    row was put: nothing is left at `path` then)."""
    with atomic_path(path) as tmp, open(tmp, "r+b") as f:
        writer = Writer(f)
        yield writer
    if not writer.dim:
        path.unlink(missing_ok=True)
        info_path(path).unlink(missing_ok=True)
        return
    info = VectorsInfo(FORMAT, lib.library_id, model, stem, writer.dim, generation, 0, 0, 0, "")
    writer.file = VectorFile(path, _describe(path, info))


def rewrite(lib: VectorStore, model: str, stem: str, path: Path) -> VectorFile | None:
    """A new vector file of every OK track's vector, read from the store (None: there are none)."""
    with writing(lib, model, stem, path, lib.generation()) as writer:
        for ids, matrix in lib.iter_embeddings(model, stem):
            writer.put(ids, matrix)
    return catch_up(lib, writer.file) if writer.file is not None else None


def _describe(path: Path, info: VectorsInfo) -> VectorsInfo:
    """Record the file's size, identity and checksum in its JSON (written after the file)."""
    st = path.stat()
    info = replace(
        info, size=st.st_size, inode=st.st_ino, mtime_ns=st.st_mtime_ns, checksum=checksum(path)
    )
    with atomic_path(info_path(path)) as tmp:
        tmp.write_text(json.dumps(asdict(info)), encoding="utf-8")
    return info


def catch_up(lib: VectorStore, vf: VectorFile) -> VectorFile:
    """The file with the library's changes since its generation applied (the same file when
    there are none): changed rows are rewritten from the store, rows of tracks no longer OK (or
    without this vector) zeroed, in a copy that then replaces the file."""
    generation = lib.generation()
    if generation == vf.info.generation:
        return vf
    changed = lib.changed_since(vf.info.generation)
    info = vf.info
    rows = len(vf.matrix)
    with atomic_path(vf.path) as tmp:
        shutil.copyfile(vf.path, tmp)
        with open(tmp, "r+b") as f:
            for start in range(0, len(changed), _IN_CHUNK):
                part = changed[start : start + _IN_CHUNK]
                ids, matrix = lib.embeddings_of(part, info.model, info.stem)
                gone = np.array(sorted(set(part) - set(ids.tolist())), np.int64)
                gone = gone[(gone >= 0) & (gone < rows)]
                if len(gone):
                    _write_rows(f, gone, np.zeros((len(gone), info.dim), "<f2"))
                if len(ids) and matrix.shape[1] != info.dim:
                    raise VectorsProblem(f"the library's vectors now have {matrix.shape[1]} values")
                if len(ids):
                    _write_rows(f, ids, rows_of(matrix))
        vf.close()  # before the file is replaced (Windows cannot replace a mapped file)
    return VectorFile(vf.path, _describe(vf.path, replace(info, generation=generation)))


def described(
    path: Path, cls: type[_I], problem: type[Exception], lib: VectorStore, expected: tuple
) -> tuple[_I, os.stat_result]:
    """A file's JSON description (`cls`), checked against the library and the file itself: the
    same format/library/model/stem (`expected`), not newer than the library, the size written,
    and, when its inode or mtime moved, the same checksum. Raises `problem` saying why not.
    The one check behind the index (ann.py) and its vector file."""
    try:
        info = cls(**json.loads(info_path(path).read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise problem("its description file is missing") from None
    except (OSError, ValueError, TypeError) as exc:
        raise problem(f"its description file is unreadable ({reason_of(exc)})") from None
    if (info.format, info.library, info.model, info.stem) != expected:
        raise problem("made for another library, model or version")
    if info.generation > lib.generation():
        raise problem("newer than the library (a database restored from a backup?)")
    try:
        st = path.stat()
    except OSError as exc:
        raise problem(f"cannot be read ({reason_of(exc)})") from None
    if st.st_size != info.size:
        raise problem(f"{st.st_size} bytes where {info.size} were written (damaged)")
    touched = (st.st_ino, st.st_mtime_ns) != (info.inode, info.mtime_ns)
    if touched and checksum(path) != info.checksum:
        raise problem("its bytes changed since it was written (damaged)")
    return info, st


def load(lib: VectorStore, model: str, stem: str, path: Path) -> VectorFile:
    """The vector file, checked against its JSON and the library (VectorsProblem says why not;
    the caller spot-checks rows with `check`)."""
    expected = (FORMAT, lib.library_id, model, stem)
    info, st = described(path, VectorsInfo, VectorsProblem, lib, expected)
    if info.dim <= 0 or st.st_size % (info.dim * _WIDTH):
        raise VectorsProblem(f"{st.st_size} bytes where {info.size} were written (damaged)")
    try:
        return VectorFile(path, info)
    except (OSError, ValueError) as exc:
        raise VectorsProblem(f"cannot be mapped ({reason_of(exc)})") from None


def check(lib: VectorStore, vf: VectorFile, keys: Sequence[int]) -> None:
    """These tracks' rows (tracks the index holds) against the store: a row missing or other
    than the stored vector means the file is not this library's (or not any more)."""
    ids, stored = lib.embeddings_of(keys, vf.info.model, vf.info.stem)
    if not len(ids):
        return
    held = vf.matrix[ids[ids < len(vf.matrix)]]
    if len(held) < len(ids) or not np.array_equal(held, rows_of(stored), equal_nan=True):
        raise VectorsProblem("its vectors disagree with the library's (stale or damaged)")


def checksum(path: Path) -> str:
    """A checksum of a file at memory speed: sums of its 64-bit words, per 32 MB block and
    weighted by block (zlib's crc32 ran at ~0.6 GB/s here, numpy's sum at ~1.5 GB/s)."""
    size = path.stat().st_size
    words: Any = np.memmap(path, "<u8", mode="r", shape=(size // 8,)) if size >= 8 else []
    total = weighted = 0
    mask = (1 << 64) - 1
    for block, start in enumerate(range(0, len(words), _CHECK_BLOCK)):
        s = int(np.sum(words[start : start + _CHECK_BLOCK], dtype=np.uint64))
        total = (total + s) & mask
        weighted = (weighted + (block + 1) * s) & mask
    with open(path, "rb") as f:
        f.seek(size - size % 8)
        tail = f.read()
    return f"{size:x}-{total:016x}-{weighted:016x}-{tail.hex()}"
