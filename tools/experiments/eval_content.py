"""Skip rates of the content gate: speech must be skipped, music must not (rap included).

    bash ../shared/corpus/fetch-debian-music.sh /work/data/corpus full
    cd /work/data && apt-get download asterisk-core-sounds-en-wav
    dpkg -x asterisk-core-sounds-en-wav_*.deb speech-en
    python -m tools.experiments.eval_content --corpus /work/data/corpus \\
        --speech /work/data/speech-en

Sets: the 3 LibriSpeech clips in ../shared/audio/librosa and the asterisk English prompts (speech:
should be skipped); every file of the Debian game-music corpus (split at 30 s: the short ones are
jingles and hyperrogue's sound effects), every MUSDB preview and the other labelled music clips of
tools.experiments.eval_genres (music: should not be skipped). Windows and mn04 outputs come from
tools.experiments.clip_cache, exactly as `mgctag tag` plans them. Prints each set's skip rate under
the shipped floors (mgctag/content.py), the margin (quantiles of the per-track share of music
windows and of the per-window music evidence), and a sweep of the music floor.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mgctag.audio.decode import DecodeError, probe
from mgctag.content import MUSIC, ContentGate, track_class
from mgctag.genres import default_map
from mgctag.models.registry import load_model
from tools.experiments.clip_cache import analyse
from tools.experiments.eval_genres import EXTRA
from tools.paths import AUDIO

SUFFIXES = {".ogg", ".opus", ".mp3", ".flac", ".wav", ".m4a", ".mp4"}
LIBRISPEECH = ("198-209-0000.hq.ogg", "3436-172162-0000.hq.ogg", "5703-47212-0000.hq.ogg")


def files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--audio", type=Path, default=AUDIO)
    ap.add_argument("--corpus", type=Path, default=Path("/work/data/corpus"))
    ap.add_argument("--speech", type=Path, default=Path("/work/data/speech-en"))
    args = ap.parse_args()
    corpus = files(args.corpus)
    durations = {p: probe(p).duration for p in corpus}
    long_files = [p for p in corpus if durations[p] >= 30]
    short_files = [p for p in corpus if durations[p] < 30]
    sets = {
        "LibriSpeech (librosa)": ([args.audio / "librosa" / f for f in LIBRISPEECH], False),
        "asterisk English prompts": (files(args.speech), False),
        "Debian corpus, files of 30 s or more": (long_files, True),
        "Debian corpus, files under 30 s (jingles, sound effects)": (short_files, True),
        "MUSDB previews": (files(args.audio / "musdb18-7s" / "train"), True),
        "other labelled music clips": ([args.audio / f for f, _, _ in EXTRA], True),
    }
    gate = ContentGate.for_labels(load_model("audioset_mn04")[1].labels, default_map().tags)
    floors = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)
    print(f"shipped: music floor {gate.music_floor}, speech floor {gate.speech_floor}\n")
    print("| set | files | should | skipped (shipped floors) | of them silent | unreadable |"
          + "".join(f" skipped @ {f} |" for f in floors))  # fmt: skip
    print("|---|---:|---|---:|---:|---:|" + "---:|" * len(floors))
    details: dict[str, tuple[list[str], np.ndarray]] = {}
    passed: dict[str, list[str]] = {name: [] for name in sets}
    for name, (paths, is_music) in sets.items():
        evidence, skipped, unreadable, silent = [], [], 0, 0
        sweep = {f: 0 for f in floors}
        for path in paths:
            try:
                out = analyse(path, musicnn=False)
            except DecodeError:
                unreadable += 1
                continue
            probs = out.get("mn04", np.zeros((0, 527)))
            if len(probs) == 0 or out["silent"].all():  # the pipeline reports these as silent
                silent += 1
                skipped.append(f"{path.name}: silent")
                continue
            classes = gate.classify(probs)
            if track_class(classes) != MUSIC:
                skipped.append(f"{path.name}: {classes}")
            else:
                passed.setdefault(name, []).append(f"{path.parent.name}/{path.name}")
            music, _ = gate.scores(probs)
            evidence.append(music)
            for f in floors:
                windows = [MUSIC if m >= f else "x" for m in music]
                sweep[f] += track_class(windows) != MUSIC
        n = len(paths) - unreadable
        sweep = {f: k + silent for f, k in sweep.items()}
        details[name] = (skipped, np.concatenate(evidence) if evidence else np.zeros(0))
        print(
            f"| {name} | {n} | {'play' if is_music else 'skip'} | {len(skipped)} "
            f"({100 * len(skipped) / max(n, 1):.1f} %) | {silent} | {unreadable} |"
            + "".join(f" {100 * sweep[f] / max(n, 1):.1f} % |" for f in floors)
        )
    print("\nPer-window music evidence (strongest of Music, singing/rapping, genre classes):")
    for name, (_, ev) in details.items():
        q = np.quantile(ev, [0, 0.01, 0.05, 0.5, 0.95, 0.99, 1]) if ev.size else np.zeros(0)
        print(
            f"- {name}: {ev.size} windows; min/1/5/50/95/99 %/max "
            + " ".join(f"{v:.3f}" for v in q)
        )
    for name, (skipped, _) in details.items():
        is_music = sets[name][1]
        if skipped and is_music:
            print(f"\nskipped in {name}:\n  " + "\n  ".join(skipped[:20]))
        elif not is_music:
            kept = passed[name]
            print(f"\n{name}: {len(kept)} not skipped: {', '.join(kept[:20])}")


if __name__ == "__main__":
    main()
