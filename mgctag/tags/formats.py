"""One small class per writable tag format: how to replace the genre and nothing else.

Each class edits a temporary copy of the file (`edit`), lists every tag unit other than the genre
as raw bytes (`units`, compared before and after every write) and captures the genre exactly as
stored (`genre_raw`, kept in the journal so undo can put back the very bytes a write replaced).
ID3 and Vorbis comments are edited byte-wise by mgctag itself; MP4 and ASF go through mutagen and
are refused when mutagen would change anything but the genre.
"""

from __future__ import annotations

import base64
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from mutagen._util import delete_bytes, insert_bytes
from mutagen.aiff import AIFF
from mutagen.asf import ASF
from mutagen.flac import FLAC
from mutagen.id3 import TCON
from mutagen.mp3 import MP3
from mutagen.mp4 import MP4
from mutagen.ogg import OggPage
from mutagen.oggopus import OggOpus
from mutagen.oggvorbis import OggVorbis
from mutagen.wave import WAVE

from mgctag.tags import id3raw, vorbis

#: How ID3v2.3 (and v2.2) tags join several genres in their one TCON string (the Picard and
#: foobar2000 choice; "/" is ambiguous with names like "Pop/Funk").
ID3V23_SEPARATOR = "; "
ID3V1_GENRES = {name.casefold(): index for index, name in enumerate(TCON.GENRES)}


class FormatError(ValueError):
    """This file's tags cannot be rewritten without changing more than the genre."""


@dataclass(frozen=True)
class EditOptions:
    id3v23: bool = False
    id3v23_separator: str = ID3V23_SEPARATOR  # joins genres in an ID3v2.3 TCON ("/": beets)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)


def _read_at(fh: BinaryIO, offset: int, n: int) -> bytes:
    fh.seek(offset)
    return fh.read(n)


def _rewrite(path: Path, start: int, end: int, new: bytes) -> None:
    """Replace bytes [start, end) of `path` (mgctag's temporary copy) by `new`.

    A change of length moves the rest of the file inside the same file, in blocks (mutagen's
    insert/delete helpers): no second temporary file a kill could leave behind, and the audio
    (hundreds of MB for a long mix) is never held in memory.
    """
    grow = len(new) - (end - start)
    with path.open("r+b") as fh:
        if grow > 0:
            insert_bytes(fh, grow, end)
        elif grow < 0:
            delete_bytes(fh, -grow, start + len(new))
        fh.seek(start)
        fh.write(new)


# --- ID3 (MP3, WAV, AIFF) ---------------------------------------------------------------------


def _id3_genre_frames(
    tag: id3raw.Id3Tag | None, genres: list[str], opts: EditOptions, raw: dict | None
) -> list[bytes]:
    version = tag.version if tag is not None else (3 if opts.id3v23 else 4)
    if raw is not None and raw.get("version") in (version, None):  # None: there was no tag
        return [_unb64(f) for f in raw.get("frames", [])]
    if not genres:
        return []
    unsync = tag is not None and bool(tag.flags & 0x80)
    return [id3raw.genre_frame(version, genres, opts.id3v23_separator, unsync)]


def _id3_new_tag(old: bytes, genres: list[str], opts: EditOptions, raw: dict | None) -> bytes:
    """The ID3v2 tag bytes replacing `old` (b"": no tag); b"" when nothing would remain."""
    tag = id3raw.parse(old) if old else None
    frames = _id3_genre_frames(tag, genres, opts, raw)
    if tag is None:
        if not frames:
            return b""
        tag = id3raw.new_tag(3 if opts.id3v23 else 4)
    others = tag.other_frames()
    if raw is not None and raw.get("version") is None and not others and not frames:
        return b""  # undo of a write that created the tag: leave no empty tag behind
    return id3raw.build(tag, id3raw.replace_genre(tag, frames), fit=tag.total or None)


def _id3_raw(tag_bytes: bytes) -> dict:
    if not tag_bytes:
        return {"version": None, "frames": []}
    tag = id3raw.parse(tag_bytes)
    return {"version": tag.version, "frames": [_b64(f) for f in tag.genre_frames()]}


def _id3_units(tag_bytes: bytes) -> list[Any]:
    if not tag_bytes:
        return []
    tag = id3raw.parse(tag_bytes)
    others = tag.other_frames()  # a tag that held only a genre may come or go with it
    return [("id3", tag.version, tag.revision, tag.flags, tag.ext), *others] if others else []


class Mp3Format:
    """MP3: a leading ID3v2 tag, trailing APEv2 and ID3v1 tags (each may carry a genre)."""

    name = "id3"

    def _head(self, fh: BinaryIO) -> bytes:
        """The first ID3v2 tag (the one players and mutagen read; any further ones are kept)."""
        return _read_at(fh, 0, id3raw.tag_size(_read_at(fh, 0, id3raw.HEADER)) or 0)

    def _more(self, fh: BinaryIO, head: bytes) -> bytes:
        end = id3raw.skip_tags(lambda o, n: _read_at(fh, o, n))
        return _read_at(fh, len(head), end - len(head))

    def genre_raw(self, path: Path) -> dict:
        with path.open("rb") as fh:
            raw = _id3_raw(self._head(fh))
            v1 = _id3v1(fh)
            raw["v1"] = v1[127] if v1 else None
            ape = _ape(fh)
            raw["ape"] = [_b64(i) for i in ape.genre_items()] if ape else None
        return raw

    def units(self, path: Path) -> list[Any]:
        with path.open("rb") as fh:
            head = self._head(fh)
            out = [*_id3_units(head), self._more(fh, head)]
            v1 = _id3v1(fh)
            out.append(("id3v1", v1[:127] if v1 else None))
            ape = _ape(fh)
            out.append(("ape", ape.header_fields() if ape else None))
            out += ape.other_items() if ape else []
        return out

    def edit(self, path: Path, genres: list[str], opts: EditOptions, raw: dict | None) -> None:
        with path.open("rb") as fh:
            head = self._head(fh)
            v1 = _id3v1(fh)
            ape = _ape(fh)
        if v1 is not None:  # the trailer first: it does not move when the head grows
            if raw is not None and raw.get("v1") is not None:
                byte = raw["v1"]
            else:
                byte = next(
                    (ID3V1_GENRES[g.casefold()] for g in genres if g.casefold() in ID3V1_GENRES),
                    255,
                )
            end = path.stat().st_size
            _rewrite(path, end - 1, end, bytes([byte]))
        if ape is not None and ape.genre_items():
            items = [_unb64(i) for i in raw["ape"]] if raw and raw.get("ape") else None
            new_ape = ape.with_genre(genres if items is None else None, items)
            _rewrite(path, ape.start, ape.end, new_ape)
        _rewrite(path, 0, len(head), _id3_new_tag(head, genres, opts, raw))


def _id3v1(fh: BinaryIO) -> bytes | None:
    end = fh.seek(0, os.SEEK_END)
    if end < 128:
        return None
    block = _read_at(fh, end - 128, 128)
    return block if block.startswith(b"TAG") else None


# --- APEv2 (inside MP3) -------------------------------------------------------------------


@dataclass
class _Ape:
    start: int
    end: int
    version: int
    flags: int
    has_header: bool
    items: list[bytes]

    @staticmethod
    def key(item: bytes) -> bytes:
        return item[8:].split(b"\x00", 1)[0]

    def genre_items(self) -> list[bytes]:
        return [i for i in self.items if self.key(i).lower() == b"genre"]

    def other_items(self) -> list[bytes]:
        return [i for i in self.items if self.key(i).lower() != b"genre"]

    def header_fields(self) -> tuple:
        return (self.version, self.flags, self.has_header)

    def with_genre(self, genres: list[str] | None, raw_items: list[bytes] | None) -> bytes:
        """The tag with its Genre item replaced (by `raw_items` verbatim, or built from
        `genres`; an empty list removes it)."""
        if raw_items is None:
            key = self.key(self.genre_items()[0]) if self.genre_items() else b"Genre"
            value = "\0".join(genres or []).encode("utf-8")
            raw_items = (
                [struct.pack("<II", len(value), 0) + key + b"\x00" + value] if genres else []
            )
        items: list[bytes] = []
        placed = False
        for item in self.items:
            if self.key(item).lower() == b"genre":
                if not placed:
                    items += raw_items
                    placed = True
                continue
            items.append(item)
        body = b"".join(items)
        size = len(body) + 32

        def block(flags: int) -> bytes:
            return (
                b"APETAGEX" + struct.pack("<IIII", self.version, size, len(items), flags) + bytes(8)
            )

        head = block(self.flags | 0x20000000) if self.has_header else b""
        return head + body + block(self.flags & ~0x20000000)


def _ape(fh: BinaryIO) -> _Ape | None:
    """The APEv2 tag before any ID3v1 tag at the end of an MP3."""
    end = fh.seek(0, os.SEEK_END)
    if _id3v1(fh) is not None:
        end -= 128
    if end < 32:
        return None
    footer = _read_at(fh, end - 32, 32)
    if footer[:8] != b"APETAGEX":
        return None
    version, size, count, flags = struct.unpack("<IIII", footer[8:24])
    has_header = bool(flags & 0x80000000)
    start = end - size - (32 if has_header else 0)
    if size < 32 or start < 0:
        raise FormatError("broken APEv2 tag")
    body = _read_at(fh, end - size, size - 32)
    items, pos = [], 0
    for _ in range(count):
        if pos + 8 > len(body):
            raise FormatError("broken APEv2 tag")
        vlen = struct.unpack_from("<I", body, pos)[0]
        key_end = body.find(b"\x00", pos + 8)
        if key_end < 0 or key_end + 1 + vlen > len(body):
            raise FormatError("broken APEv2 tag")
        items.append(body[pos : key_end + 1 + vlen])
        pos = key_end + 1 + vlen
    return _Ape(start, end, version, flags, has_header, items)


# --- ID3 in a RIFF/IFF chunk (WAV, AIFF) ------------------------------------------------------


class ChunkId3Format:
    """WAV and AIFF keep their ID3 tag in an "id3 "/"ID3 " chunk of the RIFF/FORM container."""

    name = "id3"

    def __init__(self, little_endian: bool) -> None:
        self.fmt = "<I" if little_endian else ">I"
        self.new_id = b"id3 " if little_endian else b"ID3 "

    def _end(self, fh: BinaryIO) -> int:
        """Where the RIFF/FORM container ends (a file may carry junk after it)."""
        head = _read_at(fh, 0, 12)
        if head[:4] not in (b"RIFF", b"FORM"):
            raise FormatError("RF64 and other large-file containers are not rewritten")
        (size,) = struct.unpack(self.fmt, head[4:8])
        return min(8 + size, fh.seek(0, os.SEEK_END))

    def _chunk(self, fh: BinaryIO) -> tuple[int, int] | None:
        """(offset of the chunk's data, its length) of the ID3 chunk, or None."""
        end = self._end(fh)
        pos = 12
        found = None
        while pos + 8 <= end:
            cid, length = struct.unpack(self.fmt[0] + "4sI", _read_at(fh, pos, 8))
            if cid.lower() == b"id3 ":
                if found is not None:
                    raise FormatError("the file holds several ID3 chunks; not rewritten")
                found = (pos + 8, length)
            pos += 8 + length + (length & 1)
        return found

    def _tag(self, fh: BinaryIO) -> bytes:
        chunk = self._chunk(fh)
        if chunk is None:
            return b""
        data = _read_at(fh, *chunk)
        size = id3raw.tag_size(data)
        if size is None:
            raise FormatError("the ID3 chunk holds no ID3 tag")
        return data

    def genre_raw(self, path: Path) -> dict:
        with path.open("rb") as fh:
            return _id3_raw(self._tag(fh))

    def units(self, path: Path) -> list[Any]:
        with path.open("rb") as fh:
            return _id3_units(self._tag(fh))

    def edit(self, path: Path, genres: list[str], opts: EditOptions, raw: dict | None) -> None:
        with path.open("rb") as fh:
            chunk = self._chunk(fh)
            old = _read_at(fh, *chunk) if chunk else b""
            end = self._end(fh)
            chunk_id = _read_at(fh, chunk[0] - 8, 4) if chunk else self.new_id
        tag = id3raw.parse(old) if old else None
        if tag is not None and tag.total < len(old):
            raise FormatError("data after the ID3 tag in its chunk; not rewritten")
        new = _id3_new_tag(old, genres, opts, raw)
        if chunk is None and not new:
            return
        if chunk is None:  # a new chunk at the end of the container
            if end & 1:
                raise FormatError("odd-sized RIFF/IFF container; not rewritten")
            start = stop = end
        else:  # the chunk replaced (or removed: undo of a chunk mgctag added)
            start, stop = chunk[0] - 8, chunk[0] + chunk[1] + (chunk[1] & 1)
        pad = b"\x00" if len(new) & 1 else b""
        data = chunk_id + struct.pack(self.fmt, len(new)) + new + pad if new else b""
        _rewrite(path, start, stop, data)
        with path.open("rb") as fh:
            (size,) = struct.unpack(self.fmt, _read_at(fh, 4, 4))
        _rewrite(path, 4, 8, struct.pack(self.fmt, size + len(data) - (stop - start)))


# --- Vorbis comments: FLAC --------------------------------------------------------------------


_OWN_VENDOR = struct.pack("<I", 6) + b"mgctag"  # vendor of a comment block mgctag had to add


class FlacFormat:
    """FLAC: the VORBIS_COMMENT metadata block; a PADDING block absorbs a change of size."""

    name = "vorbis"

    def _blocks(self, fh: BinaryIO) -> tuple[int, list[tuple[int, int, bytes]]]:
        """(offset of "fLaC", [(offset, type, body)]) of every metadata block."""
        start = id3raw.skip_tags(lambda o, n: _read_at(fh, o, n))
        if _read_at(fh, start, 4) != b"fLaC":
            raise FormatError("not a native FLAC stream")
        blocks, pos, last = [], start + 4, False
        while not last:
            header = _read_at(fh, pos, 4)
            if len(header) < 4:
                raise FormatError("truncated FLAC metadata")
            last = bool(header[0] & 0x80)
            length = int.from_bytes(header[1:4], "big")
            blocks.append((pos, header[0] & 0x7F, _read_at(fh, pos + 4, length)))
            pos += 4 + length
        if sum(b[1] == 4 for b in blocks) > 1:
            raise FormatError("several Vorbis comment blocks; not rewritten")
        return start, blocks

    def _comments(self, blocks: list) -> vorbis.Comments | None:
        body = next((b for _, t, b in blocks if t == 4), None)
        return None if body is None else vorbis.split(body)

    def genre_raw(self, path: Path) -> dict:
        with path.open("rb") as fh:
            comments = self._comments(self._blocks(fh)[1])
        entries = vorbis.genre_entries(comments) if comments else []
        return {"entries": [_b64(e) for e in entries], "block": comments is not None}

    def units(self, path: Path) -> list[Any]:
        with path.open("rb") as fh:
            _, blocks = self._blocks(fh)
        out: list[Any] = [(t, b) for _, t, b in blocks if t not in (1, 4)]
        comments = self._comments(blocks)
        if comments is not None and (comments.vendor, comments.tail) != (_OWN_VENDOR, b""):
            out += [comments.vendor, comments.tail]  # a block mgctag added is not the file's
        return out + (vorbis.other_entries(comments) if comments is not None else [])

    def edit(self, path: Path, genres: list[str], opts: EditOptions, raw: dict | None) -> None:
        with path.open("rb") as fh:
            start, blocks = self._blocks(fh)
        comments = self._comments(blocks)
        base = comments or vorbis.Comments(_OWN_VENDOR, [], b"")
        new_entries = (
            [_unb64(e) for e in raw["entries"]]
            if raw is not None
            else vorbis.make_genre_entries(base, genres)
        )
        body = vorbis.replace_genre(base, new_entries).render()
        if comments is None and not new_entries:
            return
        if len(body) >= 1 << 24:
            raise FormatError("Vorbis comment block too large")
        typed = [(t, b) for _, t, b in blocks]
        if comments is None:
            typed.insert(1, (4, body))
        elif raw is not None and raw.get("block") is False and not vorbis.other_entries(comments):
            typed = [(t, b) for t, b in typed if t != 4]  # undo: the file had no comment block
        else:
            typed = [(t, body if t == 4 else b) for t, b in typed]
        old_len = sum(4 + len(b) for _, _, b in blocks)
        new_len = sum(4 + len(b) for _, b in typed)
        pads = [i for i, (t, _) in enumerate(typed) if t == 1]
        if pads and new_len != old_len:  # absorb the difference in the last padding block
            i = pads[-1]
            room = len(typed[i][1]) - (new_len - old_len)
            if room >= 0:
                typed[i] = (1, bytes(room))
        data = b"".join(
            bytes([t | (0x80 if i == len(typed) - 1 else 0)]) + len(b).to_bytes(3, "big") + b
            for i, (t, b) in enumerate(typed)
        )
        _rewrite(path, start + 4, start + 4 + old_len, data)


# --- Vorbis comments: Ogg Vorbis and Opus -----------------------------------------------------


class OggFormat:
    """Ogg Vorbis/Opus: the comment packet of the first stream, re-paged by mutagen's Ogg code
    (which renumbers the following pages and fixes their checksums, packets untouched)."""

    name = "vorbis"

    def __init__(self, magic: bytes) -> None:
        self.magic = magic  # b"\x03vorbis" or b"OpusTags"

    def _pages(self, fh: BinaryIO) -> tuple[list[OggPage], list[bytes]]:
        fh.seek(0)
        page = OggPage(fh)
        while not page.packets or not page.packets[0].startswith(self.magic):
            page = OggPage(fh)
        pages = [page]
        while not (pages[-1].complete or len(pages[-1].packets) > 1):
            page = OggPage(fh)
            if page.serial == pages[0].serial:
                pages.append(page)
        return pages, OggPage.to_packets(pages, strict=False)

    def _comments(self, path: Path) -> vorbis.Comments:
        with path.open("rb") as fh:
            _, packets = self._pages(fh)
        return vorbis.split(packets[0][len(self.magic) :])

    def genre_raw(self, path: Path) -> dict:
        return {"entries": [_b64(e) for e in vorbis.genre_entries(self._comments(path))]}

    def units(self, path: Path) -> list[Any]:
        c = self._comments(path)
        return [c.vendor, c.tail, *vorbis.other_entries(c)]

    def edit(self, path: Path, genres: list[str], opts: EditOptions, raw: dict | None) -> None:
        with path.open("r+b") as fh:
            old_pages, packets = self._pages(fh)
            comments = vorbis.split(packets[0][len(self.magic) :])
            new_entries = (
                [_unb64(e) for e in raw["entries"]]
                if raw is not None
                else vorbis.make_genre_entries(comments, genres)
            )
            packets[0] = self.magic + vorbis.replace_genre(comments, new_entries).render()
            new_pages = OggPage._from_packets_try_preserve(packets, old_pages)
            OggPage.replace(fh, old_pages, new_pages)


# --- MP4 (through mutagen, verified atom by atom) ---------------------------------------------

_MP4_GENRE = (b"\xa9gen", b"gnre")


def _mp4_atoms(fh: BinaryIO, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """(type, offset, size) of the atoms in [start, end)."""
    out, pos = [], start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", _read_at(fh, pos, 8))
        header = 8
        if size == 1:
            size = struct.unpack(">Q", _read_at(fh, pos + 8, 8))[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise FormatError("broken MP4 atom layout")
        out.append((kind, pos, size))
        pos += size
    return out


class Mp4Format:
    name = "mp4"

    def _ilst(self, fh: BinaryIO) -> list[bytes]:
        """Raw bytes of each atom in moov.udta.meta.ilst ([] when there is none)."""
        end = fh.seek(0, os.SEEK_END)
        path = [b"moov", b"udta", b"meta", b"ilst"]
        start, stop = 0, end
        for i, name in enumerate(path):
            atom = next((a for a in _mp4_atoms(fh, start, stop) if a[0] == name), None)
            if atom is None:
                return []
            _, pos, size = atom
            start, stop = pos + 8 + (4 if name == b"meta" else 0), pos + size
            if i == len(path) - 1:
                return [_read_at(fh, p, s) for _, p, s in _mp4_atoms(fh, start, stop)]
        return []

    def genre_raw(self, path: Path) -> dict:
        tags: Any = MP4(path).tags or {}  # mutagen declares FileType.tags None; load sets it
        return {"values": [str(v) for v in tags.get("\xa9gen", [])]}

    def units(self, path: Path) -> list[Any]:
        with path.open("rb") as fh:
            top = [k for k, _, _ in _mp4_atoms(fh, 0, fh.seek(0, os.SEEK_END))]
            return [top, *(a for a in self._ilst(fh) if a[4:8] not in _MP4_GENRE)]

    def edit(self, path: Path, genres: list[str], opts: EditOptions, raw: dict | None) -> None:
        audio = MP4(path)
        if audio.tags is None:
            audio.add_tags()
        values = raw["values"] if raw is not None else genres
        _set(audio.tags, "\xa9gen", values)  # mutagen folded a numeric gnre atom into ©gen
        audio.save()


def _set(tags: Any, key: str, values: list) -> None:
    if values:
        tags[key] = values
    elif key in tags:
        del tags[key]


# --- ASF / WMA (through mutagen, verified attribute by attribute) ----------------------------

_ASF_GENRES = ("WM/Genre", "WM/GenreID")
_GUID_EXT_CONTENT = bytes.fromhex("40a4d0d207e3d21197f000a0c95ea850")
_GUID_HEADER_EXT = bytes.fromhex("b503bf5f2ea9cf118ee300c00c205365")
_GUID_METADATA = bytes.fromhex("eacbf8c5af5b77488467aa8c44fa4cca")
_GUID_METALIB = bytes.fromhex("941c23449894d149a1411d134e457054")
_GUID_FILE_PROPS = bytes.fromhex("a1dcab8c47a9cf118ee400c00c205365")
_GUID_PADDING = bytes.fromhex("74d40618dfca0945a4ba9aabcb96aae8")
_GUID_CONTENT = bytes.fromhex("3326b2758e66cf11a6d900aa0062ce6c")


def _asf_objects(data: bytes, pos: int) -> list[tuple[bytes, bytes]]:
    out = []
    while pos + 24 <= len(data):
        guid, size = struct.unpack_from("<16sQ", data, pos)
        if size < 24 or pos + size > len(data):
            raise FormatError("broken ASF header")
        out.append((guid, data[pos + 24 : pos + size]))
        pos += size
    return out


def _asf_records(guid: bytes, body: bytes) -> list[tuple[str, bytes]]:
    """(attribute name, raw record) of an Extended Content Description or Metadata object."""
    out, pos = [], 2
    for _ in range(struct.unpack_from("<H", body, 0)[0]):
        if guid == _GUID_EXT_CONTENT:
            nlen = struct.unpack_from("<H", body, pos)[0]
            vlen = struct.unpack_from("<H", body, pos + 4 + nlen)[0]
            name = body[pos + 2 : pos + 2 + nlen]
            end = pos + 6 + nlen + vlen
        else:
            nlen, _, dlen = struct.unpack_from("<HHI", body, pos + 4)
            name = body[pos + 12 : pos + 12 + nlen]
            end = pos + 12 + nlen + dlen
        out.append((name.decode("utf-16-le", "replace").rstrip("\0"), body[pos:end]))
        pos = end
    return out


class AsfFormat:
    name = "asf"

    def genre_raw(self, path: Path) -> dict:
        tags: Any = ASF(path).tags  # mutagen declares FileType.tags None; load sets it
        attrs = []
        for name, attr in tags or []:
            if name in _ASF_GENRES:
                value = attr.value
                if isinstance(value, bytes):
                    value = {"b64": _b64(value)}
                attrs.append([name, attr.TYPE, value, attr.language, attr.stream])
        return {"attrs": attrs}

    def units(self, path: Path) -> list[Any]:
        with path.open("rb") as fh:
            head = _read_at(fh, 0, 30)
            size = struct.unpack_from("<Q", head, 16)[0]
            data = _read_at(fh, 0, size)
        out: list[Any] = []
        for guid, body in _asf_objects(data, 30):
            if guid == _GUID_PADDING or (guid == _GUID_CONTENT and not any(body)):
                continue  # padding; the empty Content Description mutagen adds
            if guid == _GUID_FILE_PROPS:
                body = body[:16] + body[24:]  # the file size moves with the header
            if guid == _GUID_HEADER_EXT:
                for g, b in _asf_objects(body, 22):
                    if g in (_GUID_METADATA, _GUID_METALIB):
                        out += [(g, r) for n, r in _asf_records(g, b) if n not in _ASF_GENRES]
                    elif g != _GUID_PADDING:
                        out.append((g, b))
            elif guid == _GUID_EXT_CONTENT:
                out += [(guid, r) for n, r in _asf_records(guid, body) if n not in _ASF_GENRES]
            else:
                out.append((guid, body))
        return sorted(out)

    def edit(self, path: Path, genres: list[str], opts: EditOptions, raw: dict | None) -> None:
        from mutagen.asf._attrs import ASFValue

        audio = ASF(path)
        tags: Any = audio.tags  # mutagen declares FileType.tags None; load sets it
        for key in _ASF_GENRES:
            if key in tags:
                del tags[key]
        if raw is not None:
            for name, kind, value, language, stream in raw["attrs"]:
                if isinstance(value, dict):
                    value = _unb64(value["b64"])
                attr = ASFValue(value, kind, language=language, stream=stream)
                tags[name] = [*tags.get(name, []), attr] if name in tags else [attr]
        elif genres:
            tags["WM/Genre"] = genres
        audio.save()


# --- which class for which file ---------------------------------------------------------------


def format_for(audio: Any) -> Any | None:
    """The writer for a file mutagen opened, or None when mgctag does not write that format."""
    kind = type(audio)
    if kind is MP3:
        return Mp3Format()
    if kind is WAVE:
        return ChunkId3Format(little_endian=True)
    if kind is AIFF:
        return ChunkId3Format(little_endian=False)
    if kind is FLAC:
        return FlacFormat()
    if kind is OggVorbis:
        return OggFormat(b"\x03vorbis")
    if kind is OggOpus:
        return OggFormat(b"OpusTags")
    if kind is MP4:
        return Mp4Format()
    if kind is ASF:
        return AsfFormat()
    return None
