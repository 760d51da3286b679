"""Exports: M3U8 playlists that players read back correctly, CSV without formula injection, JSON.

The playlist entries point at real encoded audio (tests/media.py) in folders with spaces and
non-ASCII names, and every playlist is read back by a parser that follows the M3U rules.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from media import make_library

from mgctag.search.export import (
    ExportError,
    PlaylistEntry,
    csv_cell,
    dumps_json,
    write_csv,
    write_json,
    write_m3u,
)


def read_m3u(path: Path) -> list[tuple[str, str]]:
    """(EXTINF line, location) pairs as a player reads them: '#' lines are directives/comments."""
    lines = path.read_bytes().decode("utf-8").split("\n")
    assert lines[0] == "#EXTM3U" and lines[-1] == ""
    entries, info = [], None
    for line in lines[1:-1]:
        if line.startswith("#EXTINF:"):
            info = line
        elif line and not line.startswith("#"):
            entries.append((info, line))
            info = None
    return entries


@pytest.fixture(scope="module")
def tracks(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("lib") / "Mÿ Músic" / "Sigur Rós – Ágætis byrjun"
    return make_library(root, exts=("mp3", "flac", "ogg"), seconds=2.0)


def test_m3u_absolute_and_relative_paths_resolve_to_the_real_files(tracks, tmp_path):
    entries = [
        PlaylistEntry(tracks[0], "Sigur Rós", "Svefn-g-englar", 601.4),
        PlaylistEntry(tracks[1], None, "Starálfur", None),
        PlaylistEntry(tracks[2], "Björk", None, float("nan")),
    ]
    abs_pl = tmp_path / "abs.m3u8"
    assert write_m3u(abs_pl, entries) == 3
    got = read_m3u(abs_pl)
    assert [Path(loc) for _, loc in got] == [t.absolute() for t in tracks]
    assert [i for i, _ in got] == [
        "#EXTINF:601,Sigur Rós - Svefn-g-englar",
        "#EXTINF:-1,Starálfur",
        "#EXTINF:-1,Björk - vibe_ace",  # no title: the file name stands in
    ]
    playlists = tracks[0].parent.parent.parent / "Playlists"
    playlists.mkdir(exist_ok=True)
    rel_pl = playlists / "rel.m3u8"
    write_m3u(rel_pl, entries, relative_to=playlists)
    rel = [loc for _, loc in read_m3u(rel_pl)]
    assert all(not os.path.isabs(loc) and loc.startswith("..") for loc in rel)
    assert [(playlists / loc).resolve() for loc in rel] == [t.resolve() for t in tracks]
    assert all((playlists / loc).stat().st_size > 0 for loc in rel)  # the audio is really there
    assert oct(rel_pl.stat().st_mode & 0o777) == "0o644"


def test_newlines_and_controls_in_tags_cannot_break_the_playlist(tracks, tmp_path):
    evil = PlaylistEntry(
        tracks[0], "A\nrtist\r\n#EXTINF:1,fake", "T\u2028itle\x00\n/etc/passwd", 12
    )
    pl = tmp_path / "evil.m3u8"
    write_m3u(pl, [evil, PlaylistEntry(tracks[1], "B", "C", 3)])
    got = read_m3u(pl)
    assert [Path(loc) for _, loc in got] == [tracks[0].absolute(), tracks[1].absolute()]
    assert got[0][0] == "#EXTINF:12,A rtist #EXTINF:1,fake - T itle /etc/passwd"
    assert len(pl.read_text(encoding="utf-8").splitlines()) == 5


def test_paths_no_playlist_can_hold_are_refused_and_nothing_is_written(tmp_path):
    pl = tmp_path / "p.m3u8"
    with pytest.raises(ExportError, match="line break"):
        write_m3u(pl, [PlaylistEntry(tmp_path / "ok.mp3"), PlaylistEntry(tmp_path / "a\nb.mp3")])
    assert not pl.exists() and list(tmp_path.iterdir()) == []  # no temp file left behind
    hashed = tmp_path / "#1 hit.mp3"
    write_m3u(pl, [PlaylistEntry(hashed, "X", "Y")], relative_to=tmp_path)
    assert read_m3u(pl) == [("#EXTINF:-1,X - Y", "./#1 hit.mp3")]
    with pytest.raises(ExportError, match="cannot write playlist"):
        write_m3u(tmp_path / "no" / "such" / "dir.m3u8", [PlaylistEntry(hashed)])


def test_csv_neutralises_formulas_and_round_trips_everything_else(tmp_path):
    rows = [
        {"title": '=HYPERLINK("http://x","y")', "artist": "+1 Band", "score": -0.5},
        {"title": "-minus", "artist": "@handle", "score": np.float32(0.25)},
        {"title": "\tTab", "artist": 'a,b "c"\nline', "score": None},
        {"title": "Ünïcödé 日本", "artist": "Plain", "genres": ["Rock", "Pop"], "score": 3},
    ]
    out = tmp_path / "t.csv"
    assert write_csv(out, rows, fields=["title", "artist", "genres", "score"]) == 4
    with open(out, newline="", encoding="utf-8") as f:
        back = list(csv.reader(f))
    assert back[0] == ["title", "artist", "genres", "score"]
    assert back[1] == ['\'=HYPERLINK("http://x","y")', "'+1 Band", "", "-0.5"]
    assert back[2] == ["'-minus", "'@handle", "", "0.25"]
    assert back[3] == ["'\tTab", 'a,b "c"\nline', "", ""]
    assert back[4] == ["Ünïcödé 日本", "Plain", "Rock; Pop", "3"]
    assert all(
        not cell.startswith(("=", "+", "-", "@")) or cell == "-0.5" for r in back for cell in r
    )
    assert csv_cell(True) == "true" and csv_cell(np.int64(7)) == 7


def test_csv_default_columns_come_from_the_first_row(tmp_path):
    write_csv(tmp_path / "d.csv", [{"b": 1, "a": 2}, {"a": 3, "c": 4}])
    assert (tmp_path / "d.csv").read_bytes() == b"b,a\r\n1,2\r\n,3\r\n"
    write_csv(tmp_path / "e.csv", [])
    assert (tmp_path / "e.csv").read_bytes() == b""


def test_json_export_turns_numpy_and_paths_into_plain_json(tmp_path):
    data = [
        {"id": np.int64(3), "score": np.float32(0.5), "path": Path("/m/ä.mp3"), "v": np.ones(2)},
        {"genres": ("Rock",), "bad": float("nan"), "inf": -math.inf, "title": "</script>"},
    ]
    write_json(tmp_path / "r.json", data)
    text = (tmp_path / "r.json").read_text(encoding="utf-8")
    assert "ä" in text  # UTF-8, not \\u escapes
    assert json.loads(text) == [
        {"id": 3, "score": 0.5, "path": "/m/ä.mp3", "v": [1.0, 1.0]},
        {"genres": ["Rock"], "bad": None, "inf": None, "title": "</script>"},
    ]
    assert json.loads(dumps_json({"k": np.arange(3)})) == {"k": [0, 1, 2]}
