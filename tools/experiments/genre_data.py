"""The labelled library the genre experiments read: real clips with the genre their source states,
copied outside the repo, the label written into each copy's genre tag, analysed once by the real
pipeline (the default tagger, nothing written), so cross-validation reads stored rows and is cheap.

    python -m tools.experiments.genre_data [--audio ../shared/audio] [--corpus /work/data/corpus] \
        [--dest /work/data/genres] [--per-package 10]

Clips: the 70 MUSDB18 previews (`musdb18-7s/genres.csv`; research use, never in tests/data), 10
other clips in shared/audio whose source states the genre (`eval_genres.EXTRA`), and up to
`--per-package` tracks of at least 30 s from two Debian game-music packages labelled as
tests/data/music/genres.csv labels them (nexuiz-music: Electronic, wesnoth: Classical). Each
clip's group (for grouped cross-validation) is its artist; a package is one group.
Writes DEST/library/ (the copies), DEST/labels.csv and DEST/library.db.
"""

from __future__ import annotations

import argparse
import csv
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from tools.experiments.eval_genres import EXTRA  # the other labelled clips, as labelled there
from tools.paths import AUDIO

DEST = Path("/work/data/genres")
PACKAGES = {"nexuiz-music": "Electronic", "wesnoth-1.16-music": "Classical"}
NOT_MUSIC = {"thunder.ogg"}  # nexuiz's 48 s of thunder


@dataclass(frozen=True)
class Clip:
    source: Path
    name: str  # the copy's file name
    label: str
    group: str
    collection: str


def clips(audio: Path, corpus: Path | None, per_package: int) -> list[Clip]:
    """Every labelled clip, in a fixed order (`audio`: shared/audio)."""
    out = []
    musdb = audio / "musdb18-7s"
    with open(musdb / "genres.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            name, artist = row["file"], row["file"].split(" - ")[0]
            out.append(Clip(musdb / "train" / name, name, row["genre"], artist, "MUSDB"))
    for i, (rel, label, artist) in enumerate(EXTRA):
        src = audio / rel
        out.append(Clip(src, f"extra{i:02d}{''.join(src.suffixes[-1:])}", label, artist, "other"))
    if corpus is not None:
        import soundfile as sf

        for package, label in PACKAGES.items():
            files = [
                p for p in sorted((corpus / package).glob("*.ogg"))
                if p.name not in NOT_MUSIC and sf.info(p).duration >= 30
            ][:per_package]  # fmt: skip
            out += [Clip(p, f"{package}-{p.name}", label, package, "Debian") for p in files]
    return out


def build(audio: Path, corpus: Path | None, dest: Path, per_package: int) -> Path:
    """Copies with their label in the genre tag, labels.csv, then one analysis of them all."""
    from mgctag import pipeline
    from mgctag.library.db import Library
    from mgctag.options import TagOptions
    from mgctag.tags import write_genres

    folder = dest / "library"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for clip in clips(audio, corpus, per_package):
        copy = folder / clip.name
        if not copy.exists():
            shutil.copyfile(clip.source, copy)
            write_genres(copy, [clip.label])
        rows.append({"path": str(copy), "label": clip.label, "group": clip.group,
                     "collection": clip.collection})  # fmt: skip
    with open(dest / "labels.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lib = Library(dest / "library.db")
    summary = pipeline.tag_paths(lib, [folder], TagOptions(dry_run=True), write=False)
    print(f"{len(rows)} clips; analysed {summary.analysed}, failed {summary.failed}")
    for path, reason in summary.failures:
        print(f"  failed: {path}: {reason}")
    return dest / "library.db"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--audio", type=Path, default=AUDIO, help="shared/audio")
    ap.add_argument("--corpus", type=Path, default=Path("/work/data/corpus"))
    ap.add_argument("--dest", type=Path, default=DEST)
    ap.add_argument("--per-package", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    corpus = args.corpus if args.corpus.is_dir() else None
    build(args.audio, corpus, args.dest, args.per_package)


if __name__ == "__main__":
    main()
