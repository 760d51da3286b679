"""Orchestration: scan → analyse → store → write. The only module that wires the stages together.

It knows taggers only through the `Tagger` protocol (mgctag/models/protocol.py): what each one
reads (`inputs`), `analyse` and `predictions`. Decoding and feature extraction run in a worker
thread (soundfile, PyAV and numpy release the GIL) so the models are never waiting on a decoder;
each track is decoded once, at the highest rate any active tagger needs; units (patches, windows)
from several tracks are batched into one forward pass; every track's result is stored in one
transaction before its file is touched, so an interrupted run resumes where it stopped. One odd
track never ends a run: whatever goes wrong with it becomes its one-line failure.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from mgctag import config, journal, tags
from mgctag.audio.inputs import InputPlan, TrackInput, prepare
from mgctag.errors import UsageError, reason_of
from mgctag.genres import GenreMap, default_map, plan_genres
from mgctag.library import scan as scanner
from mgctag.library.db import Library, LibraryError
from mgctag.library.rows import Track
from mgctag.models import catalog
from mgctag.models.protocol import Prediction, Tagger
from mgctag.options import (
    DEFAULT_TAGGER,
    Change,
    Progress,
    StopFlag,
    Summary,
    TagOptions,
)
from mgctag.separate import SeparationError, Separator, get_separator, resolve_device
from mgctag.writes.plan import Plan, Skip, max_genres, plan_track
from mgctag.writes.run import record_failure, recorded_run
from mgctag.writes.writers import FileWriter, GenreWriter, apply_change

__all__ = [
    "DEFAULT_TAGGER",
    "Change",
    "Progress",
    "StopFlag",
    "Summary",
    "TagOptions",
    "analyse",
    "choose_separator",
    "tag_paths",
    "write_tags",
]


# --- analysis -------------------------------------------------------------------------------


def choose_separator(opts: TagOptions, needs_stems: bool = False) -> Separator | None:
    """The separator for this run, or None when stems are off.

    "auto" separates when a GPU and Demucs weights are there; otherwise the user's setting decides
    (`stems = "on"` under [tag] in ~/.config/mgctag/config.toml, or MGCTAG_STEMS=on), because on a
    CPU even the offline cascade costs several seconds a track.
    """
    if opts.stems == "off" and not needs_stems:
        return None
    if opts.stems == "auto" and not needs_stems:
        if torch.cuda.is_available() and opts.separator in ("auto", "demucs"):
            try:
                return get_separator("demucs", opts.device, opts.separator_model)
            except SeparationError:
                pass
        if str(config.setting("tag", "stems", "off")).lower() not in ("on", "true", "1", "yes"):
            return None
    return get_separator(opts.separator, opts.device, opts.separator_model)


def separator_for(
    taggers: Sequence[Tagger], opts: TagOptions, needs_stems: bool = False
) -> Separator | None:
    """The one separator of an analysis pass: the one a model was trained with, else the run's
    stems setting when a tagger embeds stems, else none."""
    named = {t.inputs.separator for t in taggers if t.inputs.separator}
    if len(named) > 1:
        raise UsageError(f"these models need different separators: {', '.join(sorted(named))}")
    if named:
        return get_separator(named.pop(), opts.device)
    if any(t.inputs.embeds_stems for t in taggers):
        return choose_separator(opts, needs_stems)
    return None


def prefetch(
    items: Iterable[Track], work: Callable[[Track], TrackInput], depth: int
) -> Iterator[TrackInput]:
    """Run `work` over items in a background thread, at most `depth` ahead of the consumer."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mgctag-decode") as pool:
        queue: list[Future[TrackInput]] = []
        for item in items:
            queue.append(pool.submit(work, item))
            if len(queue) > depth:
                yield queue.pop(0).result()
        for fut in queue:
            yield fut.result()


def guarded_work(work: Callable[[Track], TrackInput]) -> Callable[[Track], TrackInput]:
    """`work` for one track, with any unexpected exception turned into that track's failure."""

    def run(track: Track) -> TrackInput:
        try:
            return work(track)
        except Exception as exc:  # an odd file must not end the run (issue 18, item 12)
            return TrackInput(
                track, error=f"cannot analyse: {reason_of(exc)}", error_type=type(exc).__name__
            )

    return run


def stored_input(lib: Library, track: Track, spec) -> TrackInput:
    """An "embeddings" input: the stored per-stem vectors of the tagger it names, concatenated."""
    emb = lib.get_embeddings(track["id"], spec.source)
    stems = list(spec.stems or ("mix",))
    if any(s not in emb for s in stems):
        have = ", ".join(sorted(emb)) or "none"
        reason = f"needs {spec.source} embeddings of {stems}; have {have}"
        return TrackInput(track, error=reason, stage="model")
    x = np.concatenate([emb[s] for s in stems])[None, :]
    return TrackInput(track, features={"embeddings": x}, units=1)


def _inputs(
    lib: Library,
    tracks: Sequence[Track],
    taggers: Sequence[Tagger],
    opts: TagOptions,
    separator: Separator | None,
) -> Iterator[TrackInput]:
    """Each track's inputs for these taggers: decoded once in the worker, or from the library."""
    specs = tuple(t.inputs for t in taggers)
    if all(not s.reads_audio for s in specs):
        (spec,) = set(specs)
        yield from (guarded_work(lambda t: stored_input(lib, t, spec))(t) for t in tracks)
        return
    plan = InputPlan(specs, opts.windows, opts.window_seconds, opts.keep_stems)
    yield from prefetch(tracks, guarded_work(lambda t: prepare(t, plan, separator)), depth=4)


def analyse(
    lib: Library,
    tracks: Sequence[Track],
    taggers: Sequence[Tagger],
    opts: TagOptions,
    summary: Summary,
    progress: Progress,
    stop: StopFlag,
    gmap: GenreMap,
    separator: Separator | None = None,
) -> None:
    """Analyse tracks with these taggers in batches of units across tracks; store each result."""
    progress.stage("analysing", len(tracks))
    batch: list[TrackInput] = []
    started = False  # the first batch is one track, so the bar moves from the first file
    for item in _inputs(lib, tracks, taggers, opts, separator):
        if stop:
            break
        for stage, seconds in item.seconds.items():
            summary.stage_seconds[stage] += seconds
        if item.error or item.skip:
            report_not_analysed(lib, summary, item)
            progress.advance()
            continue
        batch.append(item)
        if not started or sum(p.units for p in batch) >= opts.batch_patches:
            started = True
            _run_batch(lib, batch, taggers, summary, gmap, separator)
            progress.advance(len(batch))
            batch = []
    if batch and not stop:
        _run_batch(lib, batch, taggers, summary, gmap, separator)
        progress.advance(len(batch))


def report_not_analysed(lib: Library, summary: Summary, item: TrackInput) -> None:
    """A track with no input: a skip (too short, silent) is told; an error is a failure."""
    path = item.track["path"]
    if item.error:
        record_failure(lib, summary, path, item.stage, item.error, item.error_type)
    else:
        summary.skips.append((path, item.skip or "skipped"))


def _run_batch(
    lib: Library,
    batch: list[TrackInput],
    taggers: Sequence[Tagger],
    summary: Summary,
    gmap: GenreMap,
    separator: Separator | None,
) -> None:
    """One forward pass per tagger over the batch, then each track's rows stored."""
    t0 = time.perf_counter()
    rows = predict_batch(batch, taggers, gmap)
    summary.stage_seconds["models"] += time.perf_counter() - t0
    run_sep = separator.name if separator else "none"
    store_batch(lib, [item.track for item in batch], rows, summary, run_sep)


def predict_batch(
    batch: list[TrackInput], taggers: Sequence[Tagger], gmap: GenreMap
) -> list[list[Prediction] | Exception]:
    """Each track's rows to store, or the exception that analysing it raised.

    The per-batch analysis step, shared by the local run and a Ray worker (mgctag/engine_ray.py).
    If the batch raises, each track is analysed again on its own, so only the track that breaks
    a model fails (one line, the exception class kept).
    """
    try:
        return list(_predict(batch, taggers, gmap))
    except Exception:
        return [_predict_alone(item, taggers, gmap) for item in batch]


def store_batch(
    lib: Library,
    tracks: Sequence[Track],
    rows: Sequence[list[Prediction] | Exception],
    summary: Summary,
    run_sep: str,
) -> None:
    """Store each track's rows (one transaction a track) or record its failure.

    Storing is not guarded: a database that cannot be written ends the run, as it should.
    """
    t1 = time.perf_counter()
    for track, predictions in zip(tracks, rows, strict=True):
        if isinstance(predictions, Exception):
            reason = f"cannot analyse: {reason_of(predictions)}"
            path, kind = track["path"], type(predictions).__name__
            record_failure(lib, summary, path, "model", reason, kind)
            continue
        for p in predictions:
            sep = p.separator or run_sep
            lib.save_analysis(
                track["id"],
                p.model,
                sep,
                p.tags,
                p.genres,
                p.embeddings,
                content=p.content,
                windows=p.windows,
                approximate=p.approximate,
            )
        summary.analysed += 1
    summary.stage_seconds["db"] += time.perf_counter() - t1


def _predict(
    batch: list[TrackInput], taggers: Sequence[Tagger], gmap: GenreMap
) -> list[list[Prediction]]:
    """Every tagger over the batch → each track's rows to store."""
    outputs = [tagger.analyse(batch) for tagger in taggers]
    return [
        [
            p
            for tagger, out in zip(taggers, outputs, strict=True)
            for p in tagger.predictions(out[i], gmap)
        ]
        for i in range(len(batch))
    ]


def _predict_alone(
    item: TrackInput, taggers: Sequence[Tagger], gmap: GenreMap
) -> list[Prediction] | Exception:
    """One track's rows, or the exception that analysing it raised."""
    try:
        return _predict([item], taggers, gmap)[0]
    except Exception as exc:  # this track breaks a model: its failure, not the run's
        return exc


# --- writing --------------------------------------------------------------------------------


def write_tags(
    lib: Library,
    tracks: Sequence[Track],
    opts: TagOptions,
    summary: Summary,
    progress: Progress,
    stop: StopFlag,
) -> None:
    """Apply the planned genre change to each file (or only report it under --dry-run).

    Each file is re-checked, planned and written under its mgctag lock, with the change journaled
    before the file is touched (mgctag/journal.py), so a kill at any moment or a second process
    never leaves a change that undo cannot see. Writes a killed run left pending are settled and its
    stale temporary copies removed first.
    """
    progress.stage("writing" if not opts.dry_run else "planning", len(tracks))
    if not opts.dry_run:
        _clean_stale_temps(tracks)
    writer = FileWriter(opts)
    failed = {path for path, _ in summary.failures}
    told = dict(summary.skips)  # skips analysis already listed (too short, silent)
    for track in tracks:
        if stop:
            break
        progress.advance()
        if track["path"] in failed:  # counted once, as failed, never also as skipped
            continue
        plan = plan_track(lib, track, opts)
        if isinstance(plan, Skip):
            if plan.content:  # so --json can list the audiobooks and field recordings
                summary.contents[track.path] = plan.content
            _skip(summary, told, track.path, plan.reason)
            continue
        t0 = time.perf_counter()
        if opts.dry_run:
            _write_one(lib, track, plan, opts, summary, writer)
            continue
        try:
            with journal.file_lock(lib, track.path, stop=stop):
                _write_one(lib, track, plan, opts, summary, writer)
        except journal.FileBusyError as exc:
            if stop:
                break
            record_failure(lib, summary, track.path, "write", exc.reason)
            continue
        except LibraryError:  # the journal is gone or full: no further write may go unjournaled
            raise
        except Exception as exc:  # a bug on one odd file must not end the run; its entry settles
            reason = f"internal error: {reason_of(exc)}"
            record_failure(lib, summary, track.path, "write", reason, type(exc).__name__)
            continue
        summary.stage_seconds["tag write"] += time.perf_counter() - t0


def _skip(summary: Summary, told: dict[str, str], path: str, reason: str) -> None:
    """Count a skipped track once and list it with its reason (once, even if analysis told it)."""
    summary.skipped += 1
    if path not in told:
        summary.skips.append((path, reason))
        told[path] = reason


def _write_one(
    lib: Library,
    track: Track,
    plan: Plan,
    opts: TagOptions,
    summary: Summary,
    writer: GenreWriter,
) -> None:
    """Plan and write one file (lock held): a file changed since the scan is left alone."""
    path = track.path
    row = lib.get_track(track.id) or track  # another mgctag may have written it meanwhile
    try:
        st = os.stat(path)
        current = tags.read_tags(path).genres
    except FileNotFoundError:
        record_failure(lib, summary, path, "read tags", "the file is gone since the scan")
        return
    except OSError as exc:
        record_failure(lib, summary, path, "read tags", exc.strerror or str(exc))
        return
    except tags.TagError as exc:
        record_failure(lib, summary, path, "read tags", exc.reason)
        return
    if (st.st_size, st.st_mtime_ns) != (row.size, row.mtime):
        reason = "the file changed since it was scanned; not written (run mgctag again)"
        record_failure(lib, summary, path, "write", reason)
        return
    new = plan_genres(current, plan.predicted, opts.mode, max_genres(opts))
    if new is None:
        summary.unchanged += 1
        return
    apply_change(writer, lib, summary, track.id, path, current, new, dry_run=opts.dry_run)


def _clean_stale_temps(tracks: Sequence[Track]) -> None:
    """Remove temporary copies a killed mgctag left beside these tracks (old enough to be dead)."""
    for folder in sorted({os.path.dirname(t["path"]) for t in tracks}):
        try:
            tags.cleanup_stale_temps(folder, recursive=False)
        except OSError:
            continue


# --- commands -------------------------------------------------------------------------------


def tag_paths(
    lib: Library,
    roots: Sequence[Path],
    opts: TagOptions,
    *,
    progress: Progress | None = None,
    stop: StopFlag | None = None,
    command: str = "tag",
    write: bool = True,
) -> Summary:
    """The main job: scan the roots, analyse new/changed tracks, write genre tags (if `write`).

    A device that is not there (--device cuda on a CPU-only machine) or a model that is not a
    tagger is a UsageError/ModelError before anything is scanned; the run is recorded as failed.
    """
    progress = progress or Progress()
    stop = stop if stop is not None else StopFlag()  # an unset StopFlag is falsy
    summary = Summary()
    opts = replace(opts, model=catalog.canonical(opts.model))  # results live under the real name
    roots = [Path(os.path.abspath(r)) for r in roots]
    args = {k: str(v) if isinstance(v, Path) else v for k, v in opts.__dict__.items()}
    run_args = {"roots": [str(r) for r in roots], **args}
    # A killed run's in-flight writes are settled (not in a dry run) before scan sees their files.
    with recorded_run(lib, command, run_args, summary, settle=not opts.dry_run) as run_id:
        summary.run_id = run_id
        progress.stage("loading models", 1)  # tens of seconds on a cold start: say so
        chain = tagger_chain(opts.model, resolve_device(opts.device))  # before any work
        progress.advance()
        if opts.engine == "ray":  # Ray missing or the cluster unreachable: before any work too
            from mgctag import engine_ray

            engine_ray.connect(opts.ray_address)
        t0 = time.perf_counter()
        report = scanner.scan(
            lib, roots, run_id=summary.run_id, follow_symlinks=opts.follow_symlinks
        )
        summary.links_skipped = report.links_skipped
        summary.stage_seconds["scan"] += time.perf_counter() - t0
        summary.scanned = report.total
        for path, reason in report.failures:
            summary.fail(str(path), reason)
        analyse_chain(lib, roots, chain, opts, summary, progress, stop)
        if write:
            tracks = list(lib.iter_tracks(roots))
            write_tags(lib, tracks, opts, summary, progress, stop)
        summary.interrupted = bool(stop)
    return summary


def tagger_chain(name: str, device: str) -> list[Tagger]:
    """The tagger and, before it, the taggers whose stored results it reads (`requires`)."""
    tagger = catalog.get_tagger(name, device)
    chain: list[Tagger] = []
    for required in tagger.requires:
        chain.extend(t for t in tagger_chain(required, device) if t.name not in _names(chain))
    return [*chain, tagger]


def _names(taggers: Sequence[Tagger]) -> set[str]:
    return {t.name for t in taggers}


def analyse_chain(
    lib: Library,
    roots: Sequence[Path],
    chain: Sequence[Tagger],
    opts: TagOptions,
    summary: Summary,
    progress: Progress,
    stop: StopFlag,
    *,
    force: bool = False,
) -> None:
    """Analyse what the chain's taggers have not seen yet, in order, one pass per group
    (with `force`, every OK track below the roots again: the beets plugin's `-f`).

    Taggers that read audio and do not depend on each other share one pass, so each track is
    decoded once for all of them; a tagger that reads another's stored stem embeddings makes that
    one's pass separate stems.
    """
    gmap = default_map()
    for i, group in enumerate(passes(chain)):
        if stop:
            return
        later = [t for g in passes(chain)[i + 1 :] for t in g]
        names = _names(group)
        needs_stems = any(names & set(t.requires) and t.inputs.needs_stems for t in later)
        audio = group[0].inputs.reads_audio
        separator = separator_for(group, opts, needs_stems) if audio else None
        sep_name = separator.name if separator else None
        todo = (
            list(lib.iter_tracks(roots))
            if force
            else _union(
                lib.tracks_needing_analysis(t.name, roots, separator=sep_name) for t in group
            )
        )
        if todo and not stop and audio and opts.engine == "ray":
            from mgctag import engine_ray

            engine_ray.analyse(
                lib, todo, group, opts, summary, progress, stop, separator, needs_stems
            )
        elif todo and not stop:
            analyse(lib, todo, group, opts, summary, progress, stop, gmap, separator)


def passes(chain: Sequence[Tagger]) -> list[list[Tagger]]:
    """The chain cut into analysis passes: consecutive audio taggers that do not read each
    other's results go together; a tagger reading stored results has a pass of its own."""
    groups: list[list[Tagger]] = []
    for tagger in chain:
        last = groups[-1] if groups else None
        if (
            last is not None
            and tagger.inputs.reads_audio
            and last[0].inputs.reads_audio
            and not _names(last) & set(tagger.requires)
        ):
            last.append(tagger)
        else:
            groups.append([tagger])
    return groups


def _union(track_lists: Iterable[list[Track]]) -> list[Track]:
    """Tracks any of the lists holds, once each; one list comes back as the library ordered it."""
    lists = list(track_lists)
    if len(lists) == 1:
        return lists[0]
    by_id = {t["id"]: t for tracks in lists for t in tracks}
    return sorted(by_id.values(), key=lambda t: t["path"])
