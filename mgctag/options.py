"""What a tagging run is asked to do and what it reports back: plain data, no torch.

The CLI builds `TagOptions` and renders `Summary` and `Progress` without importing the pipeline
(which imports torch), so `mgctag --help` and `mgctag runs` start fast; `train` reuses them too.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Mode = Literal["fill", "merge", "replace"]

MUSICNN_TAGGER = "musicnn"  # the bundled musicnn pair (mgctag.models.catalog describes it)
# The default: musicnn + EfficientAT mn04 in one pass, genres by their mean, the content gate.
DEFAULT_TAGGER = "musicnn+mn04"
Content = Literal["music", "all"]
Engine = Literal["local", "ray"]


# `mgctag tag`'s settings a user may put under [tag] in config.toml, with the built-in defaults
# (the command line wins over config.toml, which wins over these; `mgctag config` shows them).
TAG_DEFAULTS: dict[str, object] = {
    "mode": "fill",
    "max_genres": None,  # None: the model's own
    "min_confidence": None,
    "content": "music",
    "id3v23": False,
    "id3v23_separator": "; ",
    "keep_mtime": False,
    "follow_symlinks": False,
    "stems": "auto",
    "separator": "auto",
    "device": "auto",
    "model": DEFAULT_TAGGER,
}


@dataclass
class TagOptions:
    mode: Mode = "fill"
    max_genres: int | None = None  # None: the model's own (catalog.selection)
    min_confidence: float | None = None  # None: the model's own (catalog.selection)
    content: Content = "music"  # "music": genres only for tracks the content gate hears as music
    dry_run: bool = False
    id3v23: bool = False
    id3v23_separator: str = "; "  # joins genres in ID3v2.3 tags (Picard: "; ", beets: "/")
    keep_mtime: bool = False
    follow_symlinks: bool = False  # scan through symlinked files and folders (loops are cut)
    windows: int = 3
    window_seconds: float = 10.0
    batch_patches: int = 60
    device: str = "auto"
    stems: str = "off"  # "on", "off" or "auto" (see pipeline.choose_separator)
    separator: str = "auto"
    separator_model: Path | None = None
    model: str = DEFAULT_TAGGER  # a tagger name (mgctag models list)
    keep_stems: Path | None = None  # write each analysed window's stems here (off by default)
    engine: Engine = "local"  # "ray": decode + models in Ray actors (mgctag/engine_ray.py)
    ray_address: str | None = None  # None: a local Ray; "auto" or HOST:PORT: a running cluster
    workers: int | None = None  # Ray actors (None: one per CPU, or per GPU, of the cluster)


@dataclass
class Change:
    path: str
    old: list[str]
    new: list[str]
    written: bool


@dataclass
class Summary:
    """A run's outcome. `skips` are tracks left alone for a reason that is not a failure (too
    short, silent, not music: `contents` says what the gate heard instead); `failure_types`
    names the exception class behind an unexpected failure (for -v output; the database records
    it too)."""

    run_id: int | None = None
    scanned: int = 0
    analysed: int = 0
    tagged: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: int = 0
    links_skipped: int = 0  # symlinks the scan did not follow
    interrupted: bool = False
    changes: list[Change] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    failure_types: dict[str, str] = field(default_factory=dict)
    skips: list[tuple[str, str]] = field(default_factory=list)
    contents: dict[str, str] = field(default_factory=dict)  # skipped as speech / other sound
    stage_seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def counts(self) -> dict[str, int]:
        """The run's counts, as stored with the run and printed by --json."""
        names = ("scanned", "analysed", "tagged", "unchanged", "skipped", "failed")
        return {name: getattr(self, name) for name in names}

    def fail(self, path: str, reason: str, error_type: str | None = None) -> None:
        self.failed += 1
        self.failures.append((path, reason))
        if error_type:
            self.failure_types[path] = error_type


class Progress:
    """What the pipeline tells the outside world; the CLI renders it, tests ignore it."""

    def stage(self, name: str, total: int) -> None: ...

    def advance(self, n: int = 1) -> None: ...

    def message(self, text: str) -> None: ...


class StopFlag:
    """Set by Ctrl-C; work loops check it between files so nothing stops half-way through one."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def __bool__(self) -> bool:
        return self._event.is_set()
