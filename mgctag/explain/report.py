"""Draw an `Explanation` (explain/analysis.py): a PNG summary and one self-contained HTML page.

The page needs no network and no files beside it: figures are PNG data URIs, the auralised
filters and their clip WAV data URIs, and a Content-Security-Policy allows nothing else (no
script at all). Every text from the file (its name, tags) is HTML-escaped. The figures are drawn
with matplotlib's Agg canvas (`libmap.agg_figure`), so no display is needed.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from string import Template
from typing import Any

import numpy as np
import soundfile as sf

from mgctag.explain.analysis import COMBINED, MUSICNN, STEM_MODEL, Explanation
from mgctag.search.map import agg_figure, data_asset

CONTENT_COLORS = {"music": "#c7e9c0", "speech": "#fdd0a2", "other": "#d9d9d9"}
MODEL_TITLES = {
    COMBINED: "combined (mean of the two)",
    MUSICNN: "musicnn (MSD + MTT)",
    "audioset_mn04": "mn04 (AudioSet)",
}
CSP = "default-src 'none'; img-src data:; media-src data:; style-src 'unsafe-inline'"


# ---- figures -----------------------------------------------------------------------------------


def _timeline_axes(axes: list[Any], expl: Explanation) -> None:
    """Waveform + content gate on the first axes, one genre heat strip per model on the others."""
    tl = expl.timeline
    assert tl is not None  # explain_file always sets the timeline
    ends = [o + ln for o, ln in zip(tl.offsets, tl.lengths, strict=True)]
    ax = axes[0]
    t = np.linspace(0, tl.duration, len(tl.envelope))
    for o, e, c in zip(tl.offsets, ends, tl.content, strict=True):
        ax.axvspan(o, e, color=CONTENT_COLORS.get(c, "#eee"), lw=0)
        ax.text((o + e) / 2, 0.93, c, ha="center", va="top", fontsize=7, color="#444")
    ax.fill_between(t, -tl.envelope, tl.envelope, color="#333", lw=0)
    ax.set_xlim(0, tl.duration)
    ax.set_ylim(-1.05, 1.05)
    ax.set_yticks([])
    name = Path(expl.path).name.replace("$", r"\$")  # a file name is text, never mathtext
    ax.set_title(f"{name}: content gate per window ({expl.content})", fontsize=9)
    top = max(0.3, max(float(v.max()) for v in tl.scores.values()) if tl.genres else 0.3)
    for ax, model in zip(axes[1:], (COMBINED, MUSICNN, "audioset_mn04"), strict=True):
        im = ax.pcolormesh(
            [*tl.offsets, ends[-1]],
            np.arange(len(tl.genres) + 1),
            tl.scores[model].T,
            cmap="magma",
            vmin=0,
            vmax=top,
        )
        ax.set_xlim(0, tl.duration)
        ax.set_yticks(np.arange(len(tl.genres)) + 0.5, tl.genres, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(f"genre scores per window: {MODEL_TITLES[model]}", fontsize=8)
        ax.figure.colorbar(im, cax=ax.inset_axes([1.005, 0, 0.012, 1]))
    for ax in axes[:-1]:
        ax.tick_params(labelbottom=False)
    axes[-1].set_xlabel("seconds")


def timeline_png(expl: Explanation) -> bytes:
    """Waveform with the gate's windows, and the three models' genre heat strips."""
    fig = agg_figure((11, 7))
    _timeline_axes([fig.add_subplot(4, 1, i + 1) for i in range(4)], expl)
    fig.tight_layout()
    return _png(fig)


def summary_png(expl: Explanation, path: str | Path) -> Path:
    """The PNG summary: the timeline, each shown genre's terms, and the stems' effects."""
    fig = agg_figure((11, 11))
    grid = fig.add_gridspec(5, 2, height_ratios=[1, 1, 1, 1, 1.7])
    _timeline_axes([fig.add_subplot(grid[i, :]) for i in range(4)], expl)
    _terms_panel(fig.add_subplot(grid[4, 0]), expl)
    _stems_panel(fig.add_subplot(grid[4, 1]), expl)
    fig.tight_layout()
    Path(path).write_bytes(_png(fig))
    return Path(path)


def _terms_panel(ax: Any, expl: Explanation) -> None:
    """Stacked bars: each genre's combined score as musicnn's term + mn04's term."""
    genres = expl.genres[::-1]
    names = [g.genre + (" *" if g.written else "") for g in genres]
    left = np.zeros(len(genres))
    for model, color in ((MUSICNN, "#6baed6"), ("audioset_mn04", "#fd8d3c")):
        vals = np.array([g.terms.get(model, 0.0) for g in genres])
        ax.barh(names, vals, left=left, color=color, label=MODEL_TITLES[model])
        left += vals
    ax.set_title("score = musicnn term + mn04 term (* written)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.tick_params(labelsize=7)


def _stems_panel(ax: Any, expl: Explanation) -> None:
    """Change of the first shown genre's score without each stem, per model."""
    st = expl.stems
    if st is None or not expl.genres:
        ax.text(0.5, 0.5, "no stem occlusion (--no-stems)", ha="center", va="center")
        ax.set_axis_off()
        return
    genre = expl.genres[0].genre
    models = [m for m in (COMBINED, MUSICNN, "audioset_mn04", STEM_MODEL) if m in st.baseline]
    stems = list(st.delta)
    table = np.array(
        [[st.delta[s].get(m, {}).get(genre, np.nan) for m in models] for s in stems], float
    )
    lim = max(0.05, float(np.nanmax(np.abs(table))) if np.isfinite(table).any() else 0.05)
    ax.imshow(table, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    for (i, j), v in np.ndenumerate(table):
        ax.text(j, i, "n/a" if np.isnan(v) else f"{v:+.3f}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(models)), [m.replace("_", " ") for m in models], fontsize=7)
    ax.set_yticks(range(len(stems)), [f"without {s}" for s in stems], fontsize=7)
    ax.set_title(f"{genre}: score change when a stem is removed ({st.separator})", fontsize=9)


def filter_png(logmel: np.ndarray, weights: np.ndarray | None, title: str) -> bytes:
    """A filter's projection (0..1) drawn over the clip's log-mel (grey); the clip alone."""
    fig = agg_figure((4.2, 2.2))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(logmel.T, origin="lower", aspect="auto", cmap="gray_r", alpha=0.5)
    if weights is not None:
        ax.imshow(weights.T, origin="lower", aspect="auto", cmap="magma", alpha=0.6, vmin=0, vmax=1)
    ax.set_title(title, fontsize=8)
    ax.set_xlabel("frame", fontsize=7)
    ax.set_ylabel("mel band", fontsize=7)
    ax.tick_params(labelsize=6)
    fig.tight_layout()
    return _png(fig)


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def wav_bytes(y: np.ndarray, sr: int) -> bytes:
    """16-bit PCM WAV of mono float audio."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(y, -1, 1), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def write_wavs(expl: Explanation, folder: str | Path) -> list[Path]:
    """One WAV per auralised filter (and the clip they come from) into `folder`."""
    a = expl.auralisation
    if a is None:
        return []
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for f in a.filters:
        p = folder / f"{f.layer}-filter{f.index:03d}.wav"
        p.write_bytes(wav_bytes(f.audio, a.sample_rate))
        paths.append(p)
    return paths


# ---- HTML --------------------------------------------------------------------------------------


def _uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def report_html(expl: Explanation, path: str | Path) -> Path:
    """The self-contained report page."""
    parts = [
        _header(expl),
        "<h2>Timeline</h2>",
        '<p class="note">The whole track in consecutive windows: the waveform with the content '
        "gate's class of each window, then each model's genre scores per window.</p>",
        f'<img id="timeline" alt="timeline" src="{_uri("image/png", timeline_png(expl))}">',
        _genres_section(expl),
        _tags_section(expl),
        _stems_section(expl),
        _auralisation_section(expl),
        _timing(expl),
    ]
    title = f"mgctag explain: {Path(expl.path).name}"
    page = Template(data_asset("explain.html")).substitute(
        title=_e(title), csp=CSP, body="\n".join(p for p in parts if p)
    )
    Path(path).write_text(page, encoding="utf-8")
    return Path(path)


def _header(expl: Explanation) -> str:
    if expl.skip:
        verdict = f"No genre written: {_e(expl.skip)}"
    elif expl.written:
        verdict = "Written genres: " + ", ".join(
            f'<span class="genre">{_e(g)}</span>' for g in expl.written
        )
    else:
        verdict = "No genre reached the confidence floor."
    return (
        f"<h1>Why these genres?</h1>"
        f'<p class="path">{_e(expl.path)} ({expl.duration:.1f} s)</p>'
        f'<p class="verdict" id="verdict">Content: <b>{_e(expl.content)}</b>. {verdict}</p>'
        f'<p class="note">Tagger {_e(expl.tagger)}: genres come from the analysis windows at '
        + ", ".join(f"{w['offset']:.1f} s ({_e(w['content'])})" for w in expl.windows)
        + "; a window is music when AudioSet's music evidence reaches the floor.</p>"
    )


def _genres_section(expl: Explanation) -> str:
    rows = []
    for g in expl.genres:
        tags = "; ".join(
            f"{_e(v)}: " + ", ".join(f"{_e(t)} {p:.3f}" for t, p in tl[:4])
            for v, tl in g.tags.items()
        )
        rows.append(
            f"<tr><td>{_e(g.genre)}{' (written)' if g.written else ''}</td>"
            f'<td class="num">{g.score:.3f}</td>'
            + "".join(
                f'<td class="num">{g.model_scores.get(m, 0):.3f} &rarr; '
                f"{g.terms.get(m, 0):.3f}</td>"
                for m in (MUSICNN, "audioset_mn04")
            )
            + f"<td>{tags or '&ndash;'}</td></tr>"
        )
    return (
        "<h2>Models</h2><p class=\"note\">The combined score is the mean of musicnn's and mn04's "
        "genre scores (a model without the genre counts 0), so each model's term is half its "
        "score. A model's genre score is its strongest tag for that genre (musicnn: the mean "
        "of MSD and MTT where both know it).</p>"
        '<table id="terms"><tr><th>genre</th><th>combined</th><th>musicnn score &rarr; term</th>'
        "<th>mn04 score &rarr; term</th><th>model tags behind it</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _tags_section(expl: Explanation) -> str:
    cols = "".join(
        f"<td>{'<br>'.join(f'{_e(t)} {p:.3f}' for t, p in tags)}</td>"
        for tags in expl.top_tags.values()
    )
    heads = "".join(f"<th>{_e(v)}</th>" for v in expl.top_tags)
    return f"<h3>Strongest raw tags</h3><table><tr>{heads}</tr><tr>{cols}</tr></table>"


def _stems_section(expl: Explanation) -> str:
    st = expl.stems
    if st is None:
        return ""
    models = list(st.baseline)
    genres = [g.genre for g in expl.genres]
    extra = [g for g in st.baseline.get(STEM_MODEL, {}) if g not in genres]
    rows = []
    for genre in genres + extra:
        cells = []
        for stem in st.delta:
            for m in models:
                v = st.delta[stem].get(m, {}).get(genre)
                cells.append(
                    f'<td class="{_delta_class(v)}">{"" if v is None else f"{v:+.3f}"}</td>'
                )
        base = "".join(f'<td class="num">{_num(st.baseline[m].get(genre))}</td>' for m in models)
        rows.append(f"<tr><td>{_e(genre)}</td>{base}{''.join(cells)}</tr>")
    short = {COMBINED: "comb", MUSICNN: "musicnn", "audioset_mn04": "mn04", STEM_MODEL: "stemCNN"}
    head1 = (
        f'<tr><th rowspan="2">genre</th><th colspan="{len(models)}">with every stem</th>'
        + "".join(f'<th colspan="{len(models)}">without {_e(s)}</th>' for s in st.delta)
        + "</tr>"
    )
    head2 = (
        "<tr>"
        + "".join(f"<th>{short.get(m, _e(m))}</th>" for m in models) * (1 + len(st.delta))
        + "</tr>"
    )
    levels = ", ".join(f"{_e(s)} {v:.1f} dBFS" for s, v in st.level_db.items())
    return (
        f'<h2>Stems</h2><p class="note">The analysis windows split by the {_e(st.separator)} '
        "separator; each stem taken out in turn: musicnn and mn04 hear mix &minus; stem, the "
        "stem CNN gets that stem's channel silenced (it reads drums, bass and other, not vocals). "
        f"Red: the score rises without the stem; blue: it falls (the stem carried it). Stem "
        f"levels: {levels}.</p>"
        f'<div class="wide"><table id="stems">{head1}{head2}{"".join(rows)}</table></div>'
    )


def _delta_class(v: float | None) -> str:
    """Cell classes: red when a genre rises by 0.01 or more without the stem, blue when it falls."""
    if v is None or abs(v) < 0.01:
        return "num"
    return "num up" if v > 0 else "num down"


def _num(v: float | None) -> str:
    return "&ndash;" if v is None or not np.isfinite(v) else f"{v:.3f}"


def _auralisation_section(expl: Explanation) -> str:
    a = expl.auralisation
    if a is None:
        return ""
    clip_img = _uri("image/png", filter_png(a.clip_logmel, None, "the clip (log-mel)"))
    figs = [
        f'<figure><img alt="the clip" src="{clip_img}"><audio class="clip-audio" controls '
        f'preload="metadata" src="{_uri("audio/wav", wav_bytes(a.clip, a.sample_rate))}"></audio>'
        "<figcaption>the clip itself</figcaption></figure>"
    ]
    for f in a.filters:
        title = f"{f.layer} filter {f.index} (contribution {f.importance:+.2e})"
        img = _uri("image/png", filter_png(a.clip_logmel, f.projection, title))
        wav = _uri("audio/wav", wav_bytes(f.audio, a.sample_rate))
        figs.append(
            f'<figure><img alt="{_e(title)}" src="{img}">'
            f'<audio class="filter-audio" controls preload="metadata" src="{wav}"></audio>'
            f"<figcaption>{_e(title)}</figcaption></figure>"
        )
    return (
        "<h2>What the filters hear</h2>"
        f'<p class="note">The {len(a.filters)} filters of musicnn layer {_e(a.filters[0].layer)} '
        f"that add most to the tag <b>{_e(a.tag)}</b> of {_e(a.model)} (for "
        f"{_e(a.genre)}), on the {a.seconds:g} s from {a.offset:.1f} s. Each map is kept alone, "
        "projected back to the log-mel input (gradient = transposed convolution), weighs the "
        "clip's mel magnitude, goes back to linear frequency through the mel filterbank's "
        "pseudo-inverse and to audio with the clip's own STFT phase (SwishNet paper, "
        "Listing 1).</p>"
        f'<div class="filters" id="filters">{"".join(figs)}</div>'
    )


def _timing(expl: Explanation) -> str:
    s = ", ".join(f"{_e(k)} {v:.1f} s" for k, v in expl.seconds.items())
    return f'<p class="note">Computed in {s}.</p>'
