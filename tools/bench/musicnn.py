"""Speed of the musicnn port against the original TensorFlow graph, side by side, per patch.

Usage:
    python -m tools.bench.musicnn --tf-python /tmp/tfvenv/bin/python [--models MSD_musicnn]
        [--batch 10] [--threads 2] [--rounds 5] [--reps 10]

The original graph runs in a separate interpreter (a scratch virtualenv outside the repo with
``tensorflow-cpu tf-keras librosa`` and the musicnn 0.1.0 wheel, installed with --no-deps since
its numpy pin no longer builds) that this script starts as a long-lived worker, so both
frameworks are timed in alternating rounds under the same machine load. Inputs are real log-mel
patches from the musicnn fixture. Every row also reports the max |delta| of its sigmoid outputs
against TensorFlow's on the same batch, so a fast but wrong variant shows up at once.

Without --tf-python only the port rows are printed. OMP_WAIT_POLICY defaults to PASSIVE (see
below); run with OMP_WAIT_POLICY=ACTIVE to see libgomp's default.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tools.paths import FIXTURES, REPO

# libgomp's default busy-waiting makes PyTorch's 2 OpenMP threads burn a core spinning whenever
# the other is descheduled, which on a shared machine doubles the port's time; TF's own thread
# pool does not spin. Set before torch is imported (mgctag's CLI should do the same).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

FIXTURE = FIXTURES / "musicnn" / "reference.npz"
TF_LOG = Path("/tmp/bench_musicnn_tf.log")


# ---------------------------------------------------------------- TensorFlow worker (venv side)
def tf_worker(model: str, threads: int) -> None:
    """Serve timing requests over stdin/stdout: 'run REPS PATH.npy' -> JSON line."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import musicnn
    import tensorflow as tf
    from musicnn import models

    tf.compat.v1.disable_eager_execution()
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 187, 96])
        is_training = tf.compat.v1.placeholder(tf.bool)
        logits = models.define_model(x, is_training, model, 50)[0]
        probs = tf.nn.sigmoid(logits)
        conf = tf.compat.v1.ConfigProto(
            intra_op_parallelism_threads=threads, inter_op_parallelism_threads=1
        )
        sess = tf.compat.v1.Session(graph=graph, config=conf)
        tf.compat.v1.train.Saver().restore(sess, str(Path(musicnn.__file__).parent / model) + "/")
    print(json.dumps({"ready": tf.__version__}), flush=True)
    for line in sys.stdin:
        _, reps, path = line.split()
        batch = np.load(path)
        feed = {x: batch, is_training: False}
        out = sess.run(probs, feed)  # warm-up
        times = []
        cpu = time.process_time()
        for _ in range(int(reps)):
            start = time.perf_counter()
            out = sess.run(probs, feed)
            times.append(time.perf_counter() - start)
        cpu = time.process_time() - cpu
        np.save(path + ".out.npy", out)
        print(json.dumps({"times": times, "cpu": cpu}), flush=True)


class TfProcess:
    """The TF worker as a subprocess of the venv's python."""

    def __init__(self, python: str, model: str, threads: int):
        env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
        env["OMP_NUM_THREADS"] = str(threads)
        cmd = [python, "-m", "tools.bench.musicnn", "--tf-worker", model, "--threads", str(threads)]
        self.log = open(TF_LOG, "w")  # noqa: SIM115 - TF's deprecation chatter, kept for debugging
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=env,
            cwd=REPO,  # `-m tools.bench.musicnn` in the TF venv: the package from this checkout
        )
        self.version = json.loads(self._readline())["ready"]

    def _readline(self) -> str:
        assert self.proc.stdout is not None  # Popen(stdout=PIPE)
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise SystemExit(f"TensorFlow worker exited; see {TF_LOG}")
            if line.startswith("{"):
                return line

    def run(self, batch_path: Path, reps: int) -> tuple[list[float], float, np.ndarray]:
        assert self.proc.stdin is not None  # Popen(stdin=PIPE)
        self.proc.stdin.write(f"run {reps} {batch_path}\n")
        self.proc.stdin.flush()
        reply = json.loads(self._readline())
        return reply["times"], reply["cpu"], np.load(str(batch_path) + ".out.npy")

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        self.log.close()


# ---------------------------------------------------------------- port side
def port_variants(model: str) -> dict:
    """name -> callable(batch np.ndarray) -> probabilities, for the port's rows."""
    import torch

    from mgctag.models.registry import load_model

    module, _ = load_model(model, cache=False)
    bf16, _ = load_model(model, cache=False)
    bf16 = bf16.to(torch.bfloat16)

    def run(mod, dtype, literal=False):
        def call(batch: np.ndarray) -> np.ndarray:
            for sub in mod.modules():
                if hasattr(sub, "fused"):
                    sub.fused = not literal
            with torch.inference_mode():
                logits, _ = mod(torch.from_numpy(batch).to(dtype))
            return torch.sigmoid(logits.float()).numpy()

        return call

    variants = {"port float32 (fused, channels-last)": run(module, torch.float32)}
    if model.endswith("musicnn"):
        variants["port float32, TF's literal op order"] = run(module, torch.float32, literal=True)
    variants["port bfloat16 weights+activations"] = run(bf16, torch.bfloat16)
    return variants


def time_port(call, batch: np.ndarray, reps: int) -> tuple[list[float], float, np.ndarray]:
    out = call(batch)  # warm-up
    times = []
    cpu = time.process_time()
    for _ in range(reps):
        start = time.perf_counter()
        out = call(batch)
        times.append(time.perf_counter() - start)
    return times, time.process_time() - cpu, out


def real_batch(size: int) -> np.ndarray:
    """`size` real 187-frame log-mel patches from the fixture's four clips."""
    from mgctag.audio.features import patches

    ref = np.load(FIXTURE)
    clips = sorted({k.split("__")[0] for k in ref.files})
    all_patches = np.concatenate([patches(ref[f"{c}__logmel"]) for c in clips])
    reps = -(-size // len(all_patches))
    return np.ascontiguousarray(np.tile(all_patches, (reps, 1, 1))[:size])


def bench(args: argparse.Namespace, model: str) -> list[dict]:
    import torch

    torch.set_num_threads(args.threads)
    batch = real_batch(args.batch)
    batch_path = Path(f"/tmp/bench_musicnn_{os.getpid()}.npy")
    np.save(batch_path, batch)
    tf = TfProcess(args.tf_python, model, args.threads) if args.tf_python else None
    rows: dict[str, list[float]] = {}
    cpu: dict[str, float] = {}
    outputs: dict[str, np.ndarray] = {}
    variants = port_variants(model)
    tf_name = f"TensorFlow {tf.version} original graph float32" if tf else ""
    try:
        for _ in range(args.rounds):
            if tf:
                times, used, outputs[tf_name] = tf.run(batch_path, args.reps)
                rows.setdefault(tf_name, []).extend(times)
                cpu[tf_name] = cpu.get(tf_name, 0.0) + used
            for name, call in variants.items():
                times, used, outputs[name] = time_port(call, batch, args.reps)
                rows.setdefault(name, []).extend(times)
                cpu[name] = cpu.get(name, 0.0) + used
    finally:
        if tf:
            tf.close()
        batch_path.unlink(missing_ok=True)
        Path(str(batch_path) + ".out.npy").unlink(missing_ok=True)
    table = []
    for name, times in rows.items():
        per_patch = [1000 * t / args.batch for t in times]
        delta = float(np.abs(outputs[name] - outputs[tf_name]).max()) if tf else None
        table.append(
            {
                "model": model,
                "variant": name,
                "median_ms_per_patch": statistics.median(per_patch),
                "min_ms_per_patch": min(per_patch),
                "cpu_ms_per_patch": 1000 * cpu[name] / (len(times) * args.batch),
                "max_abs_delta_vs_tf": delta,
            }
        )
    return table


def print_table(table: list[dict], args: argparse.Namespace) -> None:
    load = os.getloadavg()[0]
    print(
        f"batch {args.batch}, {args.threads} threads, {args.rounds} rounds x {args.reps} reps, "
        f"{os.cpu_count()} CPUs, load average {load:.1f}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}"
    )
    print(
        "| model | variant | median ms/patch | min ms/patch | CPU ms/patch | max abs delta vs TF |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for row in table:
        delta = "-" if row["max_abs_delta_vs_tf"] is None else f"{row['max_abs_delta_vs_tf']:.2g}"
        print(
            f"| {row['model']} | {row['variant']} | {row['median_ms_per_patch']:.1f} | "
            f"{row['min_ms_per_patch']:.1f} | {row['cpu_ms_per_patch']:.1f} | {delta} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tf-python", help="python of a venv with tensorflow-cpu + musicnn")
    parser.add_argument("--models", nargs="+", default=["MSD_musicnn"])
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--tf-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tf_worker:
        tf_worker(args.tf_worker, args.threads)
        return
    table = [row for model in args.models for row in bench(args, model)]
    print_table(table, args)


if __name__ == "__main__":
    main()
