"""What to write to one track, from its stored analysis: the one planning step that the command
line and the beets plugin share (`plan_track`), read from the library once per track."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mgctag.content import skip_reason
from mgctag.genres import Planning, decide_genres, default_map, planning_tree
from mgctag.library.db import Library
from mgctag.library.rows import StoredPrediction, Track
from mgctag.models import catalog
from mgctag.options import DEFAULT_TAGGER, TagOptions
from mgctag.writes.vocabulary import LIBRARY_WEIGHT, LibraryVocabulary


@dataclass(frozen=True)
class Plan:
    """The genres the model gives the track (the file's own genres decide the final change)."""

    track_id: int
    path: str
    predicted: list[str]


@dataclass(frozen=True)
class Skip:
    """Why the track gets no genre. `content` is what the gate heard when it was not music
    (speech, other); `analysed` is False when there is no stored analysis at all."""

    track_id: int
    path: str
    reason: str
    content: str | None = None
    analysed: bool = True


def plan_track(
    lib: Library,
    track: Track,
    opts: TagOptions,
    vocabulary: LibraryVocabulary | None = None,
) -> Plan | Skip:
    """The genres to write for `track` under `opts`, or why none: the content gate did not hear
    music (unless --content all), the track was never analysed (too short or silent), or no genre
    is confident enough. The stored predictions are read once. `vocabulary`: the library's
    (built once per run, `LibraryVocabulary`) when --learn-from-library is on."""
    track_id, path = track.id, track.path
    pred = lib.get_predictions(track_id).get(opts.model)
    content = pred.content if pred else None
    if content is not None and opts.content != "all" and (reason := skip_reason(content)):
        return Skip(track_id, path, reason, content=content)
    neighbours = vocabulary.neighbours(track_id) if vocabulary is not None else []
    predicted = genres_from(pred, opts, neighbours)
    if predicted is None:
        return Skip(track_id, path, "not analysed (too short or silent)", analysed=False)
    if not predicted:
        return Skip(track_id, path, "no genre confident enough")
    return Plan(track_id, path, predicted)


def genres_from(
    pred: StoredPrediction | None,
    opts: TagOptions,
    neighbours: Sequence[tuple[float, Sequence[str]]] = (),
) -> list[str] | None:
    """The genres a stored prediction gives (None when there is none): the lone-tag rule on the
    default tagger's own models, the library's vocabulary (`neighbours`, when asked), then the
    genre tree at the depth asked. The count and floors are the model's own
    (catalog.selection) unless the options set them."""
    if pred is None:
        return None
    gmap = default_map()
    most, floor, relative = catalog.selection(pred.model)
    return [
        g
        for g, _ in decide_genres(
            {g: p for g, p in pred.genres or []},
            Planning(
                planning_tree(opts.genre_tree, opts.genre_whitelist),
                opts.genre_depth,
                opts.max_genres if opts.max_genres is not None else most,
                opts.min_confidence if opts.min_confidence is not None else floor,
                relative,
                gmap.lone,
            ),
            per_model=model_genres(pred),
            neighbours=neighbours,
            weight=LIBRARY_WEIGHT,
        )
    ]


def model_genres(pred: StoredPrediction) -> list[dict[str, float]]:
    """The default tagger's models' own genre scores (MSD, MTT, mn04) as its row stores them;
    none for any other tagger, or a row analysed before they were stored."""
    if pred.model != DEFAULT_TAGGER or not pred.tags:
        return []
    return [dict(s) for s in pred.tags.values() if isinstance(s, dict)]


def max_genres(opts: TagOptions) -> int:
    """The most genres a file may hold after this run: --max-genres, else the model's own."""
    return opts.max_genres if opts.max_genres is not None else catalog.selection(opts.model)[0]
