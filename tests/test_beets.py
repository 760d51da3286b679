"""The beets plugin with a real beets: `beet import`, `beet mgctag`, -similar, -undo, auto import.

One beets library per module (its own BEETSDIR config, its own mgctag database, user folders in
the temp dir), filled with copies of real recordings; beets runs as a subprocess (`python -m
beets`), exactly as a user runs it, so its global config and plugin registry start fresh each time.
The tests run in order and share that library.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

beets = pytest.importorskip("beets", reason="beets is not installed (pip install 'mgctag[beets]')")

import media  # noqa: E402
from beets.library import Album  # noqa: E402
from mediafile import MediaFile  # noqa: E402
from mutagen.easyid3 import EasyID3  # noqa: E402

from beetsplug.mgctag import genre_field  # noqa: E402
from mgctag.genres import split_genres  # noqa: E402

pytestmark = pytest.mark.slow

TAGGED_MP3 = Path("house_lo.mp3")  # made by `_copy`: an MP3 with a genre tag already (Blues)
MUSIC = [
    media.LIBROSA / "Kevin_MacLeod_-_Vibe_Ace.hq.ogg",  # has a genre tag already (Jazz)
    media.MUSIC / "electronic" / "northern_lights_1.ogg",
    media.LIBROSA / "Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra).hq.ogg",
    media.MUSIC / "metal" / "armygeddon_1.ogg",
    TAGGED_MP3,
]
LATER = [  # imported with `auto: yes`
    media.LIBROSA / "sorohanro_-_solo-trumpet-06.hq.ogg",
    media.LIBROSA / "198-209-0000.hq.ogg",  # speech (LibriSpeech)
]
FIELD = genre_field()


@dataclass
class Beets:
    root: Path
    env: dict[str, str]

    @property
    def dest(self) -> Path:
        """beets' library folder (where a copying import puts files)."""
        return self.root / "library"

    def run(self, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
        extra = ["-c", str(config)] if config else []
        return subprocess.run(
            [sys.executable, "-m", "beets", *extra, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    def ls(self, *query: str) -> dict[str, str]:
        """path → the item's genres as `beet ls -f` formats them."""
        out = self.run("ls", "-f", f"${{path}}\t${FIELD}", *query)
        assert out.returncode == 0, out.stderr
        return dict(line.split("\t", 1) for line in out.stdout.splitlines())

    def runs(self) -> list[tuple]:
        with sqlite3.connect(self.root / "mgctag.db") as db:
            return db.execute("SELECT id, command, status, counts FROM runs ORDER BY id").fetchall()


def file_genres(path: str) -> list[str]:
    """The file's genres as beets' mediafile reads them (a joined `genre` string split again)."""
    return [g for value in MediaFile(path).genres or [] for g in split_genres(value)]


def beets_genres(formatted: str) -> list[str]:
    return [g for g in formatted.split("; ") if g]


def _copy(src: Path, dest: Path) -> None:
    if src != TAGGED_MP3:
        shutil.copyfile(src, dest)
        return
    y, sr = media.real_clip("Karissa_Hobbs_-_Lets_Go_Fishin", seconds=8.0)
    media.encode(y, sr, dest)
    tags = EasyID3()
    tags["genre"] = "Blues"
    tags.save(dest)


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> Beets:
    """A beets library holding copies of MUSIC, imported as-is in place (`import -A -C`)."""
    root = tmp_path_factory.mktemp("beets")
    music = root / "music"
    music.mkdir()
    for src in MUSIC:
        _copy(src, music / src.name)
    (root / "config").mkdir()
    (root / "config" / "config.yaml").write_text(
        f"directory: {root / 'library'}\n"
        f"library: {root / 'beets.db'}\n"
        "plugins: mgctag\n"
        "threaded: no\n"
        "ui:\n  color: no\n"
        "import:\n  write: yes\n  duplicate_action: keep\n  log: null\n"
        f"mgctag:\n  db: {root / 'mgctag.db'}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MGCTAG_", "BEETS"))}
    env.update(
        BEETSDIR=str(root / "config"),
        XDG_CONFIG_HOME=str(root / "xdg-config"),
        XDG_DATA_HOME=str(root / "xdg-data"),
    )
    b = Beets(root, env)
    out = b.run("import", "-A", "-C", "-q", str(music))
    assert out.returncode == 0, out.stderr
    assert len(b.ls()) == len(MUSIC)
    return b


def test_pretend_changes_nothing(lib: Beets) -> None:
    before = lib.ls()
    files = {p: Path(p).read_bytes() for p in before}
    out = lib.run("mgctag", "-p")
    assert out.returncode == 0, out.stderr
    assert f"{len(MUSIC)} items, {len(MUSIC)} analysed" in out.stdout
    assert "would change" in out.stdout and f"  {FIELD}:" in out.stdout  # beets' change listing
    assert lib.ls() == before
    assert {p: Path(p).read_bytes() for p in before} == files


def test_tag_sets_genres_in_beets_and_files(lib: Beets) -> None:
    before = lib.ls()
    out = lib.run("mgctag")
    assert out.returncode == 0, out.stderr
    after = lib.ls()
    for path, value in before.items():
        if value:  # fill (the default mode) leaves items that have genres alone
            assert after[path] == value
            continue
        genres = beets_genres(after[path])
        assert 1 <= len(genres) <= 3, (path, after[path])
        assert file_genres(path) == genres  # written by beets' own writer
    assert any(not v for v in before.values())
    # the analysis from the -p run was reused: nothing analysed again
    assert "0 analysed" in out.stdout
    command, status, counts = lib.runs()[-1][1:]
    assert (command, status) == ("beet mgctag", "ok")
    assert json.loads(counts)["tagged"] == sum(not v for v in before.values())


def test_second_run_analyses_nothing_and_changes_nothing(lib: Beets) -> None:
    before = lib.ls()
    out = lib.run("mgctag")
    assert out.returncode == 0, out.stderr
    assert f"{len(MUSIC)} items, 0 analysed, 0 changed, {len(MUSIC)} unchanged" in out.stdout
    assert lib.ls() == before


def test_force_analyses_again(lib: Beets) -> None:
    out = lib.run("mgctag", "-f", "title:Hungarian")
    assert out.returncode == 0, out.stderr
    assert "1 items, 1 analysed" in out.stdout


def test_beets_own_tag_writes_keep_the_analysis(lib: Beets) -> None:
    """`beet modify -w` rewrites the file's tags: mgctag's analysis follows the file."""
    query = "title:Hungarian"
    out = lib.run("modify", "-y", "-w", "comments=edited by beets", query)
    assert out.returncode == 0, out.stderr
    out = lib.run("mgctag", query)
    assert out.returncode == 0, out.stderr
    assert "1 items, 0 analysed" in out.stdout


def _all_analysed(lib: Beets) -> None:
    """Every item analysed (a no-op after the module's earlier tests, so a test run alone works)."""
    out = lib.run("mgctag")
    assert out.returncode == 0, out.stderr


def test_similar_lists_beets_items_and_writes_a_playlist(lib: Beets) -> None:
    _all_analysed(lib)
    playlist = lib.root / "similar.m3u8"
    seed = str(lib.root / "music" / MUSIC[0].name)
    out = lib.run(
        "mgctag-similar", f"path:{seed}", "-k", "3", "-f", "$path", "--playlist", str(playlist)
    )
    assert out.returncode == 0, out.stderr
    shown = out.stdout.splitlines()
    assert len(shown) == 3 and seed not in shown
    assert set(shown) <= set(lib.ls())
    lines = playlist.read_text("utf-8").splitlines()
    assert lines[0] == "#EXTM3U" and [ln for ln in lines if not ln.startswith("#")] == shown


def test_similar_of_unanalysed_items_is_one_line(lib: Beets) -> None:
    out = lib.run("mgctag-similar", "title:no-such-title-anywhere")
    assert out.returncode == 1
    assert out.stderr.strip() == "error: mgctag-similar: no items match the query"


def test_playlist_travels_from_one_item_to_another(lib: Beets) -> None:
    import xml.etree.ElementTree as ET

    _all_analysed(lib)
    start, end = (str(lib.root / "music" / MUSIC[i].name) for i in (1, 3))
    xspf = lib.root / "trip.xspf"
    out = lib.run(
        "mgctag-playlist", f"path:{start}", "--to", f"path:{end}", "--length", "3",
        "-f", "$path", "--playlist", str(xspf),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    shown = out.stdout.splitlines()
    assert len(shown) == 3 and shown[0] == start and shown[-1] == end
    assert set(shown) <= set(lib.ls())
    ns = {"x": "http://xspf.org/ns/0/"}
    tracks = ET.parse(xspf).getroot().findall("x:trackList/x:track", ns)
    assert [t.find("x:location", ns).text for t in tracks] == [Path(p).as_uri() for p in shown]
    mix = lib.run("mgctag-playlist", f"path:{start}", "--length", "3", "-f", "$path")
    assert mix.returncode == 0, mix.stderr
    assert mix.stdout.splitlines()[0] == start and len(mix.stdout.splitlines()) == 3
    bad = lib.run("mgctag-playlist", f"path:{start}", "--length", "1")
    assert bad.returncode == 1 and bad.stderr.strip().startswith("error: mgctag-playlist: --length")


def test_undo_restores_beets_and_files(lib: Beets) -> None:
    tagged = lib.ls()
    pretend = lib.run("mgctag-undo", "-p")
    assert pretend.returncode == 0 and "would restore" in pretend.stdout
    assert lib.ls() == tagged
    out = lib.run("mgctag-undo")
    assert out.returncode == 0, out.stderr
    restored = lib.ls()
    for path, value in tagged.items():
        if path.endswith((MUSIC[0].name, MUSIC[-1].name)):  # had genres; never changed
            assert restored[path] == value
        else:
            assert restored[path] == "" and file_genres(path) == []
    again = lib.run("mgctag-undo")
    assert again.returncode == 1
    assert again.stderr.strip() == "error: mgctag-undo: no `beet mgctag` run to undo"
    assert "Traceback" not in again.stderr


def test_auto_tags_on_import(lib: Beets) -> None:

    new = lib.root / "new"
    new.mkdir()
    for src in LATER:
        shutil.copyfile(src, new / src.name)
    auto = lib.root / "auto.yaml"
    auto.write_text("mgctag:\n  auto: yes\n")
    out = lib.run("import", "-A", "-C", "-q", str(new), config=auto)
    assert out.returncode == 0, out.stderr
    got = lib.ls(f"path:{new}")
    trumpet, speech = (str(new / src.name) for src in LATER)
    assert beets_genres(got[trumpet])
    assert got[speech] == ""  # the content gate: speech gets no genre
    # the album's own genres come from its tracks' (one track genre each here: the commonest)
    (album_id,) = set(lib.run("ls", "-f", "$album_id", f"path:{new}").stdout.split())
    fmt = f"$id\t${genre_field(Album)}"
    albums = dict(ln.split("\t") for ln in lib.run("ls", "-a", "-f", fmt).stdout.splitlines())
    album_genres = beets_genres(albums[album_id])
    assert album_genres and set(album_genres) <= {g for v in got.values() for g in beets_genres(v)}
    command, status, _ = lib.runs()[-1][1:]
    assert (command, status) == ("beet import", "ok")


def test_copying_import_keeps_the_analysis(lib: Beets) -> None:
    """Import with `copy: yes`: the auto stage analyses the source, beets copies it into its
    library folder, and the analysis follows the copy (no second analysis)."""
    src = lib.root / "to-copy"
    src.mkdir()
    clip = media.MUSIC / "classical" / "knolls_1.ogg"
    shutil.copyfile(clip, src / clip.name)
    cfg = lib.root / "copy.yaml"
    cfg.write_text("mgctag:\n  auto: yes\nimport:\n  copy: yes\n")
    out = lib.run("import", "-A", "-q", str(src), config=cfg)
    assert out.returncode == 0, out.stderr
    ids = lib.run("ls", "-f", "$id\t$path").stdout.splitlines()
    (item_id,) = [i for i, p in (ln.split("\t") for ln in ids) if lib.dest in Path(p).parents]
    copied = lib.ls(f"id:{item_id}")
    assert beets_genres(next(iter(copied.values())))
    out = lib.run("mgctag", f"id:{item_id}")
    assert out.returncode == 0, out.stderr
    assert "1 items, 0 analysed, 0 changed, 1 unchanged" in out.stdout


def test_a_failing_file_is_one_line_and_the_rest_go_on(lib: Beets) -> None:
    broken = lib.root / "music" / MUSIC[1].name
    broken.write_bytes(b"not audio at all\n" * 100)
    out = lib.run("mgctag", "-m", "replace", f"path:{lib.root / 'music'}")
    assert out.returncode == 1
    errors = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert any(ln.startswith(f"mgctag: {broken}: ") for ln in errors), out.stderr
    assert errors[-1] == f"error: mgctag: 1 of {len(MUSIC)} items failed"
    assert "Traceback" not in out.stderr
    assert f"{len(MUSIC)} items" in out.stdout
    got = lib.ls(f"path:{lib.root / 'music'}")
    assert sum(bool(v) for p, v in got.items() if p != str(broken)) == len(MUSIC) - 1


def test_bad_config_is_beets_one_line_error(lib: Beets) -> None:
    bad = lib.root / "bad.yaml"
    bad.write_text("mgctag:\n  mode: everything\n")
    out = lib.run("mgctag", "-p", config=bad)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "mode" in lines[0] and "Traceback" not in out.stderr


def test_relocate_track_refuses_another_tracks_path(tmp_path: Path) -> None:
    from mgctag.library.db import Library

    with Library(tmp_path / "m.db") as mlib:
        a = mlib.upsert_track({"path": str(tmp_path / "a.ogg"), "size": 1, "mtime": 2})
        b = mlib.upsert_track({"path": str(tmp_path / "b.ogg"), "size": 3, "mtime": 4})
        assert not mlib.relocate_track(a, tmp_path / "b.ogg", 5, 6)
        assert mlib.relocate_track(a, tmp_path / "c.ogg", 5, 6)
        moved = mlib.get_track(a)
        assert (moved["path"], moved["size"], moved["mtime"]) == (str(tmp_path / "c.ogg"), 5, 6)
        assert mlib.get_track(b)["path"] == str(tmp_path / "b.ogg")


@pytest.mark.parametrize(
    ("db", "reason"),
    [
        ("missing-folder/m.db", "no such folder for the database (create it first)"),
        ("not-a-db.db", "not an SQLite database (so not an mgctag library)"),
    ],
)
def test_a_bad_mgctag_database_is_one_line(lib: Beets, db: str, reason: str) -> None:
    (lib.root / "not-a-db.db").write_text("not a database\n")
    cfg = lib.root / "db.yaml"
    cfg.write_text(f"mgctag:\n  db: {lib.root / db}\n")
    out = lib.run("mgctag", "-p", config=cfg)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: mgctag: ") and reason in lines[0]
    assert not (lib.root / "missing-folder").exists()


def test_no_decoder_noise_reaches_the_terminal(tmp_path: Path) -> None:
    """A damaged MP3: libmpg123 prints each concealed frame error to fd 2 (`[src/libmpg123/...]
    error: ...`); `beet mgctag -p` keeps those lines off the terminal as mgctag's own CLI does."""
    import random

    root, music = tmp_path / "beets", tmp_path / "beets" / "music"
    music.mkdir(parents=True)
    y, sr = media.real_clip("Kevin_MacLeod_-_Vibe_Ace", seconds=8.0)
    clean = media.encode(y, sr, tmp_path / "clean.mp3")
    data = bytearray(clean.read_bytes())
    rng = random.Random(1)
    for _ in range(200):
        data[rng.randrange(4000, len(data))] = rng.randrange(256)
    (music / "damaged.mp3").write_bytes(bytes(data))
    (root / "config").mkdir()
    (root / "config" / "config.yaml").write_text(
        f"directory: {root / 'library'}\nlibrary: {root / 'beets.db'}\nplugins: mgctag\n"
        f"threaded: no\nui:\n  color: no\nimport:\n  write: no\n  log: null\n"
        f"mgctag:\n  db: {root / 'mgctag.db'}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MGCTAG_", "BEETS"))}
    env.update(BEETSDIR=str(root / "config"), XDG_DATA_HOME=str(root / "xdg-data"))
    b = Beets(root, env)
    assert b.run("import", "-A", "-C", "-q", str(music)).returncode == 0
    decode_it = "import sys; from mgctag.audio import decode; decode.load(sys.argv[1], 16000)"
    plain = subprocess.run(  # the noise is real: the same decode without the filter
        [sys.executable, "-c", decode_it, str(music / "damaged.mp3")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "[src/libmpg123/" in plain.stderr
    out = b.run("mgctag", "-p")
    assert "libmpg123" not in out.stderr and "Traceback" not in out.stderr, out.stderr
