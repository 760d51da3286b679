"""Genre tags read and written on real audio in every format, with every other tag left alone."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import stat
import struct
from pathlib import Path

import av
import mutagen
import numpy as np
import pytest
from media import FORMATS, make_library, real_clip
from mutagen.apev2 import APEv2
from mutagen.asf import ASF, ASFByteArrayAttribute
from mutagen.flac import Picture
from mutagen.id3 import APIC, COMM, ID3, TALB, TCON, TIT2, TPE1, TRCK, TXXX, TYER
from mutagen.mp4 import MP4, MP4Cover
from PIL import Image

from mgctag.tags import (
    TEMP_SUFFIX,
    FileTags,
    TagReadError,
    TagWriteError,
    audio_payload_hash,
    cleanup_stale_temps,
    normalise_genres,
    read_tags,
    write_genres,
)

FAMILY = {
    "mp3": "id3",
    "wav": "id3",
    "aiff": "id3",
    "flac": "vorbis",
    "ogg": "vorbis",
    "opus": "vorbis",
    "m4a": "mp4",
    "alac.m4a": "mp4",
    "wma": "asf",
}


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same real 3 s recording in every format (never written to: tests take copies)."""
    root = tmp_path_factory.mktemp("library")
    return {ext: path for ext, path in zip(FORMATS, make_library(root, seconds=3.0), strict=True)}


def png(side: int = 48, *, seed: int = 0, compress: int = 6) -> bytes:
    """A real PNG image (noise compresses badly, so `side` sets the size in bytes)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG", compress_level=compress)
    return out.getvalue()


def tag_realistically(path: Path, ext: str, cover: bytes, id3_version: int = 4) -> None:
    """Artist, album, title, track, a genre and a cover, the way a tagger would leave them."""
    audio = mutagen.File(path)
    if audio.tags is None:
        audio.add_tags()
    t = audio.tags
    family = FAMILY[ext]
    if family == "id3":
        t.add(TPE1(encoding=3, text="Kevin MacLeod"))
        t.add(TALB(encoding=3, text="Vibe Ace (Single)"))
        t.add(TIT2(encoding=3, text="Vibe Ace"))
        t.add(TRCK(encoding=3, text="3/12"))
        t.add(TCON(encoding=3, text="Jazz"))
        t.add(COMM(encoding=3, lang="eng", desc="", text="from librosa's examples"))
        t.add(TXXX(encoding=3, desc="MusicBrainz Album Id", text="0f2c3b1e-aaaa-bbbb"))
        t.add(APIC(encoding=3, mime="image/png", type=3, desc="cover", data=cover))
        if id3_version == 3:
            t.update_to_v23()
            t.add(TYER(encoding=1, text="2008"))
        audio.save(v2_version=id3_version)
        return
    if family == "vorbis":
        t["ARTIST"] = "Kevin MacLeod"
        t["ALBUM"] = "Vibe Ace (Single)"
        t["TITLE"] = "Vibe Ace"
        t["TRACKNUMBER"] = "3"
        t["GENRE"] = "Jazz"
        pic = Picture()
        pic.type, pic.mime, pic.desc, pic.data = 3, "image/png", "cover", cover
        if ext == "flac":
            audio.add_picture(pic)
        else:
            t["METADATA_BLOCK_PICTURE"] = base64.b64encode(pic.write()).decode("ascii")
    elif family == "mp4":
        t["\xa9ART"] = ["Kevin MacLeod"]
        t["\xa9alb"] = ["Vibe Ace (Single)"]
        t["\xa9nam"] = ["Vibe Ace"]
        t["trkn"] = [(3, 12)]
        t["\xa9gen"] = ["Jazz"]
        t["covr"] = [MP4Cover(cover, imageformat=MP4Cover.FORMAT_PNG)]
    else:
        t["Author"] = ["Kevin MacLeod"]
        t["WM/AlbumTitle"] = ["Vibe Ace (Single)"]
        t["Title"] = ["Vibe Ace"]
        t["WM/TrackNumber"] = ["3"]
        t["WM/Genre"] = ["Jazz"]
        mime, desc = "image/png\0".encode("utf-16-le"), "cover\0".encode("utf-16-le")
        blob = struct.pack("<BI", 3, len(cover)) + mime + desc + cover
        t["WM/Picture"] = [ASFByteArrayAttribute(blob)]
    audio.save()


def other_tags(path: Path) -> object:
    """Everything but the genre, as mutagen itself reports it (independent of mgctag's code)."""
    audio = mutagen.File(path)
    t = audio.tags
    if isinstance(t, ID3):
        return {k: repr(f) for k, f in t.items() if not k.startswith("TCON")}
    if hasattr(audio, "pictures"):  # FLAC keeps pictures in their own metadata blocks
        pics = [(p.type, p.mime, p.desc, p.data) for p in audio.pictures]
        return pics, [(k.lower(), v) for k, v in t if k.lower() != "genre"]
    if isinstance(audio, ASF):
        return [(k, v.TYPE, v.value) for k, v in t if k != "WM/Genre"]
    if isinstance(t, list):
        return [(k.lower(), v) for k, v in t if k.lower() != "genre"]
    return {
        k: [(bytes(x), getattr(x, "imageformat", None)) if isinstance(x, bytes) else x for x in v]
        for k, v in t.items()
        if k != "\xa9gen"
    }


def raw_genres(path: Path) -> list[str]:
    """The genre field exactly as stored, one entry per stored value."""
    audio = mutagen.File(path)
    t = audio.tags
    if isinstance(t, ID3):
        return [str(x) for f in t.getall("TCON") for x in f.text]
    if isinstance(audio, ASF):
        return [str(v) for v in t.get("WM/Genre", [])]
    if isinstance(audio, MP4):
        return list(t.get("\xa9gen", []))
    return list(t.get("genre", []))


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def temps(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"*{TEMP_SUFFIX}"))


def copy(library: dict[str, Path], ext: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy2(library[ext], dest / f"song.{ext}"))


@pytest.mark.parametrize("ext", list(FORMATS))
def test_write_then_remove_keeps_everything_else(
    library: dict[str, Path], tmp_path: Path, ext: str
) -> None:
    path = copy(library, ext, tmp_path)
    tag_realistically(path, ext, png())
    payload, others = audio_payload_hash(path), other_tags(path)

    before = read_tags(path)
    assert before == FileTags(
        path, FAMILY[ext], "Kevin MacLeod", "Vibe Ace (Single)", "Vibe Ace", ["Jazz"], True
    )

    result = write_genres(path, ["Electronic", "Acid Jazz", "electronic"])
    assert (result.old, result.new, result.changed) == (["Jazz"], ["Electronic", "Acid Jazz"], True)
    assert read_tags(path).genres == ["Electronic", "Acid Jazz"]
    assert raw_genres(path) == ["Electronic", "Acid Jazz"]  # one stored value per genre
    assert (result.size_after, result.mtime_after) == (path.stat().st_size, path.stat().st_mtime)
    assert audio_payload_hash(path) == payload
    assert other_tags(path) == others
    assert mutagen.File(path).info.length == pytest.approx(mutagen.File(library[ext]).info.length)

    assert write_genres(path, []).changed
    assert read_tags(path).genres == []
    assert raw_genres(path) == []
    assert audio_payload_hash(path) == payload
    assert other_tags(path) == others
    assert temps(tmp_path) == []


@pytest.mark.parametrize("ext", list(FORMATS))
def test_payload_hash_sees_audio_not_tags(
    library: dict[str, Path], tmp_path: Path, ext: str
) -> None:
    path = copy(library, ext, tmp_path)
    plain = audio_payload_hash(path)
    tag_realistically(path, ext, png(seed=1))
    assert audio_payload_hash(path) == plain

    data = bytearray(path.read_bytes())
    data[int(len(data) * 0.6)] ^= 0x55  # one byte of audio, well past every header
    path.write_bytes(bytes(data))
    assert audio_payload_hash(path) != plain


def test_id3v23_new_tag_joins_genres(library: dict[str, Path], tmp_path: Path) -> None:
    path = copy(library, "mp3", tmp_path)
    ID3(path).delete()  # FFmpeg wrote an ID3v2.4 tag (TSSE); this file has none now
    write_genres(path, ["Rock", "Jazz"], id3v23=True)
    tag = ID3(path, translate=False)
    assert tag.version == (2, 3, 0)
    assert tag["TCON"].text == ["Rock; Jazz"]  # ID3v2.3 has one string per frame
    assert read_tags(path).genres == ["Rock", "Jazz"]


def test_existing_id3_versions_are_kept(library: dict[str, Path], tmp_path: Path) -> None:
    v23 = copy(library, "mp3", tmp_path / "a")
    tag_realistically(v23, "mp3", png(), id3_version=3)
    frames = other_tags(v23)
    raw = {k: repr(f) for k, f in ID3(v23, translate=False).items() if k != "TCON"}
    write_genres(v23, ["Rock", "Jazz"])  # default is ID3v2.4, but converting would rewrite TYER
    assert ID3(v23).version == (2, 3, 0)
    assert {k: repr(f) for k, f in ID3(v23, translate=False).items() if k != "TCON"} == raw
    assert "TYER" in raw and other_tags(v23) == frames
    assert read_tags(v23).genres == ["Rock", "Jazz"]

    v24 = copy(library, "mp3", tmp_path / "b")
    tag_realistically(v24, "mp3", png())
    write_genres(v24, ["Rock", "Jazz"], id3v23=True)
    assert ID3(v24).version == (2, 4, 0)
    assert ID3(v24)["TCON"].text == ["Rock", "Jazz"]


def test_id3v23_single_genre_with_slash_is_refused_not_mangled(
    library: dict[str, Path], tmp_path: Path
) -> None:
    path = copy(library, "mp3", tmp_path)
    tag_realistically(path, "mp3", png(), id3_version=3)
    before = sha(path)
    with pytest.raises(TagWriteError, match="verification failed") as err:
        write_genres(path, ["Hip-Hop/Rap"])  # ID3v2.3 readers would take "/" as a separator
    assert str(err.value).startswith(str(path))
    assert "\n" not in str(err.value)
    assert sha(path) == before
    assert temps(tmp_path) == []


@pytest.mark.parametrize(
    ("version", "text", "expected"),
    [
        (4, ["(17)"], ["Rock"]),
        (4, ["17"], ["Rock"]),
        (4, ["(17)(8)"], ["Rock", "Jazz"]),
        (4, ["Rock", "Jazz", "rock"], ["Rock", "Jazz"]),
        (4, ["Rock; Trip-Hop"], ["Rock", "Trip-Hop"]),
        (4, ["Hip-Hop/Rap"], ["Hip-Hop/Rap"]),
        (3, ["Rock/Pop"], ["Rock", "Pop"]),
        (3, ["Rock; Hip-Hop/Rap"], ["Rock", "Hip-Hop/Rap"]),
        (3, ["(62)"], ["Pop/Funk"]),
        (3, ["(17)Rock"], ["Rock"]),
    ],
)
def test_id3_genre_representations(
    library: dict[str, Path], tmp_path: Path, version: int, text: list[str], expected: list[str]
) -> None:
    path = copy(library, "mp3", tmp_path)
    tag = ID3()
    tag.add(TCON(encoding=1, text=text))
    tag.save(path, v2_version=version, v23_sep=None)
    assert read_tags(path).genres == expected


def test_normalise_genres() -> None:
    assert normalise_genres([" Rock ", "", "rock;  Jazz ;", "Pop/Funk"]) == [
        "Rock",
        "Jazz",
        "Pop/Funk",
    ]
    assert normalise_genres(["Rock/Pop", "Pop/Funk"], split_slash=True) == [
        "Rock",
        "Pop",
        "Pop/Funk",
    ]


def test_vorbis_multiple_fields_and_mp4_legacy_gnre(
    library: dict[str, Path], tmp_path: Path
) -> None:
    flac = copy(library, "flac", tmp_path)
    audio = mutagen.File(flac)
    audio["genre"] = ["Blues", "Soul;Funk"]
    audio.save()
    assert read_tags(flac).genres == ["Blues", "Soul", "Funk"]

    m4a = copy(library, "m4a", tmp_path)
    audio = mutagen.File(m4a)
    audio["\xa9gen"] = ["\x00\x12"]  # a 2-byte big-endian genre number, renamed below to `gnre`
    audio.save()
    data = m4a.read_bytes()
    assert data.count(b"\xa9gen") == 1
    m4a.write_bytes(data.replace(b"\xa9gen", b"gnre"))
    assert read_tags(m4a).genres == ["Rock"]  # gnre is 1-based: 18 is ID3v1 genre 17
    write_genres(m4a, ["Jazz"])
    assert b"gnre" not in m4a.read_bytes()
    assert read_tags(m4a).genres == ["Jazz"]


def id3v1(title: str, artist: str, album: str, year: str, comment: str, genre: int) -> bytes:
    def pad(text: str, n: int) -> bytes:
        return text.encode("latin-1").ljust(n, b"\0")

    return (
        b"TAG"
        + pad(title, 30)
        + pad(artist, 30)
        + pad(album, 30)
        + pad(year, 4)
        + (pad(comment, 28) + b"\0\x03" + bytes([genre]))
    )


def test_id3v1_only_mp3(library: dict[str, Path], tmp_path: Path) -> None:
    path = copy(library, "mp3", tmp_path)
    payload = audio_payload_hash(path)
    v1 = id3v1("Vibe Ace", "Kevin MacLeod", "Vibe Ace (Single)", "2008", "librosa", 17)
    path.write_bytes(path.read_bytes() + v1)
    assert audio_payload_hash(path) == payload
    tags = read_tags(path)
    assert (tags.family, tags.artist, tags.title, tags.genres) == (
        "id3",
        "Kevin MacLeod",
        "Vibe Ace",
        ["Rock"],
    )

    write_genres(path, ["Jazz", "Ambient Dub"])
    assert read_tags(path).genres == ["Jazz", "Ambient Dub"]
    assert read_tags(path).artist == "Kevin MacLeod"
    assert path.read_bytes()[-128:] == v1[:127] + bytes([8])  # ID3v1 kept, genre byte now Jazz
    assert audio_payload_hash(path) == payload

    write_genres(path, [])
    assert read_tags(path).genres == []
    assert path.read_bytes()[-128:] == v1[:127] + b"\xff"  # 255: no genre


def id3v22(frames: dict[str, str]) -> bytes:
    body = b"".join(
        fid.encode() + len(b"\0" + t.encode("latin-1")).to_bytes(3, "big") + b"\0" + t.encode()
        for fid, t in frames.items()
    )
    size = len(body)
    synchsafe = bytes((size >> s) & 0x7F for s in (21, 14, 7, 0))
    return b"ID3\x02\x00\x00" + synchsafe + body


@pytest.mark.parametrize("id3v23", [False, True])
def test_id3v22_mp3(library: dict[str, Path], tmp_path: Path, id3v23: bool) -> None:
    path = copy(library, "mp3", tmp_path)
    payload = audio_payload_hash(path)
    path.write_bytes(
        id3v22({"TT2": "Vibe Ace", "TP1": "Kevin MacLeod", "TCO": "(17)"}) + path.read_bytes()
    )
    assert audio_payload_hash(path) == payload
    tags = read_tags(path)
    assert (tags.artist, tags.title, tags.genres) == ("Kevin MacLeod", "Vibe Ace", ["Rock"])

    write_genres(path, ["Jazz"], id3v23=id3v23)  # the tag keeps its version: nothing converted
    assert ID3(path).version == (2, 2, 0)
    tags = read_tags(path)
    assert (tags.artist, tags.title, tags.genres) == ("Kevin MacLeod", "Vibe Ace", ["Jazz"])
    assert audio_payload_hash(path) == payload


def test_id3v22_frames_mutagen_cannot_upgrade_are_not_dropped(
    library: dict[str, Path], tmp_path: Path
) -> None:
    path = copy(library, "mp3", tmp_path)
    ID3(path).delete()
    tag = id3v22({"TT2": "Vibe Ace", "TCO": "(17)", "XYZ": "?"})
    path.write_bytes(tag + path.read_bytes())
    assert read_tags(path).genres == ["Rock"]
    write_genres(path, ["Jazz"])  # the v2.2 tag is edited as v2.2: its unknown frame stays
    assert read_tags(path).genres == ["Jazz"]
    xyz = tag[
        tag.index(b"XYZ") : tag.index(b"XYZ")
        + 6
        + int.from_bytes(tag[tag.index(b"XYZ") + 3 : tag.index(b"XYZ") + 6], "big")
    ]
    assert xyz in path.read_bytes()[:200]
    assert temps(tmp_path) == []


def test_apev2_tagged_mp3(library: dict[str, Path], tmp_path: Path) -> None:
    path = copy(library, "mp3", tmp_path)
    ID3(path).delete()
    payload = audio_payload_hash(path)
    ape = APEv2()
    ape.update({"Artist": "Kevin MacLeod", "Title": "Vibe Ace", "Genre": "Ambient\0Jazz"})
    ape.save(path)
    v1 = id3v1("Vibe Ace", "Kevin MacLeod", "", "2008", "", 17)  # a stale ID3v1 tag after it
    path.write_bytes(path.read_bytes() + v1)
    assert audio_payload_hash(path) == payload
    tags = read_tags(path)
    assert (tags.family, tags.artist, tags.genres) == ("ape", "Kevin MacLeod", ["Ambient", "Jazz"])

    write_genres(path, ["Rock", "Jazz"])
    assert read_tags(path).genres == ["Rock", "Jazz"]
    assert list(APEv2(path)["Genre"]) == ["Rock", "Jazz"]  # the APEv2 genre follows along
    assert str(APEv2(path)["Artist"]) == "Kevin MacLeod"
    assert path.read_bytes()[-128:] == v1[:127] + bytes([17])  # ID3v1 still last, now "Rock"
    assert audio_payload_hash(path) == payload


def test_read_only_file_is_refused_and_untouched(library: dict[str, Path], tmp_path: Path) -> None:
    path = copy(library, "flac", tmp_path)
    tag_realistically(path, "flac", png())
    path.chmod(0o444)
    before = sha(path)
    assert not read_tags(path).writable
    assert not write_genres(path, ["Jazz"]).changed  # already so: not an error
    with pytest.raises(TagWriteError, match="file is read-only") as err:
        write_genres(path, ["Rock"])
    assert err.value.path == path
    assert sha(path) == before and stat.S_IMODE(path.stat().st_mode) == 0o444
    assert temps(tmp_path) == []


def test_read_only_folder_is_refused(library: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    path = copy(library, "ogg", folder)
    before = sha(path)
    folder.chmod(0o555)
    try:
        assert not read_tags(path).writable
        with pytest.raises(TagWriteError, match="folder is read-only"):
            write_genres(path, ["Rock"])
    finally:
        folder.chmod(0o755)
    assert sha(path) == before
    assert temps(folder) == []


def test_wavpack_is_read_but_not_written(tmp_path: Path) -> None:
    y, sr = real_clip(seconds=1.0)
    path = tmp_path / "song.wv"
    with av.open(str(path), "w", format="wv") as out:
        stream = out.add_stream("wavpack", rate=sr, layout="stereo")
        pcm = np.ascontiguousarray((y.T * 32767).astype(np.int16).reshape(1, -1))
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="stereo")
        frame.sample_rate = sr
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    ape = APEv2()
    ape.update({"Artist": "Kevin MacLeod", "Genre": "Jazz"})
    ape.save(path)
    before = sha(path)
    tags = read_tags(path)
    assert (tags.family, tags.artist, tags.genres, tags.writable) == (
        "ape",
        "Kevin MacLeod",
        ["Jazz"],
        False,
    )
    with pytest.raises(TagWriteError, match="WavPack files is not supported"):
        write_genres(path, ["Rock"])
    assert sha(path) == before


def test_unsupported_and_unreadable_files(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp3"
    text.write_text("not audio at all\n" * 20)
    with pytest.raises(TagReadError, match="notes.mp3: "):
        read_tags(text)
    with pytest.raises(TagWriteError):
        write_genres(text, ["Rock"])
    with pytest.raises(TagReadError, match="no such file"):
        read_tags(tmp_path / "missing.flac")
    assert text.read_text() == "not audio at all\n" * 20
    assert temps(tmp_path) == []


def test_permissions_and_mtime(library: dict[str, Path], tmp_path: Path) -> None:
    path = copy(library, "m4a", tmp_path)
    path.chmod(0o640)
    os.utime(path, (1_000_000_000, 1_000_000_000))
    write_genres(path, ["Rock"], keep_mtime=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert path.stat().st_mtime == 1_000_000_000

    write_genres(path, ["Jazz"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert path.stat().st_mtime > 1_000_000_000


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown needs root")
def test_owner_and_xattrs_kept(library: dict[str, Path], tmp_path: Path) -> None:
    path = copy(library, "flac", tmp_path)
    os.chown(path, 1234, 5678)
    try:
        os.setxattr(path, "user.mgctag-test", b"kept")
    except OSError:
        pytest.skip("this filesystem has no user xattrs")
    write_genres(path, ["Rock"])
    assert (path.stat().st_uid, path.stat().st_gid) == (1234, 5678)
    assert os.getxattr(path, "user.mgctag-test") == b"kept"


def test_same_genres_leave_the_file_alone(library: dict[str, Path], tmp_path: Path) -> None:
    path = copy(library, "opus", tmp_path)
    write_genres(path, ["Rock", "Jazz"])
    st = path.stat()
    result = write_genres(path, [" Rock", "Jazz ", "rock"])
    assert not result.changed
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (st.st_ino, st.st_mtime_ns)


def test_symlink_is_followed_not_replaced(library: dict[str, Path], tmp_path: Path) -> None:
    target = copy(library, "wav", tmp_path / "real")
    link = tmp_path / "link.wav"
    link.symlink_to(target)
    write_genres(link, ["Rock"])
    assert link.is_symlink()
    assert read_tags(target).genres == ["Rock"]


@pytest.mark.parametrize("ext", ["mp3", "flac", "m4a"])
def test_ten_megabyte_cover_survives(library: dict[str, Path], tmp_path: Path, ext: str) -> None:
    cover = png(1840, seed=2, compress=0)
    assert len(cover) > 10_000_000
    path = copy(library, ext, tmp_path)
    tag_realistically(path, ext, cover)
    payload, others = audio_payload_hash(path), other_tags(path)
    write_genres(path, ["Rock", "Jazz"])
    assert read_tags(path).genres == ["Rock", "Jazz"]
    assert other_tags(path) == others
    assert audio_payload_hash(path) == payload
    assert temps(tmp_path) == []


def test_cleanup_stale_temps(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    stale = tmp_path / "sub" / f".song.flac.k2j3h4{TEMP_SUFFIX}"
    stale.write_bytes(b"half a copy")
    keep = tmp_path / "song.flac"
    keep.write_bytes(b"x")
    assert cleanup_stale_temps(tmp_path) == []  # too fresh: another mgctag may be finishing it
    assert cleanup_stale_temps(tmp_path, older_than_s=0) == [stale]
    assert not stale.exists() and keep.exists()
