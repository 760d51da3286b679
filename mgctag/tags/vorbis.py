"""Vorbis comments (FLAC, Ogg Vorbis, Opus) split and re-assembled byte for byte.

mutagen decodes every comment (Latin-1 bytes become U+FFFD, a comment without '=' becomes
``unknown0=...``, a non-ASCII key is rejected or renamed) and writes back what it decoded, so its
writer is never used here: the comments stay raw bytes, only the ``GENRE=`` ones are replaced.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass


class VorbisUnsupported(ValueError):
    """A comment block whose layout cannot be kept exactly."""


@dataclass
class Comments:
    vendor: bytes  # length field + vendor string
    entries: list[bytes]  # each comment's bytes (without its length field)
    tail: bytes  # whatever follows the comments (framing bit, Opus extra data, padding)

    def render(self) -> bytes:
        body = b"".join(struct.pack("<I", len(e)) + e for e in self.entries)
        return self.vendor + struct.pack("<I", len(self.entries)) + body + self.tail


def split(data: bytes) -> Comments:
    try:
        (vlen,) = struct.unpack_from("<I", data, 0)
        pos = 4 + vlen
        vendor = data[:pos]
        (count,) = struct.unpack_from("<I", data, pos)
        pos += 4
        entries = []
        for _ in range(count):
            (n,) = struct.unpack_from("<I", data, pos)
            if pos + 4 + n > len(data):
                raise VorbisUnsupported("a Vorbis comment runs past its block")
            entries.append(data[pos + 4 : pos + 4 + n])
            pos += 4 + n
    except struct.error:
        raise VorbisUnsupported("truncated Vorbis comment block") from None
    if len(vendor) > len(data):
        raise VorbisUnsupported("truncated Vorbis comment block")
    return Comments(vendor, entries, data[pos:])


def is_genre(entry: bytes) -> bool:
    return b"=" in entry and entry.split(b"=", 1)[0].lower() == b"genre"


def genre_entries(comments: Comments) -> list[bytes]:
    return [e for e in comments.entries if is_genre(e)]


def other_entries(comments: Comments) -> list[bytes]:
    return [e for e in comments.entries if not is_genre(e)]


def make_genre_entries(comments: Comments, genres: list[str]) -> list[bytes]:
    """One GENRE= comment per genre, with the key spelled as the file already spells it."""
    key = next((e.split(b"=", 1)[0] for e in comments.entries if is_genre(e)), b"GENRE")
    return [key + b"=" + g.encode("utf-8") for g in genres]


def replace_genre(comments: Comments, new: list[bytes]) -> Comments:
    """The comments with every genre entry replaced by `new`, placed where the first was."""
    out: list[bytes] = []
    placed = False
    for e in comments.entries:
        if is_genre(e):
            if not placed:
                out += new
                placed = True
            continue
        out.append(e)
    if not placed:
        out += new
    return Comments(comments.vendor, out, comments.tail)
