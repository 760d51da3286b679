"""Where the tools find the repository and the research-only data beside it, in one place.

The data in ../shared (MUSDB previews, librosa's examples, fixtures) is not shipped; like the tests
(tests/media.py), MGCTAG_SHARED points elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "weights"
SHARED = Path(os.environ.get("MGCTAG_SHARED") or REPO.parent / "shared")
AUDIO = SHARED / "audio"
LIBROSA = AUDIO / "librosa"
MUSDB = AUDIO / "musdb18-7s"
FIXTURES = SHARED / "fixtures"
