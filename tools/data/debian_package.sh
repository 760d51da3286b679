# Sourced by the fetch scripts: where Debian packages are kept, and one package unpacked.
#
#   source tools/data/debian_package.sh; package_dirs DEST; tmp=$(unpack_package PKG)
#   find "$tmp" ... | keep_files "$tmp" "$DEST/PKG"
#
# package_dirs sets DEST (absolute), DEBS (DEST/../debs: downloaded .deb files, kept for re-runs)
# and LICENCES (DEST/../licences: each package's debian/copyright). unpack_package downloads PKG
# with `apt-get download` unless its .deb is already in DEBS, unpacks it into a new temporary
# folder (printed; the caller removes it) and copies its copyright into LICENCES.

package_dirs() {
  mkdir -p "$1" "$1/../licences" "$1/../debs"
  DEST=$(cd "$1" && pwd)
  LICENCES=$(cd "$DEST/../licences" && pwd)
  DEBS=$(cd "$DEST/../debs" && pwd)
}

unpack_package() {
  local pkg=$1 deb tmp
  (cd "$DEBS" && ls "${pkg}"_*.deb >/dev/null 2>&1 || apt-get download "$pkg" >&2)
  deb=$(ls "$DEBS/${pkg}"_*.deb | head -n 1)
  tmp=$(mktemp -d)
  dpkg -x "$deb" "$tmp"
  cp "$tmp/usr/share/doc/$pkg/copyright" "$LICENCES/$pkg.copyright" 2>/dev/null || true
  echo "$tmp"
}

# Move the files named on stdin (paths under TMP) into DEST, keeping their paths below TMP.
keep_files() {
  local tmp=$1 dest=$2 f rel
  while read -r f; do
    rel=${f#"$tmp"/}
    mkdir -p "$dest/$(dirname "$rel")"
    mv "$f" "$dest/$rel"
  done
}
