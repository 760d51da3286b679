"""The explain command: why a file got its genres. Parsing and printing only."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mgctag.cli.common import DbOption, JsonOption, check_device, require_existing, use_db
from mgctag.cli.output import CliProgress, out, print_json, progress_enabled, shown


def explain(
    path: Annotated[Path, typer.Argument(help="The audio file to explain.")],
    html: Annotated[
        Path | None, typer.Option("--html", help="Write the self-contained HTML report here.")
    ] = None,
    png: Annotated[Path | None, typer.Option("--png", help="Write the PNG summary here.")] = None,
    auralise: Annotated[
        int,
        typer.Option(
            "--auralise",
            min=0,
            max=32,
            help="Auralise the N musicnn filters that add most to the top genre (0: none).",
        ),
    ] = 0,
    layer: Annotated[
        str, typer.Option(help="musicnn layer to auralise: timbral1-2, temporal1-3, midend1-3.")
    ] = "timbral2",
    auralise_seconds: Annotated[
        float, typer.Option("--auralise-seconds", min=0.1, help="Length of each filter's WAV.")
    ] = 3.0,
    wav_dir: Annotated[
        Path | None,
        typer.Option("--wav-dir", help="Write each filter's WAV here (default: beside --html)."),
    ] = None,
    stems: Annotated[
        bool, typer.Option("--stems/--no-stems", help="Stem occlusion with the cascade separator.")
    ] = True,
    window: Annotated[
        float, typer.Option("--window", min=1.0, help="Timeline window length in seconds.")
    ] = 10.0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    db: DbOption = None,
    json_out: JsonOption = False,
) -> None:
    """Why PATH gets its genres: timeline, model terms, stems and what the filters hear."""
    from mgctag.explain.analysis import explain_file, to_json
    from mgctag.explain.report import report_html, summary_png, write_wavs
    from mgctag.separate import resolve_device

    use_db(db)
    require_existing([path])
    dev = resolve_device(check_device(device))
    progress = CliProgress(enabled=progress_enabled(json_out))
    with progress.bar:
        expl = explain_file(
            path, window_seconds=window, separator="cascade" if stems else None,
            auralise=auralise, layer=layer, auralise_seconds=auralise_seconds, device=dev,
            step=lambda name: progress.stage(name, total=1),
        )  # fmt: skip
    written = []
    if html:
        written.append(report_html(expl, html))
    if png:
        written.append(summary_png(expl, png))
    folder = wav_dir or (html.with_name(html.stem + "-filters") if html else None)
    if folder and expl.auralisation:
        written += write_wavs(expl, folder)
    if json_out:
        print_json(to_json(expl) | {"files": [str(p) for p in written]})
        return
    _print_summary(expl)
    for p in written:
        out.print(f"wrote {shown(p)}", highlight=False)


def _print_summary(expl) -> None:
    out.print(f"{shown(expl.path)}: {shown(expl.content)}", highlight=False)
    if expl.skip:
        out.print(f"  no genre written: {shown(expl.skip)}", highlight=False)
    for g in expl.genres:
        terms = " + ".join(f"{shown(m)} {v:.3f}" for m, v in g.terms.items())
        mark = "written" if g.written else "       "
        out.print(f"  {mark} {shown(g.genre)} {g.score:.3f} = {terms}", highlight=False)
    if expl.stems and expl.genres:
        genre = expl.genres[0].genre
        deltas = ", ".join(
            f"{shown(s)} {d.get('combined', {}).get(genre, 0.0):+.3f}"
            for s, d in expl.stems.delta.items()
        )
        out.print(f"  {shown(genre)} without each stem (combined): {deltas}", highlight=False)
    if a := expl.auralisation:
        filters = ", ".join(str(f.index) for f in a.filters)
        out.print(
            f"  auralised {shown(a.model)} {shown(a.filters[0].layer)} filters {filters} "
            f"for tag {shown(a.tag)} at {a.offset:.1f} s",
            highlight=False,
        )
