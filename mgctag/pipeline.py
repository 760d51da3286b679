"""Orchestration: scan → analyse → store → write. The only module that wires the stages together.

It knows taggers only through the `Tagger` protocol (mgctag/models/protocol.py). The analysis
stage is mgctag/analysis.py (or the Ray engine, mgctag/engine_ray.py), the writing stage
mgctag/writes/tagging.py; every track's result is stored in one transaction before its file is
touched, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

from mgctag.analysis import analyse, choose_separator, separator_for
from mgctag.genres import default_map
from mgctag.library import scan as scanner
from mgctag.library.db import Library
from mgctag.library.rows import Track
from mgctag.models import catalog
from mgctag.models.protocol import Tagger
from mgctag.options import (
    DEFAULT_TAGGER,
    Change,
    Progress,
    StopFlag,
    Summary,
    TagOptions,
)
from mgctag.separate import resolve_device
from mgctag.writes.run import recorded_run
from mgctag.writes.tagging import write_tags

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
        refresh_indexes(lib, progress)
        if write:
            tracks = list(lib.iter_tracks(roots))
            write_tags(lib, tracks, opts, summary, progress, stop)
        summary.interrupted = bool(stop)
    return summary


def refresh_indexes(lib: Library, progress: Progress) -> None:
    """Bring the library's similarity indexes (those that exist) up to date with what this run
    analysed or found removed, so the next `similar` does not wait (search/ann.py)."""
    from mgctag.search import ann

    ann.refresh(lib, say=progress.message)


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
    by_id = {t.id: t for tracks in lists for t in tracks}
    return sorted(by_id.values(), key=lambda t: t.path)
