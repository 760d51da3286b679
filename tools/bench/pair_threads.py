"""The musicnn pair per patch: the two networks one after the other on all threads, or side by
side (one worker thread each, `EnsembleTagger._side_by_side`), and the chunk sizes, in float32
and bf16.

    python -m tools.bench.pair_threads [--patches 36] [--rounds 2] [--chunks 3 6 12]

Patches are random log-mel-shaped inputs (the cost does not depend on the values). Each
configuration runs the patches `--rounds` times after a warm-up pass, configurations alternate
round by round, and each row is wall and CPU (user, system) milliseconds a patch of the pair,
from the process's own resource usage. `--chunks` are patches a thread (`CHUNK_PATCHES`).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mgctag.models import tagger as tagger_module  # noqa: E402
from mgctag.models.tagger import EnsembleTagger  # noqa: E402


def cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def one_round(pair: EnsembleTagger, x: np.ndarray, side: bool) -> tuple[float, float, float]:
    """(wall, user, system) seconds of one pass of the pair over `x`."""
    wall, (user, system) = time.perf_counter(), cpu()
    if side:
        pair(x)
    else:
        tensor = torch.from_numpy(x)
        for module in pair.models.values():
            pair._run(module, tensor)
    after = cpu()
    return time.perf_counter() - wall, after[0] - user, after[1] - system


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--patches", type=int, default=36)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--chunks", type=int, nargs="+", default=[3, 6, 12])
    args = ap.parse_args()
    pair = EnsembleTagger()
    x = np.random.default_rng(0).standard_normal((args.patches, 187, 96)).astype(np.float32)
    configs = [(bf16, side, chunk) for bf16 in (False, True) for side in (False, True)
               for chunk in args.chunks]  # fmt: skip
    times: dict[tuple[bool, bool, int], list[tuple[float, float, float]]] = {c: [] for c in configs}
    for round_ in range(args.rounds + 1):
        for bf16, side, chunk in configs:
            pair.bf16 = bf16
            tagger_module.CHUNK_PATCHES = chunk
            once = one_round(pair, x, side)
            if round_:  # the first round warms up
                times[(bf16, side, chunk)].append(once)
    print(f"{args.patches} patches, {args.rounds} rounds, torch threads {torch.get_num_threads()}, "
          f"load {os.getloadavg()[0]:.1f}")  # fmt: skip
    print("| precision | networks | patches a thread | wall ms | user ms | sys ms |")
    print("|---|---|---:|---:|---:|---:|")
    for (bf16, side, chunk), got in times.items():
        wall, user, system = (1000 * statistics.mean(t[i] for t in got) / len(x) for i in range(3))
        how = "side by side" if side else "one after the other"
        print(f"| {'bf16' if bf16 else 'float32'} | {how} | {chunk} | {wall:.1f} | {user:.1f} "
              f"| {system:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
