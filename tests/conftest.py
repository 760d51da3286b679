"""Shared test fixtures: the one path to ../shared, the one CLI runner, one tagged library.

Tests that need the real recordings in ../shared/audio skip with one clear reason when it is
missing (a fresh clone without the test data), instead of failing in hundreds of places.
"""

from __future__ import annotations

import shutil
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))  # tests/media.py, importable as `media`

import media  # noqa: E402

SHARED = media.SHARED
SHARED_AUDIO = media.AUDIO
NO_SHARED = (
    f"test recordings missing: {SHARED_AUDIO} (see README, 'Test data'); tests that need them skip"
)


def _needs_shared(module: ModuleType | None) -> bool:
    """A test module needs ../shared if it uses tests/media.py or names a path inside ../shared."""
    if module is None:
        return False
    for value in vars(module).values():
        if value is media or getattr(value, "__module__", None) == "media":
            return True
        if isinstance(value, Path) and (value == SHARED or SHARED in value.parents):
            return True
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if SHARED_AUDIO.is_dir():
        return
    skip = pytest.mark.skip(reason=NO_SHARED)
    for item in items:
        if _needs_shared(getattr(item, "module", None)):
            item.add_marker(skip)


def pytest_report_header(config: pytest.Config) -> str | None:
    return None if SHARED_AUDIO.is_dir() else NO_SHARED


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def cli(*args: str | Path) -> CliResult:
    """Run `mgctag ARGS` in this process the way the console script does (`cli.run`): expected
    errors become one line and their exit status; a bug's exception propagates to the test."""
    from mgctag.cli import run

    runner = CliRunner()
    code = 0
    with runner.isolation() as (stdout, stderr, _):
        try:
            run([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        sys.stdout.flush()
        sys.stderr.flush()
        out, err = stdout.getvalue(), stderr.getvalue()
    return CliResult(code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))


@pytest.fixture(scope="session")
def tagged_library(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A small real library tagged once per session: (music folder, database). Copy before use."""
    if not SHARED_AUDIO.is_dir():
        pytest.skip(NO_SHARED)
    root = tmp_path_factory.mktemp("tagged")
    music, db = root / "Music", root / "lib.db"
    media.make_library(music, exts=("mp3", "flac"))
    result = cli("tag", music, "--db", db, "--stems", "off")
    assert result.code == 0, result.output
    return music, db


@pytest.fixture
def library_copy(tagged_library: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """A private copy of the tagged library: the files, and a database whose paths point at them."""
    music, db = tagged_library
    new_music, new_db = tmp_path / "Music", tmp_path / "lib.db"
    shutil.copytree(music, new_music)
    with sqlite3.connect(db) as src, sqlite3.connect(new_db) as dst:
        src.backup(dst)  # a consistent copy, WAL included
        for table in ("tracks", "writes", "failures"):
            dst.execute(
                f"UPDATE {table} SET path = ? || substr(path, ?) WHERE path LIKE ? || '%'",
                (str(new_music), len(str(music)) + 1, str(music)),
            )
    return new_music, new_db
