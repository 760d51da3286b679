#!/usr/bin/env bash
# Fetch the noise of the speech / music / noise segmenter (docs/segments.md, data card): sound
# effects and ambience of Debian game-data packages, one folder per package under DEST, and each
# package's debian/copyright under DEST/../licences. Needs apt (Debian/Ubuntu), dpkg, python3.
#
#   bash tools/data/fetch_segment_noise.sh /work/data/noise
#
# Kept: the package's audio files minus music, voices and jingles (DROP below, and the per-package
# KEEP where a package holds much else). 0 A.D. keeps its sounds in a zip (public.zip): only its
# ambience, nature, resource-gathering and weapon sounds are taken out of it. Re-running skips
# packages already there; PACKAGES="a b" fetches only those.
set -euo pipefail
DEST=${1:?usage: fetch_segment_noise.sh DEST}
PACKAGES=${PACKAGES:-"alienblaster-data extremetuxracer-data frozen-bubble-data minetest-data
neverball-common pingus-data scorched3d-data sound-theme-freedesktop
0ad-data freedroidrpg-data hedgewars-data lincity-ng-data megaglest-data
ri-li-data supertux-data supertuxkart-data widelands-data"}
# music folders, spoken lines and musical jingles (these would teach "noise" music or speech)
DROP='/(music|Music|bgm|music_tracks|voices|voice|voice_samples|tux_ingame_comments|speech)/'
DROP+='|/([1-9][A-G]|ride_of_the_valkyries|hogchant3|Yoohoo|Hellish|gnu_flute|last_lap_fanfare'
DROP+='|race_finish|race_finish_victory|gp_end|track_intro|sara_airport_pa|lenautile_restaurant'
DROP+='|excellent|welldone|tada|frozen-mainzik-1p|frozen-mainzik-2p|introzik|intro|playon'
DROP+='|ThouArtDefeated_Sound_0|Takeover_Game_Won_Sound_0|Takeover_Game_Lost_Sound_0'
DROP+='|[a-z_]+_(ack|select)[0-9]+)\.[a-z0-9]+$'
declare -A KEEP=(
  [megaglest-data]='/commondata/sounds/'
  [supertuxkart-data]='/data/sfx/'
  [freedroidrpg-data]='/sound/effects/'
)
source "$(dirname "$0")/debian_package.sh"
package_dirs "$DEST"
for pkg in $PACKAGES; do
  [ -d "$DEST/$pkg" ] && continue
  tmp=$(unpack_package "$pkg")
  mkdir -p "$DEST/$pkg"
  if [ "$pkg" = 0ad-data ]; then
    python3 - "$tmp/usr/share/games/0ad/mods/public/public.zip" "$DEST/$pkg" <<'EOF'
import re
import sys
import zipfile

keep = re.compile(r"^audio/(ambient|resource|attack/(weapon|impact|siege|fire)|actor/(fauna|singlesteps|ship|mounted))/.*\.ogg$")
with zipfile.ZipFile(sys.argv[1]) as z:
    for name in z.namelist():
        if keep.match(name):
            z.extract(name, sys.argv[2])
EOF
  else
    find "$tmp" -type f \( -iname '*.ogg' -o -iname '*.wav' -o -iname '*.flac' -o -iname '*.oga' \) |
      grep -E "${KEEP[$pkg]:-.}" | grep -v -E "$DROP" | keep_files "$tmp" "$DEST/$pkg"
  fi
  rm -rf "$tmp"
  echo "$pkg: $(find "$DEST/$pkg" -type f | wc -l) files"
done
