"""`mgctag tag --engine ray`: decoding, features and the models run in Ray actors.

Why Ray and not a scheduler of our own: catalogue users already run a cluster, and Ray gives
actor pools that keep a model loaded, GPU placement (`num_gpus`) and object transfer for free.
The split is deliberate: the driver (pipeline.tag_paths) still scans, plans, stores and writes
exactly as a local run does (journal, locks, atomic writes, undo), so a cluster run leaves the
same database and tags. Each actor loads the pass's taggers once and runs the local pipeline's
own steps on a chunk of tracks (`inputs.prepare`, then `pipeline.predict_batch`); only track
dicts go out and predictions (tags, genres, embeddings) come back, and each chunk's results are
stored the moment they arrive, so an interrupted cluster run resumes like a local one.

Files must be readable by every worker at the same path (shared storage); a worker that cannot
read one gives that file's one-line failure, naming the worker's host.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from mgctag.errors import UsageError, reason_of
from mgctag.options import Progress, StopFlag, Summary, TagOptions

INSTALL_HINT = 'pip install "mgctag[ray]"'
CHUNK_TRACKS = 8  # tracks per actor call: ~ one model batch (60 patches) of 3-window tracks
IN_FLIGHT = 2  # chunks queued per actor, so it never waits on the driver between chunks
POLL_SECONDS = 0.5  # how often the driver looks at Ctrl-C while results are on their way


@dataclass
class Outcome:
    """What one worker sends back for one track: its rows, a skip or a failure, and timings.

    No audio or features travel back: a track's rows are a few KB (tags, genres, embeddings).
    """

    track: dict
    rows: list | Exception | None = None  # list[Prediction]; an Exception fails the track
    error: str | None = None
    error_type: str | None = None
    stage: str = "decode"
    skip: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def _ray() -> Any:
    """The ray module, or the one line that says how to get it (exit 2)."""
    try:
        import ray
    except ImportError:
        raise UsageError(
            f"--engine ray needs Ray, which is not installed: {INSTALL_HINT}"
        ) from None
    return ray


def connect(address: str | None) -> None:
    """Join the cluster at `address` ("auto", HOST:PORT), or start a local Ray (None).

    Reuses a connection this process already has (a test's cluster, a second pass). A Ray this
    call started stops when the process exits (Ray's own exit hook).
    """
    ray = _ray()
    if ray.is_initialized():
        return
    _check_reachable(address)
    _keep_ray_off_stdout()
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,  # workers' decoder noise stays in the Ray logs
            logging_level="ERROR",
            configure_logging=True,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or "a local Ray"
        raise UsageError(f"--engine ray: cannot start or reach {where}: {reason_of(exc)}") from None


#: Ray's driver threads that print cluster news ("(raylet) A worker died ...") to sys.stdout,
#: and the prefix of such news (Ray also flushes it from the main thread when it shuts down).
RAY_PRINTERS = ("ray_listen_error_messages", "ray_print_logs")
RAY_NEWS = re.compile(r"(\x1b\[[0-9;]*m)?\((raylet|autoscaler|pid=\d+|[\w.]+ pid=\d+)\)")


class _RayQuiet:
    """sys.stdout as before, except what Ray's own driver threads print: that goes to the
    "ray" logger (shown with -v), so `--json` output stays one JSON document."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        if threading.current_thread().name in RAY_PRINTERS or RAY_NEWS.match(text):
            if text.strip():
                logging.getLogger("ray").info("%s", text.rstrip())
            return len(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def _keep_ray_off_stdout() -> None:
    if not isinstance(sys.stdout, _RayQuiet):
        sys.stdout = _RayQuiet(sys.stdout)


#: What a client sends first on HTTP/2 (RFC 9113 3.4): the preface and an empty SETTINGS frame.
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
SETTINGS_FRAME = 4


def _check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """A HOST:PORT where no Ray answers is one line now; Ray itself would retry for minutes.

    Ray's GCS and Ray Client both speak gRPC, and every HTTP/2 server's first frame is SETTINGS:
    a port that accepts the connection but answers anything else (or nothing) is not Ray.
    """
    if not address or address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--ray-address {address}: use auto or HOST:PORT")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            first = _first_frame_header(sock)
    except OSError as exc:
        raise UsageError(f"--ray-address {address}: no Ray there ({reason_of(exc)})") from None
    if len(first) < 9 or first[3] != SETTINGS_FRAME:
        raise UsageError(
            f"--ray-address {address}: something answers there, but not Ray "
            f"(no gRPC reply within {timeout:g} s)"
        )


def _first_frame_header(sock: socket.socket) -> bytes:
    """The 9-byte header of the server's first HTTP/2 frame; fewer bytes if it gave none."""
    sock.sendall(HTTP2_PREFACE)
    head = b""
    try:
        while len(head) < 9 and (chunk := sock.recv(9 - len(head))):
            head += chunk
    except TimeoutError:
        pass
    return head


def plan_workers(requested: int | None, resources: dict[str, float]) -> tuple[int, float]:
    """How many actors, and the GPUs each asks for (0 on a CPU-only cluster).

    By default one actor per GPU when the cluster has GPUs (the models are small; one process
    fills a GPU), else one per CPU. More actors than GPUs share them (fractional `num_gpus`).
    """
    gpus = float(resources.get("GPU", 0))
    cpus = max(1, int(resources.get("CPU", 1)))
    workers = requested or (int(gpus) if gpus >= 1 else cpus)
    per_gpu = min(1.0, gpus / workers) if gpus else 0.0
    return max(1, workers), per_gpu


def chunks(tracks: Sequence[dict], size: int) -> Iterator[list[dict]]:
    for start in range(0, len(tracks), size):
        yield list(tracks[start : start + size])


class AnalysisWorker:
    """One Ray actor: the pass's taggers loaded once, then chunk after chunk of tracks."""

    def __init__(self, names: list[str], opts: TagOptions, needs_stems: bool) -> None:
        import torch

        from mgctag.audio.inputs import InputPlan
        from mgctag.genres import default_map
        from mgctag.models import catalog
        from mgctag.pipeline import separator_for

        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
        device = opts.device
        if device == "auto":  # the GPU Ray gave this actor, if any
            import ray

            device = "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"
        self.taggers = [catalog.get_tagger(name, device) for name in names]
        self.separator = separator_for(self.taggers, opts, needs_stems)
        specs = tuple(t.inputs for t in self.taggers)
        self.plan = InputPlan(specs, opts.windows, opts.window_seconds, opts.keep_stems)
        self.batch_patches = opts.batch_patches
        self.gmap = default_map()
        self.host = socket.gethostname()

    def analyse(self, tracks: list[dict]) -> list[Outcome]:
        """Decode (in a thread, as locally) and analyse these tracks; every track an Outcome."""
        from mgctag.audio.inputs import TrackInput, prepare
        from mgctag.pipeline import guarded_work, prefetch

        outcomes: list[Outcome] = []
        batch: list[TrackInput] = []
        work = guarded_work(lambda t: self._unreadable(t) or prepare(t, self.plan, self.separator))
        for item in prefetch(tracks, work, depth=4):
            if item.error or item.skip:
                outcomes.append(
                    Outcome(
                        item.track,
                        error=item.error,
                        error_type=item.error_type,
                        stage=item.stage,
                        skip=item.skip,
                        seconds=item.seconds,
                    )
                )
                continue
            batch.append(item)
            if sum(p.units for p in batch) >= self.batch_patches:
                outcomes.extend(self._predict(batch))
                batch = []
        if batch:
            outcomes.extend(self._predict(batch))
        return outcomes

    def _unreadable(self, track: dict) -> Any:
        """A failure for a file this worker cannot open (None: go on and decode it)."""
        from mgctag.audio.inputs import TrackInput

        if os.access(track["path"], os.R_OK):
            return None
        reason = (
            f"not readable on Ray worker {self.host} (workers need the files at the same path, "
            "on storage they share)"
        )
        return TrackInput(track, error=reason)

    def _predict(self, batch: list) -> list[Outcome]:
        from mgctag.pipeline import predict_batch

        t0 = time.perf_counter()
        rows = predict_batch(batch, self.taggers, self.gmap)
        per_track = (time.perf_counter() - t0) / len(batch)
        return [
            Outcome(
                item.track,
                rows=_portable(r),
                seconds={**item.seconds, "models": per_track},
            )
            for item, r in zip(batch, rows, strict=True)
        ]


def _portable(rows: Any) -> Any:
    """An exception that cannot cross the wire becomes a RuntimeError with its one line."""
    if not isinstance(rows, Exception):
        return rows
    try:
        pickle.dumps(rows)
    except Exception:
        return RuntimeError(f"{type(rows).__name__}: {reason_of(rows)}")
    return rows


def analyse(
    lib: Any,
    tracks: Sequence[dict],
    taggers: Sequence[Any],
    opts: TagOptions,
    summary: Summary,
    progress: Progress,
    stop: StopFlag,
    separator: Any,
    needs_stems: bool = False,
) -> None:
    """pipeline.analyse on a Ray cluster: chunks out to an actor pool, results stored on arrival.

    On Ctrl-C the driver stops sending, drops what is still in flight (nothing of it is stored)
    and ends the actors: every stored track is complete, the rest is analysed by the next run.
    """
    ray = _ray()
    from mgctag.pipeline import report_not_analysed, store_batch

    n, per_gpu = plan_workers(opts.workers, ray.cluster_resources())
    progress.stage("analysing", len(tracks))
    remote = ray.remote(AnalysisWorker).options(
        num_cpus=1, num_gpus=per_gpu, max_restarts=1, max_task_retries=1
    )
    names = [t.name for t in taggers]
    actors = [remote.remote(names, opts, needs_stems) for _ in range(n)]
    run_sep = separator.name if separator else "none"
    todo = chunks(tracks, CHUNK_TRACKS)
    pending: dict[Any, tuple[Any, list[dict]]] = {}  # result ref -> (actor, its tracks)
    try:
        for actor in actors * IN_FLIGHT:
            _submit(actor, todo, pending)
        while pending and not stop:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_SECONDS)
            for ref in done:
                actor, sent = pending.pop(ref)
                for out in _results(ray, ref, sent):
                    _store(lib, out, summary, run_sep, store_batch, report_not_analysed)
                    progress.advance()
                if not stop:
                    _submit(actor, todo, pending)
    finally:
        for actor in actors:
            ray.kill(actor)


def _submit(actor: Any, todo: Iterator[list[dict]], pending: dict) -> None:
    """Send the actor the next chunk, if there is one."""
    sent = next(todo, None)
    if sent:
        pending[actor.analyse.remote(sent)] = (actor, sent)


def _results(ray: Any, ref: Any, sent: list[dict]) -> list[Outcome]:
    """A chunk's outcomes; a worker lost or broken fails its tracks, not the run."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as exc:
        reason = f"cannot analyse: the Ray worker failed: {reason_of(exc).splitlines()[0]}"
        return [
            Outcome(t, error=reason, error_type=type(exc).__name__, stage="model") for t in sent
        ]


def _store(
    lib: Any, out: Outcome, summary: Summary, run_sep: str, store_batch, not_analysed
) -> None:
    """One track's outcome into the library, exactly as a local run stores it."""
    from mgctag.audio.inputs import TrackInput

    for stage, seconds in out.seconds.items():
        summary.stage_seconds[stage] += seconds
    if out.rows is None:
        item = TrackInput(
            out.track, error=out.error, error_type=out.error_type, skip=out.skip, stage=out.stage
        )
        not_analysed(lib, summary, item)
        return
    store_batch(lib, [out.track], [out.rows], summary, run_sep)
