"""Fetch the noise of the speech / music / noise segmenter (docs/segments.md, data card).

    python -m tools.data.fetch_segment_noise /work/data/noise [--packages a b]

Sound effects and ambience of Debian game-data packages, one folder per package under DEST, and
each package's debian/copyright under DEST/../licences (tools.data.debian_packages). Needs apt
(Debian/Ubuntu) and dpkg.

Kept: the package's audio files minus music, voices and jingles (DROP below, and the per-package
KEEP where a package holds much else). 0 A.D. keeps its sounds in a zip (public.zip): only its
ambience, nature, resource-gathering and weapon sounds are taken out of it. Re-running skips
packages already there.
"""

from __future__ import annotations

import re
import shutil
import zipfile
from pathlib import Path

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
    "alienblaster-data",
    "extremetuxracer-data",
    "frozen-bubble-data",
    "minetest-data",
    "neverball-common",
    "pingus-data",
    "scorched3d-data",
    "sound-theme-freedesktop",
    "0ad-data",
    "freedroidrpg-data",
    "hedgewars-data",
    "lincity-ng-data",
    "megaglest-data",
    "ri-li-data",
    "supertux-data",
    "supertuxkart-data",
    "widelands-data",
)
EXTENSIONS = (".ogg", ".wav", ".flac", ".oga")
# music folders, spoken lines and musical jingles (these would teach "noise" music or speech)
DROP = re.compile(
    r"/(music|Music|bgm|music_tracks|voices|voice|voice_samples|tux_ingame_comments|speech)/"
    r"|/([1-9][A-G]|ride_of_the_valkyries|hogchant3|Yoohoo|Hellish|gnu_flute|last_lap_fanfare"
    r"|race_finish|race_finish_victory|gp_end|track_intro|sara_airport_pa|lenautile_restaurant"
    r"|excellent|welldone|tada|frozen-mainzik-1p|frozen-mainzik-2p|introzik|intro|playon"
    r"|ThouArtDefeated_Sound_0|Takeover_Game_Won_Sound_0|Takeover_Game_Lost_Sound_0"
    r"|[a-z_]+_(ack|select)[0-9]+)\.[a-z0-9]+$"
)
KEEP = {  # where a package holds much else: only this folder
    "megaglest-data": "/commondata/sounds/",
    "supertuxkart-data": "/data/sfx/",
    "freedroidrpg-data": "/sound/effects/",
}
ZERO_AD_ZIP = Path("usr/share/games/0ad/mods/public/public.zip")
ZERO_AD_KEEP = re.compile(
    r"^audio/(ambient|resource|attack/(weapon|impact|siege|fire)"
    r"|actor/(fauna|singlesteps|ship|mounted))/.*\.ogg$"
)


def fetch(package: str, dirs: Dirs) -> None:
    folder = dirs.dest / package
    tmp = unpack(package, dirs)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if package == "0ad-data":
            with zipfile.ZipFile(tmp / ZERO_AD_ZIP) as z:
                for name in z.namelist():
                    if ZERO_AD_KEEP.match(name):
                        z.extract(name, folder)
        else:
            files = matching(audio_files(tmp, EXTENSIONS), tmp, KEEP.get(package, "."))
            rel = {f: "/" + f.relative_to(tmp).as_posix() for f in files}
            keep([f for f in files if not DROP.search(rel[f])], tmp, folder)
    finally:
        shutil.rmtree(tmp)
    print(f"{package}: {count_files(folder)} files", flush=True)


def main() -> None:
    fetch_packages(__doc__, PACKAGES, fetch)


if __name__ == "__main__":
    main()
