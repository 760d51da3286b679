"""Undo after beets moved the files (issue #26), with a real beets run as a user runs it.

`beet mgctag -w`, `beet move -d moved`, `beet mgctag-undo -w` reported "no longer in the beets
library; not restored" for every item and the genres stayed: the journal's paths must follow a
move as the track paths do. And `mgctag undo --last` when only beets runs exist must point to
`beet mgctag-undo` instead of saying that no run changed any file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("beets", reason="beets is not installed (pip install 'mgctag[beets]')")

from conftest import cli  # noqa: E402
from media import encode, real_clip  # noqa: E402

pytestmark = pytest.mark.slow

CLIPS = ("Kevin_MacLeod_-_Vibe_Ace", "Karissa_Hobbs_-_Lets_Go_Fishin")


def test_undo_follows_files_beets_moved(tmp_path: Path) -> None:
    music = tmp_path / "music"
    music.mkdir()
    for i, name in enumerate(CLIPS):
        encode(*real_clip(name, seconds=30.0), music / f"{i}.flac")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(
        f"directory: {tmp_path / 'library'}\n"
        f"library: {tmp_path / 'beets.db'}\n"
        "plugins: mgctag\nthreaded: no\nui:\n  color: no\n"
        "import:\n  write: yes\n  log: null\n"
        f"mgctag:\n  db: {tmp_path / 'mgctag.db'}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MGCTAG_", "BEETS"))}
    env.update(
        BEETSDIR=str(tmp_path / "config"),
        XDG_CONFIG_HOME=str(tmp_path / "xdg-config"),
        XDG_DATA_HOME=str(tmp_path / "xdg-data"),
    )

    def beet(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "beets", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    def genres() -> dict[str, str]:
        out = beet("ls", "-f", "$path\t$genres")
        assert out.returncode == 0, out.stderr
        return dict(line.split("\t", 1) for line in out.stdout.splitlines())

    assert beet("import", "-A", "-C", "-q", str(music)).returncode == 0
    tagged = beet("mgctag", "-w")
    assert tagged.returncode == 0, tagged.stderr
    before = genres()
    assert any(before.values()), before  # something was tagged

    only_beets = cli("undo", "--last", "--db", tmp_path / "mgctag.db")
    assert only_beets.code == 2 and "beet mgctag-undo" in only_beets.stderr, only_beets.output

    (tmp_path / "moved").mkdir()
    moved = beet("move", "-d", str(tmp_path / "moved"))
    assert moved.returncode == 0, moved.stderr
    after_move = genres()
    assert all(p.startswith(str(tmp_path / "moved")) for p in after_move)
    undo = beet("mgctag-undo", "-w")
    assert undo.returncode == 0, undo.stdout + undo.stderr
    assert "no longer in the beets library" not in undo.stderr
    assert not any(genres().values())
