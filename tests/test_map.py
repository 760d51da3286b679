"""The library map: 2-D layout, PNG map and heatmap (decoded and inspected), the self-contained
HTML page (all points, escaping, CSP), genre similarity, and `make_map` on a real library file."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import media
import numpy as np
import pytest
from PIL import Image

from mgctag.audio.decode import load
from mgctag.audio.features import mfcc
from mgctag.library.db import Library
from mgctag.library.rows import Track
from mgctag.search.map import (
    UNKNOWN,
    genre_colors,
    genre_heatmap_png,
    genre_similarity,
    layout_2d,
    make_map,
    map_html,
    map_png,
)
from mgctag.search.similar import MissingEmbeddings, clear_cache

EVIL = "</script><script>alert(1)</script>"
N_TRACKS = 12


def clustered(n: int, d: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    x = rng.standard_normal((k, d))[labels] + 0.4 * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


def _mfcc_stats(path: Path, stream: int = 0) -> np.ndarray:
    c = mfcc(load(path, 16000, stream=stream))
    return np.concatenate([c.mean(axis=0), c.std(axis=0)])


@pytest.fixture(scope="module")
def tracks() -> dict:
    """Mean+std MFCCs of one real excerpt per song of the in-repo genre set (17 songs)."""
    rows = media.songs()
    return {
        "files": [f for f, _, _ in rows],
        "genres": [g for _, g, _ in rows],
        "artists": [a for _, _, a in rows],
        "mix": np.asarray([_mfcc_stats(f) for f, _, _ in rows], dtype=np.float32),
    }


@pytest.fixture(scope="module")
def stems() -> dict:
    """Mean+std MFCCs of real MUSDB18 previews' drum and vocal streams (optional: ../shared)."""
    files = sorted((media.need(media.MUSDB) / "train").glob("*.stem.mp4"))[:N_TRACKS]
    out = {
        name: np.asarray([_mfcc_stats(f, stream) for f in files], dtype=np.float32)
        for name, stream in (("drums", 1), ("vocals", 4))
    }
    both = np.concatenate([out["drums"], out["vocals"]])
    both = (both - both.mean(axis=0)) / (both.std(axis=0) + 1e-6)
    out["drums_vocals"] = both / np.linalg.norm(both, axis=1, keepdims=True)
    return out


# ---- layout and genre similarity ---------------------------------------------------------------


def test_tsne_keeps_clusters_apart():
    x, labels = clustered(60, 32, 3)
    p = layout_2d(x, "tsne", threads=1)
    assert p.shape == (60, 2) and p.dtype == np.float32
    d = np.linalg.norm(p[:, None] - p[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    assert np.mean(labels[d.argmin(axis=1)] == labels) > 0.95


def test_tiny_and_linear_layouts():
    assert layout_2d(np.zeros((0, 8))).shape == (0, 2)
    assert layout_2d(np.eye(3, 8)).shape == (3, 2)
    x, labels = clustered(40, 16, 2)
    p = layout_2d(x, "pca")
    assert p.shape == (40, 2) and np.ptp(p[labels == 0, 0]) + np.ptp(p[labels == 1, 0]) > 0


def test_genre_similarity_is_the_average_pairwise_cosine():
    x, labels = clustered(30, 8, 3, seed=2)
    genres = [["a"] if g == 0 else ["b", "c"] if g == 1 else ["c"] for g in labels]
    names, sim = genre_similarity(x, genres)
    members = {n: [i for i, gs in enumerate(genres) if n in gs] for n in names}
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            pairs = [x[p] @ x[q] for p in members[a] for q in members[b] if p != q]
            assert sim[i, j] == pytest.approx(np.mean(pairs), abs=1e-5)
    assert names[0] == "c"  # the most tracks first
    lone, sim1 = genre_similarity(x[:2], ["solo", "other"])
    assert np.isnan(sim1[0, 0]) and np.isfinite(sim1[0, 1])


def test_real_drum_stems_are_more_alike_than_drums_and_vocals(stems):
    labels = ["drums"] * N_TRACKS + ["vocals"] * N_TRACKS
    names, sim = genre_similarity(stems["drums_vocals"], labels)
    d, v = names.index("drums"), names.index("vocals")
    assert sim[d, d] > sim[d, v] and sim[v, v] > sim[d, v]


# ---- pictures ----------------------------------------------------------------------------------


def image(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_map_png_draws_every_genre_with_a_legend(tmp_path):
    x, labels = clustered(200, 16, 4)
    names = ["Rock", "Jazz", "Hip-Hop", UNKNOWN]
    labs = [names[i] for i in labels]
    out = map_png(layout_2d(x, "pca"), labs, tmp_path / "map.png")
    img = image(out)
    assert img.shape == (900, 1200, 3)
    assert (img.min(axis=-1) < 250).mean() > 0.01  # not blank
    for name, color in genre_colors(names).items():
        rgb = [int(color[i : i + 2], 16) for i in (1, 3, 5)]
        near = np.abs(img.astype(int) - rgb).sum(axis=-1) < 40
        assert near.sum() > 20, name  # each genre's colour is on the picture


def test_heatmap_png(tmp_path, tracks):
    names, sim = genre_similarity(tracks["mix"], tracks["genres"])
    img = image(genre_heatmap_png(names, sim, tmp_path / "heat.png"))
    assert img.shape[0] > 400 and img.shape[1] > 400
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 50  # a colour scale, not an empty frame


# ---- the HTML page -----------------------------------------------------------------------------


class Scripts(HTMLParser):
    """The page's <script> elements and <title>, as a browser's tokenizer splits them."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[tuple[dict, str]] = []
        self.title = ""
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "title"):
            self._in = tag
            if tag == "script":
                self.scripts.append((dict(attrs), ""))

    def handle_endtag(self, tag):
        self._in = None

    def handle_data(self, data):
        if self._in == "script":
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)
        elif self._in == "title":
            self.title += data


def records(n: int) -> list[Track]:
    recs = [
        Track(i + 1, f"/m/{i}.mp3", artist=f"Artist {i}", title=f"Song {i}", genres=["Rock"])
        for i in range(n)
    ]
    recs[0] = replace(
        recs[0], title=EVIL, artist="<img src=x onerror=alert(2)>", path="/m/a&b\u2028.mp3"
    )
    recs[1] = replace(recs[1], genres='["Jazz", "Blues"]', title="Ünïcödé 日本 \"quotes\" 'x'")
    recs[2] = replace(recs[2], genres=[], title=None)
    return recs


def test_html_is_self_contained_holds_every_point_and_escapes_tags(tmp_path):
    x, _ = clustered(50, 8, 2)
    recs = records(50)
    page = map_html(layout_2d(x, "pca"), recs, tmp_path / "map.html", title="Map <b>&")
    text = page.read_text(encoding="utf-8")
    assert (
        "http://" not in text and "https://" not in text and " src=" not in text.split("<script")[0]
    )
    assert EVIL not in text and "<img" not in text and "\u2028" not in text
    parsed = Scripts()
    parsed.feed(text)
    assert parsed.title == "Map <b>&"
    assert len(parsed.scripts) == 2  # the data block and the viewer: nothing injected
    (data_attrs, data_text), (_, code) = parsed.scripts
    assert data_attrs == {"type": "application/json", "id": "mgc-data"}
    data = json.loads(data_text)
    assert len(data["x"]) == len(data["y"]) == len(data["g"]) == 50
    assert data["title"][0] == EVIL and data["artist"][0] == recs[0]["artist"]
    assert data["path"][0] == "/m/a&b\u2028.mp3"
    assert data["title"][1] == recs[1]["title"] and data["tags"][1] == "Jazz, Blues"
    assert data["title"][2] == "2" and data["genres"][data["g"][2]] == UNKNOWN
    assert all(0 <= v <= 1 for v in data["x"] + data["y"])
    digest = base64.b64encode(hashlib.sha256(code.encode()).digest()).decode()
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', text).group(1)
    assert f"script-src 'sha256-{digest}'" in csp and "default-src 'none'" in csp
    assert "innerHTML" not in code and "eval(" not in code


# ---- the `map` command on a real library -------------------------------------------------------


@pytest.fixture
def library(tmp_path, tracks):
    lib = Library(tmp_path / "library.db")
    for i, (f, g) in enumerate(zip(tracks["files"], tracks["genres"], strict=True)):
        artist, title = tracks["artists"][i], f.stem
        tid = lib.upsert_track(
            {"path": str(f), "size": i, "mtime": 1, "status": "ok", "artist": artist}
            | {"title": title if i else EVIL, "genres": [g] if i % 5 else []}
        )
        lib.save_analysis(tid, "mfcc-test", "none", {}, [], {"mix": tracks["mix"][i]})
    clear_cache()
    yield lib
    lib.close()
    clear_cache()


def test_make_map_writes_all_three_files(library, tmp_path, tracks):
    out = tmp_path / "out"
    out.mkdir()
    files = {"out_png": out / "m.png", "out_html": out / "m.html", "heatmap_png": out / "h.png"}
    summary = make_map(library, model="mfcc-test", threads=1, **files)
    assert summary["tracks"] == len(tracks["files"])
    tagged = {g for i, g in enumerate(tracks["genres"]) if i % 5}
    assert summary["genres"] == len(tagged)
    assert sorted(summary["files"]) == sorted(str(p) for p in files.values())
    assert image(files["out_png"]).shape == (900, 1200, 3)
    data = Scripts()
    data.feed(files["out_html"].read_text(encoding="utf-8"))
    assert len(json.loads(data.scripts[0][1])["x"]) == len(tracks["files"])
    with pytest.raises(MissingEmbeddings, match="no drums embeddings"):
        make_map(library, out / "d.png", model="mfcc-test", by="drums")


def _html_paths(page: Path) -> list[str]:
    data = Scripts()
    data.feed(page.read_text(encoding="utf-8"))
    return json.loads(data.scripts[0][1])["path"]


def test_map_html_paths_are_relative_unless_asked_and_heatmap_counts_the_legend_genres(
    library, tmp_path, tracks
):
    """A shared map does not reveal where the library lives; the heatmap and the legend count
    the same genres (each track's first, as the points are coloured) (issue 17)."""
    result = make_map(
        library, None, tmp_path / "m.html", model="mfcc-test", heatmap_png=tmp_path / "h.png"
    )
    assert sorted(_html_paths(tmp_path / "m.html")) == sorted(
        str(f.relative_to(media.MUSIC)) for f in tracks["files"]
    )
    legend = {p["genre"] for p in result["points"]} - {UNKNOWN}
    assert sorted(result["heatmap_genres"]) == sorted(legend)
    assert len(result["heatmap_genres"]) == result["genres"]
    make_map(library, None, tmp_path / "a.html", model="mfcc-test", absolute_paths=True)
    assert sorted(_html_paths(tmp_path / "a.html")) == sorted(str(f) for f in tracks["files"])


def test_small_library_png_names_its_points(tmp_path):
    x, labels = clustered(6, 8, 2)
    points = layout_2d(x, "pca")
    genres = ["Rock", "Jazz"]
    bare = image(map_png(points, [genres[i] for i in labels], tmp_path / "a.png"))
    names = [f"Artist {i} – Song {i}" for i in range(6)]
    named = image(map_png(points, [genres[i] for i in labels], tmp_path / "b.png", "m", names))
    ink = lambda img: int((img.min(axis=-1) < 200).sum())  # noqa: E731
    assert ink(named) > ink(bare) + 300, (ink(named), ink(bare))  # six names beside the points
    many = [f"Song {i}" for i in range(60)]
    x60, l60 = clustered(60, 8, 2)
    p60 = layout_2d(x60, "pca")
    plain = image(map_png(p60, [genres[i] for i in l60], tmp_path / "c.png", "m"))
    big = image(map_png(p60, [genres[i] for i in l60], tmp_path / "d.png", "m", many))
    assert (plain == big).all()  # a big library stays a readable scatter
