"""The one JSON form mgctag stores, prints and writes, from what mgctag passes around.

Below every other module (the library stores JSON columns with it, the CLI prints with it), so it
imports nothing of mgctag's.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def to_jsonable(obj: Any) -> Any:
    """Plain JSON types from what mgctag passes around (numpy scalars/arrays, paths, tuples)."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # JSON has no NaN/Infinity
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    return obj


# Raw C1 controls and DEL are legal inside JSON strings but act on a terminal (0x9b is a CSI).
_JSON_UNSAFE = re.compile(r"[\x7f-\x9f\u2028\u2029]")


def dumps_json(data: Any, indent: int | None = 2) -> str:
    """The one JSON form mgctag prints and writes: valid JSON (NaN/Infinity become null), UTF-8
    text, and no raw control character, so printing it cannot drive the terminal."""
    text = json.dumps(
        to_jsonable(data), ensure_ascii=False, indent=indent, allow_nan=False, default=str
    )
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
