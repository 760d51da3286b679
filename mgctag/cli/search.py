"""The search group: similar tracks and the library map. Parsing and printing only."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mgctag.cli.common import DbOption, JsonOption, open_library, resolve_track
from mgctag.cli.output import out, print_json, print_table, shown
from mgctag.errors import UsageError


def similar(
    query: Annotated[
        list[str], typer.Argument(help="Seed tracks: paths, ids or artist/title text.")
    ],
    k: Annotated[int, typer.Option("-k", min=1, help="How many tracks.")] = 10,
    by: Annotated[str, typer.Option(help="Embedding: mix, drums, bass, other, vocals.")] = "mix",
    genre: Annotated[str | None, typer.Option(help="Only tracks of this genre.")] = None,
    exclude_artist: Annotated[
        bool, typer.Option("--exclude-artist", help="Leave out the seeds' artists.")
    ] = False,
    exclude_album: Annotated[
        bool, typer.Option("--exclude-album", help="Leave out the seeds' albums.")
    ] = False,
    fusion: Annotated[
        str, typer.Option(help="Several seeds: centroid (mean direction) or rrf (rank fusion).")
    ] = "centroid",
    m3u: Annotated[Path | None, typer.Option(help="Also write an M3U8 playlist here.")] = None,
    relative: Annotated[
        bool, typer.Option("--relative", help="Playlist paths relative to the playlist's folder.")
    ] = False,
    db: DbOption = None,
    json_out: JsonOption = False,
) -> None:
    """The tracks most like the seed(s), by cosine similarity of their embeddings."""
    from mgctag.search import similar as sim

    if fusion not in ("centroid", "rrf"):
        raise typer.BadParameter("use centroid or rrf", param_hint="--fusion")
    if m3u and not m3u.expanduser().parent.is_dir():
        raise UsageError("no such folder for the playlist", m3u)
    lib = open_library(db)
    seeds = [resolve_track(lib, q).id for q in query]
    try:
        hits = sim.similar_tracks(
            lib,
            seeds,
            model=sim.default_embedding_model(lib, by),
            by=by,
            k=k,
            genre=genre,
            exclude_artist=exclude_artist,
            exclude_album=exclude_album,
            fusion=fusion,  # type: ignore[arg-type]
        )
    except sim.SimilarError as exc:
        raise UsageError(str(exc)) from None
    if not hits:
        raise UsageError(_why_empty(genre, by))
    if m3u:
        from mgctag.search.export import ExportError, write_m3u

        try:
            write_m3u(m3u, hits, relative_to=m3u.parent.resolve() if relative else None)
        except ExportError as exc:
            raise UsageError(str(exc)) from None
    if json_out:
        print_json(hits)
        return
    table = Table()
    for col in ("#", "score", "artist", "title", "path"):
        table.add_column(col, overflow="fold")
    for rank, h in enumerate(hits, 1):
        table.add_row(
            str(rank),
            f"{h['score']:.3f}",
            shown(h.get("artist") or ""),
            shown(h.get("title") or ""),
            shown(h["path"]),
        )
    print_table(table)


def _why_empty(genre: str | None, by: str) -> str:
    """Why a search found nothing, so an empty answer is never silent."""
    if genre:
        return f"no other track has the genre {genre!r} (see `mgctag info` for a track's genres)"
    return f"no other track has a {by!r} embedding yet (run `mgctag tag` on more files)"


def map_command(
    png: Annotated[Path | None, typer.Option(help="Write the map as a PNG.")] = None,
    html: Annotated[Path | None, typer.Option(help="Write an interactive HTML page.")] = None,
    genres: Annotated[
        Path | None, typer.Option("--genres", help="Write the genre-similarity heatmap PNG.")
    ] = None,
    by: Annotated[str, typer.Option(help="Embedding: mix, drums, bass, other, vocals.")] = "mix",
    method: Annotated[str, typer.Option(help="tsne or pca.")] = "tsne",
    absolute_paths: Annotated[
        bool,
        typer.Option(
            "--absolute-paths", help="Full paths in the HTML (default: relative to the library)."
        ),
    ] = False,
    db: DbOption = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the 2-D points (and the files written) as JSON.")
    ] = False,
) -> None:
    """A 2-D map of your library's embeddings, coloured by genre (PNG and/or HTML)."""
    from mgctag.search import map as libmap
    from mgctag.search import similar

    if not (png or html or genres or json_out):
        html = Path("mgctag-map.html")
    lib = open_library(db)
    try:
        result = libmap.make_map(
            lib,
            png,
            html,
            model=similar.default_embedding_model(lib, by),
            by=by,
            method=method,
            heatmap_png=genres,
            absolute_paths=absolute_paths,
        )
    except (libmap.MapError, similar.SimilarError) as exc:
        raise UsageError(str(exc)) from None
    if json_out:
        print_json(result)
        return
    files = ", ".join(shown(f) for f in result["files"])
    out.print(f"{result['tracks']} tracks, {result['genres']} genres → {files}", highlight=False)
