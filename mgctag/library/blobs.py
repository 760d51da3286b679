"""Typed blobs: embeddings and model scores stored as packed numbers, not JSON text.

Why: at a million tracks the JSON was most of the store (docs/scale.md: 27 KB a track, 13 KB of it
mn04's 527 AudioSet scores written as text). Numbers are packed little-endian; label names are
stored once per vocabulary (the `vocabularies` table, keyed by a hash of the names, so an id never
depends on which transaction inserted it first) and each row keeps only the vocabulary's id.

Precision, measured in docs/scale.md ("The compact store"): raw tag scores as float16 (they are only
shown, rounded to two decimals, and re-deriving genres from them changes none), genre scores as
float32 (they decide which genres are written, so they keep the precision the JSON had), and
embeddings as float16 when the vector survives it (a unit vector's top-10 neighbours are the same),
else float32 (a vector with huge or tiny values keeps its bits). Anything the format does not
cover (labels that repeat, values that are not numbers) stays JSON, so nothing is ever lost.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

MAGIC = b"MGS\x01"  # a scores blob, format 1
_FLAT, _NESTED, _PAIRS = b"D", b"N", b"L"  # {label: p}, {part: {label: p}}, [[label, p], ...]
_F16, _F32 = b"e", b"f"
_PART = struct.Struct("<qcBH")  # vocabulary id, value type, has an order, count
_F16_MAX = 65504.0
_F16_TOLERANCE = 1e-3  # largest error allowed, relative to the vector's largest value


@dataclass(frozen=True)
class Vocabulary:
    """An ordered list of label names and its id (a 63-bit hash of the names)."""

    id: int
    labels: tuple[str, ...]

    @classmethod
    def of(cls, labels: Sequence[str]) -> Vocabulary:
        """The vocabulary of these names (remembered: a store writes the same few again and
        again, and hashing 527 names per row was a third of a conversion's time)."""
        names = tuple(labels)
        known = _KNOWN.get(names)
        if known is None:
            if len(_KNOWN) > 4096:
                _KNOWN.clear()
            known = _KNOWN[names] = cls(vocabulary_id(names), names)
        return known

    @cached_property
    def text(self) -> str:
        """The names as the `vocabularies` table stores them (JSON)."""
        return json.dumps(list(self.labels), ensure_ascii=False)


_KNOWN: dict[tuple[str, ...], Vocabulary] = {}


def vocabulary_id(labels: Sequence[str]) -> int:
    digest = hashlib.sha256(json.dumps(list(labels), ensure_ascii=False).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


# --- embeddings -------------------------------------------------------------------------------


def pack_vector(v: Any) -> bytes:
    """A 1-D embedding as little-endian float16 bytes when it survives float16 (the error stays
    under 1e-3 of its largest value, nothing overflows), else as float32 bytes."""
    a = np.asarray(v)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"an embedding must be a non-empty 1-D vector, got shape {a.shape}")
    f32 = a.astype("<f4", copy=False)
    if fits_float16(f32):
        return f32.astype("<f2").tobytes()
    return f32.tobytes()


def fits_float16(v: np.ndarray) -> bool:
    """Whether float16 keeps this vector: finite, no value past float16's range, and every value
    within 1e-3 of the vector's largest magnitude of its float32 self."""
    if not np.all(np.isfinite(v)):
        return False
    top = float(np.max(np.abs(v)))
    if top > _F16_MAX:
        return False
    err = np.max(np.abs(v.astype(np.float16).astype(np.float32) - v))
    return bool(err <= _F16_TOLERANCE * top)


def unpack_vector(blob: bytes, dim: int) -> np.ndarray:
    """A stored embedding as a float32 array: 2 bytes a value is float16, 4 is float32."""
    width = len(blob) // max(dim, 1)
    if width * dim != len(blob) or width not in (2, 4):
        raise ValueError(f"an embedding blob of {len(blob)} bytes cannot hold {dim} values")
    return np.frombuffer(blob, "<f2" if width == 2 else "<f4").astype(np.float32)


def unpack_matrix(blobs: Sequence[bytes], dim: int) -> np.ndarray:
    """Stored embeddings of one size as one float32 (n, dim) matrix (float16 and float32 rows may
    be mixed: a row keeps float32 when float16 would not hold it)."""
    n = len(blobs)
    if n and all(len(b) == 2 * dim for b in blobs):
        return np.frombuffer(b"".join(blobs), "<f2").reshape(n, dim).astype(np.float32)
    if n and all(len(b) == 4 * dim for b in blobs):
        return np.frombuffer(bytearray().join(blobs), "<f4").reshape(n, dim)
    out = np.empty((n, dim), np.float32)
    for i, b in enumerate(blobs):
        out[i] = unpack_vector(b, dim)
    return out


# --- scores: {label: p}, {part: {label: p}} and [[label, p], ...] -------------------------------


@dataclass(frozen=True)
class Packed:
    """A scores value as a blob, and the vocabularies the blob refers to."""

    blob: bytes
    vocabularies: tuple[Vocabulary, ...]


def pack_scores(value: Any, *, precise: bool = False) -> Packed | None:
    """`value` as a scores blob, or None when the format does not hold it (store JSON then).

    `precise` keeps float32 (genre scores); otherwise float16 (raw tag scores)."""
    kind = _F32 if precise else _F16
    if isinstance(value, Mapping):
        if value and all(isinstance(v, Mapping) for v in value.values()):
            parts = [(str(k), _dict_part(v, kind)) for k, v in value.items()]
            if any(not isinstance(k, str) for k in value):
                return None
            return _pack(_NESTED, parts)
        return _pack(_FLAT, [("", _dict_part(value, kind))])
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return _pack(_PAIRS, [("", _pairs_part(value, kind))])
    return None


_Part = tuple[Vocabulary, bytes, np.ndarray | None, np.ndarray] | None


_NUMBERS = frozenset({float, int, np.float16, np.float32, np.float64, np.int32, np.int64})


def _values(numbers: Sequence[Any], kind: bytes) -> np.ndarray | None:
    """The numbers as float16 / float32, or None when one is not a number (bool, text, None)."""
    if not {type(x) for x in numbers} <= _NUMBERS:
        return None
    arr = np.array(numbers, dtype=np.float64)
    if kind == _F16:
        # float16 only where it holds the value (probabilities do); else keep float32
        if np.any(np.abs(arr[np.isfinite(arr)]) > _F16_MAX):
            return None
        return arr.astype("<f2")
    return arr.astype("<f4")


def _dict_part(d: Mapping[Any, Any], kind: bytes) -> _Part:
    if not {type(k) for k in d} <= {str} or len(d) > 0xFFFF:
        return None
    values = _values(list(d.values()), kind)
    if values is None:
        return None
    return (Vocabulary.of(list(d)), kind, None, values)


def _pairs_part(pairs: Sequence[Any], kind: bytes) -> _Part:
    labels, numbers = [], []
    for pair in pairs:
        if not isinstance(pair, Sequence) or isinstance(pair, (str, bytes)) or len(pair) != 2:
            return None
        label, p = pair
        if not isinstance(label, str):
            return None
        labels.append(label)
        numbers.append(p)
    if len(set(labels)) != len(labels) or len(labels) > 0xFFFF:
        return None
    names = sorted(labels)  # one vocabulary per label set, whatever each row's order
    values = _values(numbers, kind)
    if values is None:
        return None
    position = {name: i for i, name in enumerate(names)}
    order = np.array([position[label] for label in labels], dtype="<u2")
    in_vocab = np.empty_like(values)
    in_vocab[order] = values
    return (Vocabulary.of(names), kind, order, in_vocab)


def _pack(shape: bytes, parts: list[tuple[str, _Part]]) -> Packed | None:
    if any(p is None for _, p in parts) or len(parts) > 0xFF:
        return None
    out = [MAGIC, shape, struct.pack("<B", len(parts))]
    vocabularies = []
    for name, part in parts:
        assert part is not None
        vocab, kind, order, values = part
        encoded = name.encode("utf-8", "surrogatepass")
        if len(encoded) > 0xFF:
            return None
        out += [struct.pack("<B", len(encoded)), encoded]
        out.append(_PART.pack(vocab.id, kind, order is not None, len(values)))
        if order is not None:
            out.append(order.tobytes())
        out.append(values.tobytes())
        vocabularies.append(vocab)
    return Packed(b"".join(out), tuple(vocabularies))


def is_scores_blob(value: Any) -> bool:
    return isinstance(value, bytes) and value.startswith(MAGIC)


def scores_vocabularies(blob: bytes) -> list[int]:
    """The vocabulary ids a scores blob refers to (to fetch them before decoding)."""
    return [vocab_id for _, vocab_id, _, _ in _parts(blob)]


def unpack_scores(blob: bytes, vocabularies: Mapping[int, Sequence[str]]) -> Any:
    """A scores blob back as the value it was packed from (numbers as Python floats, each the
    shortest decimal that is the same float16 / float32: 0.2373925 reads back as 0.2373925)."""
    shape = blob[len(MAGIC) : len(MAGIC) + 1]
    parts: list[tuple[str, Any]] = []
    for name, vocab_id, order, values in _parts(blob):
        labels = vocabularies[vocab_id]
        numbers = _floats(values)
        if order is None:
            parts.append((name, dict(zip(labels, numbers, strict=True))))
        else:
            parts.append((name, [[labels[i], numbers[i]] for i in order.tolist()]))
    if shape == _NESTED:
        return dict(parts)
    return parts[0][1] if parts else {}


def _floats(values: np.ndarray) -> list[float]:
    """Each value as the shortest decimal that reads back as the same float16 / float32."""
    return [float(str(v)) for v in values]


def _parts(blob: bytes) -> list[tuple[str, int, np.ndarray | None, np.ndarray]]:
    if not blob.startswith(MAGIC):
        raise ValueError("not a scores blob")
    pos = len(MAGIC) + 1
    (count,) = struct.unpack_from("<B", blob, pos)
    pos += 1
    parts = []
    for _ in range(count):
        (length,) = struct.unpack_from("<B", blob, pos)
        name = blob[pos + 1 : pos + 1 + length].decode("utf-8", "surrogatepass")
        pos += 1 + length
        vocab_id, kind, has_order, n = _PART.unpack_from(blob, pos)
        pos += _PART.size
        order = None
        if has_order:
            order = np.frombuffer(blob, "<u2", n, pos)
            pos += 2 * n
        dtype = "<f2" if kind == _F16 else "<f4"
        values = np.frombuffer(blob, dtype, n, pos)
        pos += values.nbytes
        parts.append((name, vocab_id, order, values))
    if pos != len(blob):
        raise ValueError("a scores blob with trailing bytes")
    return parts
