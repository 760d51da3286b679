"""The README stays true (issue 17): the quick start is two commands, CI runs the checks the
README lists, every `tag` option and config key is documented, mgctag is not said to be on PyPI."""

from __future__ import annotations

import re
from pathlib import Path

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
