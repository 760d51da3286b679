"""`mgctag tag --engine ray` on a real local Ray cluster (2 CPUs, started here, stopped after).

The cluster runs the real decoder and the real default models in its actors; the driver stores
and writes as a local run does, so the two runs must leave the same database.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import shutil
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import stored
from conftest import cli
from media import clip_path, encode, real_clip

from mgctag import engine_ray, pipeline
from mgctag.errors import UsageError
from mgctag.library.db import Library

NO_RAY = 'ray is not installed (pip install "mgctag[ray]")'
HAVE_RAY = importlib.util.find_spec("ray") is not None


def on_cluster(test):
    """A slow test on the module's Ray cluster; skipped, with the reason, without Ray."""
    test = pytest.mark.usefixtures("cluster")(test)
    return pytest.mark.slow(pytest.mark.skipif(not HAVE_RAY, reason=NO_RAY)(test))


CLIPS = (
    "Kevin_MacLeod_-_Vibe_Ace",
    "music/electronic/northern_lights_1",
    "Karissa_Hobbs_-_Lets_Go_Fishin",
    "198-209-0000",  # speech: the content gate's skip must match too
    "Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra)",
    "music/metal/war_of_freedom_1",
)


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    """One real local Ray for the module: the engine joins it instead of starting its own."""
    ray = pytest.importorskip("ray", reason=NO_RAY)
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real music clips (10 s of each recording) as FLAC copies."""
    root = tmp_path_factory.mktemp("clips") / "Music"
    root.mkdir()
    for name in CLIPS:
        y, sr = real_clip(name, seconds=10.0)
        encode(y, sr, root / f"{Path(name).name[:24]}.flac")
    return root


def _copy(folder: Path, dest: Path) -> Path:
    return Path(shutil.copytree(folder, dest))


def _ray_opts(**kw) -> pipeline.TagOptions:
    return pipeline.TagOptions(engine="ray", **kw)


def _stored(lib: Library) -> dict[str, tuple[dict, dict]]:
    """Each track's stored genres and mix embeddings, by file name."""
    out = {}
    for t in lib.iter_tracks():
        preds = lib.get_predictions(t["id"])
        out[Path(t["path"]).name] = (
            {m: dict(p["genres"]) for m, p in preds.items()},
            {m: lib.get_embeddings(t["id"], m) for m in preds},
        )
    return out


def test_without_ray_the_engine_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No Ray in this environment (an import that fails, as when it is not installed): one line
    with the install command, exit 2, and nothing scanned."""
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    music = tmp_path / "Music"
    music.mkdir()
    y, sr = real_clip(seconds=4.0)
    encode(y, sr, music / "a.flac")
    res = cli("tag", music, "--db", tmp_path / "lib.db", "--engine", "ray")
    assert res.code == 2
    assert 'pip install "mgctag[ray]"' in res.stderr
    assert "Traceback" not in res.output
    with Library(tmp_path / "lib.db") as lib:
        assert list(lib.iter_tracks()) == []


def test_ray_options_need_the_ray_engine(tmp_path: Path) -> None:
    res = cli("tag", tmp_path, "--db", tmp_path / "lib.db", "--workers", "2")
    assert res.code == 2 and "--workers: only with --engine ray" in res.stderr


@pytest.mark.skipif(not HAVE_RAY, reason=NO_RAY)
def test_a_cluster_address_nothing_answers_on_is_one_line(tmp_path: Path) -> None:
    """Port 1 of this machine: refused at once, one line and exit 2 instead of Ray's retries."""
    res = cli(
        "tag",
        tmp_path,
        "--db",
        tmp_path / "lib.db",
        "--engine",
        "ray",
        "--ray-address",
        "127.0.0.1:1",
    )
    assert res.code == 2 and "--ray-address 127.0.0.1:1: no Ray there" in res.stderr
    assert "Traceback" not in res.output


@pytest.fixture
def listener() -> Iterator[tuple[socket.socket, list[bytes]]]:
    """A real TCP port on this machine that accepts connections but is not Ray. With a reply
    queued in the list it answers with it and hangs up (as an HTTP/1 server does); with none it
    keeps the connection open and says nothing."""
    server = socket.create_server(("127.0.0.1", 0))
    replies: list[bytes] = []
    silent: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            if not replies:
                silent.append(conn)
                continue
            with conn:
                conn.recv(65536)
                conn.sendall(replies[0])

    threading.Thread(target=serve, daemon=True).start()
    yield server, replies
    server.close()
    for conn in silent:
        conn.close()


@pytest.mark.skipif(not HAVE_RAY, reason=NO_RAY)
@pytest.mark.parametrize(
    ("reply", "says"),
    [
        (b"", "no Ray there (timed out)"),
        (b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n", "but not Ray"),
    ],
)
def test_a_port_that_answers_but_is_not_ray_is_one_line(
    listener: tuple[socket.socket, list[bytes]], reply: bytes, says: str
) -> None:
    """Ray itself retries such an address for over ten minutes; mgctag asks it as Ray would."""
    server, replies = listener
    if reply:
        replies.append(reply)
    address = f"127.0.0.1:{server.getsockname()[1]}"
    with pytest.raises(UsageError, match=re.escape(says)):
        engine_ray._check_reachable(address, timeout=1.0)


def _http2_404(conn: socket.socket) -> None:
    """Answer every HTTP/2 request with 404, as a proxy or web server on that port would."""
    import h2.config
    import h2.connection
    import h2.events

    h2c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    h2c.initiate_connection()
    conn.sendall(h2c.data_to_send())
    while data := conn.recv(65536):
        for event in h2c.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                h2c.send_headers(event.stream_id, [(":status", "404")], end_stream=True)
        conn.sendall(h2c.data_to_send())


@pytest.mark.skipif(not HAVE_RAY, reason=NO_RAY)
def test_an_http2_server_that_is_not_ray_is_one_line() -> None:
    """A real HTTP/2 server answering 404 (what a proxy on a wrong port does): not Ray."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = server.accept()
            with conn:
                _http2_404(conn)

    threading.Thread(target=serve, daemon=True).start()
    address = f"127.0.0.1:{server.getsockname()[1]}"
    try:
        with pytest.raises(UsageError, match="something answers there, but not Ray"):
            engine_ray._check_reachable(address, timeout=5.0)
    finally:
        server.close()


@on_cluster
def test_a_real_ray_passes_the_address_check() -> None:
    """The module's real cluster: its GCS answers the HTTP/2 preface as gRPC does."""
    import ray

    engine_ray._check_reachable(ray.get_runtime_context().gcs_address)
    raylet = ray.nodes()[0]  # a real gRPC server of the same cluster, but not its GCS
    raylet_address = f"{raylet['NodeManagerAddress']}:{raylet['NodeManagerPort']}"
    with pytest.raises(UsageError, match="a gRPC server answers there, but not Ray's GCS"):
        engine_ray._check_reachable(raylet_address)


def test_workers_follow_the_cluster() -> None:
    """One actor per CPU on a CPU cluster; one per GPU (a whole one each) when there are GPUs."""
    assert engine_ray.plan_workers(None, {"CPU": 8.0}) == (8, 0.0)
    assert engine_ray.plan_workers(3, {"CPU": 8.0}) == (3, 0.0)
    assert engine_ray.plan_workers(None, {"CPU": 32.0, "GPU": 4.0}) == (4, 1.0)
    assert engine_ray.plan_workers(8, {"CPU": 32.0, "GPU": 4.0}) == (8, 0.5)


@on_cluster
def test_a_ray_run_stores_what_a_local_run_stores(folder: Path, tmp_path: Path) -> None:
    """The same folder tagged locally and with 2 Ray actors: same tracks analysed, same genres
    and embeddings (float tolerance: batches differ), same tags written into the files."""
    local, remote = _copy(folder, tmp_path / "local"), _copy(folder, tmp_path / "ray")
    with Library(tmp_path / "local.db") as lib:
        s_local = pipeline.tag_paths(lib, [local], pipeline.TagOptions())
        want = _stored(lib)
    with Library(tmp_path / "ray.db") as lib:
        s_ray = pipeline.tag_paths(lib, [remote], _ray_opts(workers=2))
        got = _stored(lib)
        assert lib.get_run(s_ray.run_id)["status"] == "ok"
    assert s_ray.analysed == s_local.analysed == len(CLIPS)
    assert s_ray.tagged == s_local.tagged and not s_ray.failures
    assert got.keys() == want.keys()
    for name, (genres, embeddings) in want.items():
        assert got[name][0].keys() == genres.keys()
        for model, scores in genres.items():
            assert got[name][0][model].keys() == scores.keys()
            for g, p in scores.items():
                assert got[name][0][model][g] == pytest.approx(p, abs=1e-4), (name, g)
        for model, by_stem in embeddings.items():
            for stem, vec in by_stem.items():
                # stored as float16: a float32 difference at the last bits can round one
                # float16 step apart (1.2e-4 near 0.14)
                np.testing.assert_allclose(got[name][1][model][stem], vec, rtol=2e-3, atol=1e-4)
    assert sorted(c.new for c in s_ray.changes) == sorted(c.new for c in s_local.changes)


class _Remove(pipeline.Progress):
    """Deletes a file once analysis starts: the scan saw it, the workers cannot read it."""

    def __init__(self, victim: Path) -> None:
        self.victim = victim

    def stage(self, name: str, total: int) -> None:
        if name == "analysing":
            self.victim.unlink()


@on_cluster
def test_bad_files_get_their_one_line_failure_from_the_workers(tmp_path: Path) -> None:
    """A FLAC whose frames are noise (it passes the scan, fails to decode on the worker) and a
    file gone after the scan: each one failure line naming it, the good track analysed, the
    run partial."""
    music = tmp_path / "Music"
    music.mkdir()
    y, sr = real_clip(seconds=8.0)
    good = encode(y, sr, music / "good.flac")
    corrupt = encode(y, sr, music / "corrupt.flac")
    data = bytearray(corrupt.read_bytes())
    data[200:] = (
        np.random.default_rng(0).integers(0, 256, len(data) - 200, dtype=np.uint8).tobytes()
    )
    corrupt.write_bytes(bytes(data))
    gone = shutil.copy(good, music / "gone.flac")
    with Library(tmp_path / "lib.db") as lib:
        s = pipeline.tag_paths(lib, [music], _ray_opts(workers=1), progress=_Remove(Path(gone)))
        failures = dict(s.failures)
        assert set(failures) == {str(corrupt), str(gone)}
        assert failures[str(corrupt)] == "contains no audio samples"
        assert failures[str(gone)].startswith("not readable on Ray worker ")
        assert all("\n" not in r for r in failures.values())
        assert s.analysed == 1 and lib.get_run(s.run_id)["status"] == "partial"
        assert {f["stage"] for f in stored.failures(lib, s.run_id)} == {"decode"}
        assert lib.get_predictions(lib.track_by_path(good)["id"])


class _StopAfter(pipeline.Progress):
    """Ctrl-C as the CLI delivers it (the StopFlag) after the first analysed track arrives."""

    def __init__(self, stop: pipeline.StopFlag) -> None:
        self.stop, self.analysing = stop, False

    def stage(self, name: str, total: int) -> None:
        self.analysing = name == "analysing"

    def advance(self, n: int = 1) -> None:
        if self.analysing:
            self.stop.set()


@on_cluster
def test_an_interrupted_ray_run_is_consistent_and_the_next_one_resumes(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped after the first result: the tracks of that chunk are stored whole, nothing else is,
    no file is written; the next run analyses exactly the rest and tags everything."""
    monkeypatch.setattr(engine_ray, "CHUNK_TRACKS", 2)  # 3 chunks for the 6 clips
    music = _copy(folder, tmp_path / "Music")
    stop = pipeline.StopFlag()
    with Library(tmp_path / "lib.db") as lib:
        first = pipeline.tag_paths(
            lib, [music], _ray_opts(workers=1), progress=_StopAfter(stop), stop=stop
        )
        assert first.interrupted and lib.get_run(first.run_id)["status"] == "interrupted"
        assert first.analysed == 2 and first.tagged == 0
        done = {t["path"] for t in lib.iter_tracks() if lib.get_predictions(t["id"])}
        assert len(done) == 2
        for path in done:  # complete rows: genres and embeddings of every model
            preds = lib.get_predictions(lib.track_by_path(path)["id"])
            assert all(p["genres"] for p in preds.values())
        second = pipeline.tag_paths(lib, [music], _ray_opts(workers=1))
        assert second.analysed == len(CLIPS) - 2 and not second.failures
        assert all(lib.get_predictions(t["id"]) for t in lib.iter_tracks())
        assert second.tagged + second.unchanged + second.skipped == len(CLIPS)


def test_the_clips_exist() -> None:
    """The recordings the cluster tests read (a missing one would make them skip, not pass)."""
    missing = [n for n in CLIPS if not clip_path(n).is_file()]
    assert not missing
