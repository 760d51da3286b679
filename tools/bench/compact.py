"""What the compact store's float16 costs, measured on real analyses (docs/scale.md).

    python -m tools.bench.compact --raw /work/data/similar/dupes/raw.json

`raw.json` holds the default tagger's outputs for real recordings exactly as the pipeline handed
them to the store, before any rounding (tools.bench.dupes `tag` records them). For each row this
re-scores what the store's precision could change:

- genre scores (stored float32): the genres written under the model's own selection rule
  (catalog.selection) from the float64 values and from their float32 read-back;
- raw tag scores (stored float16): musicnn's genres re-derived from its two tag vocabularies
  (combine_models, as the tagger does), and mn04's genre scores from its AudioSet tags
  (genre_scores), from float64 and from float16 tags, and the largest tag error;
- embeddings (stored float16): each track's 10 nearest among the set, float32 vs float16, and
  the same on 100 000 real-ish vectors made from them (real vector + covariance noise).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mgctag.genres import combine_models, default_map, select_genres
from mgctag.library import blobs
from mgctag.models import catalog
from mgctag.models.protocol import ranked


def _selected(scores: Mapping[str, float], model: str) -> list[str]:
    most, floor, relative = catalog.selection(model)
    chosen = select_genres(scores, max_genres=most, min_confidence=floor, relative_floor=relative)
    return [g for g, _ in chosen]


def _read_back(value: Any, precise: bool) -> Any:
    packed = blobs.pack_scores(value, precise=precise)
    assert packed is not None
    return blobs.unpack_scores(packed.blob, {v.id: v.labels for v in packed.vocabularies})


def scores(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Genres written and re-derived from float64 vs the stored precision, over every row."""
    gmap = default_map()
    genre_rows = changed_genres = 0
    musicnn_rows = musicnn_changed = mn04_rows = mn04_changed = 0
    tag_error = 0.0
    for r in rows:
        genres = {g: p for g, p in r["genres"]}
        back = {g: p for g, p in _read_back(r["genres"], True)}
        genre_rows += 1
        changed_genres += _selected(genres, r["model"]) != _selected(back, r["model"])
        tags = r["tags"]
        if not tags:
            continue
        tags16 = _read_back(tags, False)
        for part, values in tags.items():
            err = max(abs(values[t] - tags16[part][t]) for t in values)
            tag_error = max(tag_error, err)
        if r["model"] == "musicnn":
            musicnn_rows += 1
            a = _selected(dict(ranked(combine_models(tags, gmap))), "musicnn")
            b = _selected(dict(ranked(combine_models(tags16, gmap))), "musicnn")
            musicnn_changed += a != b
        else:
            for part, values in tags.items():
                mn04_rows += 1
                a = _selected(gmap.genre_scores(values), r["model"])
                b = _selected(gmap.genre_scores(tags16[part]), r["model"])
                mn04_changed += a != b
    return {
        "rows": genre_rows,
        "written_genres_changed_by_float32": changed_genres,
        "musicnn_rows": musicnn_rows,
        "musicnn_genres_changed_by_float16_tags": musicnn_changed,
        "audioset_rows": mn04_rows,
        "audioset_genres_changed_by_float16_tags": mn04_changed,
        "largest_tag_error_float16": tag_error,
    }


def _recall(a: np.ndarray, b: np.ndarray, queries: np.ndarray, k: int = 10) -> list[float]:
    """Top-k agreement of unit matrices a (reference) and b, each query excluded from its own."""
    out = []
    for q in queries:
        sa, sb = a @ a[q], b @ b[q]
        sa[q] = sb[q] = -np.inf
        ta, tb = np.argsort(-sa)[:k], np.argsort(-sb)[:k]
        out.append(len(set(ta.tolist()) & set(tb.tolist())) / k)
    return out


def _unit(m: np.ndarray) -> np.ndarray:
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def embeddings(rows: list[dict[str, Any]], synthetic: int, seed: int = 0) -> dict[str, Any]:
    """Nearest-neighbour agreement of float32 and float16 embeddings."""
    out: dict[str, Any] = {}
    by_model: dict[str, list[np.ndarray]] = {}
    for r in rows:
        if "mix" in r["embeddings"]:
            by_model.setdefault(r["model"], []).append(
                np.asarray(r["embeddings"]["mix"], np.float32)
            )
    rng = np.random.default_rng(seed)
    for model, vectors in by_model.items():
        f32 = _unit(np.stack(vectors))
        f16 = _unit(f32.astype(np.float16).astype(np.float32))
        recall = _recall(f32, f16, np.arange(len(f32)))
        cos_err = float(np.max(np.abs(f32 @ f32.T - f16 @ f16.T)))
        entry = {
            "tracks": len(f32),
            "dim": f32.shape[1],
            "recall10": statistics.mean(recall),
            "recall10_min": min(recall),
            "largest_cosine_error": cos_err,
        }
        if synthetic:
            centred = (f32 - f32.mean(0)) / np.sqrt(len(f32) - 1)
            z = rng.standard_normal((synthetic, len(f32)), dtype=np.float32)
            big = _unit(f32[rng.integers(len(f32), size=synthetic)] + 0.5 * (z @ centred))
            big16 = _unit(big.astype(np.float16).astype(np.float32))
            queries = rng.choice(synthetic, 200, replace=False)
            synth = _recall(big, big16, queries)
            entry["synthetic"] = {
                "tracks": synthetic,
                "recall10": statistics.mean(synth),
                "recall10_min": min(synth),
            }
        out[model] = entry
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raw", type=Path, default=Path("/work/data/similar/dupes/raw.json"))
    ap.add_argument("--synthetic", type=int, default=100_000)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    rows = json.loads(args.raw.read_text())
    result = {"scores": scores(rows), "embeddings": embeddings(rows, args.synthetic)}
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
