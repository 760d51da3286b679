"""The names of the bundled models and built-in taggers, and how the built-ins' genres are chosen:
facts the catalog and the tagger classes both need, kept below both (no import cycle)."""

from __future__ import annotations

from mgctag.genres import AUDIOSET_VOCABULARY
from mgctag.options import DEFAULT_TAGGER, MUSICNN_TAGGER

AUDIOSET_MODEL = AUDIOSET_VOCABULARY  # its genre scores are one vocabulary of the default's row
MUSICNN_MODELS = ("MSD_musicnn", "MTT_musicnn")
EMBEDDING_MODEL = "MSD_musicnn"  # musicnn's embedding: the first of the pair
# The tag-model pairs that make one tagger: name -> models (the first one embeds).
ENSEMBLES = {MUSICNN_TAGGER: MUSICNN_MODELS, "vgg": ("MSD_vgg", "MTT_vgg")}
# Which genres a tagger's scores make worth writing, unless --max-genres / --min-confidence say:
# (at most, absolute floor, floor relative to the top score). Cross-validated in docs/models.md.
SELECTION = {DEFAULT_TAGGER: (2, 0.05, 0.6)}
DEFAULT_SELECTION = (3, 0.15, 0.35)
# What a tagger can read (models/inputs.py makes it). mel / mfcc / stems are 187-frame patches at
# 16 kHz (audio/features.py); waveform is the mono analysis windows at the spec's rate; embeddings
# are another tagger's stored per-stem vectors (read from the library, not from audio).
FEATURES = ("mel", "mfcc", "stems", "waveform", "embeddings")
PATCH_FEATURES = ("mel", "mfcc", "stems")


def builtin_selection(name: str) -> tuple[int, float, float]:
    """(max genres, absolute floor, relative floor) of a built-in tagger (`catalog.selection`
    also reads model cards)."""
    return SELECTION.get(name, DEFAULT_SELECTION)
