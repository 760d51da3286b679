"""Why a track got its genres: the numbers behind `mgctag explain FILE`.

Everything here is computed with the default tagger (`musicnn+mn04`, models/audioset.py) exactly
as `mgctag tag` computes it, plus what `tag` never needs:

- the **timeline**: the whole track cut into consecutive windows, each window's genre scores from
  musicnn, from mn04 and from their mean, and the content gate's class of each window;
- the **terms** of each written genre (the combination is a plain mean of the two models, so each
  model's term is half its score) and the raw model tags behind them (musicnn's MSD and MTT tags,
  AudioSet classes) that the genre map turns into that genre;
- **stem occlusion** (the stem paper's point that drums, bass and other carry genre): the cascade
  separator splits the analysis windows, and every stem is taken out in turn, on musicnn and mn04
  over mix - stem and on the stem CNN by silencing that stem's channel;
- **auralisation** of the musicnn filters that add most to the top genre (explain/auralise.py).

Plain data out (dataclasses of numbers, lists and numpy arrays); `to_json` makes the `--json`
document and `explain_report` draws the PNG and the HTML page. Nothing here prints.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mgctag.audio import decode, features
from mgctag.content import ContentDecision, decide, skip_reason
from mgctag.errors import MgctagError, UsageError
from mgctag.genres import (
    GenreMap,
    Planning,
    decide_genres,
    default_map,
    mean_scores,
    mean_tag_probs,
)
from mgctag.library.rows import Track
from mgctag.models.inputs import InputPlan, TrackInput, prepare
from mgctag.separate.base import STEMS

AT_RATE = 32000
WINDOW_SECONDS = 10.0  # timeline windows: the length of the analysis windows `tag` reads
MIN_TAIL = 3.0  # a last window shorter than this joins the one before it
PATCH_SECONDS = features.PATCH_FRAMES * features.HOP / features.SR
STEM_MODEL = "stemcnn_cascade"  # the stem CNN trained on the cascade's stems
TOP_TAGS = 8
SHOWN_GENRES = 6
COMBINED = "combined"
MUSICNN = "musicnn"


@dataclass
class Timeline:
    """Consecutive windows over the whole track: where they are, what the gate and models said.

    `scores[model]` is (windows, len(genres)) for "musicnn", "audioset_mn04" and "combined";
    `envelope` is the waveform's peak level in `len(envelope)` equal steps (for drawing).
    """

    duration: float
    offsets: list[float]
    lengths: list[float]
    content: list[str]
    music: list[float]
    speech: list[float]
    genres: list[str]
    scores: dict[str, np.ndarray]
    envelope: np.ndarray


@dataclass
class GenreWhy:
    """One genre of the track: its score, each model's term in it, the tags behind each model."""

    genre: str
    score: float
    written: bool
    terms: dict[str, float]
    model_scores: dict[str, float]
    tags: dict[str, list[tuple[str, float]]]


@dataclass
class StemEffects:
    """Score change of each genre when one stem is taken out of the analysis windows.

    `delta[stem][model][genre]` = score without the stem - score with the whole mix, for models
    "musicnn", "audioset_mn04", "combined" (all over mix - stem) and the stem CNN (its input
    stem silenced; absent for a stem it does not read). `baseline[model][genre]` is the score on
    the whole mix. `level_db[stem]` is the stem's RMS level over the windows.
    """

    separator: str
    offsets: list[float]
    baseline: dict[str, dict[str, float]]
    delta: dict[str, dict[str, dict[str, float]]]
    level_db: dict[str, float]


@dataclass
class Auralisation:
    """The auralised filters, and where and for what they were listened to."""

    genre: str
    model: str
    tag: str
    offset: float
    seconds: float
    sample_rate: int
    filters: list[Any]  # auralise.FilterSound
    clip_logmel: np.ndarray
    clip: np.ndarray  # the clip itself, mono at `sample_rate`


@dataclass
class Explanation:
    """Everything `mgctag explain` shows, for one file."""

    path: str
    duration: float
    tagger: str
    content: str
    skip: str | None
    windows: list[dict]
    written: list[str]
    genres: list[GenreWhy]
    top_tags: dict[str, list[tuple[str, float]]]
    timeline: Timeline | None = None
    stems: StemEffects | None = None
    auralisation: Auralisation | None = None
    seconds: dict[str, float] = field(default_factory=dict)


Step = Callable[[str], None]


def explain_file(
    path: str | Path,
    *,
    window_seconds: float = WINDOW_SECONDS,
    separator: str | None = "cascade",
    auralise: int = 0,
    layer: str = "timbral2",
    auralise_seconds: float = 3.0,
    device: str = "cpu",
    step: Step | None = None,
) -> Explanation:
    """Explain one file's genres with the default tagger. Raises MgctagError for a bad file.

    `separator` None skips stem occlusion; `auralise` is how many filters of musicnn `layer` to
    auralise (0: none), each `auralise_seconds` long. `step(name)` is called as each part starts.
    """
    from mgctag.explain.auralise import check_layer
    from mgctag.models.catalog import DEFAULT_TAGGER, get_tagger

    if window_seconds < 1:
        raise UsageError("--window must be at least 1 s")
    if auralise:
        check_layer(layer)
    say = step or (lambda _name: None)
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    path = Path(path)
    info = _probe(path)
    say("loading models")
    tagger = get_tagger(DEFAULT_TAGGER, device)
    gmap = default_map()
    seconds["load"] = _lap(clock)
    say("analysing")
    plan = InputPlan((tagger.inputs,))
    item = prepare(Track.of_file(path, info.duration), plan)
    if item.error or item.skip:
        raise MgctagError(item.error or item.skip or "", path)
    y32 = _load(path, AT_RATE)
    y16 = decode.convert(y32, AT_RATE, features.SR)
    track_out, timeline_out = tagger.analyse([item, timeline_input(y32, y16, window_seconds)])
    seconds["analyse"] = round(_lap(clock) - seconds["load"], 3)
    expl = track_explanation(tagger, track_out, gmap, path, info.duration)
    shown_genres = [g.genre for g in expl.genres]
    expl.timeline = make_timeline(tagger, timeline_out, gmap, shown_genres, y32, info.duration)
    expl.seconds = seconds
    focus = expl.written or shown_genres[:1]
    if separator:
        say(f"separating stems ({separator})")
        t0 = time.perf_counter()
        expl.stems = stems_of_file(path, tagger, gmap, item.features["offsets"],
                                   plan.window_length, separator, device, shown_genres)  # fmt: skip
        seconds["stems"] = _lap(t0)
    if auralise and focus:
        say(f"auralising {auralise} filter(s) of {layer}")
        t0 = time.perf_counter()
        expl.auralisation = auralise_genre(
            tagger,
            timeline_out,
            expl.timeline,
            y16,
            focus[0],
            gmap,
            auralise,
            layer,
            auralise_seconds,
        )
        seconds["auralise"] = _lap(t0)
    seconds["total"] = _lap(clock)
    return expl


def track_explanation(
    tagger: Any, out: Any, gmap: GenreMap, path: Path, duration: float
) -> Explanation:
    """The track-level part: content, written genres (as `tag` selects them), terms, tags."""
    from mgctag.models.catalog import AUDIOSET_MODEL, DEFAULT_TAGGER, selection

    scores, decision, rows = model_scores(tagger, out, gmap)
    skip = skip_reason(decision.content)
    per_model = [*tagger.vocabulary_scores(out, rows, gmap).values(), scores[AUDIOSET_MODEL]]
    chosen = decide_genres(
        scores[COMBINED], Planning.shipped(selection(DEFAULT_TAGGER)), per_model=per_model
    )
    written = [g for g, _ in chosen] if skip is None else []
    per_vocab = vocab_probs(tagger, out, decision, rows)
    shown = list(dict.fromkeys(written + _top(scores[COMBINED], SHOWN_GENRES)))
    return Explanation(
        path=str(path),
        duration=duration,
        tagger=DEFAULT_TAGGER,
        content=decision.content,
        skip=skip,
        windows=decision.windows,
        written=written,
        genres=[genre_why(g, scores, per_vocab, gmap, g in written) for g in shown],
        top_tags={v: _top_items(p, TOP_TAGS) for v, p in per_vocab.items()},
    )


def _lap(t0: float) -> float:
    return round(time.perf_counter() - t0, 3)


def _probe(path: Path) -> decode.AudioInfo:
    if path.is_dir():
        raise MgctagError("is a folder, not an audio file", path)
    if not path.exists():
        raise MgctagError("no such file", path)
    try:
        info = decode.probe(path)
    except decode.DecodeError as exc:
        raise MgctagError(exc.reason, path) from None
    except OSError as exc:
        raise MgctagError(exc.strerror or str(exc), path) from None
    if not info.duration or info.duration <= 0:
        raise MgctagError("contains no audio samples", path)
    return info


def _load(path: Path, rate: int) -> np.ndarray:
    try:
        return decode.load(path, rate)
    except decode.DecodeError as exc:
        raise MgctagError(exc.reason, path) from None


# ---- the timeline ------------------------------------------------------------------------------


def window_bounds(n: int, rate: int, seconds: float) -> list[tuple[int, int]]:
    """Consecutive (start, stop) sample ranges of `seconds` covering all `n` samples.

    A last piece shorter than MIN_TAIL joins the window before it, so no window is too short
    to judge; a track shorter than one window is one window.
    """
    size = max(1, round(seconds * rate))
    starts = list(range(0, n, size)) or [0]
    if len(starts) > 1 and n - starts[-1] < MIN_TAIL * rate:
        starts.pop()
    return [(s, starts[i + 1] if i + 1 < len(starts) else n) for i, s in enumerate(starts)]


def timeline_input(y32: np.ndarray, y16: np.ndarray, seconds: float) -> TrackInput:
    """The default tagger's input for consecutive windows over the whole track."""
    bounds = window_bounds(len(y32), AT_RATE, seconds)
    ratio = features.SR / AT_RATE
    windows = [y32[a:b] for a, b in bounds]
    mono16 = [y16[round(a * ratio) : round(b * ratio)] for a, b in bounds]
    return waveform_input(windows, mono16, [a / AT_RATE for a, _ in bounds])


def waveform_input(
    windows32: Sequence[np.ndarray], windows16: Sequence[np.ndarray], offsets: Sequence[float]
) -> TrackInput:
    """A `TrackInput` as `models.inputs.prepare` makes it for the default tagger, from audio."""
    per_window = [features.patches(features.log_mel(y, features.SR)) for y in windows16]
    item = TrackInput(Track.of_file(""))
    item.features = {
        f"waveform@{AT_RATE}": list(windows32),
        "offsets": list(offsets),
        "mel": np.concatenate(per_window),
        "mel_windows": [len(p) for p in per_window],
    }
    item.units = len(windows32)
    return item


def make_timeline(
    tagger: Any, out: Any, gmap: GenreMap, genres: list[str], y32: np.ndarray, duration: float
) -> Timeline:
    """Per timeline window: the gate's class and each model's scores for `genres`."""
    from mgctag.models.catalog import AUDIOSET_MODEL

    probs = out.tags[AUDIOSET_MODEL]
    offsets = [float(o) for o in out.extra["offsets"]]
    records = decide(tagger.net.gate(gmap), probs, offsets).windows
    starts = np.concatenate([[0], np.cumsum(out.extra["mel_windows"])])
    table: dict[str, list[list[float]]] = {MUSICNN: [], AUDIOSET_MODEL: [], COMBINED: []}
    for w in range(len(offsets)):
        rows = np.arange(starts[w], starts[w + 1])
        m = tagger.musicnn_scores(out, rows, gmap)
        a = gmap.genre_scores(dict(zip(tagger.net.labels, probs[w].tolist(), strict=True)))
        for name, s in ((MUSICNN, m), (AUDIOSET_MODEL, a), (COMBINED, mean_scores([m, a]))):
            table[name].append([float(s.get(g, 0.0)) for g in genres])
    lengths = [b - a for a, b in zip(offsets, [*offsets[1:], len(y32) / AT_RATE], strict=True)]
    return Timeline(
        duration=float(duration),
        offsets=offsets,
        lengths=[round(x, 3) for x in lengths],
        content=[r["content"] for r in records],
        music=[r["music"] for r in records],
        speech=[r["speech"] for r in records],
        genres=genres,
        scores={k: np.asarray(v, np.float32).reshape(len(offsets), len(genres))
                for k, v in table.items()},
        envelope=envelope(y32),
    )  # fmt: skip


def envelope(y: np.ndarray, points: int = 2000) -> np.ndarray:
    """The peak |sample| in `points` equal steps (fewer for a short clip)."""
    y = np.abs(np.asarray(y, np.float32))
    steps = max(1, min(points, len(y)))
    edges = np.linspace(0, len(y), steps + 1).astype(int)
    return np.maximum.reduceat(y, edges[:-1]).astype(np.float32) if len(y) else np.zeros(1)


# ---- the track's genres and the terms behind them ---------------------------------------------


def model_scores(
    tagger: Any, out: Any, gmap: GenreMap
) -> tuple[dict[str, dict[str, float]], ContentDecision, np.ndarray]:
    """musicnn's, mn04's and the combined genre scores of one track, as `CombinedTagger` makes
    them (the content gate's music windows only), with the gate's decision and musicnn's rows."""
    from mgctag.models.audioset import patch_rows
    from mgctag.models.catalog import AUDIOSET_MODEL

    probs = out.tags[AUDIOSET_MODEL]
    decision = decide(tagger.net.gate(gmap), probs, out.extra["offsets"])
    rows = patch_rows(out.extra["mel_windows"], decision.genre_windows)
    musicnn = tagger.musicnn_scores(out, rows, gmap)
    mn04 = gmap.genre_scores(mean_tag_probs(probs[decision.genre_windows], tagger.net.labels))
    combined = mean_scores([musicnn, mn04])
    return {MUSICNN: musicnn, AUDIOSET_MODEL: mn04, COMBINED: combined}, decision, rows


def vocab_probs(
    tagger: Any, out: Any, decision: ContentDecision, rows: np.ndarray
) -> dict[str, dict[str, float]]:
    """Each vocabulary's mean tag probabilities over the windows the genres came from."""
    from mgctag.models.catalog import AUDIOSET_MODEL

    per = {
        name: mean_tag_probs(out.tags[name][rows], labels)
        for name, labels in tagger.musicnn.labels.items()
    }
    probs = out.tags[AUDIOSET_MODEL][decision.genre_windows]
    per[AUDIOSET_MODEL] = mean_tag_probs(probs, tagger.net.labels)
    return per


def genre_why(
    genre: str,
    scores: Mapping[str, Mapping[str, float]],
    per_vocab: Mapping[str, Mapping[str, float]],
    gmap: GenreMap,
    written: bool,
) -> GenreWhy:
    """A genre's score, each model's term of the mean (half its score), and its source tags."""
    from mgctag.genres import genre_key

    models = [m for m in scores if m != COMBINED]
    model_scores = {m: round(float(scores[m].get(genre, 0.0)), 4) for m in models}
    tags = {
        vocab: sorted(
            ((t, round(p, 4)) for t, p in probs.items() if gmap.tags.get(genre_key(t)) == genre),
            key=lambda tp: -tp[1],
        )
        for vocab, probs in per_vocab.items()
    }
    return GenreWhy(
        genre=genre,
        score=round(float(scores[COMBINED].get(genre, 0.0)), 4),
        written=written,
        terms={m: round(s / len(models), 4) for m, s in model_scores.items()},
        model_scores=model_scores,
        tags={v: t for v, t in tags.items() if t},
    )


def _top(scores: Mapping[str, float], n: int) -> list[str]:
    return [g for g, _ in _top_items(scores, n)]


def _top_items(scores: Mapping[str, float], n: int) -> list[tuple[str, float]]:
    items = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    return [(k, round(float(v), 4)) for k, v in items]


# ---- stems -------------------------------------------------------------------------------------


def stems_of_file(
    path: Path,
    tagger: Any,
    gmap: GenreMap,
    offsets: Sequence[float],
    window_seconds: float,
    separator: str,
    device: str = "cpu",
    genres: Sequence[str] | None = None,
) -> StemEffects:
    """Separate the analysis windows of `path` and measure each stem's effect on the genres."""
    from mgctag.models.tagger import StudentTagger
    from mgctag.separate import SeparationError, get_separator

    try:
        sep = get_separator(separator, device)
    except SeparationError as exc:
        raise UsageError(str(exc)) from None
    spans: list[tuple[float, float | None]] = [(float(o), window_seconds) for o in offsets]
    try:
        mixes = decode.load_windows(path, sep.sample_rate, spans, mono=False)
    except decode.DecodeError as exc:
        raise MgctagError(exc.reason, path) from None
    stems = sep.separate_batch(list(mixes), sep.sample_rate)
    stemnet = StudentTagger(STEM_MODEL, device)
    return stem_occlusion(
        tagger, stemnet, gmap, mixes, stems, sep.sample_rate, offsets, sep.name, genres
    )


def stem_occlusion(
    tagger: Any,
    stemnet: Any,
    gmap: GenreMap,
    mixes: Sequence[np.ndarray],
    stems: Sequence[Mapping[str, np.ndarray]],
    rate: int,
    offsets: Sequence[float],
    separator: str = "cascade",
    genres: Sequence[str] | None = None,
) -> StemEffects:
    """Each stem taken out in turn: the default tagger's models on mix - stem, the stem CNN
    with that stem's channel silenced (a silent stem's log-mel is exactly 0). `genres` limits
    the report to those genres (and the stem CNN's own top 3); None keeps every genre."""
    variants = {"mix": list(mixes)} | {
        s: [np.asarray(m) - np.asarray(st[s]) for m, st in zip(mixes, stems, strict=True)]
        for s in STEMS
    }
    inputs = [_input_at(windows, rate, offsets) for windows in variants.values()]
    results = [model_scores(tagger, out, gmap)[0] for out in tagger.analyse(inputs)]
    by_variant = dict(zip(variants, results, strict=True))
    stem_patches = _stem_patches(stems, rate)
    net_stems = list(stemnet.card.preprocessing["stems"])
    by_variant["mix"][STEM_MODEL] = _stemnet_scores(stemnet, stem_patches)
    for s in net_stems:
        silenced = stem_patches.copy()
        silenced[:, STEMS.index(s)] = 0.0
        by_variant[s][STEM_MODEL] = _stemnet_scores(stemnet, silenced)
    base = by_variant["mix"]
    if genres is not None:
        keep = set(genres) | set(_top(base[STEM_MODEL], 3))
        by_variant = {v: {m: {g: x for g, x in sc.items() if g in keep} for m, sc in r.items()}
                      for v, r in by_variant.items()}  # fmt: skip
        base = by_variant["mix"]
    delta = {
        s: {
            model: {g: round(v - base[model].get(g, 0.0), 4) for g, v in scores.items()}
            for model, scores in by_variant[s].items()
        }
        for s in STEMS
    }
    level = {s: _level_db([st[s] for st in stems]) for s in STEMS}
    rounded = {m: {g: round(v, 4) for g, v in sc.items()} for m, sc in base.items()}
    return StemEffects(separator, [float(o) for o in offsets], rounded, delta, level)


def _input_at(windows: Sequence[np.ndarray], rate: int, offsets: Sequence[float]) -> TrackInput:
    w32 = [decode.convert(w, rate, AT_RATE) for w in windows]
    w16 = [decode.convert(w, rate, features.SR) for w in windows]
    return waveform_input(w32, w16, offsets)


def _stem_patches(stems: Sequence[Mapping[str, np.ndarray]], rate: int) -> np.ndarray:
    """(patches, 4, 187, 96) log-mel patches of every stem, stacked as `inputs.prepare` does."""

    def patches_of(y: np.ndarray) -> np.ndarray:
        return features.patches(features.log_mel(decode.convert(y, rate, features.SR)))

    return np.stack(
        [np.concatenate([patches_of(st[s]) for st in stems]) for s in STEMS], axis=1
    ).astype(np.float32)


def _stemnet_scores(stemnet: Any, patches: np.ndarray) -> dict[str, float]:
    probs, _ = stemnet(patches)
    labels = stemnet.labels[stemnet.name]
    return {g: float(p) for g, p in zip(labels, probs.mean(axis=0).tolist(), strict=True)}


def _level_db(parts: Sequence[np.ndarray]) -> float:
    y = np.concatenate([np.asarray(p, np.float64).ravel() for p in parts])
    rms = float(np.sqrt(np.mean(np.square(y)))) if y.size else 0.0
    return round(20 * np.log10(rms), 1) if rms > 0 else float("-inf")


# ---- auralisation ------------------------------------------------------------------------------


def auralise_genre(
    tagger: Any,
    out: Any,
    timeline: Timeline,
    y16: np.ndarray,
    genre: str,
    gmap: GenreMap,
    n: int,
    layer: str,
    seconds: float,
) -> Auralisation:
    """Auralise the filters of musicnn `layer` that add most to `genre`, where it is strongest.

    The musicnn model and tag are the genre's strongest source tag; the clip starts at the
    3 s patch where that tag is most probable, inside the timeline window where the combined
    score of the genre is highest.
    """
    from mgctag.explain.auralise import auralise, fit_length

    model_name, tag = _source_tag(tagger, out, genre, gmap)
    labels = tagger.musicnn.labels[model_name]
    col = timeline.genres.index(genre)
    w = int(np.argmax(timeline.scores[COMBINED][:, col]))
    starts = np.concatenate([[0], np.cumsum(out.extra["mel_windows"])])
    patch_probs = out.tags[model_name][starts[w] : starts[w + 1], labels.index(tag)]
    offset = timeline.offsets[w] + int(np.argmax(patch_probs)) * PATCH_SECONDS
    first = round(offset * features.SR)
    clip = fit_length(y16[first:], seconds)
    module = tagger.musicnn.models[model_name]
    sounds = auralise(module, clip, labels.index(tag), layer=layer, n=n, seconds=seconds)
    return Auralisation(
        genre, model_name, tag, round(offset, 3), seconds, features.SR, sounds,
        features.log_mel(clip), clip,
    )  # fmt: skip


def _source_tag(tagger: Any, out: Any, genre: str, gmap: GenreMap) -> tuple[str, str]:
    """The musicnn model and tag that map to `genre` with the highest mean probability."""
    from mgctag.genres import genre_key

    best: tuple[float, str, str] | None = None
    for name, labels in tagger.musicnn.labels.items():
        mean = out.tags[name].mean(axis=0)
        for i, tag in enumerate(labels):
            if gmap.tags.get(genre_key(tag)) == genre and (best is None or mean[i] > best[0]):
                best = (float(mean[i]), name, tag)
    if best is None:  # a genre musicnn has no tag for (AudioSet's Reggae): its top tag overall
        name = next(iter(tagger.musicnn.labels))
        mean = out.tags[name].mean(axis=0)
        return name, tagger.musicnn.labels[name][int(np.argmax(mean))]
    return best[1], best[2]


# ---- JSON --------------------------------------------------------------------------------------


def to_json(expl: Explanation) -> dict[str, Any]:
    """The `--json` document: the same numbers the report shows (no audio, no images)."""
    tl = expl.timeline
    assert tl is not None  # explain_file always sets the timeline
    doc: dict[str, Any] = {
        "path": expl.path,
        "duration": round(expl.duration, 3),
        "tagger": expl.tagger,
        "content": expl.content,
        "skip": expl.skip,
        "written": expl.written,
        "analysis_windows": expl.windows,
        "genres": [vars(g) for g in expl.genres],
        "top_tags": expl.top_tags,
        "timeline": {
            "genres": tl.genres,
            "windows": [
                {
                    "offset": round(o, 3),
                    "length": ln,
                    "content": c,
                    "music": m,
                    "speech": s,
                    "scores": {
                        k: dict(zip(tl.genres, np.round(v[i], 4).tolist(), strict=True))
                        for k, v in tl.scores.items()
                    },
                }  # fmt: skip
                for i, (o, ln, c, m, s) in enumerate(
                    zip(tl.offsets, tl.lengths, tl.content, tl.music, tl.speech, strict=True)
                )
            ],
        },
        "stems": vars(expl.stems) if expl.stems else None,
        "seconds": expl.seconds,
    }
    if a := expl.auralisation:
        doc["auralisation"] = {
            "genre": a.genre, "model": a.model, "tag": a.tag, "offset": a.offset,
            "seconds": a.seconds, "sample_rate": a.sample_rate,
            "filters": [{"layer": f.layer, "filter": f.index, "importance": round(f.importance, 6),
                         "samples": len(f.audio),
                         "rms_db": _level_db([f.audio])} for f in a.filters],
        }  # fmt: skip
    return doc
