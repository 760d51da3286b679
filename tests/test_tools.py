"""Every module of the tools/ package imports, and every runnable one answers `--help`.

The tools are not run by the suite (they need data outside the repository and minutes to hours),
so a renamed mgctag function or a broken import would otherwise show only when someone next runs
a benchmark. One child process (torch imported once) runs each module's `--help` in turn, the way
`python -m tools.bench.tag --help` does, and reports per module; the child keeps the tools'
environment settings (thread pools, TensorFlow flags) out of the test process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / "tools"

CHILD = r"""
import contextlib, importlib, io, json, runpy, sys, traceback
result = {}
for name, runnable in json.loads(sys.argv[1]):
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            if runnable:
                sys.argv = [name, "--help"]
                try:
                    runpy.run_module(name, run_name="__main__", alter_sys=True)
                    code = "returned without exiting"
                except SystemExit as exc:
                    code = exc.code or 0
            else:
                importlib.import_module(name)
                code = 0
    except BaseException:
        code = "raised"
        out.write(traceback.format_exc())
    result[name] = [code, out.getvalue()]
print(json.dumps(result))
"""


def _modules() -> list[tuple[str, bool]]:
    """(module, runnable) for every module under tools/: runnable ones have a `__main__` block."""
    found = []
    for path in sorted(TOOLS.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        if parts[-1] == "__init__":
            continue
        runnable = 'if __name__ == "__main__":' in path.read_text("utf-8")
        found.append((".".join(parts), runnable))
    return found


MODULES = _modules()


@pytest.fixture(scope="module")
def helps() -> dict[str, list]:
    run = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(MODULES)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_the_tools_are_found() -> None:
    names = {name for name, _ in MODULES}
    assert {"tools.bench.tag", "tools.convert.musicnn", "tools.fetch_htdemucs"} <= names
    assert len([n for n, runnable in MODULES if runnable]) >= 41


@pytest.mark.parametrize(("name", "runnable"), MODULES, ids=[n for n, _ in MODULES])
def test_each_tool_imports_and_answers_help(
    helps: dict[str, list], name: str, runnable: bool
) -> None:
    code, output = helps[name]
    assert code == 0, f"{name}: {code}\n{output}"
    if runnable:
        assert "usage:" in output, f"{name} --help printed no usage:\n{output}"
