"""The separate command: split files into stem files. Parsing and printing only."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mgctag.cli.common import (
    DbOption,
    JsonOption,
    check_device,
    check_separator,
    interruptible,
    require_existing,
    use_db,
)
from mgctag.cli.output import (
    CliProgress,
    out,
    print_failures,
    print_json,
    progress_enabled,
    shown,
    warning,
)
from mgctag.errors import UsageError, reason_of


def separate(
    paths: Annotated[
        list[Path], typer.Argument(help="Audio files, or folders of them, to split into stems.")
    ],
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Writes OUT/<track>/<stem>.<format>.")
    ] = Path("separated"),
    fmt: Annotated[str, typer.Option("--format", help="flac or wav (24-bit).")] = "flac",
    separator: Annotated[
        str, typer.Option(help="auto (demucs if it can run, else cascade), demucs, cascade, hpss.")
    ] = "auto",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    separator_model: Annotated[
        str | None,
        typer.Option(
            "--separator-model",
            help="Demucs weights: a file, a --repo style folder, or a name (htdemucs_ft...).",
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace stem files that already exist.")
    ] = False,
    db: DbOption = None,
    json_out: JsonOption = False,
) -> None:
    """Split each audio file under PATHS into drums, bass, other and vocals stem files."""
    use_db(db)
    require_existing(paths)
    import warnings

    from mgctag.audio.decode import DecodeError
    from mgctag.separate import SeparationError, get_separator
    from mgctag.separate.files import FORMATS, separate_file

    check_device(device)
    check_separator(separator)
    if fmt not in FORMATS:
        raise typer.BadParameter("use flac or wav", param_hint="--format")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # a Demucs model name is accepted as well as a path (separate/demucs.py resolves it)
            sep = get_separator(separator, device, separator_model)  # type: ignore[arg-type]
        except SeparationError as exc:
            raise UsageError(str(exc)) from None
    for w in caught:
        warning(str(w.message))
    failures: list[tuple[str, str]] = []
    files = _audio_files(paths, failures)
    progress = CliProgress(enabled=progress_enabled(json_out))
    done = []
    with interruptible() as sig, progress.bar:
        progress.stage(f"separating ({sep.name})", total=len(files))
        for path in files:
            if sig.stop:
                break
            try:
                done.append(separate_file(path, out_dir, sep, fmt, overwrite=overwrite))
            except (DecodeError, SeparationError, OSError, ValueError) as exc:
                failures.append((str(path), reason_of(exc)))
            progress.advance()
    print_failures(failures)
    code = sig.exit_code(130) if sig.stop else (1 if failures else 0)
    if json_out:
        print_json(
            {
                "separator": sep.name,
                "out": out_dir,
                "separated": [
                    {"source": d.source, "stems": d.stems, "duration": d.duration} for d in done
                ],
                "failures": [{"path": p, "reason": r} for p, r in failures],
                "interrupted": bool(sig.stop),
            }
        )
        raise typer.Exit(code)
    audio = sum(d.duration for d in done)
    wall = sum(d.seconds for d in done)
    speed = f", {audio / wall:.1f}x real time" if wall > 0 else ""
    out.print(
        f"separated {len(done)} file(s) with {shown(sep.name)} into {shown(out_dir)}{speed}; "
        f"failed {len(failures)}" + (" (interrupted)" if sig.stop else ""),
        highlight=False,
    )
    raise typer.Exit(code)


def _audio_files(paths: list[Path], failures: list[tuple[str, str]]) -> list[Path]:
    """Files as given; folders walked as `tag` walks them (the same audio extensions)."""
    from mgctag.library.scan import iter_audio_files

    def unreadable(path: str, reason: str) -> None:
        failures.append((path, reason))

    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += [Path(p) for p in iter_audio_files([path], on_error=unreadable)]
        else:
            files.append(path)
    return files
