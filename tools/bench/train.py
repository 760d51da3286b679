"""Benchmarks for mgctag.train: head training time, and a learning curve on real audio.

    python -m tools.bench.train speed [--sizes 1000 10000] [--dims 200 1000] [--out FILE.json]
    python -m tools.bench.train curve [--features FILE.npz] [--repeats 20] [--out FILE.json]

`speed` trains heads on synthetic embeddings shaped like musicnn's (200-d mix, or 1000-d mix + four
stems, L2-normalised, 20 genres) and reports wall time. `curve` measures accuracy and macro-F1 vs
labelled tracks per class with grouped hold-outs: by default on the 70 MUSDB18 previews in ../shared
(genres, artist groups) with MFCC statistics; with `--features` on any `names`/`X` arrays of those
previews, or on an .npz from `python -m tools.experiments.eval_similarity features` (real musicnn
embeddings of the MUSDB previews or of the Debian corpus, labelled by package), `--embedding mix`
or `concat`.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from mgctag.audio import decode
from mgctag.train.eval_protocols import compute_metrics, learning_curve
from mgctag.train.heads import HeadConfig, predict_proba, train_head
from mgctag.train.labels import build_label_set, group_key, labels_from_tags, merge_rare
from tools.paths import MUSDB

MFCC_CACHE = Path("/tmp/mgctag-test-cache/musdb_mfcc20_v1.npz")


def synthetic(n: int, d: int, n_classes: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Noisy class clusters on the unit sphere: separable, but not trivially."""
    centres = rng.standard_normal((n_classes, d)).astype(np.float32)
    y = rng.integers(0, n_classes, n)
    X = centres[y] + 4.0 * rng.standard_normal((n, d)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X.astype(np.float32), np.eye(n_classes, dtype=np.float32)[y]


def speed(args: argparse.Namespace) -> list[dict]:
    rows = []
    labels = [f"g{i}" for i in range(args.classes)]
    for d in args.dims:
        for n in args.sizes:
            rng = np.random.default_rng(0)
            X, Y = synthetic(n + 2000, d, args.classes, rng)
            for hidden in args.hidden:
                cpu = time.process_time()
                head, rep = train_head(X[:n], Y[:n], labels, hidden=hidden, seed=0)
                cpu = time.process_time() - cpu
                test = compute_metrics(Y[n:], predict_proba(head, X[n:]), labels, multi_label=False)
                row = {
                    "n": n,
                    "dim": d,
                    "classes": args.classes,
                    "hidden": hidden,
                    "seconds": round(rep.seconds, 3),
                    "cpu_seconds": round(cpu, 3),
                    "iterations": rep.iterations,
                    "train_acc": round(rep.train_accuracy, 3),
                    "heldout_acc": round(test.accuracy, 3),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    print("\n| tracks | dim | head | wall s | CPU s | L-BFGS iters | held-out acc |")
    print("|---:|---:|---|---:|---:|---:|---:|")
    for r in rows:
        kind = "logistic" if r["hidden"] == 0 else f"MLP {r['hidden']}"
        print(
            f"| {r['n']} | {r['dim']} | {kind} | {r['seconds']:.2f} | {r['cpu_seconds']:.2f} "
            f"| {r['iterations']} "
            f"| {r['heldout_acc']:.3f} |"
        )
    return rows


def mfcc_features(names: list[str]) -> np.ndarray:
    """Mean and std of 20 MFCCs of each preview's mixture (same recipe and cache as the tests)."""
    if MFCC_CACHE.is_file():
        cached = np.load(MFCC_CACHE)
        if list(cached["names"]) == names:
            return cached["X"]
    import librosa

    feats = []
    for name in names:
        mfcc = librosa.feature.mfcc(
            y=decode.load(MUSDB / "train" / name, 22050), sr=22050, n_mfcc=20
        )
        feats.append(np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1)]))
    X = np.stack(feats).astype(np.float32)
    MFCC_CACHE.parent.mkdir(parents=True, exist_ok=True)
    np.savez(MFCC_CACHE, names=np.array(names), X=X)
    return X


def _curve_data(args: argparse.Namespace) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """names, one label each, groups and features: MUSDB + MFCCs, or an .npz of embeddings.

    An .npz from `tools.experiments.eval_similarity features` carries its own `labels` and `groups`
    (MUSDB genres and artists, or corpus packages and files) and `X_<embedding>` matrices; an older
    .npz with only `names`/`X` is matched to the MUSDB previews by file name.
    """
    with open(MUSDB / "genres.csv", newline="", encoding="utf-8") as f:
        genre = {r["file"]: r["genre"] for r in csv.DictReader(f)}
    if args.features is None:
        names = sorted(genre)
        artists = np.array([n.split(" - ")[0] for n in names])
        return names, [genre[n] for n in names], artists, mfcc_features(names)
    data = np.load(args.features)
    names = data["names"].tolist()
    if "labels" in data.files:
        X = data[f"X_{args.embedding}"] if args.embedding else data["X"]
        return names, data["labels"].tolist(), data["groups"], X.astype(np.float32)
    index = {n: i for i, n in enumerate(names)}
    names = sorted(genre)
    groups = np.array([n.split(" - ")[0] for n in names])
    return names, [genre[n] for n in names], groups, data["X"][[index[n] for n in names]]


def curve(args: argparse.Namespace) -> dict:
    names, labels, group_names, X = _curve_data(args)
    pairs = labels_from_tags(zip(names, ([g] for g in labels), strict=True))
    label_set = build_label_set(merge_rare(pairs, min_count=5), min_count=5)
    row = {n: i for i, n in enumerate(names)}
    keep = np.array([row[p] for p in label_set.paths])
    X, Y = np.asarray(X, np.float32)[keep], label_set.matrix()
    groups = np.array([group_key(str(group_names[i]), None, names[i]) for i in keep])
    sizes = [None if s == "all" else int(s) for s in args.per_class]
    result = learning_curve(
        X, Y, label_set.labels, groups, sizes=sizes, repeats=args.repeats,
        test_size=args.test_size, seed=args.seed, config=HeadConfig(hidden=args.hidden_curve),
    )  # fmt: skip
    counts = dict(zip(label_set.labels, Y.sum(axis=0).astype(int).tolist(), strict=True))
    print(f"classes: {counts}; groups: {len(set(groups))}; features: {X.shape[1]}-d")
    print(f"chance (uniform over {len(counts)} classes): {1 / len(counts):.3f}")
    print("\n| per class | train tracks (mean) | accuracy | macro-F1 |")
    print("|---:|---:|---|---|")
    for p in result.points:
        size = "all" if p.per_class is None else p.per_class
        print(
            f"| {size} | {p.n_train_mean:.1f} | {p.accuracy[0]:.3f} ± {p.accuracy[1]:.3f} "
            f"| {p.macro_f1[0]:.3f} ± {p.macro_f1[1]:.3f} |"
        )
    return {"classes": counts, "features": str(args.features), "curve": result.to_dict()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("speed")
    sp.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    sp.add_argument("--dims", type=int, nargs="+", default=[200, 1000])
    sp.add_argument("--hidden", type=int, nargs="+", default=[0, 256])
    sp.add_argument("--classes", type=int, default=20)
    cp = sub.add_parser("curve")
    cp.add_argument("--features", type=Path, help=".npz: names + X, or eval_similarity's")
    cp.add_argument(
        "--embedding", default="mix", help="which X_<name> of such an .npz: mix, concat"
    )
    cp.add_argument("--per-class", nargs="+", default=["1", "2", "5", "10", "20", "all"])
    cp.add_argument("--repeats", type=int, default=20)
    cp.add_argument("--test-size", type=float, default=0.3)
    cp.add_argument("--hidden-curve", type=int, default=0)
    cp.add_argument("--seed", type=int, default=0)
    for p in (sp, cp):
        p.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    print(
        f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads available"
    )
    start = time.perf_counter()
    result = speed(args) if args.cmd == "speed" else curve(args)
    print(f"\ntotal {time.perf_counter() - start:.1f} s")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
