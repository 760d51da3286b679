"""The audio payload hash: proof that a tag edit left the audio data alone.

Every write compares this hash of its copy with the original's before it commits.
"""

from __future__ import annotations

import hashlib
import os
import struct
from array import array
from pathlib import Path
from typing import Any, BinaryIO

import av

from mgctag.errors import reason_of
from mgctag.tags import id3raw
from mgctag.tags.common import TagError, TagReadError

_ASF_HEADER = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")
_ASF_DATA = bytes.fromhex("3626b2758e66cf11a6d900aa0062ce6c")
_CHUNK = 1 << 20


def audio_payload_hash(path: str | os.PathLike[str]) -> str:
    """SHA-256 of the audio data only, so a tag edit can be shown to leave the audio alone.

    MP3/ADTS: the bytes between leading ID3v2 tags and trailing APEv2/Lyrics3/ID3v1 tags.
    FLAC: the frames after the metadata blocks. Ogg: every packet except each stream's comment
    header (packet 1). WAV/AIFF: the fmt/data or COMM/SSND chunks. ASF: the Data Object.
    MP4 and anything else: the audio packets as FFmpeg demuxes them (this also checks that the
    sample tables still point at the same bytes after mutagen moved them).
    """
    path = Path(path)
    h = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            _hash_payload(fh, h)
    except TagError:
        raise
    except FileNotFoundError:
        raise TagReadError("no such file", path) from None
    except Exception as e:
        raise TagReadError(f"cannot read the audio data: {reason_of(e)}", path) from None
    return h.hexdigest()


def _hash_payload(fh: BinaryIO, h: Any) -> None:
    head = fh.read(64)
    start = _skip_id3v2(fh)
    fh.seek(start)
    after = fh.read(16)
    if head.startswith(b"OggS"):
        _hash_ogg(fh, h)
    elif after.startswith(b"fLaC"):
        _hash_flac(fh, h, start)
    elif head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        _hash_chunks(fh, h, "<I", {b"fmt ", b"data"})
    elif head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        _hash_chunks(fh, h, ">I", {b"COMM", b"SSND"})
    elif head[:16] == _ASF_HEADER:
        _hash_asf(fh, h)
    elif head[4:8] != b"ftyp" and (start > 0 or (after[:1] == b"\xff" and after[1] & 0xE0 == 0xE0)):
        _hash_range(fh, h, start, _trailer_start(fh))
    else:
        _hash_demuxed(fh, h)


def _hash_range(fh: BinaryIO, h: Any, start: int, end: int) -> None:
    fh.seek(start)
    left = end - start
    while left > 0:
        block = fh.read(min(_CHUNK, left))
        if not block:
            break
        h.update(block)
        left -= len(block)


def _size(fh: BinaryIO) -> int:
    return fh.seek(0, os.SEEK_END)


def _skip_id3v2(fh: BinaryIO) -> int:
    """Offset after any ID3v2 tags at the start (the one ID3 header parser: tags.id3raw)."""

    def read_at(offset: int, n: int) -> bytes:
        fh.seek(offset)
        return fh.read(n)

    return id3raw.skip_tags(read_at)


def _trailer_start(fh: BinaryIO) -> int:
    """End of the audio: before trailing ID3v1, APEv2 and Lyrics3v2 tags, in any order."""
    end = _size(fh)
    while end > 0:
        fh.seek(max(0, end - 128))
        tail = fh.read(end - max(0, end - 128))
        if tail[-128:-125] == b"TAG" and len(tail) == 128:
            end -= 128
        elif tail[-32:-24] == b"APETAGEX":
            size, flags = struct.unpack("<I4xI", tail[-20:-8])
            end -= size + (32 if flags & 0x80000000 else 0)
        elif tail[-9:] == b"LYRICS200" and tail[-15:-9].isdigit():
            end -= int(tail[-15:-9]) + 15
        else:
            return end
    return 0


def _hash_flac(fh: BinaryIO, h: Any, start: int) -> None:
    pos = start + 4
    last = False
    while not last:
        fh.seek(pos)
        header = fh.read(4)
        if len(header) < 4:
            raise ValueError("truncated FLAC metadata")
        last = bool(header[0] & 0x80)
        pos += 4 + int.from_bytes(header[1:4], "big")
    _hash_range(fh, h, pos, _trailer_start(fh))


def _hash_chunks(fh: BinaryIO, h: Any, fmt: str, wanted: set[bytes]) -> None:
    """RIFF/IFF chunks named in `wanted`, with their ids (tags live in other chunks)."""
    size = _size(fh)
    pos = 12
    while pos + 8 <= size:
        fh.seek(pos)
        cid, length = struct.unpack(fmt[0] + "4s" + fmt[1:], fh.read(8))
        end = size if length == 0xFFFFFFFF else min(pos + 8 + length, size)  # RF64 data
        if cid in wanted:
            h.update(cid)
            _hash_range(fh, h, pos + 8, end)
        pos = end + (length & 1)


def _hash_asf(fh: BinaryIO, h: Any) -> None:
    size = _size(fh)
    fh.seek(16)
    pos = struct.unpack("<Q", fh.read(8))[0]  # the Header Object (all tags) is skipped whole
    while pos + 24 <= size:
        fh.seek(pos)
        guid, length = struct.unpack("<16sQ", fh.read(24))
        if guid == _ASF_DATA:
            _hash_range(fh, h, pos, size if length == 0 else pos + length)
        if length < 24:
            break
        pos += length


def _hash_ogg(fh: BinaryIO, h: Any) -> None:
    """Every packet of every logical stream except packet 1, the comment header: per stream (by
    serial number), its packets' bytes and lengths in order.

    Page layout, sequence numbers and checksums are left out, so a comment header re-paged by a
    tag edit hashes the same. Pages are read whole and their bodies hashed in one piece once a
    stream is past its comment header: a Python object per packet (Opus has ~50 a second) made
    the hash twice as slow (docs/benchmarks.md, issue 29).
    """
    fh.seek(0)
    streams: dict[int, _OggStream] = {}
    while (page := _ogg_page(fh)) is not None:
        serial, table, body = page
        streams.setdefault(serial, _OggStream()).add(table, body)
    for serial in sorted(streams):
        h.update(struct.pack("<I", serial))
        h.update(streams[serial].digest())


_OGG_HEADER = struct.Struct("<4sBBqIIiB")


def _ogg_page(fh: BinaryIO) -> tuple[int, bytes, bytes] | None:
    """The next page's (serial, lacing table, body); None at the end (or at trailing zeros)."""
    header = fh.read(27)
    if not header or (len(header) < 27 and not any(header)):
        return None
    if len(header) < 27:
        raise ValueError("truncated Ogg page header")
    magic, version, _, _, serial, _, _, segments = _OGG_HEADER.unpack(header)
    if magic != b"OggS" or version != 0:
        raise ValueError(f"not an Ogg page at 0x{fh.tell() - 27:x}")
    table = fh.read(segments)
    body = fh.read(sum(table))
    if len(table) != segments or len(body) != sum(table):
        raise ValueError("truncated Ogg page")
    return serial, table, body


class _OggStream:
    """One logical stream's packets as hashed: the bytes of every packet but packet 1 and the
    lengths of those packets (their boundaries), fed page by page."""

    def __init__(self) -> None:
        self.data = hashlib.sha256()
        self.lengths = array("Q")
        self.index = 0  # the packet being read
        self.length = 0  # its bytes so far

    def add(self, table: bytes, body: bytes) -> None:
        whole = self.index >= 2  # past the comment header: every byte of the body is hashed
        if whole:
            self.data.update(body)
        start = pos = 0
        for lacing in table:
            pos += lacing
            self.length += lacing
            if lacing < 255:  # the packet ends here
                if self.index != 1:
                    self.lengths.append(self.length)
                    if not whole:
                        self.data.update(body[start:pos])
                self.index += 1
                self.length = 0
                start = pos
        if not whole and self.index != 1:  # the start of a packet continued on the next page
            self.data.update(body[start:pos])

    def digest(self) -> bytes:
        return self.data.digest() + hashlib.sha256(self.lengths.tobytes()).digest()


def _hash_demuxed(fh: BinaryIO, h: Any) -> None:
    fh.seek(0)
    with av.open(fh, "r", metadata_errors="replace") as container:
        streams = [s for s in container.streams if s.type == "audio"]
        if not streams:
            raise ValueError("no audio stream")
        for packet in container.demux(*streams):
            if packet.size:
                h.update(struct.pack("<iqq", packet.stream.index, packet.pts or 0, packet.dts or 0))
                h.update(bytes(packet))
