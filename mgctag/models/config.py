"""Constructor arguments recorded once, so a model card can rebuild any network exactly.

`@capture_init` on an `nn.Module` class binds each `__init__` call's arguments (defaults filled
in) and keeps them as `module.config`: the card's `arch_args`. Nothing is copied by hand, so a new
constructor argument can never be forgotten in the card (as demucs' `capture_init` does).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, TypeVar

T = TypeVar("T", bound="type[Any]")


def capture_init(cls: T) -> T:
    """Class decorator: `instance.config` = the constructor's arguments, JSON-ready."""
    init = cls.__init__
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        init(self, *args, **kwargs)
        self.config = {name: _jsonable(value) for name, value in list(bound.arguments.items())[1:]}

    cls.__init__ = __init__
    return cls


def _jsonable(value: Any) -> Any:
    """Tuples become lists (as JSON gives them back), so a card round-trips unchanged."""
    return [_jsonable(v) for v in value] if isinstance(value, (tuple, list)) else value
