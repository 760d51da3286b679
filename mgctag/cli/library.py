"""The library group: scan, tag, info, runs, undo. Parsing and printing only."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from mgctag import config
from mgctag.cli import output
from mgctag.cli.common import (
    DbOption,
    JsonOption,
    PathsArg,
    interruptible,
    open_library,
    refuse,
    resolve_track,
    track_label,
)
from mgctag.cli.common import given as given_options
from mgctag.cli.output import (
    CliProgress,
    err,
    out,
    print_failures,
    print_json,
    print_table,
    progress_enabled,
    shown,
)
from mgctag.options import TAG, TAG_DEFAULTS, SettingError, TagOptions

if TYPE_CHECKING:
    from mgctag.library.rows import NotMusic, Run


def tag_option(name: str) -> Any:
    """The typer option of a setting in mgctag.options' table (its help; bools are flags; the
    shell completes its choices, and --model the names it takes)."""
    option = TAG[name]
    complete = complete_model if name == "model" else _choices_of(option.choices)
    flags = (option.flag,) if option.kind is bool else ()
    return typer.Option(*flags, help=option.help, autocompletion=complete)


def _choices_of(choices: Sequence[str] | None) -> Callable[[str], list[str]] | None:
    if not choices:
        return None
    return lambda incomplete: [c for c in choices if c.startswith(incomplete)]


def complete_model(incomplete: str) -> list[str]:
    """The names --model takes (built-in taggers, aliases, genre model cards) for the shell."""
    from mgctag.models.catalog import list_taggers

    return [row["name"] for row in list_taggers() if row["name"].startswith(incomplete)]


FollowOption = Annotated[bool, tag_option("follow_symlinks")]


def scan(
    paths: PathsArg,
    db: DbOption = None,
    follow_symlinks: FollowOption = False,
    json_out: JsonOption = False,
) -> None:
    """Record the audio files under PATHS in the database (incremental)."""
    from mgctag.library.scan import scan as run_scan
    from mgctag.search import ann

    lib = open_library(db)
    report = run_scan(lib, paths, follow_symlinks=follow_symlinks)
    ann.refresh(lib, say=lambda text: err.print(shown(text), highlight=False))
    not_music = lib.heard_not_music(paths)
    if json_out:
        print_json(report.as_dict() | {"not_music": not_music})
    else:
        print_failures([(str(p), r) for p, r in report.failures])
        out.print(shown(report.summary_line()))
        print_not_music(not_music)
    raise typer.Exit(1 if report.failures else 0)


def print_not_music(rows: list[NotMusic]) -> None:
    """The scanned tracks an earlier analysis heard as speech or other sound (not tagged)."""
    if not rows:
        return
    table = Table(title="heard as no music (tag leaves them alone; `mgctag segments` shows where)")
    table.add_column("file", overflow="fold")
    table.add_column("content")
    table.add_column("heard by")
    for row in rows:
        table.add_row(shown(row.path), shown(row.content), shown(row.model))
    print_table(table)


def tag(
    ctx: typer.Context,
    paths: PathsArg,
    db: DbOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show planned changes; write nothing.")
    ] = False,
    mode: Annotated[str, tag_option("mode")] = TAG["mode"].default,
    max_genres: Annotated[int | None, tag_option("max_genres")] = None,
    min_confidence: Annotated[float | None, tag_option("min_confidence")] = None,
    content: Annotated[str, tag_option("content")] = TAG["content"].default,
    id3v23: Annotated[bool, tag_option("id3v23")] = False,
    id3v23_separator: Annotated[str, tag_option("id3v23_separator")] = TAG[
        "id3v23_separator"
    ].default,
    keep_mtime: Annotated[bool, tag_option("keep_mtime")] = False,
    follow_symlinks: FollowOption = False,
    stems: Annotated[str, tag_option("stems")] = TAG["stems"].default,
    separator: Annotated[str, tag_option("separator")] = TAG["separator"].default,
    separator_model: Annotated[
        Path | None, typer.Option(help="Demucs weight file or repo folder.")
    ] = None,
    device: Annotated[str, tag_option("device")] = TAG["device"].default,
    keep_stems: Annotated[
        Path | None, typer.Option(help="Also write each analysed window's stems under DIR.")
    ] = None,
    model: Annotated[str | None, tag_option("model")] = None,
    genre_depth: Annotated[str, tag_option("genre_depth")] = TAG["genre_depth"].default,
    genre_tree: Annotated[str | None, tag_option("genre_tree")] = None,
    genre_whitelist: Annotated[str | None, tag_option("genre_whitelist")] = None,
    learn_from_library: Annotated[bool, tag_option("learn_from_library")] = TAG[
        "learn_from_library"
    ].default,
    engine: Annotated[
        str,
        typer.Option(
            help='local, or ray: decode and models in Ray actors (pip install "mgctag[ray]").'
        ),
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(
            help="With --engine ray: auto or HOST:PORT of a running cluster (default: "
            "start a local Ray)."
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="With --engine ray: actors (default: one per GPU, else per CPU)."),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Scan PATHS, analyse new and changed tracks, and write their genres into the files.

    Options not given here come from the tag section of config.toml (see `mgctag config`)."""
    if engine not in ("local", "ray"):
        raise typer.BadParameter("use local or ray", param_hint="--engine")
    try:
        opts = TagOptions.from_settings(
            with_config(ctx, {k: v for k, v in locals().items() if k in TAG}),
            dry_run=dry_run,
            separator_model=separator_model,
            keep_stems=keep_stems,
            engine=engine,
            ray_address=ray_address,
            workers=workers,
        )
    except SettingError as exc:
        if exc.where.startswith("--"):  # typed here: click's own usage error, as for any option
            raise typer.BadParameter(exc.problem, param_hint=exc.where) from None
        raise
    if opts.genre_tree or opts.genre_whitelist:  # a bad file is one line before any analysis
        from mgctag.genres import planning_tree

        planning_tree(opts.genre_tree, opts.genre_whitelist)
    if engine == "local":
        refuse(ctx, ("ray_address", "workers"), "only with --engine ray")
    if opts.stems == "off":
        refuse(ctx, ("separator", "separator_model"), "not with --stems off")
    if keep_stems is not None:
        if opts.stems == "off":
            raise typer.BadParameter("--keep-stems needs stems", param_hint="--stems off")
        opts.stems = "on"
    lib = open_library(db)
    progress = CliProgress(enabled=progress_enabled(json_out))
    with interruptible() as sig, progress.bar:
        progress.stage("loading models", 1)  # importing torch takes seconds on a cold start
        from mgctag import pipeline

        summary = pipeline.tag_paths(lib, paths, opts, progress=progress, stop=sig.stop)
    if json_out:
        print_json(summary_dict(summary))
    else:
        print_summary(summary, dry_run)
    raise typer.Exit(sig.exit_code(130) if summary.interrupted else (1 if summary.failed else 0))


def with_config(ctx: typer.Context, given: dict[str, Any]) -> dict[str, tuple[Any, str]]:
    """Each setting with where it came from: the options given on the command line (their
    flag); the others from the environment or config.toml, else the built-in default."""
    effective = config.effective("tag", TAG_DEFAULTS)
    typed = set(given_options(ctx, *given))
    return {
        key: (value, TAG[key].flag)
        if key in typed
        else (effective[key][0], config.where(key, effective[key][1]))
        for key, value in given.items()
    }


def summary_dict(s: Any) -> dict[str, Any]:
    return {
        "run_id": s.run_id,
        "counts": s.counts(),
        "interrupted": s.interrupted,
        "links_skipped": s.links_skipped,
        "changes": [c.__dict__ for c in s.changes],
        "failures": [{"path": p, "reason": r} for p, r in s.failures],
        "skips": [{"path": p, "reason": r, "content": s.contents.get(p)} for p, r in s.skips],
    }


def _genres(values: list[str], empty: str) -> str:
    return shown("; ".join(values)) or empty


def print_summary(s: Any, dry_run: bool) -> None:
    from mgctag.library.scan import links_note

    kinds = s.failure_types if output.verbosity > 0 else {}  # the exception class, with -v
    print_failures([(p, f"{r} ({kinds[p]})" if p in kinds else r) for p, r in s.failures])
    if s.changes or s.skips:
        table = Table(title="planned changes" if dry_run else "changed")
        table.add_column("file", overflow="fold")
        table.add_column("genre before")
        table.add_column("genre after", overflow="fold")
        for c in s.changes:
            table.add_row(shown(c.path), _genres(c.old, "—"), _genres(c.new, ""))
        for path, reason in s.skips:  # too short, silent, not music, no confident genre
            table.add_row(shown(path), "", f"[yellow]skipped[/yellow]: {shown(reason)}")
        print_table(table)
    verb = "would tag" if dry_run else "tagged"
    n_changes = len(s.changes) if dry_run else s.tagged
    out.print(
        f"analysed {s.analysed}, {verb} {n_changes}, unchanged {s.unchanged}, "
        f"skipped {s.skipped}, failed {s.failed}"
        + (" (interrupted)" if s.interrupted else "")
        + links_note(s.links_skipped)
        + (f"  [dim]run {s.run_id}[/dim]" if s.run_id else "")
    )


def info(
    query: Annotated[str, typer.Argument(help="A path, a track id, or artist/title text.")],
    db: DbOption = None,
    top_tags: Annotated[int, typer.Option(help="Raw model tags to show per model.")] = 10,
    json_out: JsonOption = False,
) -> None:
    """What mgctag knows about one track: genres, raw model tags, the file's own tags."""
    from mgctag import tags as tagio

    lib = open_library(db)
    track = resolve_track(lib, query)
    predictions = lib.get_predictions(track.id)
    in_file: list[str] | str
    try:
        in_file = tagio.read_tags(track.path).genres
    except tagio.TagError as exc:
        in_file = f"unreadable: {exc.reason}"
    if json_out:
        stored = {
            m: {k: v for k, v in asdict(p).items() if k != "model"} for m, p in predictions.items()
        }
        print_json({"track": track, "file_genres": in_file, "predictions": stored})
        return
    out.print(f"[bold]{shown(track_label(track))}[/bold]")
    out.print(f"path: {shown(track.path)}", highlight=False)
    error = f" ({shown(track.error)})" if track.error else ""
    out.print(f"status: {shown(track.status)}{error}")
    genres_in_file = "; ".join(in_file) if isinstance(in_file, list) else in_file
    out.print(f"genre in file: {shown(genres_in_file)}")
    if not predictions and track.status == "failed":
        out.print("not analysed: the file could not be read (the reason is on the status line)")
    elif not predictions:
        out.print("not analysed yet: run `mgctag tag` on it")
    for model, pred in predictions.items():
        out.print(
            f"\n[bold]{shown(model)}[/bold] "
            f"(separator {shown(pred.separator)}, {shown(pred.created_at)})"
        )
        genres = ", ".join(f"{shown(g)} {p:.2f}" for g, p in (pred.genres or [])[:8])
        out.print(f"  genres: {genres or '—'}")
        if pred.content:
            heard = ", ".join(
                f"{w['offset']:g} s {shown(w['content'])}" for w in pred.windows or []
            )
            out.print(f"  content: {shown(pred.content)} (windows: {heard})")
        raw = pred.tags or {}
        groups = raw.items() if raw and isinstance(next(iter(raw.values())), dict) else []
        groups = groups or ([("", raw)] if raw else [])
        for name, probs in groups:
            best = sorted(probs.items(), key=lambda kv: -kv[1])[:top_tags]
            shown_tags = ", ".join(f"{shown(t)} {p:.2f}" for t, p in best)
            out.print(f"  {shown(name) or 'tags'}: {shown_tags}")


def runs(
    db: DbOption = None,
    limit: Annotated[int, typer.Option("-n", help="Show the last N runs.")] = 20,
    json_out: JsonOption = False,
) -> None:
    """Past runs: id, time, command, files changed, failures."""
    lib = open_library(db)
    rows = lib.list_runs(limit)
    if json_out:
        print_json(rows)
        return
    table = Table()
    for col in ("id", "started", "command", "status", "changed", "failed"):
        table.add_column(col)
    for r in rows:
        counts = r.counts or {}
        if not isinstance(counts, dict):
            counts = {}
        changed = counts.get("tagged", counts.get("restored", ""))
        table.add_row(
            shown(r.id),
            shown(str(r.started_at)[:19]),
            shown(r.command),
            shown((r.status or "running") + (" (dry run)" if _dry(r) else "")),
            shown(changed),
            shown(counts.get("failed", "")),
        )
    print_table(table)


def _dry(run: Run) -> bool:
    """Whether a run only showed what it would change (tag --dry-run, beet mgctag -p)."""
    args = run.args
    return isinstance(args, dict) and str(args.get("dry_run")) in ("True", "true", "1")


def undo(
    run_id: Annotated[
        int | None, typer.Argument(help="The run to undo (see `mgctag runs`).")
    ] = None,
    last: Annotated[
        bool, typer.Option("--last", help="Undo the last run that wrote tags.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be restored.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Restore even over genres edited since the run."),
    ] = False,
    db: DbOption = None,
    json_out: JsonOption = False,
) -> None:
    """Restore the exact genre bytes a run replaced; genres edited since are refused."""
    from mgctag.writes.undo import last_run, undo_run

    lib = open_library(db)
    if run_id is None:
        if not last:
            raise typer.BadParameter("give a RUN_ID or --last")
        run_id = last_run(lib)
    elif last:
        raise typer.BadParameter("give a RUN_ID or --last, not both")
    report = undo_run(lib, run_id, dry_run=dry_run, force=force)
    if json_out:
        print_json({"run": run_id, "undo_run": report.undo_run_id, "items": report.items})
    else:
        for item in report.items:
            line = f"{shown(item.status)}: {shown(item.path)}: {_genres(item.current, '—')} → "
            line += _genres(item.restore, "(no genre)")
            if item.reason:
                line += f" ({shown(item.reason)})"
            (err if item.status in ("refused", "failed") else out).print(line, highlight=False)
        out.print(
            f"run {run_id}: {report.count('restored') or report.count('would restore')} "
            f"{'to restore' if dry_run else 'restored'}, {report.count('refused')} refused, "
            f"{report.count('failed')} failed"
        )
    raise typer.Exit(1 if report.count("refused") + report.count("failed") else 0)
