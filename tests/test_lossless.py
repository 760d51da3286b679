"""Issue #18 items 1-4 and #17 undo: lossless writes checked byte for byte, on odd files built here.

Every odd file is built in the test (raw bytes where mutagen cannot produce them), written through
the same journaled path the CLI uses, and undone; the checks read raw bytes, not mutagen's view.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
from pathlib import Path

import mutagen
import pytest
from media import make_library
from mutagen.asf import ASF
from mutagen.flac import FLAC
from mutagen.id3 import ID3

from mgctag import tags
from mgctag.library.db import JournalError, Library, LibraryError
from mgctag.writes import journal, undo


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lossless")
    exts = ("mp3", "flac", "ogg", "wav", "wma", "m4a")
    return {e: p for e, p in zip(exts, make_library(root, exts, seconds=2.0), strict=True)}


def copy(library: dict[str, Path], ext: str, dest: Path, name: str = "song") -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy2(library[ext], dest / f"{name}.{ext}"))


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write(lib: Library, path: Path, genres: list[str], run: int, **kw) -> tags.WriteResult:
    """One write exactly as the tag command makes it: locked, journaled."""
    with journal.file_lock(lib, path):
        old = tags.read_tags(path).genres
        return journal.journaled_write(lib, run, None, path, old, genres, **kw)


@pytest.fixture
def lib(tmp_path: Path) -> Library:
    library = Library(tmp_path / "db" / "lib.db")
    yield library
    library.close()


# --- raw tag builders (independent of mgctag's own parsers) ---------------------------------


def flac_blocks(data: bytes) -> tuple[list[tuple[int, bytes]], int]:
    pos, blocks, last = 4, [], False
    while not last:
        last = bool(data[pos] & 0x80)
        n = int.from_bytes(data[pos + 1 : pos + 4], "big")
        blocks.append((data[pos] & 0x7F, data[pos + 4 : pos + 4 + n]))
        pos += 4 + n
    return blocks, pos


def set_flac_comments(path: Path, entries: list[bytes], padding: int | None = 4096) -> None:
    """Replace the FLAC's comment block by raw `entries` (any bytes) and set its padding."""
    data = path.read_bytes()
    blocks, end = flac_blocks(data)
    vendor = b"test vendor"
    body = struct.pack("<I", len(vendor)) + vendor + struct.pack("<I", len(entries))
    body += b"".join(struct.pack("<I", len(e)) + e for e in entries)
    kept = [(t, b) for t, b in blocks if t not in (1, 4)]
    kept.insert(1, (4, body))
    if padding is not None:
        kept.append((1, bytes(padding)))
    meta = b"".join(
        bytes([t | (0x80 if i == len(kept) - 1 else 0)]) + len(b).to_bytes(3, "big") + b
        for i, (t, b) in enumerate(kept)
    )
    path.write_bytes(b"fLaC" + meta + data[end:])


def flac_entries(path: Path) -> list[bytes]:
    body = next(b for t, b in flac_blocks(path.read_bytes())[0] if t == 4)
    pos = 4 + struct.unpack_from("<I", body)[0]
    out = []
    for _ in range(struct.unpack_from("<I", body, pos)[0]):
        n = struct.unpack_from("<I", body, pos + 4)[0]
        out.append(body[pos + 8 : pos + 8 + n])
        pos += 4 + n
    return out


def id3v24(frames: list[bytes], padding: int = 512) -> bytes:
    body = b"".join(frames) + bytes(padding)
    size = bytes((len(body) >> s) & 0x7F for s in (21, 14, 7, 0))
    return b"ID3\x04\x00\x00" + size + body


def frame24(fid: bytes, body: bytes) -> bytes:
    size = bytes((len(body) >> s) & 0x7F for s in (21, 14, 7, 0))
    return fid + size + b"\x00\x00" + body


# --- #18.1 lossless writes, exact undo ------------------------------------------------------


ODD_VORBIS = [
    b"TITLE=Bj\xf6rk",  # Latin-1 from an old tagger: not valid UTF-8
    b"NOEQUALS",  # no '=' at all
    b"K\xc3\xa9Y=value",  # a non-ASCII key
    b"ARTIST=  spaced  ",
    b"genre=  Jazz ",  # the genre, lower-case key, whitespace kept
]


def test_flac_odd_comments_stay_byte_identical_and_undo_is_exact(
    library: dict[str, Path], tmp_path: Path, lib: Library
) -> None:
    path = copy(library, "flac", tmp_path)
    set_flac_comments(path, ODD_VORBIS)
    before = sha(path)
    assert tags.read_tags(path).genres == ["Jazz"]
    run = lib.start_run("tag")
    result = write(lib, path, ["Rock", "Blues"], run)
    assert result.method == "in place"
    assert flac_entries(path) == [*ODD_VORBIS[:4], b"genre=Rock", b"genre=Blues"]
    assert tags.read_tags(path).genres == ["Rock", "Blues"]
    report = undo.undo_run(lib, run)
    assert report.count("restored") == 1
    assert sha(path) == before  # every byte, the genre's whitespace too


def test_flac_without_padding_grows_by_a_new_copy(
    library: dict[str, Path], tmp_path: Path, lib: Library
) -> None:
    path = copy(library, "flac", tmp_path)
    set_flac_comments(path, ODD_VORBIS, padding=None)
    run = lib.start_run("tag")
    assert write(lib, path, ["Electronic", "Ambient"], run).method == "replaced"
    assert flac_entries(path)[:4] == ODD_VORBIS[:4]
    undo.undo_run(lib, run)
    assert flac_entries(path) == ODD_VORBIS


def test_id3_frames_mutagen_cannot_parse_are_kept(
    library: dict[str, Path], tmp_path: Path, lib: Library
) -> None:
    path = copy(library, "mp3", tmp_path)
    ID3(path).delete()
    odd = [
        frame24(b"TIT2", b"\x03Title"),
        frame24(b"TXXX", b"\x09desc\x00value"),  # text encoding 9 does not exist
        frame24(b"TALB", b"\x01\xff\xfe\x00\xd8A\x00"),  # UTF-16 with a lone surrogate
        frame24(b"TCON", b"\x03(17)"),
    ]
    path.write_bytes(id3v24(odd) + path.read_bytes())
    before = sha(path)
    assert tags.read_tags(path).genres == ["Rock"]  # numeric ID3v1 genre resolved
    run = lib.start_run("tag")
    write(lib, path, ["Jazz"], run)
    head = path.read_bytes()[:600]
    assert all(f in head for f in odd[:3])  # byte for byte, in order
    assert tags.read_tags(path).genres == ["Jazz"]
    undo.undo_run(lib, run)
    assert sha(path) == before


def test_id3v1_genre_byte_is_a_genre_and_a_new_tag_is_removed_by_undo(
    library: dict[str, Path], tmp_path: Path, lib: Library
) -> None:
    path = copy(library, "mp3", tmp_path)
    ID3(path).delete()
    v1 = b"TAG" + b"V1 Title".ljust(30, b"\0") + bytes(30 + 30 + 4 + 30) + bytes([17])
    path.write_bytes(path.read_bytes() + v1)
    before = sha(path)
    assert tags.read_tags(path).genres == ["Rock"]
    run = lib.start_run("tag")
    write(lib, path, ["Jazz"], run)
    assert path.read_bytes()[-1] == 8  # ID3v1 "Jazz"
    assert tags.read_tags(path).genres == ["Jazz"]
    undo.undo_run(lib, run)
    assert sha(path) == before  # no empty ID3v2 tag left behind, the old genre byte back


def test_wav_without_tag_gets_none_back_after_undo(
    library: dict[str, Path], tmp_path: Path, lib: Library
) -> None:
    path = copy(library, "wav", tmp_path)
    before = sha(path)
    run = lib.start_run("tag")
    write(lib, path, ["Rock"], run)
    assert tags.read_tags(path).genres == ["Rock"]
    undo.undo_run(lib, run)
    assert sha(path) == before


def test_wma_genre_id_is_a_genre_and_comes_back(
    library: dict[str, Path], tmp_path: Path, lib: Library
) -> None:
    path = copy(library, "wma", tmp_path)
    audio = ASF(path)
    audio.tags["Title"] = ["Song"]
    audio.tags["WM/GenreID"] = ["Rock"]
    audio.save()
    assert tags.read_tags(path).genres == ["Rock"]  # fill mode sees a genre: nothing to fill
    run = lib.start_run("tag")
    write(lib, path, ["Jazz"], run)
    assert [str(v) for v in ASF(path).tags.get("WM/Genre", [])] == ["Jazz"]
    assert "WM/GenreID" not in ASF(path).tags
    undo.undo_run(lib, run)
    restored = ASF(path).tags
    assert [str(v) for v in restored.get("WM/GenreID", [])] == ["Rock"]
    assert "WM/Genre" not in restored
    assert tags.read_tags(path).genres == ["Rock"]


def test_ogg_undo_is_byte_exact(library: dict[str, Path], tmp_path: Path, lib: Library) -> None:
    path = copy(library, "ogg", tmp_path)
    audio = mutagen.File(path)
    audio["TITLE"] = "Song"
    audio["GENRE"] = " Jazz "
    audio.save()
    before = sha(path)
    run = lib.start_run("tag")
    write(lib, path, ["Rock"], run)
    assert tags.read_tags(path).genres == ["Rock"]
    undo.undo_run(lib, run)
    assert sha(path) == before


# --- #18.2-4 ownership, hard links, concurrent edits -----------------------------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_owner_group_mode_and_xattrs_are_kept(
    library: dict[str, Path], tmp_path: Path, lib: Library
) -> None:
    path = copy(library, "flac", tmp_path)
    set_flac_comments(path, [b"TITLE=x"])
    os.chown(path, 4321, 4321)
    path.chmod(0o664)
    os.setxattr(path, "user.note", b"keep me")
    ino = path.stat().st_ino
    write(lib, path, ["Rock"], lib.start_run("tag"))
    st = path.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777, st.st_ino) == (4321, 4321, 0o664, ino)
    assert os.getxattr(path, "user.note") == b"keep me"


def test_hard_links_stay_one_file(library: dict[str, Path], tmp_path: Path, lib: Library) -> None:
    path = copy(library, "flac", tmp_path)
    set_flac_comments(path, [b"TITLE=x"])
    other = tmp_path / "other name.flac"
    os.link(path, other)
    write(lib, path, ["Rock"], lib.start_run("tag"))
    assert path.stat().st_ino == other.stat().st_ino
    assert tags.read_tags(other).genres == ["Rock"]

    grown = copy(library, "flac", tmp_path / "nopad")
    set_flac_comments(grown, [b"TITLE=x"], padding=None)
    os.link(grown, tmp_path / "nopad" / "link.flac")
    before = sha(grown)
    with pytest.raises(tags.TagWriteError, match="2 hard links"):
        write(lib, grown, ["Rock"], lib.start_run("tag"))
    assert sha(grown) == before


@pytest.mark.parametrize("padding", [4096, None])
def test_an_edit_made_meanwhile_is_never_overwritten(
    library: dict[str, Path], tmp_path: Path, padding: int | None
) -> None:
    """Another tagger rewrites the file, keeping its size and mtime, after mgctag read it."""
    path = copy(library, "flac", tmp_path)
    set_flac_comments(path, [b"TITLE=mine", b"GENRE=Jazz"], padding=padding)

    def other_tagger(info: dict) -> None:
        st = path.stat()
        data = bytearray(path.read_bytes())
        i = data.index(b"TITLE=mine")
        data[i : i + 10] = b"TITLE=your"
        path.write_bytes(bytes(data))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))

    with pytest.raises(tags.TagWriteError, match="changed while mgctag was writing"):
        tags.write_genres(path, ["Rock"], on_commit=other_tagger)
    assert b"TITLE=your" in path.read_bytes() and tags.read_tags(path).genres == ["Jazz"]


def test_torn_in_place_write_is_rolled_back_from_the_journal(
    library: dict[str, Path], tmp_path: Path, lib: Library
) -> None:
    path = copy(library, "flac", tmp_path)
    set_flac_comments(path, [b"TITLE=x", b"GENRE=Jazz"])
    before = sha(path)
    run = lib.start_run("tag")
    write(lib, path, ["Rock"], run)
    (w,) = lib.writes_for_run(run)
    with lib.transaction():  # as a crash mid-write leaves it: pending, file half written
        lib._exec("UPDATE writes SET state = 'pending' WHERE id = ?", [w["id"]])
    data = bytearray(path.read_bytes())
    i = data.index(b"GENRE=Rock")
    data[i : i + 10] = b"GENRE=Ro\xff\xff"
    path.write_bytes(bytes(data))
    (settled,) = journal.settle_pending(lib)
    assert settled.outcome == "rolled back"
    assert sha(path) == before


# --- #17 undo --------------------------------------------------------------------------------


def test_undo_last_unknown_already_undone_force(
    library: dict[str, Path], tmp_path: Path, lib: Library
) -> None:
    a = copy(library, "flac", tmp_path, "a")
    b = copy(library, "flac", tmp_path, "b")
    for p in (a, b):
        set_flac_comments(p, [b"TITLE=x", b"GENRE=Jazz"])
    run = lib.start_run("tag")
    write(lib, a, ["Rock"], run)
    write(lib, b, ["Rock"], run)
    lib.finish_run(run, "ok")
    noop = lib.start_run("tag", {"dry_run": True})  # a later dry run is never "last"
    lib.finish_run(noop, "ok")
    assert undo.last_run(lib) == run
    with pytest.raises(undo.UndoError, match="no run 999"):
        undo.undo_run(lib, 999)
    with pytest.raises(undo.UndoError, match="changed no file"):
        undo.undo_run(lib, noop)

    # a: only another tag and the mtime changed since; b: the user set another genre
    audio = FLAC(a)
    audio["TITLE"] = "edited title"
    audio.save()
    os.utime(a, (1, 1))
    audio = FLAC(b)
    audio["GENRE"] = "Blues"
    audio.save()
    report = undo.undo_run(lib, run)
    assert [i.status for i in report.items] == ["refused", "restored"]  # latest first: b, a
    assert tags.read_tags(a).genres == ["Jazz"] and FLAC(a)["TITLE"] == ["edited title"]
    assert tags.read_tags(b).genres == ["Blues"]
    forced = undo.undo_run(lib, run, force=True)
    assert [i.status for i in forced.items] == ["restored"]
    assert tags.read_tags(b).genres == ["Jazz"]
    with pytest.raises(undo.UndoError, match="already undone"):
        undo.undo_run(lib, run)


# --- #18.5-6 the database ---------------------------------------------------------------------


def test_another_apps_sqlite_file_is_not_touched(tmp_path: Path) -> None:
    import sqlite3

    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    conn.execute("INSERT INTO notes (text) VALUES ('mine')")
    conn.commit()
    conn.close()
    before = sha(other)
    with pytest.raises(LibraryError, match="not an mgctag library"):
        Library(other)
    assert sha(other) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]


def test_non_regular_database_paths_are_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.db"
    os.mkfifo(fifo)
    with pytest.raises(LibraryError, match="not a regular file"):
        Library(fifo)
    with pytest.raises(LibraryError, match="not a regular file"):
        Library(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo.db"]
    with pytest.raises(LibraryError, match="not a regular file"):
        Library("/dev/null")
    assert not Path("/dev/null-journal").exists()


def test_deleted_database_stops_writes(
    library: dict[str, Path], tmp_path: Path, lib: Library
) -> None:
    path = copy(library, "flac", tmp_path)
    set_flac_comments(path, [b"GENRE=Jazz"])
    before = sha(path)
    run = lib.start_run("tag")
    lib.path.unlink()
    with pytest.raises(JournalError, match="deleted or replaced"):
        write(lib, path, ["Rock"], run)
    assert sha(path) == before


def test_full_database_writes_nothing_and_earlier_writes_still_undo(
    library: dict[str, Path], tmp_path: Path, lib: Library
) -> None:
    a = copy(library, "flac", tmp_path, "a")
    b = copy(library, "flac", tmp_path, "b")
    for p in (a, b):
        set_flac_comments(p, [b"GENRE=Jazz", b"TITLE=" + bytes(20000)])
    run = lib.start_run("tag")
    write(lib, a, ["Rock"], run)
    before_b = sha(b)
    lib._exec(f"PRAGMA max_page_count = {lib._scalar('PRAGMA page_count')}")
    for size in (2000, 200, 20, 1):  # fill the last free bytes of the journal: the disk is full
        with pytest.raises(LibraryError, match="full"):
            for _ in range(10_000):
                with lib.transaction():
                    lib._exec(
                        "INSERT INTO writes (run_id, path, state) VALUES (?, ?, 'failed')",
                        [run, "x" * size],
                    )
    with pytest.raises(LibraryError, match="full"):
        write(lib, b, ["Rock"], run)
    assert sha(b) == before_b
    lib._exec("PRAGMA max_page_count = 1073741823")  # space freed
    report = undo.undo_run(lib, run)
    assert report.count("restored") == 1 and tags.read_tags(a).genres == ["Jazz"]


def test_lock_folder_that_is_a_file_is_one_clear_line(tmp_path: Path, lib: Library) -> None:
    (lib.path.parent / journal.LOCK_DIR).write_text("not a folder")
    with (
        pytest.raises(journal.FileBusyError, match="is not a folder; remove it"),
        journal.file_lock(lib, tmp_path / "song.flac"),
    ):
        pass


def test_posix_only_modules_are_not_needed_to_import() -> None:
    """#17: `import mgctag` failed on Windows (journal imported fcntl). With fcntl absent, the
    tag code imports and the journal falls back to msvcrt (only that is missing on Linux)."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "sys.modules['fcntl'] = None\n"
        "import mgctag.tags, mgctag.library.db, mgctag.atomicio\n"
        "try:\n"
        "    import mgctag.writes.journal\n"
        "except ImportError as e:\n"
        "    print(e.name)\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "msvcrt"


def test_undo_of_a_file_already_back_to_its_old_genre_counts_as_undone(
    library: dict[str, Path], tmp_path: Path, lib: Library
) -> None:
    path = copy(library, "flac", tmp_path)
    set_flac_comments(path, [b"GENRE=Jazz"])
    before = path.read_bytes()
    run = lib.start_run("tag")
    write(lib, path, ["Rock"], run)
    path.write_bytes(before)  # the user put the old file back by hand
    report = undo.undo_run(lib, run, force=True)
    assert report.count("restored") == 1 and path.read_bytes() == before
    with pytest.raises(undo.UndoError, match="already undone"):
        undo.undo_run(lib, run)


USER_A, USER_B, GROUP = 4301, 4302, 4300


def _tag_as_user_b(paths: list[str], out) -> None:
    """User B, a member of the shared group, tags files user A owns (the kernel decides)."""
    try:
        os.setgroups([GROUP])
        os.setgid(GROUP)
        os.setuid(USER_B)
        results = []
        for path in paths:
            try:
                results.append(tags.write_genres(path, ["Rock"]).method)
            except tags.TagWriteError as exc:
                results.append(exc.reason)
        out.put(results)
    except BaseException as exc:
        out.put([repr(exc)])


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create users' files")
def test_shared_group_folder_never_changes_the_owner(library: dict[str, Path]) -> None:
    """#18.2: folder 2775, files 664 owned by A; B tags them. A copy-and-rename would make B the
    owner (B cannot give a file away): in place keeps A, a tag that must grow is refused."""
    import multiprocessing as mp
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="mgctag-group-"))
    try:
        os.chmod(base, 0o755)
        shared = base / "shared"
        shared.mkdir()
        os.chown(shared, USER_A, GROUP)
        shared.chmod(0o2775)
        padded, tight = shared / "padded.flac", shared / "tight.flac"
        for path, padding in ((padded, 4096), (tight, None)):
            shutil.copy(library["flac"], path)
            set_flac_comments(path, [b"TITLE=x"], padding=padding)
            os.chown(path, USER_A, GROUP)
            path.chmod(0o664)
        before = sha(tight)
        out = mp.get_context("fork").Queue()
        child = mp.get_context("fork").Process(
            target=_tag_as_user_b, args=([str(padded), str(tight)], out)
        )
        child.start()
        results = out.get(timeout=60)
        child.join(timeout=60)
        assert results[0] == "in place"
        assert "cannot keep the file's owner" in results[1]
        for path in (padded, tight):
            st = path.stat()
            assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (USER_A, GROUP, 0o664)
        assert tags.read_tags(padded).genres == ["Rock"] and sha(tight) == before
        assert not list(shared.glob(".*"))  # no temporary copy left behind
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_id3v23_tag_unsynchronised_as_a_whole(
    library: dict[str, Path], tmp_path: Path, lib: Library
) -> None:
    def frame23(fid: bytes, body: bytes) -> bytes:
        return fid + len(body).to_bytes(4, "big") + b"\x00\x00" + body

    frames = [
        frame23(b"TIT2", b"\x00Title"),
        frame23(b"PRIV", b"owner\x00\xff\xe0\xff\x00\xff\xfb\x90\xff"),  # sync-like bytes
        frame23(b"TCON", b"\x00Jazz"),
    ]
    body = b"".join(frames)
    stored = bytearray()  # ID3v2.3 section 5, as a tagger applies it to the whole tag
    for i, byte in enumerate(body):
        stored.append(byte)
        if byte == 0xFF and (i + 1 == len(body) or body[i + 1] >= 0xE0 or body[i + 1] == 0):
            stored.append(0)
    assert len(stored) == len(body) + 3
    stored += bytes(256)
    size = bytes((len(stored) >> k) & 0x7F for k in (21, 14, 7, 0))
    path = copy(library, "mp3", tmp_path)
    ID3(path).delete()
    path.write_bytes(b"ID3\x03\x00\x80" + size + bytes(stored) + path.read_bytes())
    before = sha(path)
    assert tags.read_tags(path).genres == ["Jazz"]
    run = lib.start_run("tag")
    write(lib, path, ["Rock"], run)
    assert ID3(path).getall("PRIV")[0].data == b"\xff\xe0\xff\x00\xff\xfb\x90\xff"
    assert tags.read_tags(path).genres == ["Rock"]
    undo.undo_run(lib, run)
    assert sha(path) == before


@pytest.mark.parametrize("padding", [4096, None])
def test_flac_without_comment_block_gets_none_back(
    library: dict[str, Path], tmp_path: Path, lib: Library, padding: int | None
) -> None:
    path = copy(library, "flac", tmp_path)
    data = path.read_bytes()
    blocks, end = flac_blocks(data)
    kept = [(t, b) for t, b in blocks if t not in (1, 4)] + (
        [(1, bytes(padding))] if padding else []
    )
    path.write_bytes(
        b"fLaC"
        + b"".join(
            bytes([t | (0x80 if i == len(kept) - 1 else 0)]) + len(b).to_bytes(3, "big") + b
            for i, (t, b) in enumerate(kept)
        )
        + data[end:]
    )
    before = sha(path)
    run = lib.start_run("tag")
    write(lib, path, ["Rock"], run)
    assert tags.read_tags(path).genres == ["Rock"]
    undo.undo_run(lib, run)
    assert sha(path) == before


def test_wav_with_bytes_after_its_riff_container(
    library: dict[str, Path], tmp_path: Path, lib: Library
) -> None:
    """Some recorders leave bytes after the RIFF container: the new ID3 chunk goes inside it and
    the RIFF size grows by exactly that chunk; the trailing bytes stay where they were."""
    path = copy(library, "wav", tmp_path)
    junk = b"trailing recorder bytes" * 3
    riff = path.read_bytes()
    path.write_bytes(riff + junk)
    before = sha(path)
    run = lib.start_run("tag")
    write(lib, path, ["Rock"], run)
    data = path.read_bytes()
    size = struct.unpack("<I", data[4:8])[0]
    assert data.endswith(junk) and 8 + size == len(data) - len(junk)
    assert tags.read_tags(path).genres == ["Rock"]
    undo.undo_run(lib, run)
    assert sha(path) == before


def test_undo_leaves_runs_of_the_beets_plugin_to_beets(
    library: dict[str, Path], tmp_path: Path, lib: Library
) -> None:
    """A `beet mgctag` run changed beets' database too: `mgctag undo` must not half-undo it."""
    a = copy(library, "flac", tmp_path, "a")
    own = lib.start_run("tag")
    write(lib, a, ["Rock"], own)
    lib.finish_run(own, "ok")
    beets_run = lib.start_run("beet mgctag")
    write(lib, a, ["Jazz"], beets_run)
    lib.finish_run(beets_run, "ok")
    assert undo.last_run(lib) == own
    with pytest.raises(undo.UndoError, match="beet mgctag-undo"):
        undo.undo_run(lib, beets_run)
    assert tags.read_tags(a).genres == ["Jazz"]
