"""How long `mgctag --help` and `mgctag runs` take to start (the budget is 0.5 s each).

    python -m tools.bench.startup [--repeats 11]

Each command runs as a fresh process (`python -m mgctag.cli`-style, through the console-script
entry point `mgctag.cli:run`) against an empty temporary database; prints the median and the range
of the wall-clock times, and whether torch was imported (it must not be for these commands).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = {
    "--help": ["--help"],
    "tag --help": ["tag", "--help"],
    "runs": ["runs"],
    "--version": ["--version"],
}
PROBE = (
    "import sys\nfrom mgctag.cli import run\ntry:\n    run(sys.argv[1:])\nexcept SystemExit:\n"
    "    pass\nsys.stderr.write('torch imported\\n' if 'torch' in sys.modules else '')"
)


def time_command(args: list[str], env: dict[str, str], repeats: int) -> list[float]:
    """Wall-clock seconds of `repeats` fresh runs of mgctag ARGS."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", "from mgctag.cli import run; run()", *args],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        times.append(time.perf_counter() - t0)
    return times


def imports_torch(args: list[str], env: dict[str, str]) -> bool:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args], env=env, capture_output=True, text=True
    )
    return "torch imported" in proc.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "MGCTAG_DB": str(Path(tmp) / "lib.db")}
        subprocess.run([sys.executable, "-c", "import mgctag.cli"], env=env, check=True)  # warm
        for name, argv in COMMANDS.items():
            times = time_command(argv, env, args.repeats)
            torch = "imports torch" if imports_torch(argv, env) else "no torch"
            print(
                f"mgctag {name:<10} median {statistics.median(times):.3f} s "
                f"(min {min(times):.3f}, max {max(times):.3f}, n={len(times)}; {torch})"
            )


if __name__ == "__main__":
    main()
