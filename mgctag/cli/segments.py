"""The segments command: speech, music, noise and silence over time. Parsing and printing only."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mgctag.cli.common import DbOption, interruptible, open_library, require_existing
from mgctag.cli.output import out, print_failures, print_json, print_table, shown
from mgctag.errors import reason_of
from mgctag.options import DEFAULT_SEGMENTER, MIN_SEGMENT_S, SEGMENTERS

NOT_STORED = "not in the library, so its intervals were not stored (`mgctag scan` it first)"


def segments(
    paths: Annotated[list[Path], typer.Argument(help="Audio files (or folders of them).")],
    json_out: Annotated[bool, typer.Option("--json", help="Print the intervals as JSON.")] = False,
    png: Annotated[
        Path | None,
        typer.Option(
            "--png", help="Draw the strip over the waveform: a .png file, or a folder for several."
        ),
    ] = None,
    model: Annotated[
        str,
        typer.Option(
            help=f"Detector: {' or '.join(SEGMENTERS)} (bundled), or a .safetensors file."
        ),
    ] = DEFAULT_SEGMENTER,
    store: Annotated[
        bool,
        typer.Option("--store", help="Keep the intervals of library tracks (`info` shows them)."),
    ] = False,
    min_segment: Annotated[
        float,
        typer.Option(
            "--min-segment",
            min=0.0,
            max=3600.0,
            help="Seconds: a shorter stretch joins its neighbour (0 keeps every frame decision).",
        ),
    ] = MIN_SEGMENT_S,
    db: DbOption = None,
) -> None:
    """Show where each recording has speech, music, noise and silence."""
    from rich.table import Table

    from mgctag.audio import decode
    from mgctag.audio.features import FeatureError
    from mgctag.cli.separate import _audio_files
    from mgctag.segments.detector import Segmenter
    from mgctag.segments.recordings import (
        draw_timeline,
        segment_file,
        store_timeline,
        timeline_record,
    )

    require_existing(paths)
    segmenter = Segmenter(model, min_segment=min_segment)
    lib = open_library(db) if store else None
    failures: list[tuple[str, str]] = []
    files = _audio_files(paths, failures)
    folder = png is not None and (len(files) > 1 or png.is_dir())
    records = []
    with interruptible() as sig:
        for path in files:
            if sig.stop:
                break
            try:
                timeline, decoded = segment_file(path, segmenter)
            except (decode.DecodeError, FeatureError, OSError, ValueError) as exc:
                failures.append((str(path), reason_of(exc)))
                continue
            if png is not None:
                dest = png / f"{path.stem}.png" if folder else png
                try:  # a picture that cannot be written is the picture's failure, not the audio's
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    draw_timeline(decoded.peaks, timeline, dest, title=str(path.name))
                except (OSError, ValueError) as exc:
                    failures.append((str(dest), f"cannot write the picture: {reason_of(exc)}"))
            records.append(timeline_record(path, timeline))
            if lib is not None:
                records[-1]["stored"] = store_timeline(lib, path, timeline, segmenter.card.name)
                if not records[-1]["stored"]:
                    failures.append((str(path), NOT_STORED))
            if not json_out:
                _print_table(records[-1], Table)
    print_failures(failures)
    if json_out:
        print_json(records)
    raise typer.Exit(sig.exit_code(130) if sig.stop else (1 if failures else 0))


def _print_table(rec: dict, table_cls: type) -> None:
    shares = ", ".join(f"{k} {v:.0%}" for k, v in rec["shares"].items() if v > 0)
    out.print(
        f"{shown(rec['path'])}  {rec['duration']:.1f} s  {rec['content']}  ({shares})",
        highlight=False,
    )
    hours = rec["duration"] >= 3600
    table = table_cls("start", "end", "length", "class", "confidence")
    for iv in rec["intervals"]:
        table.add_row(
            _clock(iv["start"], hours),
            _clock(iv["end"], hours),
            f"{iv['end'] - iv['start']:.1f} s",
            iv["class"],
            f"{iv['confidence']:.2f}",
        )
    print_table(table)


def _clock(seconds: float, hours: bool = False) -> str:
    """m:ss.s, or h:mm:ss.s for a recording of an hour or more (one format per table)."""
    m, s = divmod(seconds, 60)
    if hours:
        h, m = divmod(m, 60)
        return f"{int(h)}:{int(m):02d}:{s:04.1f}"
    return f"{int(m)}:{s:04.1f}"
