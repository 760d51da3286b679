"""`mgctag tag --engine ray`: decoding, features and the models run in Ray actors.

Why Ray and not a scheduler of our own: catalogue users already run a cluster, and Ray gives
actor pools that keep a model loaded, GPU placement (`num_gpus`) and object transfer for free.
The split is deliberate: the driver (pipeline.tag_paths) still scans, plans, stores and writes
exactly as a local run does (journal, locks, atomic writes, undo), so a cluster run leaves the
same database and tags. Each actor loads the pass's taggers once and runs the local pipeline's
own steps on a chunk of tracks (`inputs.prepare`, then `analysis.predict_batch`); only track
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
from mgctag.library.rows import Track
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

    track: Track
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


#: The call every Ray driver makes first at a cluster address: the GCS's GetClusterId.
GCS_PROBE = "/ray.rpc.NodeInfoGcsService/GetClusterId"
#: gRPC statuses only a Ray GCS gives to it: OK, or a wish for credentials (token auth).
GCS_ANSWERS = (b"0", b"7", b"16")


def _check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """A HOST:PORT where no Ray answers is one line now; Ray itself would retry for minutes.

    A cluster address must answer GetClusterId as a Ray GCS does; a Ray Client address (ray://)
    must at least answer as a gRPC server. A port that is closed, silent, or answers as
    something else (an HTTP/1 server, a proxy's 404, another gRPC service) is not Ray.
    """
    if not address or address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--ray-address {address}: use auto or HOST:PORT")
    try:
        answer = _grpc_call(host, int(port), GCS_PROBE, timeout)
    except ImportError:  # h2 comes with mgctag[ray]; without it, only the port is checked
        _tcp_check(address, host, int(port), timeout)
        return
    except OSError as exc:
        raise UsageError(f"--ray-address {address}: no Ray there ({reason_of(exc)})") from None
    grpc_status = answer.get(b"grpc-status")
    if answer.get(b":status") != b"200" or grpc_status is None:
        raise UsageError(f"--ray-address {address}: something answers there, but not Ray")
    if not address.startswith("ray://") and grpc_status not in GCS_ANSWERS:
        raise UsageError(
            f"--ray-address {address}: a gRPC server answers there, but not Ray's GCS "
            f"(gRPC status {grpc_status.decode()})"
        )


def _tcp_check(address: str, host: str, port: int, timeout: float) -> None:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise UsageError(f"--ray-address {address}: no Ray there ({reason_of(exc)})") from None


def _grpc_call(host: str, port: int, path: str, timeout: float) -> dict[bytes, bytes]:
    """One empty unary gRPC call over plain HTTP/2: the response's headers and trailers.

    Empty when the server closes or resets without answering; OSError (timeout included) when
    it cannot be reached or stays silent.
    """
    import h2.config
    import h2.connection
    import h2.events
    import h2.exceptions

    conn = h2.connection.H2Connection(h2.config.H2Configuration(header_encoding=None))
    answer: dict[bytes, bytes] = {}
    with socket.create_connection((host, port), timeout=timeout) as sock:
        conn.initiate_connection()
        stream = conn.get_next_available_stream_id()
        conn.send_headers(stream, _grpc_request_headers(host, port, path))
        conn.send_data(stream, bytes(5), end_stream=True)  # one empty message, uncompressed
        sock.sendall(conn.data_to_send())
        done = (h2.events.StreamEnded, h2.events.StreamReset, h2.events.ConnectionTerminated)
        while data := sock.recv(65536):
            try:
                events = conn.receive_data(data)
            except h2.exceptions.ProtocolError:
                return {}
            for event in events:
                if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                    answer.update((bytes(k), bytes(v)) for k, v in event.headers or [])
                if isinstance(event, done):
                    return answer
            sock.sendall(conn.data_to_send())
    return answer


def _grpc_request_headers(host: str, port: int, path: str) -> list[tuple[bytes, bytes]]:
    fields = {
        ":method": "POST",
        ":scheme": "http",
        ":path": path,
        ":authority": f"{host}:{port}",
        "content-type": "application/grpc",
        "te": "trailers",
    }
    return [(k.encode(), v.encode()) for k, v in fields.items()]


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


def chunks(tracks: Sequence[Track], size: int) -> Iterator[list[Track]]:
    for start in range(0, len(tracks), size):
        yield list(tracks[start : start + size])


class AnalysisWorker:
    """One Ray actor: the pass's taggers loaded once, then chunk after chunk of tracks."""

    def __init__(self, names: list[str], opts: TagOptions, needs_stems: bool) -> None:
        import torch

        from mgctag.analysis import separator_for
        from mgctag.genres import default_map
        from mgctag.models import catalog
        from mgctag.models.inputs import InputPlan

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

    def analyse(self, tracks: list[Track]) -> list[Outcome]:
        """Decode (in a thread, as locally) and analyse these tracks; every track an Outcome."""
        from mgctag.analysis import guarded_work, prefetch
        from mgctag.models.inputs import TrackInput, prepare

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

    def _unreadable(self, track: Track) -> Any:
        """A failure for a file this worker cannot open (None: go on and decode it)."""
        from mgctag.models.inputs import TrackInput

        if os.access(track.path, os.R_OK):
            return None
        reason = (
            f"not readable on Ray worker {self.host} (workers need the files at the same path, "
            "on storage they share)"
        )
        return TrackInput(track, error=reason)

    def _predict(self, batch: list) -> list[Outcome]:
        from mgctag.analysis import predict_batch

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
    tracks: Sequence[Track],
    taggers: Sequence[Any],
    opts: TagOptions,
    summary: Summary,
    progress: Progress,
    stop: StopFlag,
    separator: Any,
    needs_stems: bool = False,
) -> None:
    """analysis.analyse on a Ray cluster: chunks out to an actor pool, results stored on arrival.

    On Ctrl-C the driver stops sending, drops what is still in flight (nothing of it is stored)
    and ends the actors: every stored track is complete, the rest is analysed by the next run.
    """
    ray = _ray()
    from mgctag.analysis import report_not_analysed, store_batch

    n, per_gpu = plan_workers(opts.workers, ray.cluster_resources())
    progress.stage("analysing", len(tracks))
    remote = ray.remote(AnalysisWorker).options(
        num_cpus=1, num_gpus=per_gpu, max_restarts=1, max_task_retries=1
    )
    names = [t.name for t in taggers]
    actors = [remote.remote(names, opts, needs_stems) for _ in range(n)]
    run_sep = separator.name if separator else "none"
    todo = chunks(tracks, CHUNK_TRACKS)
    pending: dict[Any, tuple[Any, list[Track]]] = {}  # result ref -> (actor, its tracks)
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


def _submit(actor: Any, todo: Iterator[list[Track]], pending: dict) -> None:
    """Send the actor the next chunk, if there is one."""
    sent = next(todo, None)
    if sent:
        pending[actor.analyse.remote(sent)] = (actor, sent)


def _results(ray: Any, ref: Any, sent: list[Track]) -> list[Outcome]:
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
    from mgctag.models.inputs import TrackInput

    for stage, seconds in out.seconds.items():
        summary.stage_seconds[stage] += seconds
    if out.rows is None:
        item = TrackInput(
            out.track, error=out.error, error_type=out.error_type, skip=out.skip, stage=out.stage
        )
        not_analysed(lib, summary, item)
        return
    store_batch(lib, [out.track], [out.rows], summary, run_sep)
