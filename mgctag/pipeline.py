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

from mgctag import config, journal, tags
from mgctag.audio import decode, features, segment
from mgctag.genres import (
    GenreMap,
    Mode,
    blend_scores,
    combine_models,
    default_map,
    mean_tag_probs,
    plan_genres,
)
from mgctag.genres import select_genres as _select
from mgctag.library import scan as scanner
from mgctag.library.db import Library
from mgctag.models.registry import ModelCard, ModelError, load_model
from mgctag.models.tagger import (
    BLENDS,
    DEFAULT_TAGGER,
    EMBEDDING_MODEL,
    STUDENT_INPUTS,
    MusicnnTagger,
    StudentTagger,
)
from mgctag.separate import STEMS, SeparationError, Separator, get_separator, resolve_device
from mgctag.separate.files import write_stems
from mgctag.train.heads import predict_proba

SAMPLE_RATE = 16000


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
    device: str = "auto"
    stems: str = "off"  # "on", "off" or "auto" (see resolve_stems)
    separator: str = "auto"
    separator_model: Path | None = None
    model: str = DEFAULT_TAGGER  # the bundled musicnn pair, or a user model (mgctag models list)
    keep_stems: Path | None = None  # write each analysed window's stems here (off by default)


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

    def counts(self) -> dict[str, int]:
        """The run's counts, as stored with the run and printed by --json."""
        names = ("scanned", "analysed", "tagged", "unchanged", "skipped", "failed")
        return {name: getattr(self, name) for name in names}

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
    patches: np.ndarray | None = None  # (n, 187, 96) of the mix
    stem_patches: dict[str, np.ndarray] = field(default_factory=dict)
    mfcc_patches: np.ndarray | None = None
    error: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)


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


def _patches(y: np.ndarray) -> np.ndarray:
    return features.patches(features.log_mel(y, SAMPLE_RATE))


def prepare(
    track: dict, opts: TagOptions, separator: Separator | None = None, mfcc: bool = False
) -> Prepared:
    """Decode one track's analysis windows (and separate them) into log-mel (or MFCC) patches."""
    t0 = time.perf_counter()
    path = track["path"]
    rate = separator.sample_rate if separator else SAMPLE_RATE
    try:
        duration = track.get("duration") or decode.probe(path).duration
        windows = segment.plan_windows(duration, n=opts.windows, length=opts.window_seconds)
        audio = decode.load_windows(path, rate, windows, mono=separator is None)
    except decode.DecodeError as exc:
        return Prepared(track, error=exc.reason)
    except OSError as exc:
        return Prepared(track, error=exc.strerror or str(exc))
    seconds = {"decode": time.perf_counter() - t0}
    mix = [decode.convert(y, rate, SAMPLE_RATE) for y in audio] if separator else audio
    chosen = segment.select_windows(windows, mix)
    if chosen and all(w.silent for w in chosen):
        return Prepared(track, error="silent: nothing audible to analyse", seconds=seconds)
    audible = {w.offset for w in chosen}
    kept = [i for i, (offset, _) in enumerate(windows) if offset in audible]
    mix_patches = [_patches(mix[i]) for i in kept]
    kept = [i for i, p in zip(kept, mix_patches, strict=True) if len(p)]
    if not kept:
        return Prepared(track, error="no audio to analyse")
    item = Prepared(track, np.concatenate([p for p in mix_patches if len(p)]), seconds=seconds)
    if mfcc:
        item.mfcc_patches = np.concatenate(
            [features.patches(features.mfcc(mix[i], SAMPLE_RATE)) for i in kept]
        )
    if separator:
        t1 = time.perf_counter()
        try:
            stems = separator.separate_batch([audio[i] for i in kept], rate)
        except SeparationError as exc:
            return Prepared(track, error=f"separation failed: {exc}")
        seconds["separation"] = time.perf_counter() - t1
        if opts.keep_stems:
            _keep_stems(Path(path), opts.keep_stems, stems, [windows[i] for i in kept], rate)
        item.stem_patches = {
            stem: np.concatenate(
                [_patches(decode.convert(s[stem], rate, SAMPLE_RATE)) for s in stems]
            )
            for stem in STEMS
        }
    seconds["features"] = time.perf_counter() - t0 - sum(seconds.values())
    return item


def _keep_stems(
    path: Path, out_dir: Path, stems: list[dict], windows: list[tuple[float, float]], rate: int
) -> None:
    """KEEP/<file name>/<offset>s/<stem>.flac for each analysed window, for a user who asked.

    The whole file name, extension included: song.flac and song.mp3 must not share a folder.
    """
    for window, window_stems in zip(windows, stems, strict=True):
        write_stems(window_stems, rate, out_dir / path.name / f"{window[0]:g}s")


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
    tagger: MusicnnTagger | StudentTagger,
    opts: TagOptions,
    summary: Summary,
    progress: Progress,
    stop: StopFlag,
    gmap: GenreMap,
    separator: Separator | None = None,
) -> None:
    """Analyse tracks in batches of patches across tracks; store each track's result."""
    progress.stage("analysing", len(tracks))
    mfcc = getattr(tagger, "input", None) == "mfcc"
    batch: list[Prepared] = []
    for item in _prefetch(tracks, lambda t: prepare(t, opts, separator, mfcc), depth=4):
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
            _run_batch(lib, batch, tagger, summary, gmap, separator)
            progress.advance(len(batch))
            batch = []
    if batch and not stop:
        _run_batch(lib, batch, tagger, summary, gmap, separator)
        progress.advance(len(batch))


def _run_batch(
    lib: Library,
    batch: list[Prepared],
    tagger: MusicnnTagger,
    summary: Summary,
    gmap: GenreMap,
    separator: Separator | None,
) -> None:
    if isinstance(tagger, StudentTagger):
        _run_student_batch(lib, batch, tagger, summary, separator)
        return
    t0 = time.perf_counter()
    patches = np.concatenate([p.patches for p in batch])
    outputs = tagger(patches)
    companion = tagger.companion(patches)[0] if tagger.companion else None
    stem_embs = {
        stem: _split(
            tagger.embed(np.concatenate([p.stem_patches[stem] for p in batch])), batch, stem
        )
        for stem in (STEMS if separator else ())
    }
    summary.stage_seconds["models"] += time.perf_counter() - t0
    t1 = time.perf_counter()
    start = 0
    for i, item in enumerate(batch):
        n = len(item.patches)
        per_model = {
            name: mean_tag_probs(probs[start : start + n], tagger.labels[name])
            for name, (probs, _) in outputs.items()
        }
        embeddings = {"mix": _unit_mean(outputs[EMBEDDING_MODEL][1][start : start + n])}
        embeddings.update({stem: _unit_mean(parts[i]) for stem, parts in stem_embs.items()})
        scores = combine_models(per_model, gmap)
        genres = sorted(scores.items(), key=lambda kv: -kv[1])
        sep_name = separator.name if separator else "none"
        lib.save_analysis(item.track["id"], tagger.name, sep_name, per_model, genres, embeddings)
        if companion is not None:
            student = companion[start : start + n].mean(axis=0)
            probs = dict(zip(tagger.companion.labels, student.tolist(), strict=True))
            blend = blend_scores(scores, probs, tagger.weight)
            ranked = sorted(blend.items(), key=lambda kv: -kv[1])
            lib.save_analysis(item.track["id"], tagger.blend, sep_name, {}, ranked, {})
        summary.analysed += 1
        start += n
    summary.stage_seconds["db"] += time.perf_counter() - t1


def _run_student_batch(
    lib: Library,
    batch: list[Prepared],
    student: StudentTagger,
    summary: Summary,
    separator: Separator | None,
) -> None:
    t0 = time.perf_counter()
    inputs = [student_input(p, student.input) for p in batch]
    probs, emb = student(np.concatenate(inputs))
    summary.stage_seconds["models"] += time.perf_counter() - t0
    bounds = np.cumsum([len(x) for x in inputs])[:-1]
    sep_name = separator.name if separator else "none"
    for item, p, e in zip(batch, np.split(probs, bounds), np.split(emb, bounds), strict=True):
        mean = p.mean(axis=0).tolist()
        genres = sorted(zip(student.labels, mean, strict=True), key=lambda kv: -kv[1])
        lib.save_analysis(
            item.track["id"], student.name, sep_name, {}, genres, {"mix": _unit_mean(e)}
        )
        summary.analysed += 1


def student_input(item: Prepared, kind: str) -> np.ndarray:
    """What a seed-paper network reads: mix log-mel, stacked stem log-mels (STEMS order), MFCCs."""
    if kind == "mfcc":
        return item.mfcc_patches
    if kind == "stems":
        return np.stack([item.stem_patches[s] for s in STEMS], axis=1)
    return item.patches


def _split(rows: np.ndarray, batch: list[Prepared], stem: str) -> list[np.ndarray]:
    """Rows of a batched forward pass, given back to their tracks."""
    bounds = np.cumsum([len(p.stem_patches[stem]) for p in batch])[:-1]
    return np.split(rows, bounds)


def _unit_mean(rows: np.ndarray) -> np.ndarray:
    """A track's embedding: the mean over its patches, L2-normalised (cosine = dot product)."""
    v = rows.mean(axis=0)
    return (v / (np.linalg.norm(v) or 1.0)).astype(np.float32)


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
    """Apply the planned genre change to each file (or only report it under --dry-run).

    Each file is re-checked, planned and written under its mgctag lock, with the change journaled
    before the file is touched (mgctag/journal.py), so a kill at any moment or a second process
    never leaves a change that undo cannot see. Writes a killed run left pending are settled and its
    stale temporary copies removed first.
    """
    progress.stage("writing" if not opts.dry_run else "planning", len(tracks))
    if not opts.dry_run:
        _clean_stale_temps(tracks)
    for track in tracks:
        if stop:
            break
        progress.advance()
        predicted = predicted_genres(lib, track["id"], model, opts)
        if not predicted:  # not analysed (failed), or no genre confident enough to write
            summary.skipped += 1
            continue
        t0 = time.perf_counter()
        if opts.dry_run:
            _write_one(lib, track, predicted, opts, summary)
            continue
        try:
            with journal.file_lock(lib, track["path"], stop=stop):
                _write_one(lib, track, predicted, opts, summary)
        except journal.FileBusyError as exc:
            if stop:
                break
            _record_failure(lib, summary, track["path"], "write", exc.reason)
            continue
        except Exception as exc:  # a bug on one odd file must not end the run; its entry settles
            _record_failure(lib, summary, track["path"], "write", f"internal error: {exc!r}")
            continue
        summary.stage_seconds["tag write"] += time.perf_counter() - t0


def _write_one(
    lib: Library, track: dict, predicted: list[str], opts: TagOptions, summary: Summary
) -> None:
    """Plan and write one file (lock held): a file changed since the scan is left alone."""
    path = track["path"]
    row = lib.get_track(track["id"]) or track  # another mgctag may have written it meanwhile
    try:
        st = os.stat(path)
        current = tags.read_tags(path).genres
    except FileNotFoundError:
        _record_failure(lib, summary, path, "read tags", "the file is gone since the scan")
        return
    except OSError as exc:
        _record_failure(lib, summary, path, "read tags", exc.strerror or str(exc))
        return
    except tags.TagError as exc:
        _record_failure(lib, summary, path, "read tags", exc.reason)
        return
    if (st.st_size, st.st_mtime_ns) != (row["size"], row["mtime"]):
        reason = "the file changed since it was scanned; not written (run mgctag again)"
        _record_failure(lib, summary, path, "write", reason)
        return
    new = plan_genres(current, predicted, opts.mode)
    if new is None:
        summary.unchanged += 1
        return
    if opts.dry_run:
        summary.changes.append(Change(path, current, new, written=False))
        return
    try:
        journal.journaled_write(
            lib,
            summary.run_id,
            track["id"],
            path,
            current,
            new,
            id3v23=opts.id3v23,
            keep_mtime=opts.keep_mtime,
        )
    except tags.TagWriteError as exc:
        _record_failure(lib, summary, path, "write", exc.reason)
        return
    summary.changes.append(Change(path, current, new, written=True))
    summary.tagged += 1


def _clean_stale_temps(tracks: Sequence[dict]) -> None:
    """Remove temporary copies a killed mgctag left beside these tracks (old enough to be dead)."""
    for folder in sorted({os.path.dirname(t["path"]) for t in tracks}):
        try:
            tags.cleanup_stale_temps(folder, recursive=False)
        except OSError:
            continue


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
    write: bool = True,
) -> Summary:
    """The main job: scan the roots, analyse new/changed tracks, write genre tags (if `write`)."""
    progress = progress or Progress()
    stop = stop if stop is not None else StopFlag()  # an unset StopFlag is falsy
    summary = Summary()
    roots = [Path(os.path.abspath(r)) for r in roots]
    args = {k: str(v) if isinstance(v, Path) else v for k, v in opts.__dict__.items()}
    summary.run_id = lib.start_run(command, {"roots": [str(r) for r in roots], **args})
    try:
        if not opts.dry_run:  # a killed run's in-flight writes, before scan sees their files
            journal.settle_pending(lib)
        t0 = time.perf_counter()
        report = scanner.scan(lib, roots, run_id=summary.run_id)
        summary.stage_seconds["scan"] += time.perf_counter() - t0
        summary.scanned = report.total
        for path, reason in report.failures:
            summary.fail(str(path), reason)
        blend = opts.model if opts.model in BLENDS else None
        own_card = opts.model != DEFAULT_TAGGER and blend is None
        card = load_model(opts.model)[1] if own_card else None
        kind = card.preprocessing.get("input", "embeddings") if card else "embeddings"
        if card is not None and kind not in STUDENT_INPUTS and card.arch != "genre_head":
            raise ModelError(f"{opts.model}: not a genre model; `mgctag models list` shows them")
        if kind in STUDENT_INPUTS:
            analyse_with_student(lib, roots, opts, card, summary, progress, stop)
        else:
            separator = choose_separator(opts, needs_stems=_needs_stems(card))
            todo = lib.tracks_needing_analysis(
                blend or DEFAULT_TAGGER, roots, separator=separator.name if separator else None
            )
            if todo and not stop:
                tagger = MusicnnTagger(resolve_device(opts.device), blend=blend)
                analyse(lib, todo, tagger, opts, summary, progress, stop, default_map(), separator)
            if card is not None and not stop:
                todo = lib.tracks_needing_analysis(opts.model, roots)
                apply_head(lib, todo, opts.model, summary)
        if write:
            tracks = list(lib.iter_tracks(roots))
            write_tags(lib, tracks, opts.model, opts, summary, progress, stop)
    except KeyboardInterrupt:  # a second Ctrl-C: the journal rolls the current file back
        lib.finish_run(summary.run_id, "interrupted", summary.counts())
        raise
    except BaseException:
        lib.finish_run(summary.run_id, "failed", summary.counts())  # ended by an exception
        raise
    summary.interrupted = bool(stop)
    lib.finish_run(summary.run_id, run_status(summary), summary.counts())
    return summary


def run_status(summary: Summary) -> str:
    """ok, partial (some files failed, others were done), failed (nothing done), interrupted."""
    if summary.interrupted:
        return "interrupted"
    if not summary.failed:
        return "ok"
    return "partial" if summary.scanned > summary.failed else "failed"


def _needs_stems(card: ModelCard | None) -> bool:
    return card is not None and any(s != "mix" for s in card.preprocessing.get("stems", ["mix"]))


def analyse_with_student(
    lib: Library,
    roots: Sequence[Path],
    opts: TagOptions,
    card: ModelCard,
    summary: Summary,
    progress: Progress,
    stop: StopFlag,
) -> None:
    """Analyse with a bundled seed-paper network, on the input its card names."""
    prep = card.preprocessing
    separator = None
    if prep["input"] == "stems":
        separator = get_separator(prep.get("separator", "cascade"), opts.device)
    todo = lib.tracks_needing_analysis(
        card.name, roots, separator=separator.name if separator else None
    )
    if todo and not stop:
        student = StudentTagger(card.name, resolve_device(opts.device))
        analyse(lib, todo, student, opts, summary, progress, stop, default_map(), separator)


def apply_head(lib: Library, tracks: Sequence[dict], name: str, summary: Summary) -> None:
    """Genres from a user-trained head over each track's stored embeddings (no audio needed)."""
    head, card = load_model(name)
    prep = card.preprocessing
    stems = prep.get("stems", ["mix"])
    for track in tracks:
        emb = lib.get_embeddings(track["id"], prep.get("embedding_model", DEFAULT_TAGGER))
        if any(s not in emb for s in stems):
            have = ", ".join(sorted(emb)) or "none"
            _record_failure(
                lib, summary, track["path"], "model", f"{name} needs {stems}; have {have}"
            )
            continue
        x = np.concatenate([emb[s] for s in stems])[None, :]
        probs = predict_proba(head, x)[0]
        genres = sorted(zip(card.labels, probs.tolist(), strict=True), key=lambda kv: -kv[1])
        lib.save_analysis(track["id"], name, prep.get("separator", "none"), {}, genres, {})
