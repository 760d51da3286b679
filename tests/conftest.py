"""Shared test fixtures: the one CLI runner, one tagged library, and the skip accounting.

The test audio lives in tests/data (tests/media.py). Only the research-only data in ../shared
(MUSDB previews, the EfficientAT reference) is optional: a test that needs it calls `media.need()`
and skips alone with its reason, and the report says how many skipped and why even under -q.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
from collections import Counter
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from _pytest.terminal import TerminalReporter
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))  # tests/media.py, importable as `media`

import media  # noqa: E402

# Cache compiled bytecode even where the environment says not to (PYTHONDONTWRITEBYTECODE=1 on
# this project's machines): without it every worker re-compiles mgctag and pytest re-rewrites
# each test module's asserts, and every CLI child re-compiles mgctag (~5 % of the quick loop's
# CPU). The caches are __pycache__ folders, ignored by git.
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

if "PYTEST_XDIST_WORKER" in os.environ:
    # Parallel workers (-n auto, pyproject's addopts) already fill the cores: one torch thread
    # each, set before torch is imported (OMP_NUM_THREADS is read at import), so two workers on
    # two cores do not each start two threads and fight.
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--max-skipped",
        type=int,
        default=None,
        metavar="N",
        help="fail the run when more than N tests skip for a reason other than absent optional "
        "data (../shared): a broken fixture must not skip half the suite unnoticed (.ci/run)",
    )


def _unexpected_skips(config: pytest.Config) -> int:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    optional = set(media.MISSING.values())
    return sum(_skip_reason(r) not in optional for r in skipped)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    limit = session.config.getoption("--max-skipped")
    if limit is not None and exitstatus == 0 and _unexpected_skips(session.config) > limit:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_report_header(config: pytest.Config) -> list[str]:
    missing = [reason for root, reason in media.MISSING.items() if not root.exists()]
    return [f"test data: {media.DATA}", *missing]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A skip raised by `media.need()` is reported at the test that needed the data (-rs)."""
    report = yield
    longrepr = report.longrepr
    if report.skipped and isinstance(longrepr, tuple) and longrepr[0].endswith("media.py"):
        path, lineno, _ = item.location
        report.longrepr = (path, (lineno or 0) + 1, longrepr[2])
    return report


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def pytest_terminal_summary(terminalreporter: TerminalReporter) -> None:
    """One line per skip reason, printed even under -q: "N tests skipped: REASON"."""
    skipped = terminalreporter.stats.get("skipped", [])
    reasons = Counter(_skip_reason(r) for r in skipped)
    for reason, n in reasons.most_common():
        terminalreporter.write_line(f"{n} test{'s' * (n != 1)} skipped: {reason}")
    limit = terminalreporter.config.getoption("--max-skipped")
    unexpected = _unexpected_skips(terminalreporter.config)
    if limit is not None and unexpected > limit:
        terminalreporter.write_line(
            f"FAILED: {unexpected} tests skipped for reasons other than absent optional data, "
            f"more than --max-skipped {limit}",
            red=True,
        )


def cache_dir(config: pytest.Config, tmp: pytest.TempPathFactory, name: str) -> Path:
    """pytest's own cache folder (.pytest_cache, kept between runs, gone with --cache-clear), or
    a pytest temp dir when there is none (`-p no:cacheprovider`) or it is not writable."""
    cache = getattr(config, "cache", None)
    try:
        if cache is not None:
            return cache.mkdir(name)
    except OSError:
        pass
    return tmp.mktemp(name)


@pytest.fixture(scope="session")
def long_mp3(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real full-length MP3 (3 min 14 s: two in-repo recordings back to back), encoded once
    and kept in pytest's cache: long enough for windows far into a track and real seeking."""
    path = cache_dir(request.config, tmp_path_factory, "mgctag-media") / "long_v1.mp3"
    if not path.is_file():
        parts = [media.real_clip(n, 600.0) for n in ("Karissa_Hobbs_-_Lets_Go_Fishin",
                                                     "Kevin_MacLeod_-_Vibe_Ace")]  # fmt: skip
        part = path.with_suffix(f".{os.getpid()}.mp3")
        media.encode(np.concatenate([y for y, _ in parts], axis=1), parts[0][1], part)
        part.replace(path)  # whole or not at all, also with parallel sessions
    return path


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
    root = tmp_path_factory.mktemp("tagged")
    music, db = root / "Music", root / "lib.db"
    media.make_library(music, exts=("mp3", "flac"))
    result = cli("tag", music, "--db", db, "--stems", "off")
    assert result.code == 0, result.output
    return music, db


@pytest.fixture
def library_copy(tagged_library: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """A private copy of the tagged library: the files, and a database whose paths point at them."""
    return copy_library(*tagged_library, tmp_path)


def copy_library(music: Path, db: Path, dest: Path) -> tuple[Path, Path]:
    """Copy a music folder and its database into `dest` (as Music/ and lib.db), the database's
    paths pointing at the copies: tag once per module, then give each test its own copy."""
    new_music, new_db = dest / "Music", dest / "lib.db"
    shutil.copytree(music, new_music)
    with sqlite3.connect(db) as src, sqlite3.connect(new_db) as dst:
        src.backup(dst)  # a consistent copy, WAL included
        for table in ("tracks", "writes", "failures"):
            dst.execute(
                f"UPDATE {table} SET path = ? || substr(path, ?) WHERE path LIKE ? || '%'",
                (str(new_music), len(str(music)) + 1, str(music)),
            )
    return new_music, new_db


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Private config and data folders (XDG on Linux, as platformdirs reads them), with none of
    mgctag's variables set: what a user with no settings has."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    for name in ("MGCTAG_DB", "MGCTAG_MODEL", "MGCTAG_STEMS"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "config" / "mgctag").mkdir(parents=True)
    return tmp_path
