#!/usr/bin/env bash
# Fetch the extra training music for the distilled students (docs/distill-data.md), with the
# dev venv active (or PYTHON=path/to/python):
# the music of Debian game-data packages, one folder per package under DEST, and each
# package's debian/copyright under DEST/../licences. Needs apt (Debian/Ubuntu), dpkg, unzip.
#
#   bash tools/data/fetch_distill_music.sh /work/data/music-x
#
# Only files under a music folder are kept (music/, bgm/, songs/, moh/); UFO:AI keeps its music
# in a zip (0music.pk3). Fret's on Fire songs come as a backing track and a guitar track: they are
# mixed into one full.flac per song with mgctag's own decoder. Re-running skips packages already
# there; PACKAGES="a b" fetches only those.
set -euo pipefail
DEST=${1:?usage: fetch_distill_music.sh DEST}
PACKAGES=${PACKAGES:-"0ad-data asterisk-moh-opsound-wav freedroidrpg-data hedgewars-data megaglest-data
supertux-data supertuxkart-data ufoai-music widelands-data frozen-bubble-data extremetuxracer-data
scorched3d-data neverball-common fretsonfire-songs-muldjord fretsonfire-songs-sectoid
lincity-ng-data xmoto-data openclonk-data pink-pony-data"}
source "$(dirname "$0")/debian_package.sh"
package_dirs "$DEST"
for pkg in $PACKAGES; do
  [ -d "$DEST/$pkg" ] && continue
  tmp=$(unpack_package "$pkg")
  mkdir -p "$DEST/$pkg"
  for z in $(find "$tmp" \( -name '*.pk3' \)); do
    unzip -q -o "$z" 'music/*' -d "$DEST/$pkg/zip" 2>/dev/null || true
  done
  find "$tmp" -type f \( -iname '*.ogg' -o -iname '*.mp3' -o -iname '*.wav' -o -iname '*.flac' \
      -o -iname '*.opus' \) | grep -i -E '/music/|/bgm/|/songs/|/moh/|mainzik' |
    keep_files "$tmp" "$DEST/$pkg"
  rm -rf "$tmp"
  echo "$pkg: $(find "$DEST/$pkg" -type f | wc -l) files"
done
# Fret's on Fire: backing + guitar -> one full mix per song
"${PYTHON:-python}" - "$DEST" <<'EOF'
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from mgctag.audio import decode

for song in Path(sys.argv[1]).glob("fretsonfire-songs-*/**/song.ogg"):
    parts = [decode.load(p, 44100, mono=False) for p in (song, song.with_name("guitar.ogg"))
             if p.exists()]
    n = min(p.shape[-1] for p in parts)
    mix = sum(p[..., :n] for p in parts)
    sf.write(song.with_name("full.flac"), (mix / max(1.0, float(np.abs(mix).max()))).T, 44100)
    song.unlink()
    song.with_name("guitar.ogg").unlink(missing_ok=True)
EOF
