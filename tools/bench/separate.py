"""Benchmark the separators: SDR on the MUSDB18 previews, speed, and peak memory on a long track.

Usage:
    python -m tools.bench.separate sdr   [--separators cascade hpss] [--json OUT] [--limit N]
    python -m tools.bench.separate speed [--separators cascade hpss demucs-random] [--seconds 60]
    python -m tools.bench.separate memory SEPARATOR [--minutes 10]   (one separator per process)
    python -m tools.bench.separate sumsnr [--separators demucs] [--limit N]  (the stems' sum vs
        the mix, SNR in dB per MUSDB preview: HTDemucs does not force the sum)
    python -m tools.bench.separate longfile OUT.flac [--minutes 60]  (real music for `separate`:
        /usr/bin/time -v mgctag separate OUT.flac --separator demucs --out DIR gives its peak RSS)

SDR here is plain SDR per track and stem, 10 log10(|s|^2 / |s - ŝ|^2) over the whole 7 s clip
(both channels), skipping stems whose reference is silent (energy < 1e-8 per sample); the table
gives the median and quartiles over the 70 previews. It is not museval's BSSEval v4 (framewise,
allows no filter), so it is not comparable digit for digit with published numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

from tools.paths import MUSDB

MUSDB_TRAIN = MUSDB / "train"
STREAMS = ("mixture", "drums", "bass", "other", "vocals")  # stream order in each .stem.mp4
STEMS = ("drums", "bass", "other", "vocals")


def read_stem_mp4(path: Path) -> tuple[dict[str, np.ndarray], int]:
    """All five streams of a MUSDB .stem.mp4 as (channels, n) float32 at 44.1 kHz."""
    from mgctag.audio.decode import load

    arrays = [load(path, 44100, mono=False, stream=i) for i in range(len(STREAMS))]
    n = min(a.shape[-1] for a in arrays)
    return {name: a[:, :n] for name, a in zip(STREAMS, arrays, strict=True)}, 44100


def sdr(reference: np.ndarray, estimate: np.ndarray) -> float | None:
    """Plain SDR in dB, or None when the reference is silent."""
    energy = float(np.sum(reference.astype(np.float64) ** 2))
    if energy < 1e-8 * reference.size:
        return None
    error = float(np.sum((reference.astype(np.float64) - estimate) ** 2))
    return 10 * np.log10(energy / max(error, 1e-12))


def make(name: str):
    """A separator by name; 'demucs-random' is a randomly initialised full-size HTDemucs,
    'cascade@150' / 'hpss@150' set the bass/other crossover in Hz, and 'cascade@200/15' also the
    cascade's percussive median length in bins (for tuning them)."""
    from mgctag.separate import get_separator

    if "@" in name:
        from mgctag.separate.cascade import CascadeSeparator
        from mgctag.separate.hpss import HpssSeparator

        kind, spec = name.split("@")
        hz, _, kernel = spec.partition("/")
        if kind == "cascade" and kernel:
            return CascadeSeparator(crossover_hz=float(hz), freq_kernel=int(kernel))
        return {"cascade": CascadeSeparator, "hpss": HpssSeparator}[kind](crossover_hz=float(hz))

    if name == "demucs-random":
        import torch
        from demucs.htdemucs import HTDemucs

        from mgctag.separate.demucs import DemucsSeparator

        torch.manual_seed(0)
        return DemucsSeparator(HTDemucs(sources=list(STEMS)).eval(), device="cpu")
    return get_separator(name, device="cpu")


def summarise(values: list[float]) -> dict[str, float]:
    q1, med, q3 = np.percentile(values, [25, 50, 75])
    return {"median": round(float(med), 2), "q1": round(float(q1), 2), "q3": round(float(q3), 2)}


def bench_sdr(names: list[str], limit: int | None, out: Path | None) -> dict:
    files = sorted(MUSDB_TRAIN.glob("*.stem.mp4"))[:limit]
    tracks = [read_stem_mp4(f) for f in files]
    results: dict = {"tracks": len(files), "definition": "plain SDR per track, whole clip"}
    for name in names:
        sep = make(name)
        scores: dict[str, list[float]] = {s: [] for s in (*STEMS, "mix/4")}
        baseline: dict[str, list[float]] = {s: [] for s in STEMS}
        for stems, sr in tracks:
            est = sep.separate(stems["mixture"], sr)
            for s in STEMS:
                v = sdr(stems[s], est[s])
                base = sdr(stems[s], stems["mixture"] / 4)
                if v is not None and base is not None:  # both None when the stem is silent
                    scores[s].append(v)
                    baseline[s].append(base)
        results[name] = {s: summarise(scores[s]) | {"n": len(scores[s])} for s in STEMS}
        results["mix/4"] = {s: summarise(baseline[s]) for s in STEMS}
        print(name, json.dumps(results[name]))
    print("mix/4", json.dumps(results["mix/4"]))
    if out:
        out.write_text(json.dumps(results, indent=2) + "\n")
    return results


def bench_sum_snr(names: list[str], limit: int | None) -> None:
    files = sorted(MUSDB_TRAIN.glob("*.stem.mp4"))[:limit]
    for name in names:
        sep = make(name)
        values: list[float] = []
        for f in files:
            mix = read_stem_mp4(f)[0]["mixture"]
            residual = mix - sum(sep.separate(mix, 44100).values())
            snr = sdr(mix, mix - residual)
            if snr is None:  # a silent mixture: nothing to compare
                continue
            values.append(snr)
            print(f"{f.name}: {values[-1]:.1f} dB", flush=True)
        stats = json.dumps(summarise(values) | {"n": len(values)})
        print(f"{name}: sum of stems vs mix, SNR dB: {stats}")


def long_track(seconds: float) -> tuple[np.ndarray, int]:
    """Real music of any length: the MUSDB mixtures back to back, repeated as needed."""
    mixes, sr = [], 44100
    total = 0
    for f in sorted(MUSDB_TRAIN.glob("*.stem.mp4")):
        stems, sr = read_stem_mp4(f)
        mixes.append(stems["mixture"])
        total += mixes[-1].shape[-1]
        if total >= seconds * sr:
            break
    y = np.concatenate(mixes, axis=-1)
    reps = int(np.ceil(seconds * sr / y.shape[-1]))
    return np.tile(y, (1, reps))[:, : int(seconds * sr)], sr


def bench_speed(names: list[str], seconds: float) -> None:
    """Wall-clock and CPU time; on a shared machine the CPU time is the steadier figure."""
    y, sr = long_track(seconds)
    for name in names:
        sep = make(name)
        sep.separate(y[:, : sr * 2], sr)  # warm-up
        wall, cpu = time.perf_counter(), time.process_time()
        sep.separate(y, sr)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(
            f"{name}: {seconds:.0f} s of stereo audio in {wall:.2f} s wall = "
            f"{seconds / wall:.1f}x real time; CPU {cpu:.2f} s = {seconds / cpu:.1f}x per CPU "
            f"second ({torch_threads()} torch threads, load average {os.getloadavg()[0]:.1f})"
        )


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def bench_memory(name: str, minutes: float) -> None:
    y, sr = long_track(minutes * 60)
    sep = make(name)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    sep.separate(y, sr)
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    io = y.nbytes * 5 / 2**20  # the input and the four returned stems
    print(
        f"{name}: {minutes:.0f}-min stereo track in {dt:.1f} s; peak RSS {peak:.0f} MiB "
        f"(before separating {before:.0f} MiB; input + 4 output stems alone are {io:.0f} MiB)"
    )


def write_long_file(dest: Path, minutes: float) -> None:
    """A FLAC of `minutes` of real music (the MUSDB mixtures back to back), written in pieces so
    that making it needs no more memory than one pass of the previews. Research use only: keep it
    out of the repo."""
    import soundfile as sf

    y, sr = long_track(min(minutes * 60, 600.0))
    total = int(minutes * 60 * sr)
    with sf.SoundFile(dest, "w", sr, y.shape[0], subtype="PCM_16", format="FLAC") as f:
        done = 0
        while done < total:
            piece = y[:, : total - done]
            f.write(piece.T)
            done += piece.shape[-1]
    print(f"{dest}: {total / sr / 60:.1f} min of stereo music at {sr} Hz")


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("sdr", "speed", "memory", "longfile", "sumsnr"))
    ap.add_argument("separator", nargs="?", default="cascade")
    ap.add_argument("--separators", nargs="+", default=["cascade", "hpss"])
    ap.add_argument("--limit", type=int)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    args = ap.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.what == "sdr":
        bench_sdr(args.separators, args.limit, args.json)
    elif args.what == "speed":
        bench_speed(args.separators, args.seconds)
    elif args.what == "sumsnr":
        bench_sum_snr(args.separators, args.limit)
    elif args.what == "longfile":
        write_long_file(Path(args.separator), args.minutes)
    else:
        bench_memory(args.separator, args.minutes)


if __name__ == "__main__":
    main(sys.argv[1:])
