"""Genre sanity on real music: top genres of every librosa example clip and every MUSDB preview.

    python -m tools.experiments.genre_sanity ../shared/audio > /tmp/genre_sanity.md

Prints a Markdown table per collection and, for the MUSDB previews, the top-1/top-3 hit rate against
genres.csv. A label matches a predicted genre when they normalise to the same canonical genre, or
the prediction's parent is the label (Metal counts for Rock); "Pop/Rock" matches Pop or Rock.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from mgctag.audio import decode, features
from mgctag.genres import combine_models, default_map, mean_tag_probs, select_genres
from mgctag.models.tagger import MusicnnTagger


def predict(tagger: MusicnnTagger, path: Path, seconds: float = 30.0) -> dict[str, float]:
    """Genre scores for the first `seconds` of a clip (these clips are short; no window plan)."""
    y = decode.load(path, features.SR, duration=seconds)
    out = tagger(features.patches(features.log_mel(y)))
    per_model = {m: mean_tag_probs(p, tagger.labels[m]) for m, (p, _) in out.items()}
    return combine_models(per_model, default_map())


def label_genres(label: str) -> set[str]:
    gmap = default_map()
    whole = gmap.normalize(label)
    if whole in gmap.genres:
        return {whole}
    return {gmap.normalize(part) for part in label.split("/")}


def hit(label: str, predicted: list[str]) -> bool:
    gmap = default_map()
    wanted = label_genres(label)
    return any(g in wanted or gmap.parent(g) in wanted for g in predicted)


def fmt(scores: dict[str, float], n: int = 3) -> str:
    best = sorted(scores.items(), key=lambda kv: -kv[1])[:n]
    return ", ".join(f"{g} {s:.2f}" for g, s in best)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("audio", type=Path, help="the shared/audio folder")
    args = ap.parse_args()
    tagger = MusicnnTagger()

    print("## librosa example clips (first 30 s)\n")
    print("| clip | top genres (confidence) | written by default |")
    print("|---|---|---|")
    for path in sorted((args.audio / "librosa").glob("*.hq.ogg")):
        try:
            scores = predict(tagger, path)
        except decode.DecodeError as exc:
            print(f"| {path.name.removesuffix('.hq.ogg')[:60]} | unreadable: {exc.reason} | — |")
            continue
        written = "; ".join(g for g, _ in select_genres(scores)) or "—"
        print(f"| {path.name.removesuffix('.hq.ogg')[:60]} | {fmt(scores)} | {written} |")

    musdb = args.audio / "musdb18-7s"
    with open(musdb / "genres.csv", newline="") as fh:
        labels = {row["file"]: row["genre"] for row in csv.DictReader(fh)}
    print("\n## MUSDB18 7 s previews (mixture stream)\n")
    print("| track | genres.csv | top genres (confidence) | top-1 | top-3 |")
    print("|---|---|---|---|---|")
    top1, top3 = [], []
    for name, label in sorted(labels.items()):
        scores = predict(tagger, musdb / "train" / name)
        ranked = [g for g, _ in sorted(scores.items(), key=lambda kv: -kv[1])]
        top1.append(hit(label, ranked[:1]))
        top3.append(hit(label, ranked[:3]))
        mark = ("✓" if top1[-1] else "·", "✓" if top3[-1] else "·")
        print(
            f"| {name.removesuffix('.stem.mp4')} | {label} | {fmt(scores)}"
            f" | {mark[0]} | {mark[1]} |"
        )
    print(
        f"\nMUSDB previews: top-1 hit rate {np.mean(top1):.1%}, top-3 hit rate {np.mean(top3):.1%}"
        f" ({len(top1)} tracks)"
    )


if __name__ == "__main__":
    main()
