"""Orchestration: scan → analyse → store → write. The only module that wires the stages together.

Decoding and feature extraction run in a worker thread (soundfile, PyAV and numpy release the GIL)
so the models are never waiting on a decoder; patches from several tracks are batched into one
forward pass; every track's result is stored in one transaction before its file is touched, so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mgctag import tags
from mgctag.audio import decode, features, segment
from mgctag.genres import GenreMap, Mode, combine_models, default_map, mean_tag_probs, plan_genres
from mgctag.genres import select_genres as _select
from mgctag.library import scan as scanner
from mgctag.library.db import Library
from mgctag.models.registry import load_model

SAMPLE_RATE = 16000
DEFAULT_TAGGER = "musicnn"
# The bundled tagger: both musicnn ports on the mix; MSD's penultimate layer is the track embedding.
MUSICNN_MODELS = ("MSD_musicnn", "MTT_musicnn")
EMBEDDING_MODEL = "MSD_musicnn"


@dataclass
class TagOptions:
    mode: Mode = "fill"
    max_genres: int = 3
    min_confidence: float = 0.15
    dry_run: bool = False
    id3v23: bool = False
    keep_mtime: bool = False
    windows: int = 3
    window_seconds: float = 10.0
    batch_patches: int = 60
    device: str = "cpu"


@dataclass
class Change:
    path: str
    old: list[str]
    new: list[str]
    written: bool


@dataclass
class Summary:
    run_id: int | None = None
    scanned: int = 0
    analysed: int = 0
    tagged: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: int = 0
    interrupted: bool = False
    changes: list[Change] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def fail(self, path: str, reason: str) -> None:
        self.failed += 1
        self.failures.append((path, reason))


class Progress:
    """What the pipeline tells the outside world; the CLI renders it, tests ignore it."""

    def stage(self, name: str, total: int) -> None: ...

    def advance(self, n: int = 1) -> None: ...

    def message(self, text: str) -> None: ...


class StopFlag:
    """Set by Ctrl-C; work loops check it between files so nothing stops half-way through one."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def __bool__(self) -> bool:
        return self._event.is_set()


# --- analysis -------------------------------------------------------------------------------


@dataclass
class Prepared:
    """One track's model input, made by the decode worker."""

    track: dict
    patches: np.ndarray | None = None  # (n, 187, 96)
    error: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)


class MusicnnTagger:
    """The bundled tagger: MSD_musicnn + MTT_musicnn, batched, on one device."""

    name = DEFAULT_TAGGER

    def __init__(self, device: str = "cpu") -> None:
        self.models = {}
        self.labels = {}
        for model_name in MUSICNN_MODELS:
            module, card = load_model(model_name, device=device)
            self.models[model_name] = module
            self.labels[model_name] = list(card.labels)
        self.device = device

    @torch.inference_mode()
    def __call__(self, patches: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """(n, 187, 96) log-mel patches → per model: tag probabilities (n, 50), embeddings (n, d)."""
        x = torch.from_numpy(patches).to(self.device)
        out = {}
        for model_name, module in self.models.items():
            logits, emb = module(x)
            out[model_name] = (torch.sigmoid(logits).cpu().numpy(), emb.cpu().numpy())
        return out


def prepare(track: dict, opts: TagOptions) -> Prepared:
    """Decode the analysis windows of one track and turn them into musicnn patches."""
    t0 = time.perf_counter()
    path = track["path"]
    try:
        duration = track.get("duration") or decode.probe(path).duration
        windows = segment.plan_windows(duration, n=opts.windows, length=opts.window_seconds)
        audio = decode.load_windows(path, SAMPLE_RATE, windows)
    except decode.DecodeError as exc:
        return Prepared(track, error=exc.reason)
    except OSError as exc:
        return Prepared(track, error=exc.strerror or str(exc))
    t1 = time.perf_counter()
    kept = segment.select_windows(windows, audio)
    mels = [features.patches(features.log_mel(w.audio, SAMPLE_RATE)) for w in kept]
    mels = [m for m in mels if len(m)]
    if not mels:
        return Prepared(track, error="no audio to analyse")
    t2 = time.perf_counter()
    return Prepared(track, np.concatenate(mels), seconds={"decode": t1 - t0, "features": t2 - t1})


def _prefetch(
    items: Iterable[dict], work: Callable[[dict], Prepared], depth: int
) -> Iterator[Prepared]:
    """Run `work` over items in a background thread, at most `depth` ahead of the consumer."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mgctag-decode") as pool:
        queue: list[Future[Prepared]] = []
        for item in items:
            queue.append(pool.submit(work, item))
            if len(queue) > depth:
                yield queue.pop(0).result()
        for fut in queue:
            yield fut.result()


def analyse(
    lib: Library,
    tracks: Sequence[dict],
    tagger: MusicnnTagger,
    opts: TagOptions,
    summary: Summary,
    progress: Progress,
    stop: StopFlag,
    gmap: GenreMap,
) -> None:
    """Analyse tracks in batches of patches across tracks; store each track's result."""
    progress.stage("analysing", len(tracks))
    batch: list[Prepared] = []
    for item in _prefetch(tracks, lambda t: prepare(t, opts), depth=4):
        if stop:
            break
        for stage, seconds in item.seconds.items():
            summary.stage_seconds[stage] += seconds
        if item.error:
            _record_failure(lib, summary, item.track["path"], "decode", item.error)
            progress.advance()
            continue
        batch.append(item)
        if sum(len(p.patches) for p in batch) >= opts.batch_patches:
            _run_batch(lib, batch, tagger, summary, gmap)
            progress.advance(len(batch))
            batch = []
    if batch and not stop:
        _run_batch(lib, batch, tagger, summary, gmap)
        progress.advance(len(batch))


def _run_batch(
    lib: Library, batch: list[Prepared], tagger: MusicnnTagger, summary: Summary, gmap: GenreMap
) -> None:
    t0 = time.perf_counter()
    outputs = tagger(np.concatenate([p.patches for p in batch]))
    summary.stage_seconds["models"] += time.perf_counter() - t0
    t1 = time.perf_counter()
    start = 0
    for item in batch:
        n = len(item.patches)
        per_model = {
            name: mean_tag_probs(probs[start : start + n], tagger.labels[name])
            for name, (probs, _) in outputs.items()
        }
        emb = outputs[EMBEDDING_MODEL][1][start : start + n].mean(axis=0)
        emb = (emb / (np.linalg.norm(emb) or 1.0)).astype(np.float32)
        scores = combine_models(per_model, gmap)
        genres = sorted(scores.items(), key=lambda kv: -kv[1])
        lib.save_analysis(item.track["id"], tagger.name, "none", per_model, genres, {"mix": emb})
        summary.analysed += 1
        start += n
    summary.stage_seconds["db"] += time.perf_counter() - t1


# --- writing --------------------------------------------------------------------------------


def predicted_genres(lib: Library, track_id: int, model: str, opts: TagOptions) -> list[str] | None:
    """The genres to write for a track from its stored analysis (None when never analysed)."""
    pred = lib.get_predictions(track_id).get(model)
    if pred is None:
        return None
    scores = {g: p for g, p in pred["genres"]}
    return [
        g
        for g, _ in _select(scores, max_genres=opts.max_genres, min_confidence=opts.min_confidence)
    ]


def write_tags(
    lib: Library,
    tracks: Sequence[dict],
    model: str,
    opts: TagOptions,
    summary: Summary,
    progress: Progress,
    stop: StopFlag,
) -> None:
    """Apply the planned genre change to each file (or only report it under --dry-run)."""
    progress.stage("writing" if not opts.dry_run else "planning", len(tracks))
    for track in tracks:
        if stop:
            break
        progress.advance()
        predicted = predicted_genres(lib, track["id"], model, opts)
        if predicted is None:
            summary.skipped += 1
            continue
        path = track["path"]
        t0 = time.perf_counter()
        try:
            current = tags.read_tags(path).genres
        except tags.TagError as exc:
            _record_failure(lib, summary, path, "read tags", exc.reason)
            continue
        new = plan_genres(current, predicted, opts.mode)
        if new is None:
            summary.unchanged += 1
            continue
        if opts.dry_run:
            summary.changes.append(Change(path, current, new, written=False))
            continue
        try:
            tags.write_genres(path, new, id3v23=opts.id3v23, keep_mtime=opts.keep_mtime)
        except tags.TagWriteError as exc:
            _record_failure(lib, summary, path, "write", exc.reason)
            continue
        st = os.stat(path)
        lib.record_write(
            summary.run_id, track["id"], path, current, new, st.st_size, st.st_mtime_ns
        )
        summary.changes.append(Change(path, current, new, written=True))
        summary.tagged += 1
        summary.stage_seconds["tag write"] += time.perf_counter() - t0


def _record_failure(lib: Library, summary: Summary, path: str, stage: str, reason: str) -> None:
    reason = " ".join(str(reason).split()) or "unknown error"
    summary.fail(path, reason)
    lib.record_failure(summary.run_id, path, stage, reason)


# --- commands -------------------------------------------------------------------------------


def tag_paths(
    lib: Library,
    roots: Sequence[Path],
    opts: TagOptions,
    *,
    progress: Progress | None = None,
    stop: StopFlag | None = None,
    command: str = "tag",
) -> Summary:
    """The main job: scan the roots, analyse new/changed tracks, write genre tags."""
    progress = progress or Progress()
    stop = stop or StopFlag()
    summary = Summary()
    roots = [Path(os.path.abspath(r)) for r in roots]
    summary.run_id = lib.start_run(command, {"roots": [str(r) for r in roots], **opts.__dict__})
    try:
        t0 = time.perf_counter()
        report = scanner.scan(lib, roots, run_id=summary.run_id)
        summary.stage_seconds["scan"] += time.perf_counter() - t0
        summary.scanned = report.total if hasattr(report, "total") else 0
        for path, reason in report.failures:
            summary.fail(str(path), reason)
        tagger_name = DEFAULT_TAGGER
        todo = lib.tracks_needing_analysis(tagger_name, roots)
        if todo and not stop:
            tagger = MusicnnTagger(opts.device)
            analyse(lib, todo, tagger, opts, summary, progress, stop, default_map())
        tracks = list(lib.iter_tracks(roots))
        write_tags(lib, tracks, tagger_name, opts, summary, progress, stop)
    finally:
        summary.interrupted = bool(stop)
        status = "interrupted" if stop else ("failed" if summary.failed else "ok")
        lib.finish_run(summary.run_id, status, _counts(summary))
    return summary


def _counts(s: Summary) -> dict[str, int]:
    return {
        "scanned": s.scanned,
        "analysed": s.analysed,
        "tagged": s.tagged,
        "unchanged": s.unchanged,
        "skipped": s.skipped,
        "failed": s.failed,
    }
