"""Fetch the extra training music for the distilled students (docs/distill-data.md).

    python -m tools.data.fetch_distill_music /work/data/music-x [--packages a b]

The music of Debian game-data packages, one folder per package under DEST, and each package's
debian/copyright under DEST/../licences (tools.data.debian_packages). Needs apt (Debian/Ubuntu)
and dpkg.

Only files under a music folder are kept (music/, bgm/, songs/, moh/); UFO:AI keeps its music in
a zip (0music.pk3). Fret's on Fire songs come as a backing track and a guitar track: they are
mixed into one full.flac per song with mgctag's own decoder. Re-running skips packages already
there.
"""

from __future__ import annotations

import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import soundfile as sf

from mgctag.audio import decode
from tools.data.debian_packages import (
    Dirs,
    audio_files,
    count_files,
    fetch_packages,
    keep,
    matching,
    unpack,
)

PACKAGES = (
    "0ad-data",
    "asterisk-moh-opsound-wav",
    "freedroidrpg-data",
    "hedgewars-data",
    "megaglest-data",
    "supertux-data",
    "supertuxkart-data",
    "ufoai-music",
    "widelands-data",
    "frozen-bubble-data",
    "extremetuxracer-data",
    "scorched3d-data",
    "neverball-common",
    "fretsonfire-songs-muldjord",
    "fretsonfire-songs-sectoid",
    "lincity-ng-data",
    "xmoto-data",
    "openclonk-data",
    "pink-pony-data",
)
EXTENSIONS = (".ogg", ".mp3", ".wav", ".flac", ".opus")
MUSIC_PATH = r"/music/|/bgm/|/songs/|/moh/|mainzik"  # any case


def fetch(package: str, dirs: Dirs) -> None:
    folder = dirs.dest / package
    tmp = unpack(package, dirs)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for pk3 in sorted(tmp.rglob("*.pk3")):  # UFO:AI: the music inside a zip
            with zipfile.ZipFile(pk3) as z:
                for name in z.namelist():
                    if name.startswith("music/"):
                        z.extract(name, folder / "zip")
        music = matching(audio_files(tmp, EXTENSIONS), tmp, MUSIC_PATH, flags=re.IGNORECASE)
        keep(music, tmp, folder)
    finally:
        shutil.rmtree(tmp)
    print(f"{package}: {count_files(folder)} files", flush=True)


def mix_fretsonfire(dest: Path) -> None:
    """Backing + guitar -> one full mix per song (full.flac), the parts removed."""
    for song in sorted(dest.glob("fretsonfire-songs-*/**/song.ogg")):
        guitar = song.with_name("guitar.ogg")
        parts = [decode.load(p, 44100, mono=False) for p in (song, guitar) if p.exists()]
        n = min(p.shape[-1] for p in parts)
        mix = np.stack([p[..., :n] for p in parts]).sum(axis=0)
        peak = max(1.0, float(np.abs(mix).max()))
        sf.write(song.with_name("full.flac"), (mix / peak).T, 44100)
        song.unlink()
        guitar.unlink(missing_ok=True)


def main() -> None:
    dirs = fetch_packages(__doc__, PACKAGES, fetch)
    mix_fretsonfire(dirs.dest)


if __name__ == "__main__":
    main()
