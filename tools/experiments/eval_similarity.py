"""How well do musicnn embeddings find the same track and the same soundtrack? (issue 7)

    python -m tools.experiments.eval_similarity eval [--corpus /work/corpus]
        [--separator cascade|hpss|demucs|none]
        [--cache /tmp/mgctag-eval-sim] [--limit N] [--out FILE.json]
    python -m tools.experiments.eval_similarity features corpus|musdb [--separator ...] \\
        --out FILE.npz

`eval` takes two different 10 s excerpts of every corpus track (centred at 30 % and 70 % of the
duration; tracks under 40 s are skipped), embeds each with the pipeline's own stages (decode only
the window, separate into stems, musicnn log-mel patches, MSD_musicnn penultimate layer, mean over
patches, L2 norm), queries each track's excerpt A among all tracks' excerpts B and reports, per
embedding (mix, each stem, mix + stems concatenated): recall@1 / recall@10 of finding the same
track, and precision@10 of neighbours from the same soundtrack package (the track itself excluded).

`--mn04` adds mn04's embedding (the AudioSet tagger's 384-d pooled feature map, each window
decoded at 32 kHz) and `mix_mn04` (musicnn's and mn04's unit vectors concatenated) to both.

`features` writes an .npz (`names`, `labels`, `groups`, `X_mix`, `X_concat`) that
`tools/bench/train.py curve --features` reads for learning curves: corpus tracks (both excerpts'
patches pooled, labelled by package, grouped by file) or the 70 MUSDB18 previews (one 7 s window).

Embeddings are cached per file under --cache, so reruns (and `features` after `eval`) are cheap.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mgctag.audio import decode
from mgctag.audio.features import SR as SAMPLE_RATE
from mgctag.audio.features import log_mel, patches
from mgctag.models.protocol import unit_mean as _unit_mean
from mgctag.models.tagger import MusicnnTagger
from mgctag.separate import STEMS, Separator, get_separator
from tools.paths import MUSDB

CORPUS = Path("/work/corpus")
EXCERPT_SECONDS = 10.0
CENTRES = (0.3, 0.7)
MIN_DURATION = 40.0
KINDS = ("mix", *STEMS, "concat", "mn04", "mix_mn04")


def excerpt_windows(duration: float) -> list[tuple[float, float]] | None:
    """Two non-overlapping 10 s windows centred at 30 % and 70 %; None for tracks under 40 s."""
    if duration < MIN_DURATION:
        return None
    return [(round(c * duration - EXCERPT_SECONDS / 2, 3), EXCERPT_SECONDS) for c in CENTRES]


def _patches(y: np.ndarray) -> np.ndarray:
    """16 kHz mono → musicnn's 187-frame log-mel patches, as the pipeline makes them."""
    return patches(log_mel(y, SAMPLE_RATE))


def window_patches(
    path: Path, windows: list[tuple[float, float]], separator: Separator | None
) -> list[dict[str, np.ndarray]]:
    """Per window: musicnn patches of the mix and (with a separator) of each stem, as prepare()."""
    rate = separator.sample_rate if separator else SAMPLE_RATE
    audio = decode.load_windows(path, rate, windows, mono=separator is None)
    out = []
    for y in audio:
        mix = decode.convert(y, rate, SAMPLE_RATE) if separator else y
        item = {"mix": _patches(mix)}
        if separator:
            stems = separator.separate(y, rate)
            for stem in STEMS:
                item[stem] = _patches(decode.convert(stems[stem], rate, SAMPLE_RATE))
        out.append(item)
    return out


def patch_embeddings(
    tagger: MusicnnTagger, patches: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Per-patch MSD_musicnn embeddings (n, 200) for each stem of one window."""
    return {stem: tagger.embed(p) for stem, p in patches.items()}


def concat(vectors: dict[str, np.ndarray]) -> np.ndarray:
    """mix + stems, each unit length, concatenated and renormalised (equal weight per stem)."""
    return _unit_mean(np.concatenate([vectors[k] for k in ("mix", *STEMS)])[None])


def mn04_rows(path: Path, windows: list[tuple[float, float]]) -> list[np.ndarray]:
    """Per window: mn04's 384-d embedding (1, 384) of the window decoded at 32 kHz."""
    from mgctag.models.audioset import AUDIOSET_RATE, AudiosetNet

    audio = decode.load_windows(path, AUDIOSET_RATE, windows)
    _, emb = AudiosetNet()(audio)
    return [e[None] for e in emb]


def cached_rows(
    path: Path,
    windows: list[tuple[float, float]],
    tagger: MusicnnTagger,
    separator: Separator | None,
    cache: Path,
    true_stems: bool = False,
    mn04: bool = False,
) -> list[dict[str, np.ndarray]]:
    """Per-window per-patch embeddings, cached per file + windows + separator (or true stems).

    With `mn04`, each window also gets mn04's embedding (one row per window) under "mn04".
    """
    sep = "musdb-true" if true_stems else separator.name if separator else "none"
    sep += "+mn04" if mn04 else ""
    key = hashlib.sha1(f"{path}|{windows}|{sep}".encode()).hexdigest()[:16]
    file = cache / f"{sep}-{key}.npz"
    if file.is_file():
        data = np.load(file)
        return [
            {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith(f"{i}/")}
            for i in range(len(windows))
        ]
    patches = true_stem_patches(path, windows) if true_stems else None
    patches = patches or window_patches(path, windows, separator)
    rows = [patch_embeddings(tagger, p) for p in patches]
    if mn04:
        for row, emb in zip(rows, mn04_rows(path, windows), strict=True):
            row["mn04"] = emb
    cache.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(".tmp.npz")
    # Any: numpy's stub checks **arrays against savez's allow_pickle: bool as well
    arrays: dict[str, Any] = {f"{i}/{k}": v for i, r in enumerate(rows) for k, v in r.items()}
    np.savez(tmp, **arrays)
    tmp.replace(file)
    return rows


def true_stem_patches(
    path: Path, windows: list[tuple[float, float]]
) -> list[dict[str, np.ndarray]]:
    """MUSDB18's own stems (streams 1-4 of a .stem.mp4): what a perfect separator would give."""
    streams = {"mix": 0, **{stem: i for i, stem in enumerate(STEMS, 1)}}
    audio = {
        stem: decode.load_windows(path, SAMPLE_RATE, windows, stream=i)
        for stem, i in streams.items()
    }
    return [{stem: _patches(audio[stem][w]) for stem in streams} for w in range(len(windows))]


def track_vectors(rows: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """One embedding per stem (+ concat) from the patches of the given windows, as the pipeline."""
    vec = {k: _unit_mean(np.concatenate([r[k] for r in rows])) for k in rows[0]}
    if "vocals" in vec:
        vec["concat"] = concat(vec)
    if "mn04" in vec:  # musicnn's and mn04's unit vectors side by side, equal weight
        vec["mix_mn04"] = _unit_mean(np.concatenate([vec["mix"], vec["mn04"]])[None])
    return vec


# --- corpus ------------------------------------------------------------------------------------


def corpus_tracks(root: Path, limit: int | None) -> list[tuple[Path, str]]:
    """(path, package) from MANIFEST.tsv, in its order."""
    rows = []
    for line in (root / "MANIFEST.tsv").read_text().splitlines():
        package, rel, *_ = line.split("\t")
        rows.append((root / rel, package))
    return rows[:limit] if limit else rows


def embed_corpus(args: argparse.Namespace) -> list[dict]:
    """Per usable corpus track: package, path and per-excerpt vectors (A, B) for every kind."""
    tagger, separator = _models(args.separator)
    tracks, skipped, failed = [], 0, 0
    start = time.perf_counter()
    todo = corpus_tracks(args.corpus, args.limit)
    for n, (path, package) in enumerate(todo, 1):
        try:
            windows = excerpt_windows(decode.probe(path).duration)
            if windows is None:
                skipped += 1
                continue
            rows = cached_rows(path, windows, tagger, separator, args.cache, mn04=args.mn04)
        except decode.DecodeError as exc:
            print(f"skip {exc}", file=sys.stderr)
            failed += 1
            continue
        tracks.append(
            {
                "path": str(path),
                "package": package,
                "rows": rows,
                "A": track_vectors(rows[:1]),
                "B": track_vectors(rows[1:]),
            }
        )
        if n % 20 == 0:
            print(f"  {n}/{len(todo)} files, {time.perf_counter() - start:.0f} s", flush=True)
    print(f"tracks: {len(tracks)} used, {skipped} under {MIN_DURATION:.0f} s, {failed} failed")
    return tracks


def _models(separator: str) -> tuple[MusicnnTagger, Separator | None]:
    sep = None if separator == "none" else get_separator(separator, "cpu")
    return MusicnnTagger("cpu"), sep


def per_query(A: np.ndarray, B: np.ndarray, packages: np.ndarray, k: int = 10) -> dict:
    """Query A[i] among all B: the rank of B[i] (0 = first), and the share of the k nearest other
    tracks from the same package (the track itself excluded)."""
    order = np.argsort(-(A @ B.T), axis=1, kind="stable")
    rank = np.argmax(order == np.arange(len(A))[:, None], axis=1)
    prec = np.array(
        [
            np.mean(packages[[j for j in row if j != i][:k]] == packages[i])
            for i, row in enumerate(order)
        ]
    )
    return {"rank": rank, "precision": prec}


def summarise(q: dict, k: int = 10) -> dict[str, float]:
    return {
        "recall@1": float(np.mean(q["rank"] < 1)),
        f"recall@{k}": float(np.mean(q["rank"] < k)),
        "median_rank": float(np.median(q["rank"]) + 1),
        f"package_precision@{k}": float(np.mean(q["precision"])),
    }


def paired_ci(
    a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of a - b over the same queries with a 95 % bootstrap interval (queries resampled)."""
    d = np.asarray(a, float) - np.asarray(b, float)
    idx = np.random.default_rng(seed).integers(0, len(d), (n_boot, len(d)))
    lo, hi = np.percentile(d[idx].mean(axis=1), [2.5, 97.5])
    return float(d.mean()), float(lo), float(hi)


def package_chance(packages: np.ndarray) -> float:
    """Expected precision@k of random neighbours: same-package share of the other tracks."""
    _, counts = np.unique(packages, return_counts=True)
    return float(np.sum(counts * (counts - 1)) / (len(packages) * (len(packages) - 1)))


def evaluate(args: argparse.Namespace) -> dict:
    tracks = embed_corpus(args)
    packages = np.array([t["package"] for t in tracks])
    kinds = [k for k in KINDS if k in tracks[0]["A"]]
    queries = {
        kind: per_query(
            np.stack([t["A"][kind] for t in tracks]),
            np.stack([t["B"][kind] for t in tracks]),
            packages,
        )
        for kind in kinds
    }
    results = {kind: summarise(q) for kind, q in queries.items()}
    n = len(tracks)
    chance = package_chance(packages)
    print(f"\nseparator: {args.separator}; tracks: {n}; packages: {len(set(packages))}")
    print(f"chance: recall@1 {1 / n:.3f}, recall@10 {min(1, 10 / n):.3f}", end="")
    print(f", soundtrack precision {chance:.3f}")
    print("\n| embedding | dim | recall@1 | recall@10 | median rank | soundtrack precision@10 |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind, r in results.items():
        dim = tracks[0]["A"][kind].shape[0]
        print(
            f"| {kind} | {dim} | {r['recall@1']:.3f} | {r['recall@10']:.3f} "
            f"| {r['median_rank']:.0f} | {r['package_precision@10']:.3f} |"
        )
    diffs = {}
    for kind in ("mn04", "mix_mn04"):
        if kind in queries:
            q, mix = queries[kind], queries["mix"]
            print(f"\n{kind} - mix, same queries (mean, 95 % bootstrap interval):")
            for name, (a, b) in {
                "recall@1": (q["rank"] < 1, mix["rank"] < 1),
                "recall@10": (q["rank"] < 10, mix["rank"] < 10),
                "package_precision@10": (q["precision"], mix["precision"]),
            }.items():
                d, lo, hi = paired_ci(a, b)
                diffs[f"{kind}-mix {name}"] = (d, lo, hi)
                print(f"  {name}: {d:+.3f} [{lo:+.3f}, {hi:+.3f}]")
    if "concat" in queries:
        mix, cat = queries["mix"], queries["concat"]
        diffs = {
            "recall@1": paired_ci(cat["rank"] < 1, mix["rank"] < 1),
            "recall@10": paired_ci(cat["rank"] < 10, mix["rank"] < 10),
            "package_precision@10": paired_ci(cat["precision"], mix["precision"]),
        }
        print("\nconcat - mix, same queries (mean, 95 % bootstrap interval):")
        for name, (d, lo, hi) in diffs.items():
            print(f"  {name}: {d:+.3f} [{lo:+.3f}, {hi:+.3f}]")
    return {
        "separator": args.separator,
        "tracks": n,
        "chance_package": chance,
        "results": results,
        "concat_minus_mix": diffs,
    }


def neighbours(args: argparse.Namespace) -> dict:
    """Leave-one-out label precision@k on a features .npz: a query's k nearest tracks from other
    groups (MUSDB: other artists; corpus: other files) that share its label (genre or package)."""
    data = np.load(args.features)
    labels, groups = data["labels"], data["groups"]
    _, counts = np.unique(labels, return_counts=True)
    print(f"{args.features}: {len(labels)} tracks, {len(counts)} labels; k = {args.k}")
    print(f"\n| embedding | dim | label precision@{args.k} |\n|---|---:|---:|")
    out = {}
    for kind in args.embedding:
        X = data[f"X_{kind}"]
        sims = X @ X.T
        sims[groups[:, None] == groups[None, :]] = -np.inf  # no self, no same artist
        top = np.argsort(-sims, axis=1, kind="stable")[:, : args.k]
        out[kind] = float(np.mean(labels[top] == labels[:, None]))
        print(f"| {kind} | {X.shape[1]} | {out[kind]:.3f} |")
    same = np.mean(
        [np.mean(labels[groups != g] == lab) for lab, g in zip(labels, groups, strict=True)]
    )
    print(f"\nchance (same-label share among other groups' tracks): {same:.3f}")
    return {"features": str(args.features), "k": args.k, "precision": out, "chance": float(same)}


# --- features for learning curves ---------------------------------------------------------------


def musdb_features(args: argparse.Namespace) -> dict[str, Any]:
    """The 70 previews: one window of the whole 7 s mixture (stream 0), labelled by genres.csv."""
    tagger, separator = _models(args.separator)
    with open(MUSDB / "genres.csv", newline="", encoding="utf-8") as f:
        genre = {r["file"]: r["genre"] for r in csv.DictReader(f)}
    names = sorted(genre)
    vecs = []
    for name in names:
        path = MUSDB / "train" / name
        windows = [(0.0, decode.probe(path).duration)]
        rows = cached_rows(
            path, windows, tagger, separator, args.cache, args.true_stems, mn04=args.mn04
        )
        vecs.append(track_vectors(rows))
    groups = [n.split(" - ")[0] for n in names]
    return _pack(names, [genre[n] for n in names], groups, vecs)


def corpus_features(args: argparse.Namespace) -> dict[str, Any]:
    """Corpus tracks with both excerpts' patches pooled, labelled by package, grouped by file."""
    tracks = embed_corpus(args)
    names = [t["path"] for t in tracks]
    vecs = [track_vectors(t["rows"]) for t in tracks]
    return _pack(names, [t["package"] for t in tracks], names, vecs)


def _pack(names, labels, groups, vecs) -> dict[str, np.ndarray]:
    out = {"names": np.array(names), "labels": np.array(labels), "groups": np.array(groups)}
    out["X_mix"] = np.stack([v["mix"] for v in vecs])
    for kind in ("concat", "mn04", "mix_mn04"):
        if kind in vecs[0]:
            out[f"X_{kind}"] = np.stack([v[kind] for v in vecs])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    ev = sub.add_parser("eval")
    ft = sub.add_parser("features")
    nb = sub.add_parser("neighbours")
    nb.add_argument("features", type=Path, help="an .npz written by `features`")
    nb.add_argument("--embedding", nargs="+", default=["mix", "concat"])
    nb.add_argument("--k", type=int, default=5)
    nb.add_argument("--threads", type=int, default=1)
    nb.add_argument("--out", type=Path, help="also write the results as JSON here")
    ft.add_argument("dataset", choices=["corpus", "musdb"])
    for p in (ev, ft):
        p.add_argument("--corpus", type=Path, default=CORPUS)
        p.add_argument(
            "--separator", default="cascade", choices=["cascade", "hpss", "demucs", "none"]
        )
        p.add_argument("--cache", type=Path, default=Path("/tmp/mgctag-eval-sim"))
        p.add_argument("--limit", type=int, help="only the first N corpus files (smoke runs)")
        p.add_argument("--threads", type=int, default=1, help="torch threads (shared machine)")
        p.add_argument(
            "--mn04", action="store_true", help="also mn04's embedding (32 kHz) and mix + mn04"
        )
    ev.add_argument("--out", type=Path, help="also write the results as JSON here")
    ft.add_argument("--out", type=Path, required=True, help="the .npz to write")
    ft.add_argument(
        "--true-stems", action="store_true", help="musdb: the dataset's own stems, not separated"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# {platform.machine()}, torch {torch.__version__}, {args.threads} torch thread(s)")
    start = time.perf_counter()
    if args.cmd in ("eval", "neighbours"):
        result = evaluate(args) if args.cmd == "eval" else neighbours(args)
        if getattr(args, "out", None):
            args.out.write_text(json.dumps(result, indent=2) + "\n")
    else:
        data = musdb_features(args) if args.dataset == "musdb" else corpus_features(args)
        np.savez(args.out, **data)
        print(f"wrote {args.out}: {len(data['names'])} tracks, {sorted(data)}")
    print(f"\ntotal {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
