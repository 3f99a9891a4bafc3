"""Value types of the command lines' options (argparse `type=`): integers in a range and seeds, refused with one
line that gives the rule and the value. Light on purpose (argparse only): every subcommand imports it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

SEED_LIMIT = 2**63
"""Seeds are integers in [0, 2**63), as `run.seed` and numpy's SeedSequence take them."""


def _integer(raw: str) -> int:
    """`raw` as an integer written in plain digits (int() would also read 1_0 as 10)."""
    try:
        if "_" in raw:
            raise ValueError(raw)
        return int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {raw!r}") from None


def integer_in(minimum: int, maximum: int | None = None, note: str = "") -> Callable[[str], int]:
    """An argparse type: an integer from `minimum` to `maximum` (no upper bound when None); `note` follows the
    rule in the refusal, e.g. "must be an integer >= 0 (0: every row), got -1"."""

    def parse(raw: str) -> int:
        value = _integer(raw)
        if value < minimum or (maximum is not None and value > maximum):
            rule = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
            raise argparse.ArgumentTypeError(f"must be an integer {rule}{note}, got {value}")
        return value

    parse.__name__ = f"integer_in_{minimum}_{maximum}"
    return parse


def seed(raw: str) -> int:
    """A seed: an integer in [0, 2**63)."""
    value = _integer(raw)
    if not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"must be in [0, 2**63), got {value}")
    return value
