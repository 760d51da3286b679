"""The search group: similar tracks and the library map. Parsing and printing only."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from mgctag.cli.common import DbOption, JsonOption, open_library, resolve_track
from mgctag.cli.output import err, out, print_json, print_table, shown
from mgctag.errors import UsageError
from mgctag.options import SEARCH


def search_option(name: str, *flags: str) -> Any:
    """The typer option of a setting in mgctag.options' SEARCH table (its help and bounds;
    bools are flags): `similar`, `playlist` and the beets plugin read the same description."""
    option = SEARCH[name]
    if option.kind is bool and not flags:
        flags = (option.flag,)
    return typer.Option(*flags, help=option.help, min=option.low)


ByOption = Annotated[str, typer.Option(help="Embedding: mix, drums, bass, other, vocals.")]
GenreOption = Annotated[str | None, search_option("genre")]
ExcludeArtistOption = Annotated[bool, search_option("exclude_artist")]
RelativeOption = Annotated[
    bool, typer.Option("--relative", help="Playlist paths relative to the playlist's folder.")
]


def similar(
    query: Annotated[
        list[str], typer.Argument(help="Seed tracks: paths, ids or artist/title text.")
    ],
    k: Annotated[int, search_option("count", "-k")] = SEARCH["count"].default,
    by: ByOption = "mix",
    genre: GenreOption = None,
    exclude_artist: ExcludeArtistOption = False,
    exclude_album: Annotated[
        bool, typer.Option("--exclude-album", help="Leave out the seeds' albums.")
    ] = False,
    fusion: Annotated[
        str, typer.Option(help="Several seeds: centroid (mean direction) or rrf (rank fusion).")
    ] = "centroid",
    all_versions: Annotated[bool, search_option("all_versions")] = False,
    m3u: Annotated[Path | None, typer.Option(help="Also write an M3U8 playlist here.")] = None,
    relative: RelativeOption = False,
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
            all_versions=all_versions,
            say=say,
        )
    except sim.SimilarError as exc:
        raise UsageError(str(exc)) from None
    if not hits:
        others = lib.ok_embedding_count(sim.default_embedding_model(lib, by), by) > len(set(seeds))
        raise UsageError(_why_empty(genre, by, others))
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
        also = len(h.get("versions") or [])
        title = shown(h.get("title") or "") + (
            f" [dim](also: {_versions(also)})[/dim]" if also else ""
        )
        table.add_row(
            str(rank),
            f"{h['score']:.3f}",
            shown(h.get("artist") or ""),
            title,
            shown(h["path"]),
        )
    print_table(table)


def _versions(n: int) -> str:
    return f"{n} version" + ("s" if n != 1 else "")


def say(text: str) -> None:
    """A one-line notice from the search (an index being built or rebuilt), on stderr."""
    err.print(shown(text), highlight=False)


def dupes(
    by: ByOption = "mix",
    threshold: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Embeddings at least this close count as one recording (default: the measured"
            " threshold, docs/similar.md).",
        ),
    ] = None,
    db: DbOption = None,
    json_out: JsonOption = False,
) -> None:
    """Likely duplicates: tracks that are versions of one recording (the same normalised artist
    and title, or embeddings closer than the threshold: transcodes, remasters, edits)."""
    from mgctag.search import similar as sim

    lib = open_library(db)
    try:
        groups = sim.duplicates(
            lib, model=sim.default_embedding_model(lib, by), by=by, threshold=threshold, say=say
        )
    except sim.SimilarError as exc:
        raise UsageError(str(exc)) from None
    if json_out:
        print_json(groups)
        return
    if not groups:
        out.print("no likely duplicates", highlight=False)
        return
    for n, group in enumerate(groups, 1):
        out.print(f"[bold]group {n}[/bold] ({len(group)} tracks)", highlight=False)
        for t in group:
            similarity = t.get("similarity")
            score = "" if similarity is None or similarity != similarity else f"{similarity:.3f}  "
            label = " — ".join(shown(x) for x in (t.get("artist"), t.get("title")) if x)
            out.print(f"  {score}{label}  {shown(t['path'])}", highlight=False)


def _why_empty(genre: str | None, by: str, others: bool) -> str:
    """Why a search found nothing, so an empty answer is never silent."""
    if genre:
        return f"no other track has the genre {genre!r} (see `mgctag info` for a track's genres)"
    if others:
        return "every other track is a version of the seed (`mgctag dupes` lists them)"
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


def playlist(
    start: Annotated[
        str | None, typer.Option("--from", help="The first track (path, id or artist/title text).")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="The last track: a smooth path from --from to it.")
    ] = None,
    seed: Annotated[
        list[str] | None,
        typer.Option("--seed", help="An instant mix starting here (repeat for several seeds)."),
    ] = None,
    length: Annotated[int, search_option("length")] = SEARCH["length"].default,
    spacing: Annotated[int, search_option("spacing")] = SEARCH["spacing"].default,
    genre: GenreOption = None,
    exclude_artist: ExcludeArtistOption = False,
    by: ByOption = "mix",
    m3u: Annotated[Path | None, typer.Option(help="Write the playlist as M3U8 here.")] = None,
    xspf: Annotated[Path | None, typer.Option(help="Write the playlist as XSPF here.")] = None,
    relative: RelativeOption = False,
    db: DbOption = None,
    json_out: JsonOption = False,
) -> None:
    """A playlist that travels: --from A --to B gives LENGTH tracks from A to B, each step a
    small one; --seed A an instant mix around A. No artist repeats within --spacing tracks."""
    from mgctag.search import playlist as pl
    from mgctag.search import similar as sim

    if seed and (start or end):
        raise UsageError("give --seed, or --from and --to, not both")
    if not seed and not (start and end):
        raise UsageError("give --from A --to B (a path) or --seed A (an instant mix)")
    for target in (m3u, xspf):
        if target and not target.expanduser().parent.is_dir():
            raise UsageError("no such folder for the playlist", target)
    lib = open_library(db)
    rules = pl.Rules(length=length, spacing=spacing, genre=genre, exclude_artist=exclude_artist)
    model = sim.default_embedding_model(lib, by)
    try:
        if seed:
            seeds = [resolve_track(lib, q)["id"] for q in seed]
            tracks = pl.instant_mix(lib, seeds, model=model, by=by, rules=rules, say=say)
        else:
            assert start and end
            a, b = resolve_track(lib, start)["id"], resolve_track(lib, end)["id"]
            tracks = pl.path_playlist(lib, a, b, model=model, by=by, rules=rules, say=say)
    except sim.SimilarError as exc:
        raise UsageError(str(exc)) from None
    _write_playlists(tracks, m3u, xspf, relative)
    if json_out:
        print_json(tracks)
        return
    table = Table()
    for col in ("#", "step", "artist", "title", "path"):
        table.add_column(col, overflow="fold")
    for n, t in enumerate(tracks, 1):
        step = "" if n == 1 else f"{t['score']:.3f}"
        artist, title = shown(t.get("artist") or ""), shown(t.get("title") or "")
        table.add_row(str(n), step, artist, title, shown(t["path"]))
    print_table(table)


def _write_playlists(
    tracks: list[dict], m3u: Path | None, xspf: Path | None, relative: bool
) -> None:
    from mgctag.search.export import ExportError, write_m3u, write_xspf

    try:
        if m3u:
            write_m3u(m3u, tracks, relative_to=m3u.parent.resolve() if relative else None)
        if xspf:
            write_xspf(xspf, tracks, relative_to=xspf.parent.resolve() if relative else None)
    except ExportError as exc:
        raise UsageError(str(exc)) from None
