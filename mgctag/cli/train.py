"""The train group: labels, train, eval. Parsing and printing only."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from mgctag.cli import output
from mgctag.cli.common import DbOption, JsonOption, open_library, refuse
from mgctag.cli.output import (
    CliProgress,
    out,
    print_failures,
    print_json,
    print_table,
    progress_enabled,
    shown,
)
from mgctag.errors import UsageError
from mgctag.options import TRAIN, TagOptions

if TYPE_CHECKING:
    from mgctag.library.db import Library

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


InitOption = Annotated[
    str | None,
    typer.Option(
        "--init",
        help="Start --arch from a distilled student's weights (e.g. crnn_small), output layer new.",
    ),
]


def _student(init: str | None, arch: str | None) -> Any:
    """The student `--init` names, loaded and checked before any audio is read (or None)."""
    if init is None or arch is None:
        return None
    from mgctag.train import transfer

    return transfer.load_student(init, arch)


def _training_errors() -> type[Exception]:
    from mgctag.train.labels import TrainingDataError

    return TrainingDataError


MinCountOption = Annotated[int, typer.Option(help="Leave out genres with fewer labelled tracks.")]


def _refresh(lib: Library) -> list[tuple[str, str]]:
    """Files retagged since the last scan are read again before their labels are used (the
    labels are the tags the files hold now); says how many. Returns the files that failed."""
    from mgctag.train import workflow

    report = workflow.refresh_retagged(lib)
    if report.changed and output.verbosity >= 0:
        n = report.changed
        output.err.print(
            f"{n} file{'s' if n > 1 else ''} changed since the last scan: tags read again"
            " (as `mgctag scan` does)",
            highlight=False,
        )
    return report.failures


def _single_source(single: dict[str, str]) -> None:
    """One warning per genre whose labelled tracks all come from one artist group."""
    what = {"artist": "artist", "album": "album", "dir": "folder"}
    for genre, group in single.items():
        kind, _, name = group.partition(":")
        output.warning(
            f"genre {genre}: every labelled track comes from one {what.get(kind, kind)}"
            f" ({name}); the model learns that {what.get(kind, kind)}, not the genre:"
            " label tracks of others"
        )


def _exit_for(failures: list[tuple[str, str]]) -> None:
    """A file that could not be read again fails the command (after its work is done)."""
    if failures:
        raise typer.Exit(1)


def labels(
    csv: Annotated[Path | None, typer.Option("--labels", help="CSV of path,genre rows.")] = None,
    min_count: MinCountOption = TRAIN.min_count,
    db: DbOption = None,
    json_out: JsonOption = False,
) -> None:
    """Label counts per genre (from your files' genre tags, or --labels CSV) before training.

    Files retagged since the last scan are read again first; genres mgctag wrote are not labels
    (it never learns from its own predictions), and how many were left out is said.
    """
    from mgctag.train import workflow

    lib = open_library(db)
    failures = _refresh(lib)
    print_failures(failures)
    try:
        summary = workflow.label_summary(lib, csv, min_count)
    except _training_errors() as exc:
        raise UsageError(str(exc)) from None
    counts = summary.counts
    if json_out:
        print_json({**counts.to_dict(), "own_left_out": summary.own})
        return _exit_for(failures)
    if summary.own:
        out.print(
            f"{summary.own} track{'s' if summary.own > 1 else ''} left out: "
            f"{'their genres are' if summary.own > 1 else 'its genre is'} mgctag's own"
            " prediction (mgctag never learns from its own writes)"
        )
    table = Table(title=f"labels ({'CSV' if csv else 'genre tags you wrote'})")
    table.add_column("genre")
    table.add_column("tracks", justify="right")
    table.add_column("used")
    for genre, n in sorted(counts.counts.items(), key=lambda kv: -kv[1]):
        table.add_row(
            shown(genre), str(n), "yes" if genre in counts.kept else f"no (< {min_count})"
        )
    print_table(table)
    _exit_for(failures)


def train(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Name of the new model.")],
    csv: Annotated[Path | None, typer.Option("--labels", help="CSV of path,genre rows.")] = None,
    features: StemsOption = "mix",
    min_count: MinCountOption = TRAIN.min_count,
    hidden: Annotated[int, typer.Option(help="Hidden units (0: logistic regression).")] = 0,
    folds: Annotated[
        int, typer.Option(help="Grouped k-fold evaluation before the final fit.")
    ] = TRAIN.folds,
    arch: Annotated[
        str | None,
        typer.Option(help="Retrain a spectrogram network from audio instead of a head (slow)."),
    ] = None,
    epochs: Annotated[int, typer.Option(help="Training epochs for --arch.")] = TRAIN.epochs,
    init: InitOption = None,
    seed: Annotated[int, typer.Option(help="Random seed (splits, initialisation).")] = 0,
    db: DbOption = None,
    json_out: JsonOption = False,
) -> None:
    """Teach mgctag your genres: a head on stored embeddings, labelled by your tags or a CSV.

    Labels come from the genre tags of your files unless --labels gives a CSV.

    With --arch (ecapa_tdnn, stemcnn, swishnet, cnn2d, cnn1d, crnn, mobilenetv2) a seed-paper
    network is trained from the tracks' audio instead, measured on a grouped hold-out;
    --init STUDENT starts it from a bundled student of that architecture (its features too).
    """
    if arch is not None:
        refuse(ctx, ("hidden", "folds", "features"), "only for a head (without --arch)")
    else:
        refuse(ctx, ("epochs", "init"), "only with --arch")
    from mgctag.train import workflow
    from mgctag.train.report import evaluation_summary

    student = _student(init, arch)
    lib = open_library(db)
    failures = _refresh(lib)
    print_failures(failures)
    if arch is not None:
        progress = CliProgress(enabled=progress_enabled(json_out))
        try:
            with progress.bar:
                net = workflow.train_network(
                    lib, name, arch, labels_csv=csv, min_count=min_count, epochs=epochs,
                    seed=seed, student=student, progress=progress,
                )  # fmt: skip
        except _training_errors() as exc:
            raise UsageError(str(exc)) from None
        _single_source(net.single_source)
        if json_out:
            print_json({"model": str(net.path), "card": net.card, "evaluation": net.metrics})
            return _exit_for(failures)
        m = net.metrics
        if m:
            out.print(
                f"grouped hold-out of {m['n_test']} tracks: accuracy {m['accuracy']:.3f}, "
                f"macro-F1 {m['macro_f1']:.3f}"
            )
        start = f", from {shown(init)}" if init else ""
        out.print(
            f"saved {shown(net.path)} ({net.n_tracks} tracks, seed {seed}{start})", highlight=False
        )
        out.print(f"use it: mgctag tag PATH --model {shown(name)}")
        return _exit_for(failures)
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
        raise UsageError(str(exc)) from None
    summary = evaluation_summary(result.report)
    _single_source(result.single_source)
    if json_out:
        print_json(
            {"model": str(result.path), "card": result.card, "evaluation": result.report.to_dict()}
        )
        return _exit_for(failures)
    print_eval(result.report)
    out.print(
        f"saved {shown(result.path)} ({summary['n_tracks']} tracks, "
        f"{len(result.dataset.labels)} genres, "
        f"seed {seed}); confusion matrix: {shown(result.confusion_png)}",
        highlight=False,
    )
    out.print(
        f"use it: mgctag tag PATH --model {shown(name)}   (or: mgctag models use {shown(name)})"
    )
    _exit_for(failures)


def print_eval(report: Any) -> None:
    acc, acc_sd = report.accuracy
    f1, f1_sd = report.macro_f1
    out.print(
        f"{report.protocol}: {len(report.folds)} splits, {report.n_tracks} tracks, "
        f"{report.n_groups} artist groups, seed {report.seed}"
    )
    out.print(
        f"accuracy {acc:.3f} ± {acc_sd:.3f}, macro-F1 {f1:.3f} ± {f1_sd:.3f} (mean ± sd over the "
        f"splits); the table pools every split's test tracks: macro-F1 {report.pooled.macro_f1:.3f}"
    )
    table = Table()
    for col in ("genre", "precision", "recall", "f1", "support"):
        table.add_column(col, justify="left" if col == "genre" else "right")
    for genre, m in report.pooled.per_genre.items():
        table.add_row(
            shown(genre),
            f"{m['precision']:.2f}",
            f"{m['recall']:.2f}",
            f"{m['f1']:.2f}",
            str(m["support"]),
        )
    print_table(table)


def evaluate(
    ctx: typer.Context,
    source: Annotated[
        Path | None, typer.Argument(help="A folder of genre subfolders, or a CSV (path,genre).")
    ] = None,
    protocol: Annotated[str, typer.Option(help="kfold, trials or split-files.")] = "kfold",
    folds: Annotated[int, typer.Option(help="k for kfold (grouped folds).")] = TRAIN.folds,
    trials: Annotated[int, typer.Option(help="Random grouped splits for trials.")] = TRAIN.trials,
    test_size: Annotated[float, typer.Option(help="Test share for trials.")] = TRAIN.test_size,
    split_files: Annotated[
        Path | None, typer.Option(help="Folder with train/valid/test lists (GTZAN splits).")
    ] = None,
    features: StemsOption = "mix",
    min_count: MinCountOption = TRAIN.min_count,
    arch: Annotated[
        str | None, typer.Option(help="Evaluate a seed-paper network retrained from audio.")
    ] = None,
    epochs: Annotated[
        int, typer.Option(help="Training epochs per split for --arch.")
    ] = TRAIN.epochs,
    init: InitOption = None,
    device: Annotated[
        str, typer.Option(help="auto, cpu, cuda or mps: where a SOURCE folder is analysed.")
    ] = "auto",
    seed: Annotated[int, typer.Option(help="Random seed (splits, initialisation).")] = 0,
    out_dir: Annotated[Path | None, typer.Option(help="Write confusion PNG + JSON here.")] = None,
    db: DbOption = None,
    json_out: JsonOption = False,
) -> None:
    """Evaluate genre heads on labelled music with the seed papers' protocols."""
    if protocol == "split-files":
        protocol = "split_files"
        if split_files is None:
            raise typer.BadParameter("needs --split-files FOLDER", param_hint="--protocol")
    _refuse_unused_eval(ctx, protocol, arch, source)
    from mgctag.train import workflow
    from mgctag.train.report import save_confusion_json, save_confusion_png

    student = _student(init, arch)  # a wrong --init is told before a folder is analysed
    lib = open_library(db)
    failures: list[tuple[str, str]] = []
    if source is None or not source.is_dir():  # labels from the library: as the files are now
        failures = _refresh(lib)
        print_failures(failures)
    try:
        pairs = None
        if source is not None and source.is_dir():
            pairs = workflow.folder_pairs(source)
            from mgctag import pipeline

            stems = "off" if _stems(features) == ["mix"] else "on"
            opts = TagOptions(device=device, stems=stems)
            pipeline.tag_paths(lib, [source], opts, command="eval", write=False)
        elif source is not None:  # relative paths resolved as train resolves --labels
            pairs = workflow.library_pairs(lib, source)
        if arch is not None:
            progress = CliProgress(enabled=progress_enabled(json_out))
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
                    student=student,
                    progress=progress,
                )
            if json_out:
                print_json(result)
                return _exit_for(failures)
            acc, f1 = result["accuracy"], result["macro_f1"]
            start = f" from {shown(init)}" if init else ""
            out.print(
                f"{shown(arch)}{start}, {protocol}: {result['splits']} splits, "
                f"{result['n_tracks']} tracks, "
                f"seed {seed}: accuracy {acc['mean']:.3f} ± {acc['std']:.3f}, "
                f"macro-F1 {f1['mean']:.3f} ± {f1['std']:.3f}"
            )
            return _exit_for(failures)
        ds = workflow.dataset(lib, pairs, _stems(features), min_count)
        report = workflow.evaluate_head(
            ds,
            protocol=protocol,
            folds=folds,
            trials=trials,
            test_size=test_size,
            split_files=split_files,
            seed=seed,
        )
    except _training_errors() as exc:
        raise UsageError(str(exc)) from None
    if out_dir:
        save_confusion_png(report.pooled.confusion, ds.labels, out_dir / "confusion.png")
        save_confusion_json(report.pooled.confusion, ds.labels, out_dir / "confusion.json")
    if json_out:
        print_json(report.to_dict())
    else:
        origin = shown(source) if source else "the genre tags you wrote (mgctag's own left out)"
        out.print(f"labels: {origin}; {len(ds.labels)} genres over {len(ds.Y)} tracks")
        print_eval(report)
    _exit_for(failures)


def _refuse_unused_eval(
    ctx: typer.Context, protocol: str, arch: str | None, source: Path | None
) -> None:
    """Each protocol and mode reads its own options; the others are refused, not ignored."""
    if protocol not in ("kfold", "trials", "split_files"):
        raise typer.BadParameter("use kfold, trials or split-files", param_hint="--protocol")
    if protocol != "kfold":
        refuse(ctx, ("folds",), "only with --protocol kfold")
    if protocol != "trials":
        refuse(ctx, ("trials", "test_size"), "only with --protocol trials")
    if protocol != "split_files":
        refuse(ctx, ("split_files",), "only with --protocol split-files")
    if arch is not None:
        refuse(ctx, ("features", "out_dir"), "not with --arch")
        if protocol == "split_files":
            raise UsageError("--protocol split-files: not with --arch (use kfold or trials)")
    else:
        refuse(ctx, ("epochs", "init"), "only with --arch")
    if source is None or not source.is_dir():
        refuse(ctx, ("device",), "only when SOURCE is a folder to analyse")
