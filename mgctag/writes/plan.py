"""What to write to one track, from its stored analysis: the one planning step that the command
line and the beets plugin share (`plan_track`), read from the library once per track."""

from __future__ import annotations

from dataclasses import dataclass

from mgctag.content import skip_reason
from mgctag.genres import select_genres
from mgctag.library.db import Library
from mgctag.library.rows import StoredPrediction, Track
from mgctag.models import catalog
from mgctag.options import TagOptions


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


def plan_track(lib: Library, track: Track, opts: TagOptions) -> Plan | Skip:
    """The genres to write for `track` under `opts`, or why none: the content gate did not hear
    music (unless --content all), the track was never analysed (too short or silent), or no genre
    is confident enough. The stored predictions are read once."""
    track_id, path = track.id, track.path
    pred = lib.get_predictions(track_id).get(opts.model)
    content = pred.content if pred else None
    if content is not None and opts.content != "all" and (reason := skip_reason(content)):
        return Skip(track_id, path, reason, content=content)
    predicted = genres_from(pred, opts)
    if predicted is None:
        return Skip(track_id, path, "not analysed (too short or silent)", analysed=False)
    if not predicted:
        return Skip(track_id, path, "no genre confident enough")
    return Plan(track_id, path, predicted)


def genres_from(pred: StoredPrediction | None, opts: TagOptions) -> list[str] | None:
    """The genres a stored prediction gives (None when there is none). The count and floors are
    the model's own (catalog.selection) unless the options set them."""
    if pred is None:
        return None
    scores = {g: p for g, p in pred.genres or []}
    most, floor, relative = catalog.selection(pred.model)
    return [
        g
        for g, _ in select_genres(
            scores,
            max_genres=opts.max_genres if opts.max_genres is not None else most,
            min_confidence=opts.min_confidence if opts.min_confidence is not None else floor,
            relative_floor=relative,
        )
    ]


def max_genres(opts: TagOptions) -> int:
    """The most genres a file may hold after this run: --max-genres, else the model's own."""
    return opts.max_genres if opts.max_genres is not None else catalog.selection(opts.model)[0]
