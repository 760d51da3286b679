"""The README stays true (issue 17): the quick start is two commands, CI runs the checks the
README lists, every `tag` option and config key is documented, mgctag is not said to be on PyPI.
And the test suite's promises (issue 30): tests/data is small and every file in it is listed with
a free licence, git keeps it, tests/README.md names every test file, the quick loop is measured."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import typer

from mgctag.cli.app import app
from mgctag.options import TAG_DEFAULTS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text("utf-8")


def _block(heading: str) -> list[str]:
    """The command lines of the first ```sh block under `heading`."""
    section = README.split(f"## {heading}\n", 1)[1]
    code = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.split("  #")[0].strip() for line in code.splitlines() if line.strip()]


def test_quick_start_is_two_commands_install_and_tag_then_ci() -> None:
    first, second = _block("Quick start")
    assert "--index-url https://download.pytorch.org/whl/cpu" in first
    assert "pip install ." in first and first.endswith("mgctag tag ~/Music")
    assert second == "bash .ci/run" and (ROOT / ".ci" / "run").is_file()


def test_ci_runs_exactly_the_checks_the_readme_lists() -> None:
    checks = [c for c in _block("Development") if not c.startswith("pip ")]
    ci = (ROOT / ".ci" / "run").read_text("utf-8")
    ci_checks = ci.split("# exactly the checks README.md lists under Development\n", 1)[1]
    ran = [line.strip() for line in ci_checks.splitlines() if line.strip()]
    assert ran == [c for c in checks if c != 'python -m pytest -q -m "not slow"']


def test_install_says_where_mgctag_comes_from() -> None:
    install = README.split("## Install\n", 1)[1].split("\n## ", 1)[0]
    assert "not on PyPI" in install and "pip install mgctag" not in README
    assert "Supported systems" in install


def test_every_tag_option_and_config_key_is_documented() -> None:
    tag = typer.main.get_command(app).commands["tag"]  # type: ignore[attr-defined]
    flags = {o for p in tag.params for o in p.opts if o.startswith("--") and o != "--help"}
    missing = sorted(f for f in flags if not re.search(rf"`{re.escape(f)}[ `=]", README))
    assert not missing, missing
    assert all(f"`{key}`" in README for key in TAG_DEFAULTS)


# --- the test suite's own promises (issue 30): its data travels with it, freely licensed ---

DATA = ROOT / "tests" / "data"
DATA_META = {"LICENSES.md", "genres.csv"}  # about the data, written with it


def _data_files() -> list[str]:
    return sorted(
        str(p.relative_to(DATA)) for p in DATA.rglob("*") if p.is_file() and p.name not in DATA_META
    )


def test_test_data_is_small() -> None:
    total = sum(p.stat().st_size for p in DATA.rglob("*") if p.is_file())
    assert 1_000_000 < total <= 15_000_000, total


def test_every_test_data_file_is_listed_with_an_allowed_licence() -> None:
    from tools.build_test_data import ALLOWED_LICENCES

    rows = {}
    for line in (DATA / "LICENSES.md").read_text("utf-8").splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 6:
            rows[cells[0].strip("`")] = cells[3].strip("`")
    assert sorted(rows) == _data_files()  # every file listed, every row a file
    bad = {f: lic for f, lic in rows.items() if lic not in ALLOWED_LICENCES}
    assert not bad, bad
    assert all(f"`{lic}`: https://" in (DATA / "LICENSES.md").read_text("utf-8")
               for lic in set(rows.values()))  # fmt: skip


def test_test_data_is_not_ignored_by_git() -> None:
    """The licensed audio is committed: .gitignore's *.npz and the like must not drop it."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    files = [str(Path("tests/data") / f) for f in _data_files()]
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *files], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    assert not ignored


def test_tests_readme_names_every_test_file_and_the_quick_loop_is_measured() -> None:
    guide = (ROOT / "tests" / "README.md").read_text("utf-8")
    missing = [p.name for p in sorted((ROOT / "tests").glob("test_*.py")) if p.name not in guide]
    assert not missing, f"tests/README.md's layout table lacks {missing}"
    assert 'python -m pytest -q -m "not slow"' in guide and "--max-skipped" in guide
    bench = (ROOT / "docs" / "benchmarks.md").read_text("utf-8")
    section = bench.split("## Test suite", 1)[1].split("\n## ", 1)[0]
    assert 'pytest -q -m "not slow"' in section and re.search(r"\d+(\.\d+)? s\b", section)
