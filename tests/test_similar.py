"""Similar-track search: exact ranking, seeds/filters, multi-seed fusion, and the library path on a
real SQLite file with embeddings computed from the in-repo genre set (tests/data: whole excerpts and
their percussive parts)."""

from __future__ import annotations

from pathlib import Path

import librosa
import media
import numpy as np
import pytest

from mgctag.audio.decode import load
from mgctag.audio.features import mfcc
from mgctag.library.db import Library
from mgctag.library.rows import Track
from mgctag.search.similar import (
    MissingEmbeddings,
    SimilarError,
    UnknownTrack,
    VectorIndex,
    clear_cache,
    filter_mask,
    library_index,
    similar_tracks,
)

MODEL = "mfcc-test"
N_TRACKS = len(media.songs())


def clustered(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((8, d))
    return (centres[rng.integers(0, 8, n)] + 0.7 * rng.standard_normal((n, d))).astype(np.float32)


def brute(m: np.ndarray, q: np.ndarray, ids: np.ndarray, k: int, blocked=()) -> list[int]:
    m = m / np.linalg.norm(m, axis=1, keepdims=True)
    s = m.astype(np.float64) @ (q / np.linalg.norm(q))
    s[list(blocked)] = -np.inf
    order = sorted(range(len(s)), key=lambda r: (-s[r], ids[r]))
    return [int(ids[r]) for r in order[:k] if np.isfinite(s[r])]


# ---- index mechanics ---------------------------------------------------------------------------


def test_exact_top_k_matches_a_full_sort_with_unsorted_ids():
    m = clustered(3000, 64) * 5  # not normalised: the index normalises
    ids = np.random.default_rng(1).permutation(np.arange(10_000, 13_000))
    idx = VectorIndex(ids, m)
    assert np.allclose(np.linalg.norm(idx.matrix, axis=1), 1, atol=1e-5)
    for row in (0, 17, 2999):
        got = [h.id for h in idx.query([int(ids[row])], 15)]
        assert got == brute(m, m[row], ids, 15, blocked=[row])
        assert int(ids[row]) not in got
    q = np.random.default_rng(2).standard_normal(64).astype(np.float32)
    hits = idx.query(q, 7)
    assert [h.id for h in hits] == brute(m, q, ids, 7)
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:], strict=False))


def test_unit_float32_input_is_used_without_a_copy_and_memory_stays_small():
    m = clustered(5000, 200)
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    idx = VectorIndex(np.arange(5000), m)
    assert idx.matrix is m
    assert idx.nbytes <= 1.2 * m.nbytes
    unsorted = VectorIndex(np.arange(5000)[::-1].copy(), m)
    assert unsorted.nbytes <= 1.2 * m.nbytes
    float64 = VectorIndex(np.arange(5000), m.astype(np.float64) * 2)
    assert float64.matrix.dtype == np.float32 and float64.matrix.flags.c_contiguous


def test_seeds_excluded_ids_and_masks_are_never_returned():
    m = clustered(400, 16)
    ids = np.arange(400) * 3 + 1
    idx = VectorIndex(ids, m)
    seeds = [int(ids[5]), int(ids[6])]
    exclude = [int(i) for i in ids[:50]] + [999_999]  # unknown excluded ids are fine
    allowed = np.zeros(400, dtype=bool)
    allowed[::2] = True
    hits = idx.query(seeds, 400, exclude_ids=exclude, allowed_mask=allowed)
    got = {h.id for h in hits}
    assert got == {int(i) for i in ids[50:][::2]} - set(seeds)  # everything allowed, in fact
    assert not got & set(exclude)
    few = np.zeros(400, dtype=bool)
    few[[7, 9]] = True
    assert sorted(h.id for h in idx.query(seeds, 10, allowed_mask=few)) == sorted(ids[[7, 9]])


def test_bad_queries_and_bad_input_raise_specific_errors():
    idx = VectorIndex(np.arange(10), clustered(10, 8))
    with pytest.raises(UnknownTrack, match="42"):
        idx.query([42], 3)
    with pytest.raises(SimilarError, match="dimension"):
        idx.query(np.ones(9, dtype=np.float32), 3)
    with pytest.raises(SimilarError, match="at least one"):
        idx.query([], 3)
    with pytest.raises(ValueError, match="allowed_mask"):
        idx.query([1], 3, allowed_mask=np.ones(5, dtype=bool))
    with pytest.raises(ValueError, match="unique"):
        VectorIndex(np.array([1, 2, 2]), clustered(3, 8))
    with pytest.raises(ValueError, match="fusion"):
        idx.query([1], 3, fusion="max")


def test_centroid_fusion_is_the_query_of_the_mean_direction():
    m = clustered(500, 32)
    idx = VectorIndex(np.arange(500), m)
    seeds = [3, 40, 77]
    centre = idx.matrix[seeds].mean(axis=0)
    by_ids = [h.id for h in idx.query(seeds, 10)]
    assert by_ids == brute(m, centre, np.arange(500), 10, blocked=seeds)
    assert [h.id for h in idx.query(idx.matrix[seeds], 10, exclude_ids=seeds)] == by_ids


def test_rrf_fusion_sums_reciprocal_ranks_of_each_seed():
    m = clustered(300, 16, seed=4)
    idx = VectorIndex(np.arange(300), m)
    seeds = [10, 20]
    fused: dict[int, float] = {}
    for s in seeds:
        for rank, i in enumerate(brute(m, m[s], np.arange(300), 100, blocked=seeds)):
            fused[i] = fused.get(i, 0) + 1 / (60 + rank + 1)
    want = sorted(fused, key=lambda i: (-fused[i], i))[:8]
    hits = idx.query(seeds, 8, fusion="rrf")
    assert [h.id for h in hits] == want
    assert hits[0].score == pytest.approx(fused[want[0]])


def test_filter_mask_by_genre_artist_and_album():
    recs = [
        Track(1, "/m/1", artist="ANiMAL", album="One", genres=["Rap"]),
        # JSON text, odd case
        Track(2, "/m/2", artist="animal ", album="Two", genres='["Rap", "Pop"]'),
        Track(3, "/m/3", artist="Other", album="One", genres=["pop"]),
        Track(4, "/m/4", artist=None, album=None, genres=None),
    ]
    assert filter_mask(recs) is None
    assert filter_mask(recs, genre="POP").tolist() == [False, True, True, False]
    assert filter_mask(recs, exclude_artists=["Animal"]).tolist() == [False, False, True, True]
    assert filter_mask(recs, exclude_albums=[("animal", "one")]).tolist() == [
        False,
        True,
        True,
        True,
    ]


# ---- real audio, real library ------------------------------------------------------------------


def features(y: np.ndarray) -> np.ndarray:
    """Mean and spread of MFCCs: a cheap real embedding until the model embeddings are stored."""
    c = mfcc(y)
    return np.concatenate([c.mean(axis=0), c.std(axis=0)])


def standardise(rows: list[np.ndarray]) -> np.ndarray:
    x = np.asarray(rows, dtype=np.float32)
    return (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-6)


@pytest.fixture(scope="module")
def tracks() -> dict:
    """One 10 s excerpt per song of the in-repo genre set (17 songs, 9 artists): features of each
    excerpt's halves, of the whole and of its percussive part (librosa's harmonic/percussive
    split: a drum stem)."""
    rows = media.songs()
    first, second, mix, drums = [], [], [], []
    for f, _, _ in rows:
        y = load(f, 16000)
        half = len(y) // 2
        first.append(features(y[:half]))
        second.append(features(y[half:]))
        mix.append(features(y))
        drums.append(features(librosa.effects.percussive(y)))
    halves = standardise(first + second)
    return {
        "files": [f for f, _, _ in rows],
        "genres": [g for _, g, _ in rows],
        "artists": [a for _, _, a in rows],
        "first": halves[:N_TRACKS],
        "second": halves[N_TRACKS:],
        "mix": standardise(mix),
        "drums": standardise(drums),
    }


@pytest.mark.slow
def test_the_other_half_of_a_real_track_is_found_first(tracks):
    """Querying with the first 5 s of a track finds its last 5 s among all second halves."""
    idx = VectorIndex(np.arange(N_TRACKS), tracks["second"])
    top1 = [idx.query(tracks["first"][i], 1)[0].id == i for i in range(N_TRACKS)]
    top5 = [i in {h.id for h in idx.query(tracks["first"][i], 5)} for i in range(N_TRACKS)]
    assert np.mean(top1) >= 0.7, np.mean(top1)
    assert np.mean(top5) >= 0.85, np.mean(top5)  # 15 of 17 (top 5 is 30 % of the set)


@pytest.fixture
def library(tmp_path: Path, tracks) -> Library:
    """A real library database: the excerpts as tracks, their features as mix/drums embeddings."""
    lib = Library(tmp_path / "library.db")
    for i, (f, g) in enumerate(zip(tracks["files"], tracks["genres"], strict=True)):
        artist, title = tracks["artists"][i], f.stem
        tid = lib.upsert_track(
            {"path": str(f), "size": i, "mtime": 1, "duration": 7.0, "status": "ok"}
            | {"artist": artist, "album": f"{artist} {'AB'[i % 2]}", "title": title, "genres": [g]}
        )
        emb = {"mix": tracks["mix"][i], "drums": tracks["drums"][i]}
        lib.save_analysis(tid, MODEL, "none", {}, [(g, 1.0)], emb)
    clear_cache()
    yield lib
    lib.close()
    clear_cache()


@pytest.mark.slow
def test_similar_tracks_from_the_library_with_filters(library, tracks):
    seed = str(tracks["files"][0])
    plain = similar_tracks(library, [seed], model=MODEL, k=5)
    assert len(plain) == 5 and all(r["path"] != seed for r in plain)
    assert [r["score"] for r in plain] == sorted((r["score"] for r in plain), reverse=True)
    assert {"id", "path", "artist", "title", "album", "genres", "score"} <= set(plain[0])
    seed_artist = library.track_by_path(seed)["artist"]
    others = similar_tracks(library, [seed], model=MODEL, k=50, exclude_artist=True)
    assert others and all(r["artist"] != seed_artist for r in others)
    assert len(others) == N_TRACKS - tracks["artists"].count(seed_artist)
    g = tracks["genres"][3]
    same_genre = similar_tracks(library, [seed], model=MODEL, k=50, genre=g.upper())
    assert {r["path"] for r in same_genre} == {
        str(f) for f, fg in zip(tracks["files"], tracks["genres"], strict=True) if fg == g
    } - {seed}


@pytest.mark.slow
def test_album_exclusion_keeps_the_artists_other_albums(library, tracks):
    seed = tracks["files"][
        1
    ]  # Muldjord's 1st song, 2nd excerpt: album "... B"; its other songs alternate
    artist = tracks["artists"][1]
    same_artist = [
        f for f, a in zip(tracks["files"], tracks["artists"], strict=True) if a == artist
    ]
    assert len(same_artist) >= 2  # the data this test relies on
    hits = similar_tracks(library, [seed], model=MODEL, k=50, exclude_album=True)
    seed_album = library.track_by_path(seed)["album"]
    assert all(r["album"] != seed_album for r in hits)
    assert any(r["artist"] == artist for r in hits)


@pytest.mark.slow
def test_drum_stem_search_and_several_seeds(library, tracks):
    ids = [library.track_by_path(f)["id"] for f in tracks["files"][:3]]
    by_drums = similar_tracks(library, ids, model=MODEL, by="drums", k=4)
    want = VectorIndex(np.arange(N_TRACKS), tracks["drums"]).query([0, 1, 2], 4)
    assert [r["path"] for r in by_drums] == [str(tracks["files"][h.id]) for h in want]
    rrf = similar_tracks(library, ids, model=MODEL, by="drums", k=4, fusion="rrf")
    assert len(rrf) == 4 and not {r["id"] for r in rrf} & set(ids)


@pytest.mark.slow
def test_missing_stem_and_unknown_seed_give_one_line_errors(library, tracks, tmp_path):
    with pytest.raises(
        MissingEmbeddings, match=r"^no bass embeddings: re-run `mgctag tag --stems on`$"
    ):
        similar_tracks(library, [str(tracks["files"][0])], model=MODEL, by="bass")
    with pytest.raises(MissingEmbeddings, match="no other-model embeddings"):
        similar_tracks(library, [str(tracks["files"][0])], model="other-model")
    with pytest.raises(UnknownTrack, match="not in the library"):
        similar_tracks(library, [tmp_path / "nowhere.mp3"], model=MODEL)
    with pytest.raises(SimilarError, match="unknown stem"):
        similar_tracks(library, [str(tracks["files"][0])], model=MODEL, by="piano")


@pytest.mark.slow
def test_index_is_cached_until_the_database_changes(library, tracks):
    first = library_index(library, MODEL, "mix")
    assert library_index(library, MODEL, "mix") is first
    assert len(first.index) == N_TRACKS
    library.mark_removed([tracks["files"][5]])
    again = library_index(library, MODEL, "mix")
    assert again is not first and len(again.index) == N_TRACKS - 1
    assert str(tracks["files"][5]) not in again.by_path


@pytest.mark.slow
def test_similar_fusion_option_reaches_the_search(library, tracks) -> None:
    """`similar A B --fusion rrf` ranks by reciprocal rank fusion; a bad name is a usage error."""
    import json

    from conftest import cli

    from mgctag.options import MUSICNN_TAGGER

    for i, f in enumerate(tracks["files"]):  # what `similar` reads by default: musicnn's vectors
        tid = library.track_by_path(f)["id"]
        library.save_analysis(tid, MUSICNN_TAGGER, "none", {}, [], {"mix": tracks["mix"][i]})
    seeds = [str(f) for f in tracks["files"][:2]]
    db = library.path
    results = {}
    for fusion in ("centroid", "rrf"):
        result = cli("similar", *seeds, "--db", db, "-k", "3", "--fusion", fusion, "--json")
        assert result.code == 0, result.output
        results[fusion] = json.loads(result.stdout)
        assert results[fusion] and not {h["path"] for h in results[fusion]} & set(seeds)
    assert [h["score"] for h in results["rrf"]] != [h["score"] for h in results["centroid"]]
    assert cli("similar", *seeds, "--db", db, "--fusion", "max").code == 2


def test_versions_by_tags_and_by_sound():
    """Tags that name the same song (once normalised) make versions; tags that name different
    songs never do, however close the embeddings; a track whose tags name no song is judged by
    its embedding."""
    from mgctag.search import versions

    key = versions.version_key
    assert key({"artist": "The Beatles", "title": "Help! (Remastered 2009)"}) == key(
        {"artist": "Beatles", "title": "Help - Remastered"}
    )
    assert key({"artist": "Café Tacvba feat. X", "title": "Eres - Live"}) == ("cafe tacvba", "eres")
    assert key({"artist": "A", "title": None}) is None
    v = np.ones(8, np.float32) / np.sqrt(8)
    one, two = {"id": 1, "artist": "A", "title": "One"}, {"id": 2, "artist": "B", "title": "Two"}
    untagged = {"id": 3, "path": "/m/track03.flac"}
    far = -v
    folding = versions.Folding([], np.empty((0, 8), np.float32))
    live = {"id": 5, "artist": "a", "title": "One (Live)"}
    for track, vector in ((one, v), (two, v), (untagged, v), ({"id": 4}, far), (live, far)):
        folding.offer(track, vector)
    assert [g.track["id"] for g in folding.groups] == [1, 2, 4]
    assert [t["id"] for t in folding.groups[0].versions] == [3, 5]  # by sound; by tags
    # a seed's versions are never results: its copy by sound, its live take by tags
    folding = versions.Folding([one], v[None, :])
    for track, vector in ((untagged, v), (live, far), (two, v)):
        folding.offer(track, vector)
    assert [g.track["id"] for g in folding.groups] == [2]
    groups = versions.version_groups([1, 2, 3], [key(one), key(two), None], [(1, 2), (2, 3)])
    assert groups == [[2, 3]]
