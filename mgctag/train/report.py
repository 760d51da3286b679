"""What training and evaluation leave behind: confusion matrices (PNG + JSON), JSON reports, and
the model card that lets a user model be loaded, shown and trusted later.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mgctag.jsonable import to_jsonable
from mgctag.train.heads import ARCH, GenreHead, TrainReport


def to_json(obj: Any) -> str:
    """Any report (anything with to_dict(), or plain data) as stable, indented JSON."""
    data = obj.to_dict() if hasattr(obj, "to_dict") else obj
    return json.dumps(to_jsonable(data), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_json(obj: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_json(obj), encoding="utf-8")
    return path


def confusion_dict(confusion: Sequence[Sequence[int]], labels: Sequence[str]) -> dict[str, Any]:
    """Rows are true genres, columns predicted genres, in `labels` order."""
    return {"labels": list(labels), "rows": "true", "columns": "predicted", "matrix": confusion}


def save_confusion_json(
    confusion: Sequence[Sequence[int]], labels: Sequence[str], path: str | Path
) -> Path:
    return write_json(confusion_dict(confusion, labels), path)


def save_confusion_png(
    confusion: Sequence[Sequence[int]],
    labels: Sequence[str],
    path: str | Path,
    *,
    title: str = "",
    normalize: bool = True,
) -> Path:
    """A confusion-matrix heat map: colour is the share of each true genre (row), text the count.

    Drawn on an Agg canvas without pyplot, so it works headless and in threads.
    """
    cm = np.asarray(confusion, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    shade = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0) if normalize else cm
    side = max(4.0, 0.55 * len(labels) + 2.0)
    fig = Figure(figsize=(side + 1.0, side), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(shade, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of row" if normalize else "")
    ticks = np.arange(len(labels))
    ax.set_xticks(ticks, labels=list(labels), rotation=45, ha="right")
    ax.set_yticks(ticks, labels=list(labels))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    for i, j in np.ndindex(cm.shape):
        if cm[i, j]:
            colour = "white" if shade[i, j] > 0.6 * (shade.max() or 1.0) else "black"
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", color=colour, fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def user_model_card(
    name: str,
    head: GenreHead,
    train: TrainReport,
    *,
    embedding_model: str,
    stems: Sequence[str] = ("mix",),
    separator: str = "none",
    metrics: dict[str, Any] | None = None,
    label_source: str = "tags",
    min_count: int | None = None,
) -> dict[str, Any]:
    """The JSON card of a user-trained head (registry.ModelCard.from_dict reads it).

    It records what the head needs at inference (the embedding model and stems, in order, and
    the separator that made the stems), so the pipeline can refuse to feed it the wrong features.
    """
    return {
        "name": name,
        "arch": ARCH,
        "arch_args": head.config,
        "labels": list(train.labels),
        "preprocessing": {
            "input": "embeddings",
            "embedding_model": embedding_model,
            "stems": list(stems),
            "separator": separator,
            "dim": head.config["in_dim"],
        },
        "outputs": {"activation": "sigmoid" if head.multi_label else "softmax"},
        "source": {
            "kind": "user",
            "label_source": label_source,
            "min_count": min_count,
            "n_train": train.n_train,
            "class_counts": train.class_counts,
            "seed": train.config.seed,
            "train_config": to_jsonable(train.to_dict()["config"]),
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
        "metrics": to_jsonable(metrics or {}),
    }


def evaluation_summary(report: Any) -> dict[str, Any]:
    """The headline numbers of an EvalReport, for a model card's "metrics" and for printing."""
    acc, acc_sd = report.accuracy
    f1, f1_sd = report.macro_f1
    return {
        "protocol": report.protocol,
        "params": report.params,
        "seed": report.seed,
        "n_tracks": report.n_tracks,
        "n_groups": report.n_groups,
        "folds": len(report.folds),
        "accuracy": {"mean": acc, "std": acc_sd},
        "macro_f1": {"mean": f1, "std": f1_sd},
    }
