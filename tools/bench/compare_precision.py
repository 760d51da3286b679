"""Does bfloat16 musicnn change what the default tagger writes? Written genres, float32 vs bf16.

Usage: python -m tools.bench.compare_precision DIR [DIR ...] [--limit N] [--margin M]
           [--guard-musicnn]

Each audio file under the directories is prepared as `mgctag tag` does (three 10 s windows, one
32 kHz decode), analysed by the default `musicnn+mn04` with its musicnn pair in float32 and in
bfloat16 (mn04 and the content gate are the same in both), and the genres each writes (the
catalog's count and floors) are compared: for the default and for its stored musicnn row. A third
run is the guarded variant (`CombinedTagger` with bf16 on): bf16, and float32 again for a track
whose written genres lie within the margin of changing (`audioset.choice_margin`); it counts the
re-runs. Also printed: the largest genre-score drift, how many tracks lie within a few margins,
and the musicnn networks' time per patch in both precisions, alternating track by track.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

from mgctag.genres import GenreMap, default_map, select_genres  # noqa: E402
from mgctag.library.rows import Track  # noqa: E402
from mgctag.models import (
    audioset,  # noqa: E402
    catalog,  # noqa: E402
)
from mgctag.models.audioset import CombinedTagger, choice_margin  # noqa: E402
from mgctag.models.inputs import InputPlan, prepare  # noqa: E402

AUDIO = {".ogg", ".opus", ".mp3", ".flac", ".wav", ".m4a", ".mp4"}


def written(tagger: CombinedTagger, item, gmap: GenreMap, scores: dict) -> dict[str, list[str]]:
    """Per stored row (musicnn, the default): the genres `tag` would write from it."""
    (out,) = tagger.analyse([item])
    rows = {p.model: p for p in tagger.predictions(out, gmap)}
    scores.update({name: dict(p.genres) for name, p in rows.items()})
    result = {}
    for name in (catalog.MUSICNN_TAGGER, tagger.name):
        most, floor, relative = catalog.selection(name)
        pred = rows[name]
        scores = dict(pred.genres)
        skip = pred.content is not None and pred.content != "music"
        chosen = select_genres(
            scores, max_genres=most, min_confidence=floor, relative_floor=relative
        )
        result[name] = ["(skipped)"] if skip and name == tagger.name else [g for g, _ in chosen]
    return result


def musicnn_seconds(tagger: CombinedTagger, item) -> float:
    t0 = time.perf_counter()
    tagger.musicnn(item.features["mel"])
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="+", type=Path)
    ap.add_argument("--limit", type=int, default=0, help="files per directory (0: all)")
    ap.add_argument("--margin", type=float, default=None, help="re-run margin (default: code's)")
    ap.add_argument("--guard-musicnn", action="store_true", help="also guard musicnn's row")
    args = ap.parse_args()
    if args.margin is not None:
        audioset.BF16_MARGIN = args.margin
    audioset.BF16_GUARD_MUSICNN = args.guard_musicnn
    tagger = CombinedTagger()
    gmap = default_map()
    plan = InputPlan((tagger.inputs,))
    reruns = [0]
    float32_again = tagger._float32_musicnn

    def counted(output, mel) -> None:
        reruns[0] += 1
        float32_again(output, mel)

    tagger._float32_musicnn = counted  # type: ignore[method-assign]
    n = changed_default = changed_musicnn = changed_guarded = guarded_default = 0
    margin_default = audioset.BF16_MARGIN
    times: dict[bool, list[float]] = {False: [], True: []}
    drift: dict[str, list[float]] = {catalog.MUSICNN_TAGGER: [], tagger.name: []}
    margin: dict[str, list[float]] = {catalog.MUSICNN_TAGGER: [], tagger.name: []}
    for d in args.dirs:
        files = sorted(p for p in d.rglob("*") if p.suffix.lower() in AUDIO)
        for path in files[: args.limit or None]:
            item = prepare(Track.of_file(path), plan)
            if item.error or item.skip:
                print(f"{path.name}: not analysed ({item.error or item.skip})")
                continue
            got: dict[bool, dict[str, list[str]]] = {}
            sc: dict[bool, dict] = {False: {}, True: {}}
            for bf16 in (n % 2 == 0, n % 2 == 1):  # alternate which precision runs first
                tagger.musicnn.bf16 = bf16
                audioset.BF16_MARGIN = 0.0  # raw bf16: no float32 re-run
                got[bf16] = written(tagger, item, gmap, sc[bf16])
                times[bf16].append(musicnn_seconds(tagger, item) / len(item.features["mel"]))
            audioset.BF16_MARGIN, tagger.musicnn.bf16 = margin_default, True
            guarded = written(tagger, item, gmap, {})
            n += 1
            guarded_default += guarded[tagger.name] != got[False][tagger.name]
            if guarded != got[False]:
                changed_guarded += 1
                print(f"GUARDED CHANGED {path.name}: float32 {got[False]} guarded {guarded}")
            for name in (catalog.MUSICNN_TAGGER, tagger.name):
                a, b = sc[False][name], sc[True][name]
                drift[name].append(max(abs(a[g] - b.get(g, 0.0)) for g in a))
                margin[name].append(choice_margin(a, name))
            d_def = got[False][tagger.name] != got[True][tagger.name]
            d_mus = got[False][catalog.MUSICNN_TAGGER] != got[True][catalog.MUSICNN_TAGGER]
            changed_default += d_def
            changed_musicnn += d_mus
            if d_def or d_mus:
                print(f"CHANGED {path.name}: float32 {got[False]} bf16 {got[True]}")
    print(f"{n} tracks; written genres changed by bf16 musicnn:")
    print(f"  default {tagger.name}: {changed_default}/{n}; its musicnn row: {changed_musicnn}/{n}")
    print(
        f"bf16, float32 re-run below margin {margin_default} (musicnn row guarded too: "
        f"{audioset.BF16_GUARD_MUSICNN}): re-run {reruns[0]}/{n}; written genres changed: "
        f"default {guarded_default}/{n}, default or its musicnn row {changed_guarded}/{n}"
    )
    for name in drift:
        d, m = np.array(drift[name]), np.array(margin[name])
        print(f"{name}: max |Δ genre score| {d.max():.4f} (p95 {np.percentile(d, 95):.4f});")
        for tol in (0.01, 0.02, 0.03, 0.05):
            print(f"  float32 margin < {tol}: {(m < tol).sum()}/{len(m)}")
        both = np.minimum(np.array(margin[catalog.MUSICNN_TAGGER]), np.array(margin[tagger.name]))
    for tol in (0.01, 0.02, 0.03, 0.05):
        print(f"either row's margin < {tol}: {(both < tol).sum()}/{len(both)}")
    f32, b16 = (1000 * float(np.median(times[k])) for k in (False, True))
    print(f"musicnn pair ms/patch (median over tracks): float32 {f32:.1f}, bf16 {b16:.1f}")


if __name__ == "__main__":
    main()
