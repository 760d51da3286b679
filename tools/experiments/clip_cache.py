"""Per-window outputs of musicnn, crnn_small and mn04 on one audio file, cached outside the repo.

Used by the evaluations (tools.experiments.eval_genres, eval_content): each file's analysis
windows are planned as `mgctag tag` plans them (3 x 10 s from the middle 80 %, silent ones
dropped), decoded once at 32 kHz for mn04 and resampled to 16 kHz for musicnn and its student,
and every model's per-window probabilities and embeddings are kept in one .npz per file under the
cache folder (default /work/data/cache; key: path, size, mtime, window plan). Nothing here is
shipped.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mgctag.audio import decode, features, segment
from mgctag.models.registry import load_model

CACHE = Path(os.environ.get("MGCTAG_EVAL_CACHE", "/work/data/cache"))
VERSION = 1
AT_RATE = 32000
MUSICNN = ("MSD_musicnn", "MTT_musicnn")


def cache_path(path: Path, windows: int, seconds: float) -> Path:
    st = path.stat()
    key = f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}:{windows}:{seconds}:{VERSION}"
    return CACHE / f"{hashlib.sha1(key.encode()).hexdigest()}.npz"


@torch.inference_mode()
def _musicnn(y16: np.ndarray) -> dict[str, np.ndarray]:
    """One window's musicnn pair + crnn_small outputs, averaged over its 3 s patches."""
    x = torch.from_numpy(features.patches(features.log_mel(y16)))
    out = {}
    for name in MUSICNN:
        logits, emb = load_model(name)[0](x)
        out[name] = torch.sigmoid(logits).mean(0).numpy()
        if name == "MSD_musicnn":
            out["musicnn_emb"] = emb.mean(0).numpy()
    logits, _ = load_model("crnn_small")[0](x)
    out["crnn"] = torch.softmax(logits, -1).mean(0).numpy()
    return out


@torch.inference_mode()
def _mn04(y32: np.ndarray) -> dict[str, np.ndarray]:
    logits, emb = load_model("audioset_mn04")[0](
        torch.from_numpy(features.efficientat_mel(y32))[None]
    )
    return {"mn04": torch.sigmoid(logits[0]).numpy(), "mn04_emb": emb[0].numpy()}


def analyse(
    path: str | os.PathLike, windows: int = 3, seconds: float = 10.0, musicnn: bool = True
) -> dict[str, np.ndarray]:
    """Per-window arrays (windows, ...) for one file: offsets, mn04 (+ emb) and musicnn's (+ crnn).

    Raises decode.DecodeError for a file that cannot be read; an all-silent file gives 0 windows.
    """
    path = Path(path)
    dest = cache_path(path, windows, seconds)
    if dest.is_file():
        cached = dict(np.load(dest))
        if not musicnn or "MSD_musicnn" in cached:
            return cached
    duration = decode.probe(path).duration
    plan = segment.plan_windows(duration, n=windows, length=seconds)
    audio = decode.load_windows(path, AT_RATE, plan)
    chosen = [w for w in segment.select_windows(plan, audio) if w.audio.size > 1024]
    rows: list[dict[str, np.ndarray]] = []
    for w in chosen:
        row = _mn04(w.audio)
        if musicnn:
            row.update(_musicnn(decode.convert(w.audio, AT_RATE, 16000)))
        rows.append(row)
    # Any: numpy's stub checks **arrays against savez's allow_pickle: bool as well
    out: dict[str, Any] = {"offsets": np.array([w.offset for w in chosen], np.float64)}
    out["silent"] = np.array([w.silent for w in chosen], bool)
    for key in rows[0] if rows else ():
        out[key] = np.stack([r[key] for r in rows]).astype(np.float32)
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp.npz")
    np.savez(tmp, **out)
    os.replace(tmp, dest)
    return out
