"""Soak test: SIGKILL `mgctag tag` at random moments over ~100 real files, many times, and check.

After every kill each file must decode, keep its audio payload (SHA-256 of the audio data only) and
hold either its old genres (none) or its one new set; the database must pass `PRAGMA
integrity_check`. Then a final run must complete, leave no pending journal entry, temp file or lock
file, and every tag run must undo cleanly back to the original state. Prints one JSON summary.

    python -m tools.checks.soak_kill --files 100 --kills 40 --out /tmp/soak > /tmp/soak.log 2>&1

Real audio comes from ../shared/audio (via tests/media.py), encoded into --out; nothing is written
into ../shared. Exit status 0 when every check held.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

from mgctag import tags
from mgctag.audio import decode
from mgctag.library.db import Library, WriteEntry
from mgctag.writes import journal, undo
from tests.media import LIBROSA, encode, real_clip

CLI = [sys.executable, "-c", "from mgctag.cli import run; run()"]
EXTS = ("mp3", "flac", "ogg", "wav", "m4a")


def build(root: Path, n: int, seconds: float) -> list[Path]:
    clips = []
    for path in sorted(LIBROSA.glob("*.hq.ogg")):
        try:
            clips.append(real_clip(path.name.removesuffix(".hq.ogg"), seconds))
        except Exception:  # noqa: BLE001 - one clip libsndfile cannot open (a quote in its name)
            continue
    root.mkdir(parents=True)
    return [
        encode(*clips[i % len(clips)], root / f"{i:03d}.{EXTS[i % len(EXTS)]}") for i in range(n)
    ]


def journal_rows(lib: Library) -> list[WriteEntry]:
    return [w for r in lib.list_runs() for w in lib.writes_for_run(r["id"])]


def check(files: list[Path], payload: dict, seen: dict, problems: list[str]) -> None:
    for path in files:
        try:
            if tags.audio_payload_hash(path) != payload[path]:
                problems.append(f"{path}: audio payload changed")
            decode.load_windows(path, 16000, [(0.0, 0.5)])
            genres = tags.read_tags(path).genres
        except Exception as exc:  # noqa: BLE001 - any failure here is a corrupted file
            problems.append(f"{path}: unreadable after kill: {exc}")
            continue
        if genres and seen.setdefault(path, genres) != genres:
            problems.append(f"{path}: genres {genres} after {seen[path]}")


def _holds(path: str, genres: list[str]) -> bool:
    try:
        return tags.read_tags(path).genres == genres
    except tags.TagError:
        return False


def kill_once(args: list[str], lib: Library, rng: random.Random) -> dict:
    """One run, killed in the write stage after a random number of writes or at a random time."""
    before = len(journal_rows(lib))
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    start = time.monotonic()
    if rng.random() < 0.6:
        target, where = before + rng.randint(1, 6), "write stage"
        while len(journal_rows(lib)) < target and proc.poll() is None:
            time.sleep(0.003)
        time.sleep(rng.uniform(0.0, 0.05))
    else:
        where = "any time"
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(rng.uniform(0.3, 20.0))
    killed = proc.poll() is None
    if killed:
        proc.kill()
    proc.wait()
    return {"killed": killed, "where": where, "after_s": round(time.monotonic() - start, 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=100)
    ap.add_argument("--kills", type=int, default=40)
    ap.add_argument("--seconds", type=float, default=6.0, help="length of each file")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("/tmp/mgctag-soak"))
    a = ap.parse_args()
    rng = random.Random(a.seed)
    if a.out.exists():
        shutil.rmtree(a.out)
    root, db = a.out / "music", a.out / "db" / "lib.db"
    files = build(root, a.files, a.seconds)
    payload = {p: tags.audio_payload_hash(p) for p in files}
    lib = Library(db)
    args = [*CLI, "tag", str(root), "--db", str(db), "--json"]
    seen: dict[Path, list[str]] = {}
    problems: list[str] = []
    stats = {"kills": 0, "runs_finished_before_kill": 0, "pending_after_kill": 0}
    stats |= {"pending_already_renamed": 0, "temps_after_kill": 0}
    t0 = time.monotonic()
    while stats["kills"] < a.kills:
        event = kill_once(args, lib, rng)
        stats["kills" if event["killed"] else "runs_finished_before_kill"] += 1
        pending = lib.pending_writes()
        stats["pending_after_kill"] += len(pending)
        stats["pending_already_renamed"] += sum(_holds(w["path"], w["new"]) for w in pending)
        stats["temps_after_kill"] += len(list(root.rglob("*" + tags.TEMP_SUFFIX)))
        check(files, payload, seen, problems)
        if lib.db.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            problems.append("database integrity check failed")
        print(json.dumps({**event, "pending": len(pending), "tagged": len(seen)}), flush=True)
        if not event["killed"] and event["where"] == "write stage":
            break  # a run finished on its own: nothing is left to write, so nothing to interrupt

    final = subprocess.run(args, capture_output=True, text=True)
    if final.returncode != 0:
        problems.append(f"final run exited {final.returncode}: {final.stderr[-500:]}")
    check(files, payload, seen, problems)
    done = [w for w in journal_rows(lib) if w["state"] == "done"]
    tagged = [p for p in files if tags.read_tags(p).genres]
    if sorted(w["path"] for w in done) != sorted(map(str, tagged)):
        problems.append("journal does not match the tagged files one to one")
    leftovers = {
        "pending": len(lib.pending_writes()),
        "temps": len(list(root.rglob("*" + tags.TEMP_SUFFIX))),
        "locks": len(list((db.parent / journal.LOCK_DIR).glob("*"))),
    }
    if any(leftovers.values()):
        problems.append(f"left over after the final run: {leftovers}")
    restored = 0
    for run in lib.list_runs():
        if run["command"] == "tag":
            try:
                report = undo.undo_run(lib, run["id"])
            except undo.UndoError:  # a run cut off before any write landed: nothing to undo
                continue
            restored += report.count("restored")
            if report.count("refused") or report.count("failed"):
                problems.append(f"undo of run {run['id']} refused or failed some files")
    for path in files:
        if tags.read_tags(path).genres or tags.audio_payload_hash(path) != payload[path]:
            problems.append(f"{path}: not back to its original state after undo")
    corrupted = len({p.split(":")[0] for p in problems if "payload" in p or "unreadable" in p})
    summary = {
        "files": len(files),
        **stats,
        "tag_runs": sum(r["command"] == "tag" for r in lib.list_runs()),
        "files_tagged": len(tagged),
        "journal_done": len(done),
        "restored_by_undo": restored,
        "corrupted_files": corrupted,
        "problems": problems[:20],
        "wall_s": round(time.monotonic() - t0, 1),
    }
    print(json.dumps(summary, indent=2))
    lib.close()
    return 1 if problems else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())
