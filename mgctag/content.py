"""Music, speech or other sound: the content gate that keeps genres off audiobooks and noise.

Decided per analysis window from the AudioSet tagger's class probabilities, then per track. Music
is checked first and wins over speech: AudioSet's Speech class fires on rap and on sung words too,
so a window whose Music, singing/rapping or music-genre evidence reaches the music floor is music
whatever Speech says. Only windows without that evidence can be speech (Speech family at or above
its floor) or other sound. A track is music when at least half of its windows are (so a spoken
skit in one window does not cost a song its genre); otherwise it is speech when speech windows
outnumber the rest, and other sound when not. Floors are measured in docs/models.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

MUSIC, SPEECH, OTHER = "music", "speech", "other"
CLASSES = (MUSIC, SPEECH, OTHER)

SPEECH_CLASSES = (
    "Speech",
    "Male speech, man speaking",
    "Female speech, woman speaking",
    "Child speech, kid speaking",
    "Conversation",
    "Narration, monologue",
    "Babbling",
    "Speech synthesizer",
)
VOICE_MUSIC_CLASSES = (
    "Singing",
    "Choir",
    "Yodeling",
    "Chant",
    "Mantra",
    "Male singing",
    "Female singing",
    "Child singing",
    "Synthetic singing",
    "Rapping",
    "Humming",
    "Beatboxing",
    "A capella",
)
MUSIC_FLOOR = 0.2
SPEECH_FLOOR = 0.5
MUSIC_SHARE = 0.5


@dataclass(frozen=True)
class ContentGate:
    """Window classes from (windows, classes) probabilities of an AudioSet tagger."""

    music_idx: tuple[int, ...]
    speech_idx: tuple[int, ...]
    music_floor: float = MUSIC_FLOOR
    speech_floor: float = SPEECH_FLOOR

    @classmethod
    def for_labels(
        cls, labels: Sequence[str], genre_tags: Mapping[str, str] | None = None, **floors: float
    ) -> ContentGate:
        """Index the evidence classes of a label list; `genre_tags` (taxonomy tag → genre) adds
        every AudioSet genre class the taxonomy maps, as music evidence."""
        lower = {name.lower(): i for i, name in enumerate(labels)}
        genre_keys = {_tag_key(k) for k in (genre_tags or {})}
        music = {lower["music"]} | {
            lower[c.lower()] for c in VOICE_MUSIC_CLASSES if c.lower() in lower
        }
        music |= {i for name, i in lower.items() if _tag_key(name) in genre_keys}
        speech = {lower[c.lower()] for c in SPEECH_CLASSES if c.lower() in lower}
        return cls(tuple(sorted(music)), tuple(sorted(speech)), **floors)

    def scores(self, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(music evidence, speech evidence) per window: the strongest class of each family."""
        p = np.atleast_2d(np.asarray(probs, dtype=np.float32))
        return p[:, self.music_idx].max(axis=1), p[:, self.speech_idx].max(axis=1)

    def classify(self, probs: np.ndarray) -> list[str]:
        """One of music / speech / other per window."""
        music, speech = self.scores(probs)
        return [window_class(float(m), float(s), self) for m, s in zip(music, speech, strict=True)]


def _tag_key(name: str) -> str:
    """The taxonomy's case- and separator-insensitive key (as mgctag.genres)."""
    return re.sub(r"[\s_\-.]+", " ", name.strip().lower()).strip()


def window_class(music: float, speech: float, gate: ContentGate) -> str:
    """Music evidence first (rap and singing are music), then speech, else other sound."""
    if music >= gate.music_floor:
        return MUSIC
    if speech >= gate.speech_floor:
        return SPEECH
    return OTHER


def track_class(windows: Sequence[str], music_share: float = MUSIC_SHARE) -> str:
    """The track's content from its windows' classes (no windows: other)."""
    if not windows:
        return OTHER
    n = len(windows)
    if windows.count(MUSIC) >= music_share * n - 1e-9:
        return MUSIC
    return SPEECH if windows.count(SPEECH) > n - windows.count(SPEECH) else OTHER


def skip_reason(content: str) -> str | None:
    """Why a track of this content gets no genre by default (None: it is music, tag it)."""
    if content == SPEECH:
        return "mostly speech, not music (use --content all to tag it anyway)"
    if content == OTHER:
        return "no music heard (use --content all to tag it anyway)"
    return None


@dataclass(frozen=True)
class ContentDecision:
    """What the gate decided for one track: its class, each window's record, the windows whose
    outputs make its genres (the music ones; all of them when none is music)."""

    content: str
    windows: list[dict]
    genre_windows: list[int]


def decide(
    gate: ContentGate, probs: np.ndarray, offsets: Sequence[float] | np.ndarray
) -> ContentDecision:
    """The gate over one track's windows ((windows, classes) probabilities, window offsets)."""
    music, speech = gate.scores(probs)
    classes = [window_class(float(m), float(s), gate) for m, s in zip(music, speech, strict=True)]
    records = [
        {"offset": round(float(o), 3), "content": c, "music": round(float(m), 4)}
        | {"speech": round(float(s), 4)}
        for o, c, m, s in zip(offsets, classes, music, speech, strict=True)
    ]
    chosen = [i for i, c in enumerate(classes) if c == MUSIC] or list(range(len(classes)))
    return ContentDecision(track_class(classes), records, chosen)
