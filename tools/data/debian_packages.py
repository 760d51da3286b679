"""Where the fetchers keep Debian packages, and one package unpacked (formerly debian_package.sh).

Used by tools.data.fetch_distill_music and tools.data.fetch_segment_noise. Beside DEST sit
DEST/../debs (the downloaded .deb files, kept so that a re-run downloads nothing) and
DEST/../licences (each package's debian/copyright). Needs apt (Debian/Ubuntu) and dpkg.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Dirs:
    dest: Path
    debs: Path
    licences: Path

    @classmethod
    def beside(cls, dest: Path) -> Dirs:
        """DEST and its two sibling folders, created, as absolute paths."""
        dest = dest.resolve()
        dirs = cls(dest, dest.parent / "debs", dest.parent / "licences")
        for folder in (dirs.dest, dirs.debs, dirs.licences):
            folder.mkdir(parents=True, exist_ok=True)
        return dirs


def unpack(package: str, dirs: Dirs) -> Path:
    """The package unpacked into a new temporary folder (the caller removes it).

    Downloaded with `apt-get download` unless its .deb is already in DEBS; its copyright is
    copied into LICENCES.
    """
    if not list(dirs.debs.glob(f"{package}_*.deb")):
        subprocess.run(["apt-get", "download", package], cwd=dirs.debs, check=True)
    deb = sorted(dirs.debs.glob(f"{package}_*.deb"))[0]
    tmp = Path(tempfile.mkdtemp())
    subprocess.run(["dpkg", "-x", str(deb), str(tmp)], check=True)
    copyright = tmp / "usr" / "share" / "doc" / package / "copyright"
    if copyright.is_file():
        shutil.copyfile(copyright, dirs.licences / f"{package}.copyright")
    return tmp


def audio_files(root: Path, extensions: Iterable[str]) -> list[Path]:
    """Regular files (not links) under root whose extension is one of these, any case."""
    exts = {e.lower() for e in extensions}
    return sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() in exts and p.is_file() and not p.is_symlink()
    )


def matching(files: Iterable[Path], root: Path, pattern: str, flags: int = 0) -> list[Path]:
    """The files whose path in the package ("/usr/share/...") the regular expression finds."""
    found = re.compile(pattern, flags)
    return [p for p in files if found.search("/" + p.relative_to(root).as_posix())]


def keep(files: Iterable[Path], tmp: Path, dest: Path) -> None:
    """Move files (under tmp) into dest, keeping their paths below tmp."""
    for f in files:
        target = dest / f.relative_to(tmp)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(f, target)


def fetch_packages(
    doc: str | None, packages: Sequence[str], fetch: Callable[[str, Dirs], None]
) -> Dirs:
    """The fetchers' command line (DEST [--packages ...]): fetch each package not yet in DEST."""
    ap = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("dest", type=Path, help="one folder per package goes here")
    ap.add_argument("--packages", nargs="+", default=list(packages), help="only these packages")
    args = ap.parse_args()
    dirs = Dirs.beside(args.dest)
    for package in args.packages:
        if not (dirs.dest / package).is_dir():
            fetch(package, dirs)
    return dirs


def count_files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file())
