"""The one ID3v2 parser of mgctag: tag headers and raw frames, byte for byte.

mutagen re-encodes every frame it writes and drops frames it cannot parse (a TXXX with an unknown
text encoding, a UTF-16 text with a lone surrogate), so mgctag never lets it write an ID3 tag:
the frames are split here, every frame except the genre (TCON/TCO) is copied verbatim, and the
tag is re-assembled in its own version. What this parser cannot keep exactly (a v2.3 extended
header, a CRC, compressed v2.2 tags) is refused with a reason. A v2.2/v2.3 tag
unsynchronised as a whole is split after undoing the unsynchronisation and redone on the whole
body when it is re-assembled, which gives the other frames back their stored bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HEADER = 10
_FRAME_ID = {
    2: re.compile(rb"[A-Z0-9]{3}"),
    3: re.compile(rb"[A-Z0-9]{4}"),
    4: re.compile(rb"[A-Z0-9]{4}"),
}
_SYNC_RISK = re.compile(rb"\xff(?=[\x00\xe0-\xff]|\Z)")
GENRE_ID = {2: b"TCO", 3: b"TCON", 4: b"TCON"}


class Id3Unsupported(ValueError):
    """A tag this module cannot rewrite without changing other bytes; the message says why."""


def synchsafe(data: bytes) -> int:
    return (data[0] << 21) | (data[1] << 14) | (data[2] << 7) | data[3]


def to_synchsafe(n: int) -> bytes:
    if n >= 1 << 28:
        raise Id3Unsupported("ID3 tag too large")
    return bytes(((n >> 21) & 0x7F, (n >> 14) & 0x7F, (n >> 7) & 0x7F, n & 0x7F))


def tag_size(header: bytes) -> int | None:
    """Total bytes of the ID3v2 tag starting with `header` (10+ bytes), footer included; None
    when `header` is not an ID3v2 header."""
    if len(header) < HEADER or header[:3] != b"ID3" or header[3] in (0xFF,):
        return None
    return HEADER + synchsafe(header[6:10]) + (HEADER if header[5] & 0x10 else 0)


def skip_tags(read_at) -> int:
    """Offset after any ID3v2 tags at the start; `read_at(offset, n)` returns file bytes."""
    pos = 0
    while (size := tag_size(read_at(pos, HEADER))) is not None:
        pos += size
    return pos


@dataclass
class Id3Tag:
    """One ID3v2 tag split into its parts (frames raw, headers included)."""

    version: int  # major version: 2, 3 or 4
    revision: int
    flags: int
    ext: bytes  # the extended header, verbatim (b"" when absent)
    frames: list[bytes]
    total: int  # bytes the tag occupies in the file (header, body, padding, footer)

    def frame_id(self, raw: bytes) -> bytes:
        return raw[:3] if self.version == 2 else raw[:4]

    def is_genre(self, raw: bytes) -> bool:
        return self.frame_id(raw) == GENRE_ID[self.version]

    def genre_frames(self) -> list[bytes]:
        return [f for f in self.frames if self.is_genre(f)]

    def other_frames(self) -> list[bytes]:
        return [f for f in self.frames if not self.is_genre(f)]


def parse(data: bytes) -> Id3Tag:
    """Split the tag at the start of `data`; Id3Unsupported for what cannot be kept exactly."""
    total = tag_size(data)
    if total is None or len(data) < total:
        raise Id3Unsupported("truncated ID3v2 tag")
    version, revision, flags = data[3], data[4], data[5]
    if version not in (2, 3, 4):
        raise Id3Unsupported(f"ID3v2.{version} tags are not supported")
    if version == 2 and flags & 0x40:
        raise Id3Unsupported("compressed ID3v2.2 tag")
    body = data[HEADER : HEADER + synchsafe(data[6:10])]
    if version < 4 and flags & 0x80:  # the whole tag is unsynchronised: frames are split undone
        plain = deunsync(body)
        if unsync(plain) != body:  # redoing it would not give back the stored bytes
            raise Id3Unsupported("irregular unsynchronisation in the ID3 tag; not rewritten")
        body = plain
    ext = b""
    if version >= 3 and flags & 0x40:
        ext = _extended_header(body, version)
    frames = _split(body[len(ext) :], version, synchsafe_sizes=version == 4)
    if frames is None and version == 4:  # iTunes wrote v2.4 frame sizes as plain integers
        frames = _split(body[len(ext) :], version, synchsafe_sizes=False)
    if frames is None:
        raise Id3Unsupported("cannot split the ID3 tag into frames")
    return Id3Tag(version, revision, flags, ext, frames, total)


def _extended_header(body: bytes, version: int) -> bytes:
    if version == 3:
        raise Id3Unsupported("ID3v2.3 extended header (it records the padding size)")
    size = synchsafe(body[:4])
    if size < 6 or size > len(body):
        raise Id3Unsupported("broken ID3 extended header")
    if body[5] & 0x20:
        raise Id3Unsupported("the ID3 tag carries a CRC of its frames")
    return body[:size]


def _frame_size(header: bytes, version: int, synchsafe_sizes: bool) -> int:
    if version == 2:
        return int.from_bytes(header[3:6], "big")
    return synchsafe(header[4:8]) if synchsafe_sizes else int.from_bytes(header[4:8], "big")


def _split(body: bytes, version: int, *, synchsafe_sizes: bool) -> list[bytes] | None:
    """Raw frames up to the padding, or None when the sizes do not line up."""
    hdr = 6 if version == 2 else 10
    frames, pos = [], 0
    while pos + hdr <= len(body) and body[pos] != 0:
        header = body[pos : pos + hdr]
        if not _FRAME_ID[version].fullmatch(header[: 3 if version == 2 else 4]):
            return None
        end = pos + hdr + _frame_size(header, version, synchsafe_sizes)
        if end > len(body):
            return None
        frames.append(body[pos:end])
        pos = end
    if any(body[pos:]):  # junk after the frames: it would be lost
        return None
    return frames


def unsync(data: bytes) -> bytes:
    """ID3 unsynchronisation: a 0x00 after every 0xFF followed by 0xE0-0xFF or 0x00 (or at the
    end), so no MPEG sync pattern appears inside the tag."""
    return _SYNC_RISK.sub(b"\xff\x00", data)


def deunsync(data: bytes) -> bytes:
    return data.replace(b"\xff\x00", b"\xff")


def genre_frame(version: int, genres: list[str], separator: str, unsync: bool) -> bytes:
    """A TCON (TCO) frame holding `genres` in the tag's own version."""
    if version == 4:
        body = b"\x03" + "\0".join(genres).encode("utf-8")
        flags = b"\x00\x02" if unsync else b"\x00\x00"  # UTF-8 never holds 0xFF: no change
        return b"TCON" + to_synchsafe(len(body)) + flags + body
    text = separator.join(genres)
    try:
        body = b"\x00" + text.encode("latin-1")
    except UnicodeEncodeError:
        body = b"\x01" + text.encode("utf-16")  # with its byte-order mark
    if version == 3:
        return b"TCON" + len(body).to_bytes(4, "big") + b"\x00\x00" + body
    return b"TCO" + len(body).to_bytes(3, "big") + body


def build(tag: Id3Tag, frames: list[bytes], *, fit: int | None = None, pad: int = 1024) -> bytes:
    """The tag with `frames`: exactly `fit` bytes when they fit (padding), else grown by `pad`."""
    body = tag.ext + b"".join(frames)
    if tag.version < 4 and tag.flags & 0x80:
        body = unsync(body)  # deterministic: the other frames come out as they were stored
    footer = bool(tag.flags & 0x10)
    room = None if fit is None else fit - HEADER - len(body) - (HEADER if footer else 0)
    if footer:  # a tag with a footer may not be padded
        size = len(body)
    elif room is not None and room >= 0:
        size = len(body) + room
    else:
        size = len(body) + pad
    head = bytes((tag.version, tag.revision, tag.flags)) + to_synchsafe(size)
    data = b"ID3" + head + body.ljust(size, b"\x00")
    return data + (b"3DI" + head if footer else b"")


def new_tag(version: int) -> Id3Tag:
    return Id3Tag(version, 0, 0, b"", [], 0)


def replace_genre(tag: Id3Tag, genre_frames: list[bytes]) -> list[bytes]:
    """Every frame of `tag` in order, its genre frames replaced by `genre_frames` (placed where
    the first old genre frame was, else at the end)."""
    out: list[bytes] = []
    placed = False
    for raw in tag.frames:
        if tag.is_genre(raw):
            if not placed:
                out += genre_frames
                placed = True
            continue
        out.append(raw)
    return out if placed else out + genre_frames
