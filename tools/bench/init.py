"""How a network should start for `--init`: from random weights, or from a student with its new
output layer at zero (what `transfer.with_new_output` does) or random, at a given step size.

    python -m tools.bench.init LABELS.csv --db LIB.db --arch swishnet --init swishnet_slim \\
        [--trials 10] [--epochs 15] [--min-count 5] [--variants scratch,zero,random]

Same grouped trials and training as `mgctag eval LABELS.csv --arch ARCH [--init STUDENT]
--protocol trials`; only the output layer's starting point differs between the variants.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from mgctag.library.db import Library
from mgctag.train import transfer, workflow
from mgctag.train.eval_protocols import make_splits
from mgctag.train.labels import read_label_csv

ZERO_START = transfer.with_new_output


def random_start(student: transfer.Student, n_classes: int) -> torch.nn.Module:
    """The student with a new output layer initialised as torch initialises a fresh Linear."""
    model = ZERO_START(student, n_classes)
    head = model.classifier
    out = head[-1] if isinstance(head, torch.nn.Sequential) else head
    assert isinstance(out, torch.nn.Linear)  # what with_new_output makes
    torch.manual_seed(0)
    out.reset_parameters()
    return model


def run(args: argparse.Namespace, variant: str, data: workflow.NetworkData, splits: list) -> None:
    student = None if variant == "scratch" else transfer.load_student(args.init, args.arch)
    transfer.with_new_output = random_start if variant == "random" else ZERO_START
    t0 = time.perf_counter()
    acc, f1 = [], []
    for split in splits:
        model, _, x = workflow.fit_network(
            data, split.train, epochs=args.epochs, seed=0, student=student
        )
        m = workflow._heldout_metrics(model, x, data, sorted(split.test.tolist()))
        acc.append(m["accuracy"])
        f1.append(m["macro_f1"])
    print(
        f"{args.arch} {variant}: accuracy {np.mean(acc):.3f} ± {np.std(acc):.3f}, "
        f"macro-F1 {np.mean(f1):.3f} ± {np.std(f1):.3f} ({time.perf_counter() - t0:.0f} s)",
        flush=True,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("labels", type=Path)
    p.add_argument("--db", type=Path, required=True)
    p.add_argument("--arch", required=True)
    p.add_argument("--init", required=True)
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--min-count", type=int, default=5)
    p.add_argument("--variants", default="scratch,zero,random")
    args = p.parse_args()
    torch.set_num_threads(1)
    student = transfer.load_student(args.init, args.arch)
    data = workflow.network_data(
        Library(args.db), args.arch, read_label_csv(args.labels), min_count=args.min_count,
        student=student,
    )  # fmt: skip
    splits = make_splits(
        data.Y, np.asarray(data.groups), protocol="trials", k=10, n_trials=args.trials,
        test_size=0.2, seed=0,
    )  # fmt: skip
    for variant in args.variants.split(","):
        run(args, variant, data, splits)


if __name__ == "__main__":
    main()
