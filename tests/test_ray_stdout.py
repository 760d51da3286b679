"""`tag --engine ray --json` keeps stdout one JSON document when a Ray worker dies (issue #26).

Ray's driver prints "(raylet) A worker died or was killed ..." to stdout from its own thread;
the JSON did not parse. A real local Ray, a real run through the CLI, a real SIGKILL of the
worker process while it analyses.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from media import encode, real_clip

pytest.importorskip("ray", reason='Ray is not installed (pip install "mgctag[ray]")')
pytestmark = pytest.mark.slow

CLI = [sys.executable, "-c", "import sys; from mgctag.cli import run; run(sys.argv[1:])"]


def _workers() -> list[int]:
    """Ray actor processes running mgctag's AnalysisWorker (started by this test's run)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"AnalysisWorker" in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_a_killed_worker_leaves_stdout_pure_json(tmp_path: Path) -> None:
    music = tmp_path / "music"
    music.mkdir()
    y, sr = real_clip(seconds=30.0)
    for i in range(12):
        encode(y, sr, music / f"{i:02d}.flac")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MGCTAG_")}
    env.update(XDG_CONFIG_HOME=str(tmp_path / "c"), XDG_DATA_HOME=str(tmp_path / "d"))
    args = ["tag", music, "--db", tmp_path / "lib.db", "--engine", "ray", "--workers", "1"]
    proc = subprocess.Popen(
        [*CLI, *map(str, args), "--json", "--dry-run", "--stems", "off"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    killed, end = None, time.monotonic() + 600
    while proc.poll() is None and killed is None and time.monotonic() < end:
        pids = _workers()
        if pids:
            time.sleep(3.0)  # let it load its models and start on a chunk
            try:
                os.kill(pids[0], signal.SIGKILL)
                killed = pids[0]
            except ProcessLookupError:
                continue  # it had just ended: wait for the next one
        time.sleep(0.2)
    stdout, stderr = proc.communicate(timeout=600)
    assert killed is not None, "no Ray worker appeared"
    try:
        report = json.loads(stdout)  # raised before: "(raylet) A worker died ..." came first
    except ValueError:
        pytest.fail(f"stdout is not one JSON document; it ends: {stdout[-600:]!r}")
    assert "(raylet)" not in stdout and isinstance(report["counts"], dict), stderr
