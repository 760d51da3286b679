"""Read a TensorFlow checkpoint (V2 "tensor bundle") with numpy alone.

Why: the musicnn and Spleeter weights ship only as TF1 checkpoints, and installing TensorFlow
just to read a few arrays once is heavy and fragile. The format is small and stable:

- ``PREFIX.index`` is a LevelDB-style SSTable. Its footer points at an index block whose entries
  point at data blocks; each data-block entry maps a tensor name to a serialized
  ``BundleEntryProto`` (dtype, shape, shard_id, offset, size). The entry with the empty key is the
  ``BundleHeaderProto``.
- ``PREFIX.data-SSSSS-of-NNNNN`` holds the raw little-endian tensor bytes at those offsets.

Checkpoints saved into a directory (as musicnn's are) have the prefix ``DIR/``, so the files are
``DIR/.index`` and ``DIR/.data-00000-of-00001``; pass the directory itself for those.

Usage: ``python -m tools.convert.tf_checkpoint PREFIX`` lists name, dtype and shape of every tensor.
"""

from __future__ import annotations

import argparse
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_LEN = 48  # two padded BlockHandles (40 bytes) + 8-byte magic
BLOCK_TRAILER_LEN = 5  # 1-byte compression type + 4-byte masked crc32c

# tensorflow/core/framework/types.proto DataType -> numpy dtype (little-endian on disk).
TF_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    5: np.dtype("<i2"),  # DT_INT16
    6: np.dtype("i1"),  # DT_INT8
    8: np.dtype("<c8"),  # DT_COMPLEX64
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
    17: np.dtype("<u2"),  # DT_UINT16
    18: np.dtype("<c16"),  # DT_COMPLEX128
    19: np.dtype("<f2"),  # DT_HALF
    22: np.dtype("<u4"),  # DT_UINT32
    23: np.dtype("<u8"),  # DT_UINT64
}
DT_BFLOAT16 = 14  # no numpy dtype: widened to float32 on read
DT_STRING = 7


class CheckpointError(ValueError):
    """The files are not a readable TF checkpoint V2 (names the file and the reason)."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode a protobuf/LevelDB base-128 varint at pos; return (value, new_pos)."""
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise CheckpointError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _proto_fields(buf: bytes) -> list[tuple[int, int, int | bytes]]:
    """Split a serialized protobuf message into (field number, wire type, value) triples."""
    fields: list[tuple[int, int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        field, wire = tag >> 3, tag & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = int.from_bytes(buf[pos : pos + 8], "little"), pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = int.from_bytes(buf[pos : pos + 4], "little"), pos + 4
        else:
            raise CheckpointError(f"unsupported protobuf wire type {wire}")
        fields.append((field, wire, value))
    return fields


def _int(value: int | bytes) -> int:
    """A field that must be a number (varint or fixed), not a length-delimited one."""
    if not isinstance(value, int):
        raise CheckpointError("protobuf field: expected a number, found bytes")
    return value


def _bytes(value: int | bytes) -> bytes:
    """A field that must be length-delimited (a message or a string), not a number."""
    if not isinstance(value, bytes):
        raise CheckpointError("protobuf field: expected bytes, found a number")
    return value


def _signed64(value: int | bytes) -> int:
    """Protobuf int64 varints are two's complement (unknown dims are -1)."""
    number = _int(value)
    return number - (1 << 64) if number >= 1 << 63 else number


def _parse_shape(buf: bytes) -> tuple[int, ...]:
    """TensorShapeProto: repeated Dim dim = 2 (Dim: int64 size = 1); bool unknown_rank = 3."""
    dims = []
    for field, _, value in _proto_fields(buf):
        if field == 3 and value:
            raise CheckpointError("tensor of unknown rank")
        if field == 2:
            size = next((v for f, _, v in _proto_fields(_bytes(value)) if f == 1), 0)
            dims.append(_signed64(size))
    return tuple(dims)


def _parse_entry(buf: bytes) -> dict[str, Any]:
    """BundleEntryProto: dtype=1, shape=2, shard_id=3, offset=4, size=5, crc32c=6, slices=7."""
    entry: dict[str, Any] = {
        "dtype": 0,
        "shape": (),
        "shard_id": 0,
        "offset": 0,
        "size": 0,
        "sliced": False,
    }
    for field, _, value in _proto_fields(buf):
        if field == 1:
            entry["dtype"] = _int(value)
        elif field == 2:
            entry["shape"] = _parse_shape(_bytes(value))
        elif field == 3:
            entry["shard_id"] = _int(value)
        elif field == 4:
            entry["offset"] = _signed64(value)
        elif field == 5:
            entry["size"] = _signed64(value)
        elif field == 7:
            entry["sliced"] = True
    return entry


def _read_block(data: bytes, offset: int, size: int, path: Path) -> bytes:
    """Return a block's contents, refusing compressed blocks (TF writes bundles uncompressed)."""
    if offset + size + BLOCK_TRAILER_LEN > len(data):
        raise CheckpointError(f"{path}: block at {offset} runs past the end of the file")
    compression = data[offset + size]
    if compression != 0:
        raise CheckpointError(f"{path}: compressed SSTable block (type {compression})")
    return data[offset : offset + size]


def _block_entries(block: bytes) -> list[tuple[bytes, bytes]]:
    """Decode one SSTable block: prefix-compressed keys, then restart offsets (ignored)."""
    num_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 * (num_restarts + 1)
    entries: list[tuple[bytes, bytes]] = []
    key = b""
    pos = 0
    while pos < end:
        shared, pos = _varint(block, pos)
        non_shared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + non_shared]
        pos += non_shared
        entries.append((key, block[pos : pos + value_len]))
        pos += value_len
    return entries


def read_index(index_path: Path) -> dict[str, dict]:
    """Parse the .index SSTable into {name: entry dict}; the header is under the key ''."""
    data = index_path.read_bytes()
    if len(data) < FOOTER_LEN:
        raise CheckpointError(f"{index_path}: too short to be an SSTable")
    footer = data[-FOOTER_LEN:]
    if struct.unpack_from("<Q", footer, FOOTER_LEN - 8)[0] != TABLE_MAGIC:
        raise CheckpointError(f"{index_path}: bad SSTable magic (not a TF checkpoint V2 index)")
    _, pos = _varint(footer, 0)  # metaindex handle offset (unused)
    _, pos = _varint(footer, pos)  # metaindex handle size
    index_offset, pos = _varint(footer, pos)
    index_size, _ = _varint(footer, pos)
    entries: dict[str, dict] = {}
    for _, handle in _block_entries(_read_block(data, index_offset, index_size, index_path)):
        offset, pos = _varint(handle, 0)
        size, _ = _varint(handle, pos)
        for key, value in _block_entries(_read_block(data, offset, size, index_path)):
            name = key.decode("utf-8")
            entries[name] = _header(value) if name == "" else _parse_entry(value)
    return entries


def _header(buf: bytes) -> dict:
    """BundleHeaderProto: num_shards=1, endianness=2 (0 little, 1 big), version=3."""
    header = {"num_shards": 1, "endianness": 0}
    for field, _, value in _proto_fields(buf):
        if field == 1:
            header["num_shards"] = _int(value)
        elif field == 2:
            header["endianness"] = _int(value)
    return header


def checkpoint_files(prefix: Path) -> tuple[Path, str]:
    """Resolve (index path, data-file prefix string) for a checkpoint prefix or directory."""
    prefix = Path(prefix)
    if prefix.is_dir():
        return prefix / ".index", str(prefix) + "/"
    if prefix.suffix == ".index":
        return prefix, str(prefix)[: -len(".index")]
    return Path(str(prefix) + ".index"), str(prefix)


def _decode_tensor(name: str, entry: dict, raw: bytes, path: Path) -> np.ndarray:
    """Turn the raw bytes of one entry into an array of its dtype and shape."""
    dtype_id, shape = entry["dtype"], entry["shape"]
    if dtype_id == DT_BFLOAT16:
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return bits.view(np.float32).reshape(shape)
    if dtype_id not in TF_DTYPES:
        raise CheckpointError(f"{path}: tensor {name!r} has unsupported dtype {dtype_id}")
    dtype = TF_DTYPES[dtype_id]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise CheckpointError(f"{path}: tensor {name!r} has {len(raw)} bytes, expected {expected}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def read_checkpoint(prefix: Path, *, skip_strings: bool = True) -> dict[str, np.ndarray]:
    """Read every tensor of a TF checkpoint V2 into {variable name: numpy array}.

    String tensors (rare in weight checkpoints) are skipped unless skip_strings is False, in which
    case they raise. Partitioned (sliced) variables are refused: neither musicnn nor Spleeter uses
    them.
    """
    index_path, data_prefix = checkpoint_files(prefix)
    if not index_path.is_file():
        raise CheckpointError(f"{index_path}: no such checkpoint index")
    entries = read_index(index_path)
    header = entries.pop("", {"num_shards": 1, "endianness": 0})
    if header["endianness"] != 0:
        raise CheckpointError(f"{index_path}: big-endian checkpoints are not supported")
    shards: dict[int, bytes] = {}
    tensors: dict[str, np.ndarray] = {}
    for name, entry in sorted(entries.items()):
        if entry["sliced"]:
            raise CheckpointError(f"{index_path}: tensor {name!r} is partitioned (sliced)")
        if entry["dtype"] == DT_STRING:
            if skip_strings:
                continue
            raise CheckpointError(f"{index_path}: tensor {name!r} is a string tensor")
        shard = entry["shard_id"]
        if shard not in shards:
            shard_path = Path(f"{data_prefix}.data-{shard:05d}-of-{header['num_shards']:05d}")
            if not shard_path.is_file():
                raise CheckpointError(f"{shard_path}: data shard missing")
            shards[shard] = shard_path.read_bytes()
        raw = shards[shard][entry["offset"] : entry["offset"] + entry["size"]]
        tensors[name] = _decode_tensor(name, entry, raw, index_path)
    return tensors


def main(argv: list[str]) -> int:
    """List a checkpoint's tensors (name, dtype, shape): what a converter has to map."""
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("checkpoint", type=Path, help="the checkpoint's prefix, or its folder")
    args = ap.parse_args(argv)
    try:
        tensors = read_checkpoint(args.checkpoint)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name, array in tensors.items():
        print(f"{name}\t{array.dtype}\t{list(array.shape)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
