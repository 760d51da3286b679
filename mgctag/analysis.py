"""Analysing tracks: the decode worker, batching units across tracks into one forward pass, and
storing each track's predictions in one transaction. Used by the pipeline on this machine and by
the Ray engine's workers and driver (mgctag/engine_ray.py) alike.

Taggers are known only through the `Tagger` protocol (mgctag/models/protocol.py). Decoding and
feature extraction run in a worker thread (soundfile, PyAV and numpy release the GIL) so the models
are never waiting on a decoder; each track is decoded once, at the highest rate any active tagger
needs. One odd track never ends a run: whatever goes wrong with it becomes its one-line failure.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from mgctag import config
from mgctag.errors import UsageError, reason_of
from mgctag.genres import GenreMap
from mgctag.library.db import Library
from mgctag.library.rows import Track
from mgctag.models.inputs import InputPlan, TrackInput, prepare
from mgctag.models.protocol import Prediction, Tagger
from mgctag.options import (
    Progress,
    StopFlag,
    Summary,
    TagOptions,
)
from mgctag.separate import SeparationError, Separator, get_separator
from mgctag.writes.run import record_failure


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
    emb = lib.get_embeddings(track.id, spec.source)
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
    path = item.track.path
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
            path, kind = track.path, type(predictions).__name__
            record_failure(lib, summary, path, "model", reason, kind)
            continue
        for p in predictions:
            sep = p.separator or run_sep
            lib.save_analysis(
                track.id,
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
