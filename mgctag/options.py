"""What a tagging run is asked to do and what it reports back: plain data, no torch.

The CLI builds `TagOptions` and renders `Summary` and `Progress` without importing the pipeline
(which imports torch), so `mgctag --help` and `mgctag runs` start fast; `train` reuses them too.
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mgctag.errors import UsageError

Mode = Literal["fill", "merge", "replace"]

MUSICNN_TAGGER = "musicnn"  # the bundled musicnn pair (mgctag.models.catalog describes it)
# The default: musicnn + EfficientAT mn04 in one pass, genres by their mean, the content gate.
DEFAULT_TAGGER = "musicnn+mn04"
Content = Literal["music", "all"]
Engine = Literal["local", "ray"]
SEPARATORS = ("auto", "demucs", "cascade", "hpss")  # the names get_separator takes (one list)
# `segments --min-segment`: a stretch shorter than this (seconds) joins a neighbour, so a talk is
# a few rows, not hundreds of flickers (the CLI's default and the detector's).
MIN_SEGMENT_S = 1.0
# `segments --model`: the bundled speech / music / noise detectors (weights/NAME.*; how each was
# trained and scored: docs/segments.md); the first is the default. Any other model card of a
# detector (a name or a .safetensors file) is accepted too.
SEGMENTERS = ("segmenter_melcnn", "segmenter_swishnet")
DEFAULT_SEGMENTER = SEGMENTERS[0]
GenreDepth = Literal["parent", "leaf", "both"]
GENRE_DEPTHS: tuple[GenreDepth, ...] = ("parent", "leaf", "both")


class SettingError(UsageError):
    """A setting outside the table's rules: `where` names its flag, variable or config key."""

    def __init__(self, where: str, value: Any, problem: str) -> None:
        self.where, self.problem = where, problem
        super().__init__(f"{where} = {value!r}: {problem}"[:400])


@dataclass(frozen=True)
class TagOption:
    """One setting of `mgctag tag` that a user may give on the command line, as MGCTAG_<NAME>
    where documented, or under [tag] in config.toml. The typer option, the config schema, the
    beets plugin's choices and `TagOptions.from_settings` all read this one description."""

    name: str
    kind: type  # str, int, float or bool (a None default: the model's own)
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    low: float | None = None  # inclusive bounds of a number
    high: float | None = None
    pattern: str | None = None  # what a text value must match in full

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def problem(self, value: Any, quoted: bool = True) -> str | None:
        """None when `value` is allowed, else what to use instead ("use ..."): choices as TOML
        values (`'fill' or 'merge'`) for config.toml, as typed (`fill, merge or replace`) for a
        flag or a variable."""
        if value is None and self.default is None:
            return None
        ok = isinstance(value, self.kind) and not (
            self.kind is not bool and isinstance(value, bool)
        )
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            return f"use {self.kind.__name__}"
        if self.choices is not None and value not in self.choices:
            if quoted:
                return "use " + " or ".join(repr(c) for c in self.choices)
            *first, last = [str(c) for c in self.choices]
            return "use " + (f"{', '.join(first)} or {last}" if first else last)
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            return f"use {self.help_choices}"
        if self.kind in (int, float):
            low = -math.inf if self.low is None else self.low
            high = math.inf if self.high is None else self.high
            if not (math.isfinite(value) and low <= value <= high):
                bounds = f"at least {low:g}" if high == math.inf else f"from {low:g} to {high:g}"
                return f"use a number {bounds}"
        return None

    @property
    def help_choices(self) -> str:
        if self.pattern is not None:
            return "auto, cpu, cuda, cuda:N or mps"
        return ", ".join(map(str, self.choices or ()))


TAG_OPTIONS: tuple[TagOption, ...] = (
    TagOption(
        "mode",
        str,
        "fill",
        "fill: only files without a genre; merge: add; replace: overwrite.",
        choices=("fill", "merge", "replace"),
    ),
    TagOption(
        "max_genres",
        int,
        None,
        "At most this many genres per file (default: the model's; 2).",
        low=1,
    ),
    TagOption(
        "min_confidence",
        float,
        None,
        "Write genres at least this confident (default: the model's).",
        low=0.0,
        high=1.0,
    ),
    TagOption(
        "content",
        str,
        "music",
        "music: no genre for tracks heard as speech or other sound (reported skipped); "
        "all: tag every track.",
        choices=("music", "all"),
    ),
    TagOption("id3v23", bool, False, "Write ID3v2.3 (old players)."),
    TagOption(
        "id3v23_separator",
        str,
        "; ",
        'Joins genres in ID3v2.3 tags: "; " (Picard, foobar2000), "/" (beets).',
        choices=("; ", ";", "/", " / "),
    ),
    TagOption("keep_mtime", bool, False, "Keep file modification times."),
    TagOption(
        "follow_symlinks",
        bool,
        False,
        "Also scan symlinked files and folders (loops are cut); else they are counted.",
    ),
    TagOption(
        "stems",
        str,
        "off",
        "Separate stems first, for similar --by: off, on, or auto (on with a GPU and Demucs).",
        choices=("auto", "on", "off"),
    ),
    TagOption("separator", str, "auto", "auto, demucs, cascade or hpss.", choices=SEPARATORS),
    TagOption(
        "device", str, "auto", "auto, cpu, cuda or mps.", pattern=r"auto|cpu|mps|cuda(:\d+)?"
    ),
    TagOption("model", str, DEFAULT_TAGGER, "Tag with this model (see `mgctag models list`)."),
    TagOption(
        "genre_depth",
        str,
        "leaf",
        "What the genre tree writes: parent (the broad genre, e.g. Rock), leaf (the most "
        "specific one the evidence backs, e.g. Indie) or both.",
        choices=GENRE_DEPTHS,
    ),
    TagOption(
        "genre_tree",
        str,
        None,
        "A genre tree that replaces mgctag's: beets lastgenre's genres-tree.yaml, or a "
        "genres.json; only its genres are written.",
    ),
    TagOption(
        "genre_whitelist",
        str,
        None,
        "A lastgenre whitelist (one genre a line): only these are written; a genre not in it "
        "lends its evidence to its nearest listed parent.",
    ),
    TagOption(
        "learn_from_library",
        bool,
        False,
        "Blend in the genres you wrote on the most similar tracks of this library (never "
        "mgctag's own writes).",
    ),
)
TAG = {o.name: o for o in TAG_OPTIONS}

# `mgctag tag`'s settings a user may put under [tag] in config.toml, with the built-in defaults
# (the command line wins over config.toml, which wins over these; `mgctag config` shows them).
TAG_DEFAULTS: dict[str, object] = {o.name: o.default for o in TAG_OPTIONS}


@dataclass(frozen=True)
class TrainDefaults:
    """The defaults `labels`, `train` and `eval` share (and `mgctag.train` takes when called
    from Python), so a head measured by `eval` is measured the way `train` measured it.

    Five grouped folds, not the ten of the papers' GTZAN protocol: a personal library often has
    few artists, folds are grouped by artist, and ten folds of a few dozen tracks test one or two
    artists each (`eval --folds 10` still runs the papers' protocol)."""

    folds: int = 5  # grouped k-fold: train's evaluation before the final fit, eval's kfold
    min_count: int = 5  # a genre with fewer labelled tracks is left out
    trials: int = 50  # eval --protocol trials: random grouped hold-outs
    test_size: float = 0.2  # each trial's (and train --arch's) held-out share
    epochs: int = 20  # --arch: passes over the training patches


TRAIN = TrainDefaults()


# `similar`'s and `playlist`'s choices: the command line's options and the beets plugin's
# (`mgctag-similar`, `mgctag-playlist`) are derived from this one table (names, defaults, help,
# bounds), so the two never drift apart.
SEARCH_OPTIONS: tuple[TagOption, ...] = (
    TagOption("count", int, 10, "How many tracks.", low=1),
    TagOption(
        "length",
        int,
        20,
        "Tracks in the playlist (with --from/--to: the two ends included).",
        low=2,
    ),
    TagOption(
        "spacing",
        int,
        3,
        "An artist at most once in any N consecutive tracks (2: never twice in a row; 1: no rule).",
        low=1,
    ),
    TagOption(
        "all_versions",
        bool,
        False,
        "List other versions of a recording (transcodes, remasters, edits, the same artist and"
        " title) as results of their own; by default each is folded into its best-ranked version.",
    ),
    TagOption("genre", str, None, "Only tracks of this genre."),
    TagOption("exclude_artist", bool, False, "Leave out the seeds' (or the ends') artists."),
)
SEARCH = {o.name: o for o in SEARCH_OPTIONS}


def expand_model(name: str) -> str:
    """A model given as a path (`~/models/mine.safetensors`, `$HOME/...`) with ~ and variables
    expanded; a model name as it is."""
    if "/" in name or name.endswith(".safetensors") or name.startswith(("~", "$")):
        return os.path.expandvars(os.path.expanduser(name))
    return name


@dataclass
class TagOptions:
    mode: Mode = TAG["mode"].default
    max_genres: int | None = None  # None: the model's own (catalog.selection)
    min_confidence: float | None = None  # None: the model's own (catalog.selection)
    content: Content = TAG[
        "content"
    ].default  # "music": genres only for what the gate hears as music
    dry_run: bool = False
    id3v23: bool = False
    id3v23_separator: str = TAG["id3v23_separator"].default  # Picard: "; ", beets: "/"
    keep_mtime: bool = False
    follow_symlinks: bool = False  # scan through symlinked files and folders (loops are cut)
    windows: int = 3
    window_seconds: float = 10.0
    batch_patches: int = 60
    device: str = TAG["device"].default
    stems: str = TAG["stems"].default  # "on", "off" or "auto" (see pipeline.choose_separator)
    separator: str = TAG["separator"].default
    separator_model: Path | None = None
    model: str = DEFAULT_TAGGER  # a tagger name (mgctag models list)
    genre_depth: GenreDepth = TAG["genre_depth"].default
    genre_tree: str | None = None  # a lastgenre genres-tree.yaml or a genres.json (None: mgctag's)
    genre_whitelist: str | None = None  # a lastgenre whitelist (None: every genre of the tree)
    learn_from_library: bool = TAG["learn_from_library"].default
    keep_stems: Path | None = None  # write each analysed window's stems here (off by default)
    engine: Engine = "local"  # "ray": decode + models in Ray actors (mgctag/engine_ray.py)
    ray_address: str | None = None  # None: a local Ray; "auto" or HOST:PORT: a running cluster
    workers: int | None = None  # Ray actors (None: one per CPU, or per GPU, of the cluster)

    @classmethod
    def from_settings(cls, settings: Mapping[str, tuple[Any, str]], **others: Any) -> TagOptions:
        """TagOptions from table settings as `(value, where it came from)` (a flag such as
        `--mode`, `MGCTAG_STEMS`, a config file's key): each is checked by the table's rules and
        a wrong one is a UsageError naming where it came from, never another option. Settings
        not given take the table's default; `others` are the fields outside the table."""
        values: dict[str, Any] = {}
        for name, (value, where) in settings.items():
            option = TAG[name]  # KeyError: a setting outside the table is a bug
            if name == "model" and isinstance(value, str):
                value = expand_model(value)
            problem = option.problem(value, quoted=False)
            if problem is not None:
                raise SettingError(where, value, problem)
            values[name] = float(value) if option.kind is float and value is not None else value
        return cls(**values, **others)


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

    def done_and_failed(self) -> tuple[int, int]:
        """How many files the run took on, and how many of them failed (for its status)."""
        return self.scanned, self.failed

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
