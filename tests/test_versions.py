"""Versions folded in `similar`, `mgctag dupes`, and playlists, on a real library.

Real excerpts from tests/data, tagged (artist, title) as genres.csv names them, tagged with the
default tagger; two get an MP3 transcode, an EQ change and an edit (tools/bench/dupes.py makes
them as for the threshold's measurement; untagged, so only the embeddings can tell), one a
retitled copy "(Remastered 2011)", and another excerpt of one song is tagged "(Live)"."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import media
import mutagen
import numpy as np
import pytest
from conftest import cli
from media import encode

from mgctag import pipeline
from mgctag.audio.decode import load
from mgctag.library.db import Library
from mgctag.models import audioset
from mgctag.options import DEFAULT_TAGGER, TagOptions
from mgctag.search import playlist as pl
from mgctag.search import versions
from mgctag.search.similar import duplicates, similar_tracks
from tools.bench.dupes import SR, edit_variant, eq_variant

pytestmark = pytest.mark.slow

ORIGINALS = (
    "metal/armygeddon_1",  # A: transcode, EQ change and edit
    "metal/chaos_god_1",
    "metal/internal_degeneration_1",
    "electronic/northern_lights_1",  # B: transcode, EQ change and edit
    "electronic/desert3_1",
    "electronic/digital_pursuit_1",
    "classical/knolls_1",
    "classical/love_theme_1",  # C: a copy retitled "Love Theme (Remastered 2011)"
    "jazz/vibe_ace_1",
    "folk/let_s_go_fishin_1",
    "metal/metal_madness_1",
    "classical/hungarian_dance_no_5_1",
)


def _names() -> dict[str, tuple[str, str]]:
    """genres.csv: excerpt -> (artist, title)."""
    import csv

    with open(media.MUSIC / "genres.csv", encoding="utf-8", newline="") as f:
        return {
            r["file"].removesuffix(".ogg"): (r["artist"], r["title"]) for r in csv.DictReader(f)
        }


def _tag(path: Path, artist: str, title: str) -> None:
    f = mutagen.File(path, easy=True)
    f["artist"], f["title"] = artist, title
    f.save()


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("versions")
    music = root / "Music"
    music.mkdir()
    names = _names()
    for name in ORIGINALS:
        dest = music / f"{Path(name).name}.ogg"
        shutil.copy(media.MUSIC / f"{name}.ogg", dest)
        _tag(dest, *names[name])
    for name in ("metal/armygeddon_1", "electronic/northern_lights_1"):
        y = load(media.MUSIC / f"{name}.ogg", SR, mono=False)
        y = np.vstack([y, y]) if y.ndim == 1 or y.shape[0] == 1 else y
        stem = Path(name).name
        encode(y, SR, music / f"{stem}-mp3.mp3", bit_rate=96_000)
        encode(eq_variant(y), SR, music / f"{stem}-eq.flac")
        encode(edit_variant(y), SR, music / f"{stem}-edit.flac")
    remaster = music / "love_theme_remastered.ogg"
    shutil.copy(music / "love_theme_1.ogg", remaster)
    _tag(remaster, names["classical/love_theme_1"][0], "Love Theme (Remastered 2011)")
    live = music / "chaos_god_live.ogg"
    shutil.copy(media.MUSIC / "metal/chaos_god_2.ogg", live)
    _tag(live, names["metal/chaos_god_1"][0], "Chaos God - Live at Wacken")
    db = root / "lib.db"
    with Library(db) as lib:
        summary = pipeline.tag_paths(lib, [music], TagOptions(dry_run=True, stems="off"))
        assert summary.failed == 0 and summary.analysed == 20, summary
    return music, db


@pytest.fixture
def lib(library: tuple[Path, Path]) -> Library:
    with Library(library[1]) as opened:
        yield opened


def _id(lib: Library, music: Path, name: str) -> int:
    return int(lib.track_by_path(music / name)["id"])


def _family(lib: Library, music: Path, stem: str) -> set[int]:
    names = [f"{stem}.ogg", f"{stem}-mp3.mp3", f"{stem}-eq.flac", f"{stem}-edit.flac"]
    return {_id(lib, music, n) for n in names}


def test_the_seed_never_returns_itself_or_its_versions(library, lib) -> None:
    music = library[0]
    for stem in ("armygeddon_1", "northern_lights_1"):
        family = _family(lib, music, stem)
        for seed in family:
            for all_versions in (False, True):
                hits = similar_tracks(
                    lib, [seed], model=DEFAULT_TAGGER, k=20, all_versions=all_versions
                )
                assert hits and not {h["id"] for h in hits} & family, (stem, seed)
    seed = _id(lib, music, "love_theme_1.ogg")
    hits = similar_tracks(lib, [seed], model=DEFAULT_TAGGER, k=20)
    assert _id(lib, music, "love_theme_remastered.ogg") not in {h["id"] for h in hits}


def test_other_versions_fold_into_one_result(library, lib) -> None:
    music = library[0]
    seed = _id(lib, music, "hungarian_dance_no_5_1.ogg")
    hits = similar_tracks(lib, [seed], model=DEFAULT_TAGGER, k=20)
    ids = [h["id"] for h in hits]
    for stem in ("armygeddon_1", "northern_lights_1"):
        family = _family(lib, music, stem)
        (shown,) = [h for h in hits if h["id"] in family]  # one result for the four
        assert {v["id"] for v in shown["versions"]} | {shown["id"]} == family
    by_tags = {_id(lib, music, "love_theme_1.ogg"), _id(lib, music, "love_theme_remastered.ogg")}
    assert len(by_tags & set(ids)) == 1
    live = {_id(lib, music, "chaos_god_1.ogg"), _id(lib, music, "chaos_god_live.ogg")}
    assert len(live & set(ids)) == 1
    assert len(hits) == 12 - 1  # every other song once
    every = similar_tracks(lib, [seed], model=DEFAULT_TAGGER, k=30, all_versions=True)
    assert len(every) == 20 - 1 and all(not h["versions"] for h in every)


def test_dupes_lists_each_recordings_versions(library, lib) -> None:
    music = library[0]
    groups = duplicates(lib, model=DEFAULT_TAGGER)
    found = sorted(sorted(t["id"] for t in g) for g in groups)
    want = [
        sorted(_family(lib, music, "armygeddon_1")),
        sorted(_family(lib, music, "northern_lights_1")),
        sorted([_id(lib, music, "love_theme_1.ogg"), _id(lib, music, "love_theme_remastered.ogg")]),
        sorted([_id(lib, music, "chaos_god_1.ogg"), _id(lib, music, "chaos_god_live.ogg")]),
    ]
    assert found == sorted(want)
    for group in groups[:2]:  # the audio versions: each close to another of its group
        unit = np.stack([lib.get_embeddings(t["id"], DEFAULT_TAGGER)["mix"] for t in group])
        unit /= np.linalg.norm(unit, axis=1, keepdims=True)
        sims = unit @ unit.T - 2 * np.eye(len(group))
        assert np.all(sims.max(axis=1) >= versions.DUPLICATE_COSINE)
        # a copy's embedding equals its original's, to float16 storage; where musicnn runs under
        # bfloat16 (a CPU with AVX-512 BF16) the two passes' batches differ: cosine ~0.9999
        near = 1e-3 if audioset.BF16_MUSICNN else 1e-5
        assert group[0]["similarity"] == 1.0 or abs(group[0]["similarity"] - 1) < near
    result = cli("dupes", "--db", library[1])
    assert result.code == 0 and result.stdout.count("group ") == 4, result.output


def test_similar_says_also_n_versions(library) -> None:
    music, db = library
    result = cli("similar", music / "hungarian_dance_no_5_1.ogg", "--db", db, "-k", "20")
    assert result.code == 0, result.output
    assert result.stdout.count("also: 3 versions") == 2 and "also: 1 version)" in result.stdout
    every = cli("similar", music / "hungarian_dance_no_5_1.ogg", "--db", db, "--all-versions")
    assert every.code == 0 and "also:" not in every.stdout


def _artists_within(records: list[dict], spacing: int) -> int:
    return pl.artist_repeats(records, spacing)


def test_a_path_starts_and_ends_where_asked_and_spaces_artists(library, lib) -> None:
    music = library[0]
    start, end = _id(lib, music, "armygeddon_1.ogg"), _id(lib, music, "vibe_ace_1.ogg")
    for spacing in (1, 2, 3):
        rules = pl.Rules(length=6, spacing=spacing)
        path = pl.path_playlist(lib, start, end, model=DEFAULT_TAGGER, rules=rules)
        assert len(path) == 6 and path[0]["id"] == start and path[-1]["id"] == end
        assert _artists_within(path, spacing) == 0
        ids = [t["id"] for t in path]
        assert len(set(ids)) == 6
        assert not set(ids[1:-1]) & _family(lib, music, "armygeddon_1")  # no version of A
        keys = [versions.version_key(t) for t in path if versions.version_key(t)]
        assert len(keys) == len(set(keys))  # no song twice
    with pytest.raises(pl.SimilarError, match="no path of 19 tracks"):
        pl.path_playlist(lib, start, end, model=DEFAULT_TAGGER, rules=pl.Rules(length=19))


def test_instant_mix_and_playlist_files(library, tmp_path) -> None:
    music, db = library
    m3u, xspf = tmp_path / "mix.m3u8", tmp_path / "mix.xspf"
    seed = music / "northern_lights_1.ogg"
    result = cli(
        "playlist", "--seed", seed, "--length", "5", "--spacing", "2", "--db", db,
        "--m3u", m3u, "--xspf", xspf, "--json",
    )  # fmt: skip
    assert result.code == 0, result.output
    mix = json.loads(result.stdout)
    assert len(mix) == 5 and mix[0]["path"] == str(seed)
    assert pl.artist_repeats(mix, 2) == 0
    assert not any("northern_lights_1-" in t["path"] for t in mix)  # no version of the seed
    entries = [ln for ln in m3u.read_text("utf-8").splitlines() if not ln.startswith("#")]
    assert entries == [t["path"] for t in mix]
    ns = {"x": "http://xspf.org/ns/0/"}
    tracks = ET.parse(xspf).getroot().findall("x:trackList/x:track", ns)
    assert [t.find("x:location", ns).text for t in tracks] == [
        Path(t["path"]).as_uri() for t in mix
    ]
    path = cli(
        "playlist", "--from", music / "knolls_1.ogg", "--to", music / "metal_madness_1.ogg",
        "--length", "4", "--db", db, "--json",
    )  # fmt: skip
    assert path.code == 0, path.output
    chain = json.loads(path.stdout)
    assert [chain[0]["path"], chain[-1]["path"]] == [
        str(music / "knolls_1.ogg"),
        str(music / "metal_madness_1.ogg"),
    ]
    both = cli("playlist", "--seed", seed, "--from", seed, "--db", db)
    assert both.code == 2 and "not both" in both.stderr
