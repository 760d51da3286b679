"""Networks, their weights and cards, and the taggers built from them.

`get_tagger(name, device)` and `list_taggers()` (from `catalog.py`) are the way in; the `Tagger`
protocol is in `protocol.py`. They are loaded on first use, so importing this package is cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["get_tagger", "list_taggers"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from mgctag.models import catalog

        return getattr(catalog, name)
    raise AttributeError(f"module 'mgctag.models' has no attribute {name!r}")
