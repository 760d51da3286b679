"""Folder scanning on real audio (encoded from tests/data into tmp dirs) and real SQLite."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import tempfile
import unicodedata
from pathlib import Path

import mutagen.flac
import pytest
import stored
from conftest import cli
from media import make_library

from mgctag.library.db import Library
from mgctag.library.scan import ScanError, iter_audio_files, scan

FORMATS = ("mp3", "flac", "ogg", "opus", "m4a", "alac.m4a", "wav", "aiff", "wma")


@pytest.fixture(scope="module")
def encoded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real 3 s clips in every format, encoded once per module; tests copy them."""
    return make_library(tmp_path_factory.mktemp("encoded"), FORMATS, seconds=3.0)[0].parent


@pytest.fixture
def music(encoded: Path, tmp_path: Path) -> Path:
    """A small real library: every format in two folders, a corrupt file and a zero-byte file."""
    root = tmp_path / "music"
    (root / "Album A").mkdir(parents=True)
    (root / "Album B").mkdir()
    for ext in FORMATS:
        folder = "Album A" if ext in ("flac", "wav", "ogg", "alac.m4a") else "Album B"
        shutil.copy2(encoded / f"vibe_ace.{ext}", root / folder)
    (root / "Album A" / "corrupt.mp3").write_bytes(b"\xff\xfb junk that is no MPEG frame " * 64)
    (root / "Album B" / "empty.flac").write_bytes(b"")
    return root


@pytest.fixture
def lib(tmp_path: Path) -> Library:
    with Library(tmp_path / "lib.db") as library:
        yield library


def _rows(lib: Library) -> dict[str, dict]:
    return {t["path"]: t for t in lib.tracks(status=None)}


# --- walking ------------------------------------------------------------------------------------


def test_iter_audio_files_order_and_what_is_skipped(music: Path) -> None:
    shutil.copy(music / "Album A" / "vibe_ace.flac", music / "LOUD.MP3")  # case of the extension
    for junk in (".hidden.mp3", "._vibe_ace.mp3", ".vibe_ace.mp3.x1y2.mgctag-tmp", "cover.jpg"):
        (music / junk).write_bytes(b"x")
    (music / "notes.txt").write_text("liner notes")
    (music / ".Trash").mkdir()
    (music / ".Trash" / "old.mp3").write_bytes(b"x")
    (music / "folder.mp3").mkdir()  # a folder with an audio name is walked, not listed

    files = list(iter_audio_files([music]))
    rel = [os.path.relpath(p, music) for p in files]
    album_a = sorted(n for n in os.listdir(music / "Album A"))
    album_b = sorted(n for n in os.listdir(music / "Album B"))
    # Depth first, names sorted; a folder's own files before its subfolders.
    expected = ["LOUD.MP3"] + [f"Album A/{n}" for n in album_a] + [f"Album B/{n}" for n in album_b]
    assert rel == expected
    assert files == list(iter_audio_files([music / "Album B", music]))  # overlapping roots: once
    single = music / "Album A" / "corrupt.mp3"
    assert list(iter_audio_files([single])) == [str(single)]


def test_symlinks_stay_inside_roots_unless_asked_and_never_loop(
    music: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(music / "Album A" / "vibe_ace.flac", outside / "elsewhere.flac")
    (music / "link to outside").symlink_to(outside, target_is_directory=True)
    (music / "Album A" / "loop").symlink_to(music, target_is_directory=True)
    (music / "linked.flac").symlink_to(outside / "elsewhere.flac")
    (music / "dangling.mp3").symlink_to(tmp_path / "nothing-here.mp3")

    plain = list(iter_audio_files([music]))
    assert not any("outside" in p or "loop" in p or "linked" in p for p in plain)

    errors: list[tuple[str, str]] = []
    followed = list(
        iter_audio_files([music], follow_symlinks=True, on_error=lambda *e: errors.append(e))
    )
    extra = [p for p in followed if p not in plain]
    # elsewhere.flac is reachable twice (file link, folder link): listed once; the loop ends.
    assert [os.path.realpath(p) for p in extra] == [str(outside / "elsewhere.flac")]
    assert len(followed) == len(set(followed)) == len(plain) + 1


def test_long_paths_and_folders_past_path_max_are_reported_not_fatal(
    music: Path, tmp_path: Path
) -> None:
    src = (music / "Album A" / "vibe_ace.flac").read_bytes()
    deep = tmp_path / "deep"
    deep.mkdir()
    fd = os.open(deep, os.O_RDONLY)
    try:
        for depth in range(1, 19):  # 18 levels of 240-character names: past PATH_MAX (4096)
            name = f"{depth:02d}" + "x" * 238
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = child
            if depth in (8, 18):
                out = os.open(f"track{depth}.flac", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
                os.write(out, src)
                os.close(out)
    finally:
        os.close(fd)

    errors: list[tuple[str, str]] = []
    files = list(iter_audio_files([deep], on_error=lambda *e: errors.append(e)))
    assert [os.path.basename(p) for p in files] == ["track8.flac"]
    assert len(files[0]) > 1900
    assert len(errors) == 1 and errors[0][1] == os.strerror(36)  # ENAMETOOLONG, one line


# --- scanning -----------------------------------------------------------------------------------


def test_first_scan_reads_everything_and_records_failures(music: Path, lib: Library) -> None:
    run = lib.start_run("scan", {"roots": [str(music)]})
    progress: list[tuple[int, int, str]] = []
    report = scan(lib, [music], run_id=run, on_progress=lambda *a: progress.append(a))

    assert (report.new, report.changed, report.unchanged, report.removed, report.failed) == (
        len(FORMATS),
        0,
        0,
        0,
        2,
    )
    assert report.total == len(FORMATS) + 2
    assert report.as_dict()["new"] == len(FORMATS) and len(report.as_dict()["failures"]) == 2
    assert report.summary_line().startswith(f"{len(FORMATS) + 2} audio files: {len(FORMATS)} new")
    assert [p[0] for p in progress] == list(range(1, report.total + 1))
    assert {p[1] for p in progress} == {report.total}

    rows = _rows(lib)
    assert len(rows) == len(FORMATS) + 2
    flac = rows[str(music / "Album A" / "vibe_ace.flac")]
    assert (flac["status"], flac["format"], flac["codec"]) == ("ok", "flac", "flac")
    assert flac["duration"] == pytest.approx(3.0, abs=0.05) and flac["sample_rate"] == 44100
    assert flac["size"] == os.stat(music / "Album A" / "vibe_ace.flac").st_size
    assert {r["codec"] for r in rows.values() if r["status"] == "ok"} >= {"mp3", "aac", "alac"}

    failed = {os.path.basename(p): reason for p, reason in report.failures}
    assert set(failed) == {"corrupt.mp3", "empty.flac"}
    assert all(reason and "\n" not in reason for reason in failed.values())
    for name in failed:
        row = next(r for p, r in rows.items() if p.endswith(name))
        assert row["status"] == "failed" and row["error"] == failed[name]
    got = {(os.path.basename(f["path"]), f["stage"]) for f in stored.failures(lib, run)}
    assert got == {("corrupt.mp3", "scan"), ("empty.flac", "scan")}


def test_rescan_reads_nothing_new_then_sees_touch_delete_and_return(
    music: Path, lib: Library
) -> None:
    scan(lib, [music])
    before = _rows(lib)

    report = scan(lib, [music])
    assert (report.new, report.changed, report.unchanged, report.removed) == (0, 0, len(FORMATS), 0)
    assert report.failed == 2  # still failing, with the stored reasons, but not re-read
    assert _rows(lib) == before  # no row written: scanned_at of every track unchanged

    touched = music / "Album B" / "vibe_ace.mp3"
    st = touched.stat()
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # one nanosecond is a change
    fixed = music / "Album B" / "empty.flac"
    shutil.copy(music / "Album A" / "vibe_ace.flac", fixed)  # a failed file that now works
    gone = music / "Album A" / "vibe_ace.wav"
    saved = gone.read_bytes()
    gone.unlink()

    report = scan(lib, [music])
    assert (report.new, report.changed, report.unchanged, report.removed, report.failed) == (
        0,
        2,
        len(FORMATS) - 2,
        1,
        1,
    )
    after = _rows(lib)
    assert after[str(touched)]["scanned_at"] > before[str(touched)]["scanned_at"]
    assert after[str(touched)]["mtime"] == st.st_mtime_ns + 1
    assert after[str(fixed)]["status"] == "ok" and after[str(fixed)]["error"] is None
    assert (
        after[str(gone)]["status"] == "removed"
        and after[str(gone)]["id"] == before[str(gone)]["id"]
    )
    unchanged = set(before) - {str(touched), str(fixed), str(gone)}
    assert all(after[p]["scanned_at"] == before[p]["scanned_at"] for p in unchanged)

    gone.write_bytes(saved)
    report = scan(lib, [music])
    assert (report.new, report.removed) == (1, 0)
    assert lib.track_by_path(gone)["status"] == "ok"
    assert lib.track_by_path(gone)["id"] == before[str(gone)]["id"]  # same track: history kept


def test_scanning_one_folder_leaves_the_rest_of_the_library_alone(
    music: Path, lib: Library
) -> None:
    scan(lib, [music])
    report = scan(lib, [music / "Album A"])
    assert report.removed == 0 and report.new == 0
    assert stored.status_counts(lib) == {"ok": len(FORMATS), "failed": 2}
    with pytest.raises(ScanError, match="no such file or folder"):
        scan(lib, [music / "Album C"])
    assert stored.status_counts(lib) == {"ok": len(FORMATS), "failed": 2}


def test_tag_values_and_names_reach_the_database_verbatim(music: Path, lib: Library) -> None:
    flac = music / "Album A" / "vibe_ace.flac"
    tags = mutagen.flac.FLAC(flac)
    tags["artist"] = "O'Brien\"; DROP TABLE tracks; --"
    tags["title"] = "Ágætis byrjun"
    tags["genre"] = ["Post-Rock", "Rock'n'Roll \"--"]
    tags.save()
    nfd = music / unicodedata.normalize("NFD", "Sigur Rós.flac")
    shutil.copy(flac, nfd)
    latin1 = os.fsdecode(os.fsencode(str(music)) + b"/caf\xe9.flac")  # not UTF-8
    shutil.copy(flac, latin1)

    scan(lib, [music])
    row = lib.track_by_path(flac)
    assert row["artist"] == "O'Brien\"; DROP TABLE tracks; --"
    assert row["title"] == "Ágætis byrjun"
    assert row["genres"] == ["Post-Rock", "Rock'n'Roll \"--"]
    assert lib.track_by_path(nfd)["status"] == "ok"
    assert lib.track_by_path(unicodedata.normalize("NFC", str(nfd))) is None  # the bytes on disk
    odd = lib.track_by_path(latin1)
    assert odd is not None and os.fsencode(odd["path"]) == os.fsencode(latin1)
    assert odd["status"] == "ok" or "\n" not in odd["error"]

    report = scan(lib, [music])  # and they are all recognised as unchanged next time
    assert report.new == report.changed == report.removed == 0


def _scan_unprivileged(db_path: str, root: str, out: mp.Queue) -> None:
    """Scan as an ordinary user, so permissions apply even when the tests run as root."""
    if os.geteuid() == 0:
        os.setgid(65534)
        os.setuid(65534)
    with Library(db_path) as lib:
        report = scan(lib, [root])
        out.put((report.removed, report.failures, stored.status_counts(lib)))


def test_unreadable_folder_is_reported_and_its_tracks_are_not_removed(encoded: Path) -> None:
    base = Path(tempfile.mkdtemp(prefix="mgctag-scan-"))  # outside root-only pytest dirs
    try:
        base.chmod(0o777)
        root = base / "music"
        shutil.copytree(encoded, root / "Locked")
        shutil.copy(encoded / "vibe_ace.mp3", root / "open.mp3")
        db_path = base / "lib.db"
        with Library(db_path) as lib:
            assert scan(lib, [root]).new == len(FORMATS) + 1
        for p in [root, *root.rglob("*"), *base.glob("lib.db*")]:
            p.chmod(0o777 if p.is_dir() else 0o666)
        (root / "Locked").chmod(0)

        ctx = mp.get_context("fork")
        out = ctx.Queue()
        child = ctx.Process(target=_scan_unprivileged, args=(str(db_path), str(root), out))
        child.start()
        child.join(60)
        assert child.exitcode == 0
        removed, failures, counts = out.get(timeout=5)
        assert removed == 0 and counts == {"ok": len(FORMATS) + 1}
        assert failures == [(str(root / "Locked"), "Permission denied")]
    finally:
        (base / "music" / "Locked").chmod(0o755)
        shutil.rmtree(base)


def test_symlinks_not_followed_are_counted_and_told(music: Path, tmp_path: Path) -> None:
    """Never silently ignored (issue 17): the scan says how many links it left alone and how to
    follow them; --follow-symlinks scans through them, a loop still ends."""
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(music / "Album A" / "vibe_ace.flac", outside / "elsewhere.flac")
    (music / "link to outside").symlink_to(outside, target_is_directory=True)
    (music / "linked.flac").symlink_to(outside / "elsewhere.flac")
    (music / "Album A" / "loop").symlink_to(music, target_is_directory=True)
    (music / "notes.txt").symlink_to(outside / "elsewhere.flac")  # not audio: not counted
    with Library(tmp_path / "a.db") as lib:
        report = scan(lib, [music])
    assert report.links_skipped == 3 and report.as_dict()["links_skipped"] == 3
    assert report.summary_line().endswith(
        "; 3 symlinks not followed (--follow-symlinks follows them)"
    )
    result = cli("scan", music, "--db", tmp_path / "b.db", "--follow-symlinks", "--json")
    followed = json.loads(result.stdout)
    assert followed["links_skipped"] == 0 and followed["total"] == report.total + 1


def test_tag_tells_the_symlinks_it_did_not_follow(tmp_path: Path) -> None:
    (tmp_path / "Music").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "Music" / "more").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    result = cli("tag", tmp_path / "Music", "--db", tmp_path / "lib.db", "--dry-run")
    assert result.code == 0 and "1 symlink not followed (--follow-symlinks" in result.stdout
    result = cli("tag", tmp_path / "Music", "--db", tmp_path / "lib.db", "--json")
    assert json.loads(result.stdout)["links_skipped"] == 1
    result = cli("tag", tmp_path / "Music", "--db", tmp_path / "lib.db", "--follow-symlinks")
    assert result.code == 0 and "symlink" not in result.stdout


def test_info_on_a_file_the_scan_could_not_read_says_so(tmp_path: Path) -> None:
    (tmp_path / "Music").mkdir()
    broken = tmp_path / "Music" / "broken.mp3"
    broken.write_bytes(b"not audio at all " * 64)
    assert cli("scan", tmp_path / "Music", "--db", tmp_path / "lib.db").code == 1
    result = cli("info", broken, "--db", tmp_path / "lib.db")
    assert result.code == 0 and "status: failed (not audio or corrupt" in result.stdout
    assert "could not be read" in result.stdout and "run `mgctag tag`" not in result.stdout
