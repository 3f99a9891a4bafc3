"""The market's frozen records keep derived values they are asked for often: computed once, kept on the record.

A record such as a claim, a block, a PoET timer or a proposal is immutable and shared: every committee replica
hashes or checks the same object. `computed_once` stores a derived value (an encoding, a digest) in the
instance's `__dict__` under a name that is not a dataclass field, so equality, `repr` and
`dataclasses.replace` ignore it, and a changed copy (a new object) computes its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

Value = TypeVar("Value")


def computed_once(record: object, name: str, compute: Callable[[], Value]) -> Value:
    """`record`'s cached value `name`, computing and storing it on first use (works on frozen dataclasses)."""
    cached = record.__dict__.get(name)
    if cached is None:
        cached = compute()
        object.__setattr__(record, name, cached)
    return cached
