"""Fetch the npm tarball with HTDemucs's weights into a cache file, for the tests and CI.

    python -m tools.fetch_htdemucs DEST.tgz

The weights may not be shipped (their terms: personal and research use only), so CI keeps them
in a cache outside the tree and points MGCTAG_HTDEMUCS_TGZ at it; tests/test_htdemucs.py skips,
with the reason, when the file is absent. The address and the hash are mgctag's own
(mgctag.separate.htdemucs), checked here as `models get` checks them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from mgctag.separate import htdemucs
from mgctag.separate.base import SeparationError, WeightsUnavailableError


def fetch(dest: Path) -> Path:
    """Download into DEST (atomically; an existing verified file is kept)."""
    if dest.is_file() and _verified(dest):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_suffix(".part")
    try:
        htdemucs.download(part, timeout=60.0)
        if not _verified(part):
            raise WeightsUnavailableError(f"{htdemucs.URL}: the .onnx inside fails its sha256")
        part.replace(dest)
    finally:
        part.unlink(missing_ok=True)
    return dest


def _verified(tarball: Path) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        onnx = htdemucs.extract_onnx(tarball, Path(tmp) / "htdemucs.onnx")
        return htdemucs.sha256(onnx) == htdemucs.ONNX_SHA256


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path)
    args = parser.parse_args(argv)
    try:
        print(fetch(args.dest))
    except (SeparationError, OSError) as err:
        print(f"HTDemucs weights not fetched: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
