"""A map of the library: embeddings laid out in 2-D, drawn as a PNG and as an interactive HTML page.

The layout is t-SNE (scikit-learn, cosine metric), as in the seed paper's map of genres. The HTML
page is a single self-contained file (a small canvas viewer, no network, no CDN) so it can be
mailed or opened from disk; tag text goes in only as escaped JSON data read with JSON.parse and
shown with textContent, and a Content-Security-Policy lets only the page's own script run.
"""

from __future__ import annotations

import base64
import hashlib
import html
import os
from collections import Counter
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from string import Template
from typing import Any

import numpy as np

from mgctag.errors import MgctagError, reason_of
from mgctag.jsonable import dumps_json
from mgctag.library.rows import Track
from mgctag.search.similar import LibraryLike, library_index, track_genres

UNKNOWN = "unknown"
_UNKNOWN_COLOR = "#9e9e9e"


class MapError(MgctagError):
    """A map that cannot be made; the message is one line for the user."""


# ---- layout ------------------------------------------------------------------------------------


def layout_2d(
    matrix: np.ndarray,
    method: str = "tsne",
    seed: int = 0,
    threads: int | None = None,
    neighbours: np.ndarray | None = None,
) -> np.ndarray:
    """(n, 2) float32 coordinates for (n, d) embeddings; similar rows land near each other.

    `method`: "tsne" (default), "pca" (fast, linear) or "umap" (if umap-learn is installed).
    `threads` caps OpenMP threads: t-SNE's many short parallel loops slow down badly when the
    cores are busy with other work (18x on a loaded 2-core box; see docs/similar.md).
    `neighbours` (n, k) row numbers of each row's nearest rows (from the similarity index) gives
    t-SNE its neighbourhoods, instead of comparing every pair of rows (quadratic in the library).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(threads):
        return _layout(np.asarray(matrix, dtype=np.float32), method, seed, neighbours)


def _layout(
    x: np.ndarray, method: str, seed: int, neighbours: np.ndarray | None = None
) -> np.ndarray:
    n = len(x)
    if n == 0:
        return np.zeros((0, 2), dtype=np.float32)
    if n < 4 or method == "pca":
        return _pca_2d(x)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = min(30.0, (n - 1) / 3)
        if neighbours is not None:
            tsne = TSNE(
                2, perplexity=perplexity, metric="precomputed", init="random", random_state=seed
            )
            return tsne.fit_transform(knn_distances(x, neighbours)).astype(np.float32)
        tsne = TSNE(2, perplexity=perplexity, metric="cosine", init="pca", random_state=seed)
        return tsne.fit_transform(x).astype(np.float32)
    if method == "umap":
        try:
            import umap
        except ImportError as e:
            raise MapError("the umap layout needs umap-learn: pip install umap-learn") from e
        return umap.UMAP(metric="cosine", random_state=seed).fit_transform(x).astype(np.float32)
    raise MapError(f"unknown layout {method!r}: use tsne, pca or umap")


def knn_distances(x: np.ndarray, neighbours: np.ndarray) -> Any:
    """A sparse (n, n) matrix of cosine distances from each row to its listed neighbours (-1:
    none), what t-SNE's "precomputed" metric takes."""
    from scipy.sparse import csr_matrix
    from sklearn.neighbors import sort_graph_by_row_values

    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    rows, cols = np.nonzero(neighbours >= 0)
    targets = neighbours[rows, cols]
    keep = targets != rows
    rows, targets = rows[keep], targets[keep]
    dist = np.maximum(1.0 - np.einsum("ij,ij->i", unit[rows], unit[targets]), 1e-9)
    graph = csr_matrix((dist, (rows, targets)), shape=(len(x), len(x)))
    return sort_graph_by_row_values(graph, warn_when_not_sorted=False)


def _pca_2d(x: np.ndarray) -> np.ndarray:
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    out = np.zeros((len(x), 2), dtype=np.float32)
    proj = centred @ vt[:2].T
    out[:, : proj.shape[1]] = proj
    return out


# ---- colours shared by the PNG and the HTML page -----------------------------------------------


def primary_genre(record: Track) -> str:
    """The genre a point is coloured by: the track's first genre."""
    g = track_genres(record)
    return g[0] if g else UNKNOWN


def genre_order(labels: Sequence[str]) -> list[str]:
    """Genres by count (most first), 'unknown' last: the legend order."""
    counts = Counter(labels)
    names = sorted(counts, key=lambda g: (g == UNKNOWN, -counts[g], g.casefold()))
    return names


def genre_colors(names: Sequence[str]) -> dict[str, str]:
    """A distinct hex colour per genre (tab20, then tab20b/tab20c), grey for 'unknown'."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    maps = [colormaps[name] for name in ("tab20", "tab20b", "tab20c")]  # 20 listed colours each
    palette = [to_hex(cmap(i)) for cmap in maps for i in range(cmap.N)]
    palette = palette[0::2] + palette[1::2]  # strong shades first, light ones after
    known = [g for g in names if g != UNKNOWN]
    out = {g: palette[i % len(palette)] for i, g in enumerate(known)}
    if UNKNOWN in names:
        out[UNKNOWN] = _UNKNOWN_COLOR
    return out


# ---- PNG ---------------------------------------------------------------------------------------


def agg_figure(size: tuple[float, float]):
    """A pyplot-free Agg figure: no global state, no display needed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=120)
    FigureCanvasAgg(fig)
    return fig


#: Up to this many tracks, the PNG names each point (a bigger library would be unreadable).
LABELLED_TRACKS = 40


def track_label(record: Track) -> str:
    """How a point is named: "Artist – Title", else the title, else the file name."""
    title = record.title or Path(record.path).stem
    artist = record.artist or ""
    return f"{artist} – {title}" if artist else title


def map_png(
    points: np.ndarray,
    labels: Sequence[str],
    path: str | Path,
    title: str = "Library map",
    track_labels: Sequence[str] | None = None,
) -> Path:
    """Scatter plot of the layout coloured by genre, with a legend (top 20 genres named); in a
    small library (LABELLED_TRACKS or fewer) each point is named by its `track_labels` entry."""
    points = np.asarray(points)
    if len(points) != len(labels):
        raise ValueError(f"{len(points)} points but {len(labels)} labels")
    labels = [lab or UNKNOWN for lab in labels]
    names = genre_order(labels)
    colors = genre_colors(names)
    fig = agg_figure((10, 7.5))
    ax = fig.add_axes((0.03, 0.04, 0.72, 0.9))
    lab = np.asarray(labels, dtype=object)
    size = float(np.clip(3000 / max(len(points), 1), 4, 40))
    for g in reversed(names):  # biggest genres drawn last, on top
        sel = lab == g
        named = names.index(g) < 20
        ax.scatter(
            *points[sel].T,
            s=size,
            c=colors[g],
            label=f"{g} ({sel.sum()})" if named else None,
            linewidths=0,
            alpha=0.85,
        )
    if track_labels is not None and len(track_labels) <= LABELLED_TRACKS:
        for (x, y), name in zip(points, track_labels, strict=True):
            ax.annotate(name[:40], (x, y), xytext=(3, 3), textcoords="offset points", fontsize=6)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    handles, texts = ax.get_legend_handles_labels()
    fig.legend(
        handles[::-1],
        texts[::-1],
        loc="center left",
        bbox_to_anchor=(0.76, 0.5),
        frameon=False,
        markerscale=max(1.0, 30 / size) ** 0.5,
        fontsize=9,
    )
    fig.savefig(path)
    return Path(path)


# ---- genre similarity --------------------------------------------------------------------------


def genre_similarity(
    matrix: np.ndarray, genres: Sequence[str | Sequence[str]], min_tracks: int = 1
) -> tuple[list[str], np.ndarray]:
    """Average cosine between the tracks of each pair of genres, from unit-row embeddings.

    `genres[i]` is row i's genre or list of genres (a track counts in each). Entry (a, b) is the
    mean of x_i . x_j over i in a, j in b, i != j, computed from genre sums in one product:
    (sum_a . sum_b - sum of |x_i|^2 over shared tracks) / (n_a n_b - n_shared). NaN where no
    such pair exists (a genre with a single track, on the diagonal).
    """
    x = np.asarray(matrix, dtype=np.float64)
    per_row = [[g] if isinstance(g, str) else list(g) for g in genres]
    counts = Counter(g for gs in per_row for g in set(gs))
    names = sorted((g for g, c in counts.items() if c >= min_tracks), key=lambda g: (-counts[g], g))
    col = {g: i for i, g in enumerate(names)}
    member = np.zeros((len(x), len(names)))
    for i, gs in enumerate(per_row):
        for g in set(gs):
            if g in col:
                member[i, col[g]] = 1
    sums = member.T @ x  # (genres, d): sum of each genre's vectors
    shared = member.T @ member  # tracks in both genres (the count itself on the diagonal)
    self_dots = member.T @ (member * np.einsum("ij,ij->i", x, x)[:, None])
    n = member.sum(axis=0)
    pairs = np.outer(n, n) - shared
    with np.errstate(invalid="ignore", divide="ignore"):
        sim = np.where(pairs > 0, (sums @ sums.T - self_dots) / pairs, np.nan)
    return names, sim


def genre_heatmap_png(names: Sequence[str], sim: np.ndarray, path: str | Path) -> Path:
    """Heatmap of genre_similarity, values written in the cells when there are few genres."""
    k = len(names)
    side = float(np.clip(0.45 * k + 2.5, 5, 16))
    fig = agg_figure((side + 1.5, side))
    ax = fig.add_subplot()
    im = ax.imshow(np.ma.masked_invalid(sim), cmap="viridis")
    ax.set_xticks(range(k), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(k), names, fontsize=8)
    ax.set_title("Average cosine similarity between genres")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if np.isfinite(sim[i, j]):
                    dark = sim[i, j] < (np.nanmin(sim) + np.nanmax(sim)) / 2
                    ax.text(
                        j,
                        i,
                        f"{sim[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if dark else "black",
                    )
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


# ---- HTML --------------------------------------------------------------------------------------


def json_for_html(data: Any) -> str:
    """JSON that is inert inside a <script> element: no '<', '>', '&' or JS line separators."""
    text = dumps_json(data, indent=None)  # the one JSON writer: valid JSON, NaN as null
    for ch, esc in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(ch, esc)
    return text


def _unit_square(points: np.ndarray) -> np.ndarray:
    """Points scaled into [0, 1]^2, aspect kept, centred."""
    p = np.asarray(points, dtype=np.float64)
    if len(p) == 0:
        return p.reshape(0, 2)
    lo, hi = p.min(axis=0), p.max(axis=0)
    span = float((hi - lo).max()) or 1.0
    return (p - (lo + hi) / 2) / span + 0.5


def data_asset(name: str) -> str:
    """The viewer page's HTML, CSS and JS live in mgctag/data/ as files of their own language."""
    return files("mgctag").joinpath("data", name).read_text("utf-8")


def map_html(
    points: np.ndarray,
    records: Sequence[Track],
    path: str | Path,
    title: str = "mgctag library map",
    root: str | None = None,
) -> Path:
    """One self-contained interactive page: hover shows artist/title/genres, click shows and copies
    the path, wheel zooms, drag pans, legend entries toggle genres. With `root`, paths are shown
    relative to it, so a page shared with someone does not reveal the home folder's layout."""
    if len(points) != len(records):
        raise ValueError(f"{len(points)} points but {len(records)} records")
    labels = [primary_genre(r) for r in records]
    names = genre_order(labels)
    colors = genre_colors(names)
    index = {g: i for i, g in enumerate(names)}
    xy = _unit_square(points)
    data = {
        "genres": names,
        "colors": [colors[g] for g in names],
        "x": [round(float(v), 5) for v in xy[:, 0]],
        "y": [round(float(v), 5) for v in xy[:, 1]],
        "g": [index[g] for g in labels],
        "artist": [r.artist or "" for r in records],
        "title": [r.title or Path(r.path).stem for r in records],
        "tags": [", ".join(track_genres(r)) for r in records],
        "path": [_shown_path(r.path, root) for r in records],
    }
    script = data_asset("map.js")
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    page = Template(data_asset("map.html")).substitute(
        title=html.escape(title),
        csp=f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'",
        css=data_asset("map.css"),
        data=json_for_html(data),
        script=script,
    )
    Path(path).write_text(page, encoding="utf-8")
    return Path(path)


def _shown_path(path: str, root: str | None) -> str:
    return os.path.relpath(path, root) if root and path else path


def library_root(paths: Sequence[str]) -> str | None:
    """The deepest folder holding every path (None when there are none or they share no root)."""
    folders = [os.path.dirname(p) for p in paths if p]
    try:
        return os.path.commonpath(folders) if folders else None
    except ValueError:  # different drives on Windows, or relative mixed with absolute
        return None


# ---- the `map` command ---------------------------------------------------------------------------


def _use_index(lib: Any, model: str, stem: str, n: int, index: str) -> bool:
    from mgctag.search import ann

    if index != "auto":
        return index == "ann"
    return n >= ann.ANN_MIN_TRACKS or ann.index_path(Path(lib.path), model, stem).exists()


def index_neighbours(
    lib: Any, model: str, stem: str, ids: np.ndarray, matrix: np.ndarray, perplexity: float = 30.0
) -> np.ndarray:
    """(n, k) row numbers of each row's nearest rows by the similarity index, k = 3 x perplexity
    + 3 (t-SNE reads 3p + 2 besides the row itself; -1 where the index had fewer)."""
    from mgctag.search import ann

    index = ann.open_index(lib, model, stem)
    if index is None:
        raise MapError(f"no {model}/{stem} index could be built")
    k = min(int(3 * perplexity) + 3, len(ids))  # t-SNE needs 3p + 2 besides the row itself
    keys = index.neighbours(matrix, k)
    order = np.argsort(ids)
    pos = np.searchsorted(ids[order], keys.clip(min=0))
    found = (keys >= 0) & (ids[order][pos.clip(max=len(ids) - 1)] == keys)
    return np.where(found, order[pos.clip(max=len(ids) - 1)], -1)


def make_map(
    lib: LibraryLike,
    out_png: str | Path | None = None,
    out_html: str | Path | None = None,
    *,
    model: str,
    by: str = "mix",
    method: str = "tsne",
    heatmap_png: str | Path | None = None,
    threads: int | None = None,
    absolute_paths: bool = False,
    index: str = "auto",
) -> dict[str, Any]:
    """The `map` command: lay out `model`'s `by`-stem embeddings and write the requested files.

    Returns a summary (track and genre counts, files written) and each track's 2-D point (`x`,
    `y`, its path and the genre it is coloured by) for the CLI to print. Raises
    MapError (or similar.SimilarError when there are no embeddings) with a one-line message.
    The heatmap counts the same genre per track as the map's colours and legend (its first); the
    HTML shows paths relative to the library's root unless `absolute_paths`. Above
    ann.ANN_MIN_TRACKS tracks (or `index="ann"`) t-SNE's neighbourhoods come from the similarity
    index (search/ann.py), not from comparing every pair of tracks.
    """
    li = library_index(lib, model, by)
    neighbours = None
    if method == "tsne" and _use_index(lib, model, by, len(li.index), index):
        neighbours = index_neighbours(lib, model, by, li.index.ids, li.index.matrix)
    points = layout_2d(li.index.matrix, method, threads=threads, neighbours=neighbours)
    labels = [primary_genre(r) for r in li.records]
    names_of_tracks = [track_label(r) for r in li.records]
    jobs = []
    if out_png:
        jobs.append(
            (
                out_png,
                lambda p: map_png(
                    points, labels, p, f"Library map ({by}, {method})", names_of_tracks
                ),
            )
        )
    if out_html:
        root = None if absolute_paths else library_root([r.path for r in li.records])
        title = f"mgctag library map: {root}" if root else "mgctag library map"
        jobs.append((out_html, lambda p: map_html(points, li.records, p, title, root)))
    if heatmap_png:
        per_track = [[g] if g != UNKNOWN else [] for g in labels]  # as the legend counts them
        names, sim = genre_similarity(li.index.matrix, per_track)
        if names:
            jobs.append((heatmap_png, lambda p: genre_heatmap_png(names, sim, p)))
    written = []
    for path, write in jobs:
        try:
            written.append(str(write(path)))
        except OSError as e:
            raise MapError(f"cannot write: {reason_of(e)}", path) from e
    coords = [
        {"path": r.path, "x": float(x), "y": float(y), "genre": g}
        for r, (x, y), g in zip(li.records, points, labels, strict=True)
    ]
    summary = {"tracks": len(points), "genres": len(set(labels) - {UNKNOWN}), "files": written}
    if heatmap_png:
        summary["heatmap_genres"] = names
    return {**summary, "points": coords}
