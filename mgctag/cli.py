"""The mgctag command line: parsing and printing only; the work happens in pipeline and friends."""

from __future__ import annotations

import json
import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress
from rich.table import Table

from mgctag import config, pipeline

app = typer.Typer(
    name="mgctag",
    help="Tag a local music library with genres by listening to it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

DbOption = Annotated[
    Path | None,
    typer.Option("--db", envvar="MGCTAG_DB", help="SQLite database (default: XDG data dir)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document for scripts.")]
PathsArg = Annotated[list[Path], typer.Argument(help="Files or folders.", exists=False)]


@app.callback()
def main() -> None:
    """Tag a local music library with genres by listening to it."""


def open_library(db: Path | None):
    from mgctag.library.db import Library

    return Library(db or config.default_db_path())


def run() -> None:
    """The console script: expected problems become one red line and exit status 2."""
    from mgctag.library.db import LibraryError
    from mgctag.library.scan import ScanError
    from mgctag.models.registry import ModelError

    try:
        app()
    except (UserError, LibraryError, ScanError, ModelError) as exc:
        err.print(f"[red]error[/red]: {_printable(str(exc))}", highlight=False)
        sys.exit(2)


def _printable(text: str) -> str:
    """Paths from non-UTF-8 file names carry surrogates; show them escaped instead of crashing."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def print_json(data: object) -> None:
    text = json.dumps(data, ensure_ascii=False, indent=2, default=_jsonable)
    sys.stdout.write(_printable(text) + "\n")


def _jsonable(obj: object) -> object:
    return obj.__dict__ if hasattr(obj, "__dict__") else str(obj)


def print_failures(failures: list[tuple[str, str]]) -> None:
    for path, reason in failures:
        err.print(
            f"[red]error[/red]: {path}: {reason}", markup=True, highlight=False, soft_wrap=True
        )


class CliProgress(pipeline.Progress):
    """A rich progress bar with ETA, one task per pipeline stage; silent when not a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.bar = RichProgress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err,
            disable=not enabled,
            transient=False,
        )
        self.task = None

    def stage(self, name: str, total: int) -> None:
        if self.task is not None:
            self.bar.update(self.task, completed=self.bar.tasks[self.task].total)
        self.task = self.bar.add_task(name, total=total)

    def advance(self, n: int = 1) -> None:
        if self.task is not None:
            self.bar.advance(self.task, n)

    def message(self, text: str) -> None:
        self.bar.console.print(text)


@contextmanager
def interruptible():
    """Ctrl-C asks the pipeline to stop after the current file instead of killing it mid-write."""
    stop = pipeline.StopFlag()

    def handler(signum, frame):  # noqa: ARG001
        if stop:
            raise KeyboardInterrupt
        stop.set()
        err.print("[yellow]stopping after the current file… (Ctrl-C again to abort)[/yellow]")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


@app.command()
def scan(paths: PathsArg, db: DbOption = None, json_out: JsonOption = False) -> None:
    """Record the audio files under PATHS in the database (incremental)."""
    from mgctag.library.scan import scan as run_scan

    lib = open_library(db)
    report = run_scan(lib, paths)
    if json_out:
        print_json(report.as_dict())
    else:
        print_failures([(str(p), r) for p, r in report.failures])
        out.print(report.summary_line())
    raise typer.Exit(1 if report.failures else 0)


@app.command()
def tag(
    paths: PathsArg,
    db: DbOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show planned changes; write nothing.")
    ] = False,
    mode: Annotated[
        str, typer.Option(help="fill: only files without a genre; merge: add; replace: overwrite.")
    ] = "fill",
    max_genres: Annotated[int, typer.Option(min=1, help="At most this many genres per file.")] = 3,
    min_confidence: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Write genres at least this confident.")
    ] = pipeline.TagOptions.min_confidence,
    id3v23: Annotated[bool, typer.Option("--id3v23", help="Write ID3v2.3 (old players).")] = False,
    keep_mtime: Annotated[
        bool, typer.Option("--keep-mtime", help="Keep file modification times.")
    ] = False,
    stems: Annotated[
        str, typer.Option(help="Separate stems first: auto (GPU + Demucs, else config), on, off.")
    ] = "auto",
    separator: Annotated[str, typer.Option(help="auto, demucs, cascade or hpss.")] = "auto",
    separator_model: Annotated[
        Path | None, typer.Option(help="Demucs weight file or repo folder.")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    keep_stems: Annotated[
        Path | None, typer.Option(help="Also write each analysed window's stems under DIR.")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Tag with this model (see `mgctag models list`).")
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Scan PATHS, analyse new and changed tracks, and write their genres into the files."""
    if mode not in ("fill", "merge", "replace"):
        raise typer.BadParameter("use fill, merge or replace", param_hint="--mode")
    if stems not in ("auto", "on", "off"):
        raise typer.BadParameter("use auto, on or off", param_hint="--stems")
    if keep_stems is not None:
        if stems == "off":
            raise typer.BadParameter("--keep-stems needs stems", param_hint="--stems off")
        stems = "on"
    opts = pipeline.TagOptions(
        mode=mode,  # type: ignore[arg-type]
        max_genres=max_genres,
        min_confidence=min_confidence,
        dry_run=dry_run,
        id3v23=id3v23,
        keep_mtime=keep_mtime,
        stems=stems,
        separator=separator,
        separator_model=separator_model,
        device=device,
        model=model or config.default_model(),
        keep_stems=keep_stems,
    )
    lib = open_library(db)
    progress = CliProgress(enabled=not json_out and err.is_terminal)
    with interruptible() as stop, progress.bar:
        summary = pipeline.tag_paths(lib, paths, opts, progress=progress, stop=stop)
    if json_out:
        print_json(summary_dict(summary))
    else:
        print_summary(summary, dry_run)
    raise typer.Exit(130 if summary.interrupted else (1 if summary.failed else 0))


def summary_dict(s: pipeline.Summary) -> dict:
    return {
        "run_id": s.run_id,
        "counts": s.counts(),
        "interrupted": s.interrupted,
        "changes": [c.__dict__ for c in s.changes],
        "failures": [{"path": p, "reason": r} for p, r in s.failures],
    }


def print_summary(s: pipeline.Summary, dry_run: bool) -> None:
    print_failures(s.failures)
    if s.changes:
        table = Table(title="planned changes" if dry_run else "changed")
        table.add_column("file", overflow="fold")
        table.add_column("genre before")
        table.add_column("genre after")
        for c in s.changes:
            table.add_row(c.path, "; ".join(c.old) or "—", "; ".join(c.new))
        out.print(table)
    verb = "would tag" if dry_run else "tagged"
    n_changes = len(s.changes) if dry_run else s.tagged
    out.print(
        f"analysed {s.analysed}, {verb} {n_changes}, unchanged {s.unchanged}, "
        f"skipped {s.skipped}, failed {s.failed}"
        + (" (interrupted)" if s.interrupted else "")
        + (f"  [dim]run {s.run_id}[/dim]" if s.run_id else "")
    )


def resolve_track(lib, query: str) -> dict:
    """QUERY as a path, a track id, or text matching artist/title/path (the first match)."""
    if os.path.exists(query):
        track = lib.track_by_path(os.path.abspath(query))
        if track is None:
            raise UserError(f"{query}: not in the library yet; run `mgctag tag` on it first")
        return track
    if query.isdigit() and (track := lib.get_track(int(query))):
        return track
    matches = lib.find_tracks(query, limit=2)
    if not matches:
        raise UserError(
            f"{query}: no track matches (give a path, a track id, or artist/title text)"
        )
    return matches[0]


class UserError(Exception):
    """A one-line problem with what the user asked for; printed, exit 2."""


@app.command()
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
    predictions = lib.get_predictions(track["id"])
    try:
        in_file = tagio.read_tags(track["path"]).genres
    except tagio.TagError as exc:
        in_file = f"unreadable: {exc.reason}"
    if json_out:
        print_json({"track": track, "file_genres": in_file, "predictions": predictions})
        return
    out.print(f"[bold]{track.get('artist') or '?'} — {track.get('title') or '?'}[/bold]")
    out.print(f"path: {track['path']}", highlight=False)
    out.print(f"status: {track['status']}" + (f" ({track['error']})" if track.get("error") else ""))
    out.print(f"genre in file: {'; '.join(in_file) if isinstance(in_file, list) else in_file}")
    if not predictions:
        out.print("not analysed yet: run `mgctag tag` on it")
    for model, pred in predictions.items():
        out.print(f"\n[bold]{model}[/bold] (separator {pred['separator']}, {pred['created_at']})")
        genres = ", ".join(f"{g} {p:.2f}" for g, p in pred["genres"][:8])
        out.print(f"  genres: {genres or '—'}")
        raw = pred["tags"]
        groups = raw.items() if raw and isinstance(next(iter(raw.values())), dict) else [("", raw)]
        for name, probs in groups:
            best = sorted(probs.items(), key=lambda kv: -kv[1])[:top_tags]
            out.print(f"  {name or 'tags'}: " + ", ".join(f"{t} {p:.2f}" for t, p in best))


@app.command()
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
        counts = r.get("counts") or {}
        changed = counts.get("tagged", counts.get("restored", ""))
        table.add_row(
            str(r["id"]),
            str(r["started_at"])[:19],
            r["command"],
            str(r.get("status") or "running"),
            str(changed),
            str(counts.get("failed", "")),
        )
    out.print(table)


@app.command()
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
    db: DbOption = None,
    json_out: JsonOption = False,
) -> None:
    """Restore the exact genre values a run replaced; files changed since are refused."""
    from mgctag.undo import undo_run

    lib = open_library(db)
    if run_id is None:
        if not last:
            raise typer.BadParameter("give a RUN_ID or --last")
        run_id = lib.last_run_id("tag")
        if run_id is None:
            raise UserError("no tag run to undo")
    report = undo_run(lib, run_id, dry_run=dry_run)
    if json_out:
        print_json({"run": run_id, "undo_run": report.undo_run_id, "items": report.items})
    else:
        for item in report.items:
            line = f"{item.status}: {item.path}: {'; '.join(item.current) or '—'} → "
            line += "; ".join(item.restore) or "(no genre)"
            if item.reason:
                line += f" ({item.reason})"
            (err if item.status in ("refused", "failed") else out).print(line, highlight=False)
        out.print(
            f"run {run_id}: {report.count('restored') or report.count('would restore')} "
            f"{'to restore' if dry_run else 'restored'}, {report.count('refused')} refused, "
            f"{report.count('failed')} failed"
        )
    raise typer.Exit(1 if report.count("refused") + report.count("failed") else 0)


@app.command()
def similar(
    query: Annotated[
        list[str], typer.Argument(help="Seed tracks: paths, ids or artist/title text.")
    ],
    k: Annotated[int, typer.Option("-k", min=1, help="How many tracks.")] = 10,
    by: Annotated[str, typer.Option(help="Embedding: mix, drums, bass, other, vocals.")] = "mix",
    genre: Annotated[str | None, typer.Option(help="Only tracks of this genre.")] = None,
    exclude_artist: Annotated[bool, typer.Option("--exclude-artist")] = False,
    exclude_album: Annotated[bool, typer.Option("--exclude-album")] = False,
    m3u: Annotated[Path | None, typer.Option(help="Also write an M3U8 playlist here.")] = None,
    relative: Annotated[
        bool, typer.Option("--relative", help="Playlist paths relative to the playlist's folder.")
    ] = False,
    db: DbOption = None,
    json_out: JsonOption = False,
) -> None:
    """The tracks most like the seed(s), by cosine similarity of their embeddings."""
    from mgctag import similar as sim

    lib = open_library(db)
    seeds = [resolve_track(lib, q)["id"] for q in query]
    try:
        hits = sim.similar_tracks(
            lib,
            seeds,
            model=pipeline.DEFAULT_TAGGER,
            by=by,
            k=k,
            genre=genre,
            exclude_artist=exclude_artist,
            exclude_album=exclude_album,
        )
    except sim.SimilarError as exc:
        raise UserError(str(exc)) from None
    if m3u:
        from mgctag.export import ExportError, write_m3u

        try:
            write_m3u(m3u, hits, relative_to=m3u.parent.resolve() if relative else None)
        except ExportError as exc:
            raise UserError(str(exc)) from None
    if json_out:
        print_json(hits)
        return
    table = Table()
    for col in ("#", "score", "artist", "title", "path"):
        table.add_column(col, overflow="fold")
    for rank, h in enumerate(hits, 1):
        table.add_row(
            str(rank), f"{h['score']:.3f}", h.get("artist") or "", h.get("title") or "", h["path"]
        )
    out.print(table)


@app.command()
def separate(
    files: Annotated[list[Path], typer.Argument(help="Audio files to split into stems.")],
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
) -> None:
    """Split each FILE into drums, bass, other and vocals stem files."""
    import warnings

    from mgctag.audio.decode import DecodeError
    from mgctag.separate import SeparationError, get_separator
    from mgctag.separate.files import FORMATS, separate_file

    if fmt not in FORMATS:
        raise typer.BadParameter("use flac or wav", param_hint="--format")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            sep = get_separator(separator, device, separator_model)
        except SeparationError as exc:
            raise UserError(str(exc)) from None
    for w in caught:
        err.print(f"[yellow]warning[/yellow]: {_printable(str(w.message))}", highlight=False)
    progress = CliProgress(enabled=err.is_terminal)
    done, failures = [], []
    with progress.bar:
        progress.stage(f"separating ({sep.name})", total=len(files))
        for path in files:
            try:
                done.append(separate_file(path, out_dir, sep, fmt))
            except (DecodeError, SeparationError, OSError, ValueError) as exc:
                reason = exc.reason if isinstance(exc, DecodeError) else str(exc)
                failures.append((_printable(str(path)), reason))
            progress.advance()
    print_failures(failures)
    audio = sum(d.duration for d in done)
    wall = sum(d.seconds for d in done)
    speed = f", {audio / wall:.1f}x real time" if wall > 0 else ""
    out.print(
        f"separated {len(done)} file(s) with {sep.name} into {out_dir}{speed}; "
        f"failed {len(failures)}",
        highlight=False,
    )
    raise typer.Exit(1 if failures else 0)


StemsOption = Annotated[
    str,
    typer.Option("--features", help="Embeddings to learn from: mix, or mix+stems (needs stems)."),
]


def _stems(features: str) -> list[str]:
    from mgctag.separate import STEMS

    if features == "mix":
        return ["mix"]
    if features in ("mix+stems", "all"):
        return ["mix", *STEMS]
    raise typer.BadParameter("use mix or mix+stems", param_hint="--features")


def _training_errors():
    from mgctag.train.labels import TrainingDataError

    return TrainingDataError


@app.command()
def labels(
    csv: Annotated[Path | None, typer.Option("--labels", help="CSV of path,genre rows.")] = None,
    min_count: Annotated[int, typer.Option(help="Genres with fewer tracks are left out.")] = 5,
    db: DbOption = None,
    json_out: JsonOption = False,
) -> None:
    """Label counts per genre (from your files' genre tags, or --labels CSV) before training."""
    from mgctag.train import workflow

    lib = open_library(db)
    try:
        counts = workflow.label_summary(lib, csv, min_count)
    except _training_errors() as exc:
        raise UserError(str(exc)) from None
    if json_out:
        print_json(counts.to_dict())
        return
    table = Table(title=f"labels ({'CSV' if csv else 'genre tags you wrote'})")
    table.add_column("genre")
    table.add_column("tracks", justify="right")
    table.add_column("used")
    for genre, n in sorted(counts.counts.items(), key=lambda kv: -kv[1]):
        table.add_row(genre, str(n), "yes" if genre in counts.kept else f"no (< {min_count})")
    out.print(table)


@app.command()
def train(
    name: Annotated[str, typer.Argument(help="Name of the new model.")],
    csv: Annotated[Path | None, typer.Option("--labels", help="CSV of path,genre rows.")] = None,
    from_tags: Annotated[bool, typer.Option("--from-tags", help="Labels from genre tags.")] = True,
    features: StemsOption = "mix",
    min_count: Annotated[int, typer.Option(help="Leave out genres with fewer tracks.")] = 5,
    hidden: Annotated[int, typer.Option(help="Hidden units (0: logistic regression).")] = 0,
    folds: Annotated[int, typer.Option(help="Grouped k-fold evaluation before the final fit.")] = 5,
    arch: Annotated[
        str | None,
        typer.Option(help="Retrain a spectrogram network from audio instead of a head (slow)."),
    ] = None,
    epochs: Annotated[int, typer.Option(help="Training epochs for --arch.")] = 20,
    seed: int = 0,
    db: DbOption = None,
    json_out: JsonOption = False,
) -> None:
    """Teach mgctag your genres: a head on stored embeddings, labelled by your tags or a CSV.

    With --arch (ecapa_tdnn, stemcnn, swishnet, cnn2d, cnn1d, crnn, mobilenetv2) a seed-paper
    network is trained from the tracks' audio instead, measured on a grouped hold-out.
    """
    from mgctag.train import workflow
    from mgctag.train.report import evaluation_summary

    lib = open_library(db)
    if arch is not None:
        progress = CliProgress(enabled=not json_out and err.is_terminal)
        try:
            with progress.bar:
                net = workflow.train_network(
                    lib, name, arch, labels_csv=csv, min_count=min_count, epochs=epochs,
                    seed=seed, progress=progress,
                )  # fmt: skip
        except _training_errors() as exc:
            raise UserError(str(exc)) from None
        if json_out:
            print_json({"model": str(net.path), "card": net.card, "evaluation": net.metrics})
            return
        m = net.metrics
        if m:
            out.print(
                f"grouped hold-out of {m['n_test']} tracks: accuracy {m['accuracy']:.3f}, "
                f"macro-F1 {m['macro_f1']:.3f}"
            )
        out.print(f"saved {net.path} ({net.n_tracks} tracks, seed {seed})", highlight=False)
        out.print(f"use it: mgctag tag PATH --model {name}")
        return
    try:
        result = workflow.train_user_model(
            lib,
            name,
            labels_csv=csv,
            stems=_stems(features),
            min_count=min_count,
            folds=folds,
            seed=seed,
            hidden=hidden,
        )
    except _training_errors() as exc:
        raise UserError(str(exc)) from None
    summary = evaluation_summary(result.report)
    if json_out:
        print_json(
            {"model": str(result.path), "card": result.card, "evaluation": result.report.to_dict()}
        )
        return
    print_eval(result.report)
    out.print(
        f"saved {result.path} ({summary['n_tracks']} tracks, {len(result.dataset.labels)} genres, "
        f"seed {seed}); confusion matrix: {result.confusion_png}",
        highlight=False,
    )
    out.print(f"use it: mgctag tag PATH --model {name}   (or: mgctag models use {name})")


def print_eval(report) -> None:
    acc, acc_sd = report.accuracy
    f1, f1_sd = report.macro_f1
    out.print(
        f"{report.protocol}: {len(report.folds)} splits, {report.n_tracks} tracks, "
        f"{report.n_groups} artist groups, seed {report.seed}"
    )
    out.print(f"accuracy {acc:.3f} ± {acc_sd:.3f}, macro-F1 {f1:.3f} ± {f1_sd:.3f}")
    table = Table()
    for col in ("genre", "precision", "recall", "f1", "support"):
        table.add_column(col, justify="left" if col == "genre" else "right")
    for genre, m in report.pooled.per_genre.items():
        table.add_row(
            genre,
            f"{m['precision']:.2f}",
            f"{m['recall']:.2f}",
            f"{m['f1']:.2f}",
            str(m["support"]),
        )
    out.print(table)


@app.command("eval")
def evaluate(
    source: Annotated[
        Path | None, typer.Argument(help="A folder of genre subfolders, or a CSV (path,genre).")
    ] = None,
    protocol: Annotated[str, typer.Option(help="kfold, trials or split-files.")] = "kfold",
    folds: Annotated[int, typer.Option(help="k for kfold.")] = 10,
    trials: Annotated[int, typer.Option(help="Random grouped splits for trials.")] = 50,
    test_size: Annotated[float, typer.Option(help="Test share for trials.")] = 0.2,
    split_files: Annotated[
        Path | None, typer.Option(help="Folder with train/valid/test lists (GTZAN splits).")
    ] = None,
    features: StemsOption = "mix",
    min_count: Annotated[int, typer.Option(help="Leave out genres with fewer tracks.")] = 5,
    arch: Annotated[
        str | None, typer.Option(help="Evaluate a seed-paper network retrained from audio.")
    ] = None,
    epochs: Annotated[int, typer.Option(help="Training epochs per split for --arch.")] = 20,
    seed: int = 0,
    out_dir: Annotated[Path | None, typer.Option(help="Write confusion PNG + JSON here.")] = None,
    db: DbOption = None,
    json_out: JsonOption = False,
) -> None:
    """Evaluate genre heads on labelled music with the seed papers' protocols."""
    from mgctag.train import workflow
    from mgctag.train.report import save_confusion_json, save_confusion_png

    if protocol == "split-files":
        protocol = "split_files"
        if split_files is None:
            raise typer.BadParameter("needs --split-files FOLDER", param_hint="--protocol")
    lib = open_library(db)
    try:
        pairs = None
        if source is not None and source.is_dir():
            pairs = workflow.folder_pairs(source)
            pipeline.tag_paths(lib, [source], pipeline.TagOptions(), command="eval", write=False)
        elif source is not None:
            pairs = workflow.read_label_csv(source)
        if arch is not None:
            progress = CliProgress(enabled=not json_out and err.is_terminal)
            with progress.bar:
                result = workflow.evaluate_network(
                    lib,
                    arch,
                    pairs,
                    protocol=protocol,
                    folds=folds,
                    trials=trials,
                    test_size=test_size,
                    min_count=min_count,
                    epochs=epochs,
                    seed=seed,
                    progress=progress,
                )
            if json_out:
                print_json(result)
                return
            acc, f1 = result["accuracy"], result["macro_f1"]
            out.print(
                f"{arch}, {protocol}: {result['splits']} splits, {result['n_tracks']} tracks, "
                f"seed {seed}: accuracy {acc['mean']:.3f} ± {acc['std']:.3f}, "
                f"macro-F1 {f1['mean']:.3f} ± {f1['std']:.3f}"
            )
            return
        ds = workflow.dataset(lib, pairs, _stems(features), min_count)
        report = workflow.evaluate(
            ds,
            protocol=protocol,
            folds=folds,
            trials=trials,
            test_size=test_size,
            split_files=split_files,
            seed=seed,
        )
    except _training_errors() as exc:
        raise UserError(str(exc)) from None
    if out_dir:
        save_confusion_png(report.pooled.confusion, ds.labels, out_dir / "confusion.png")
        save_confusion_json(report.pooled.confusion, ds.labels, out_dir / "confusion.json")
    if json_out:
        print_json(report.to_dict())
    else:
        print_eval(report)


models_app = typer.Typer(help="Bundled and user-trained genre models.", no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list(json_out: JsonOption = False) -> None:
    """Every model mgctag can tag with (bundled, then yours)."""
    from mgctag.models.registry import list_models

    cards = list_models()
    default = config.default_model()
    builtin = _builtin_taggers({c.name: c for c in cards})
    if json_out:
        rows = [{**b, "default": b["name"] == default} for b in builtin]
        print_json(rows + [{**c.to_dict(), "default": c.name == default} for c in cards])
        return
    table = Table()
    for col in ("name", "arch", "source", "genres/tags", "default"):
        table.add_column(col)
    for b in builtin:
        table.add_row(
            b["name"], b["arch"], "bundled", str(b["outputs"]), _mark(default == b["name"])
        )
    for c in cards:
        kind = c.source.get("kind", "bundled") if isinstance(c.source, dict) else "bundled"
        table.add_row(c.name, c.arch, kind, str(len(c.labels)), _mark(c.name == default))
    out.print(table)


def _builtin_taggers(cards: dict) -> list[dict]:
    """The taggers that are not one card: the musicnn pair, and musicnn blended with a student."""
    from mgctag.models.tagger import MUSICNN_MODELS

    pair = list(MUSICNN_MODELS)
    rows = [{"name": pipeline.DEFAULT_TAGGER, "arch": " + ".join(pair) + " on the mix",
             "kind": "ensemble", "models": pair,
             "outputs": sum(len(cards[m].labels) for m in pair),
             "source": {"kind": "bundled"}}]  # fmt: skip
    for name, (student, weight) in pipeline.BLENDS.items():
        rows.append({"name": name, "arch": f"musicnn {weight:g} + {student} {1 - weight:g}",
                     "kind": "blend", "models": pair, "student": student, "musicnn_weight": weight,
                     "outputs": len(cards[student].labels),
                     "source": {"kind": "bundled"},
                     "measured": "docs/models.md, 'The default tagger, and why'"})  # fmt: skip
    return rows


def _mark(flag: bool) -> str:
    return "✓" if flag else ""


@models_app.command("show")
def models_show(name: str) -> None:
    """A model's card: source, licence, labels, preprocessing, measured quality."""
    from mgctag.models.registry import list_models, resolve

    builtin = {b["name"]: b for b in _builtin_taggers({c.name: c for c in list_models()})}
    if name in builtin:
        print_json(builtin[name])
        return
    print_json(json.loads(resolve(name).with_suffix(".json").read_text("utf-8")))


@models_app.command("use")
def models_use(name: str) -> None:
    """Make NAME the model `mgctag tag` uses by default (musicnn: back to the bundled one)."""
    from mgctag.models.registry import resolve

    if name != pipeline.DEFAULT_TAGGER and name not in pipeline.BLENDS:
        resolve(name)
    config.set_default_model(name)
    out.print(f"mgctag tag now uses {name}")


@models_app.command("remove")
def models_remove(name: str) -> None:
    """Delete a user-trained model (bundled models cannot be removed)."""
    from mgctag.models.registry import resolve

    path = resolve(name)
    if config.user_models_dir() not in path.parents:
        raise UserError(f"{name}: a bundled model; only your own models can be removed")
    for p in path.parent.glob(f"{path.stem}.*"):
        p.unlink()
    if config.default_model() == name:
        config.set_default_model(pipeline.DEFAULT_TAGGER)
    out.print(f"removed {name}")


@app.command("map")
def map_command(
    png: Annotated[Path | None, typer.Option(help="Write the map as a PNG.")] = None,
    html: Annotated[Path | None, typer.Option(help="Write an interactive HTML page.")] = None,
    genres: Annotated[
        Path | None, typer.Option("--genres", help="Write the genre-similarity heatmap PNG.")
    ] = None,
    by: Annotated[str, typer.Option(help="Embedding: mix, drums, bass, other, vocals.")] = "mix",
    method: Annotated[str, typer.Option(help="tsne or pca.")] = "tsne",
    db: DbOption = None,
) -> None:
    """A 2-D map of your library's embeddings, coloured by genre (PNG and/or HTML)."""
    from mgctag import libmap, similar

    if not (png or html or genres):
        html = Path("mgctag-map.html")
    lib = open_library(db)
    try:
        result = libmap.make_map(
            lib, png, html, model=pipeline.DEFAULT_TAGGER, by=by, method=method, heatmap_png=genres
        )
    except (libmap.MapError, similar.SimilarError) as exc:
        raise UserError(str(exc)) from None
    out.print(
        f"{result['tracks']} tracks, {result['genres']} genres → "
        + ", ".join(str(f) for f in result["files"]),
        highlight=False,
    )
