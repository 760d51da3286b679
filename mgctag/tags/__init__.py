"""Read tags from any audio file; write only the genre field, losslessly and verified.

reading (read.py), one writer class per tag format (formats.py, with the raw ID3 and Vorbis
comment code in id3raw.py and vorbis.py), the write/verify/commit logic (write.py) and the audio
payload hash (payload.py). See docs/tags.md.
"""

from mgctag.tags.common import FileTags, TagError, TagReadError, TagWriteError, WriteResult
from mgctag.tags.formats import ID3V23_SEPARATOR
from mgctag.tags.payload import audio_payload_hash
from mgctag.tags.read import normalise_genres, read_tags
from mgctag.tags.write import (
    TEMP_SUFFIX,
    CommitHook,
    cleanup_stale_temps,
    undo_in_place,
    write_genres,
)

__all__ = [
    "ID3V23_SEPARATOR",
    "TEMP_SUFFIX",
    "CommitHook",
    "FileTags",
    "TagError",
    "TagReadError",
    "TagWriteError",
    "WriteResult",
    "audio_payload_hash",
    "cleanup_stale_temps",
    "normalise_genres",
    "read_tags",
    "undo_in_place",
    "write_genres",
]
