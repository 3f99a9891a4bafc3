"""Value types of the command lines' options (argparse `type=`): integers in a range, seeds and output folders,
refused with one line that gives the rule and the value. Light on purpose (the standard library only): every
subcommand imports it.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

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


def integer(raw: str) -> int:
    """An argparse type: an integer in plain digits, any value (the scenario's schema checks the range)."""
    return _integer(raw)


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


def folder_problem(folder: str | Path) -> str | None:
    """Why `folder` cannot take output, as "must be ..., got ...", or None when it can: a non-empty path that is a
    folder or does not exist yet, whose nearest existing ancestor is a folder this process can write to."""
    if not str(folder):
        return "must be a folder path, got ''"
    path = Path(folder)
    try:
        if path.exists() and not path.is_dir():
            return f"must be a folder, got {str(path)!r}, which is a file"
        existing = path
        while not existing.exists() and existing.parent != existing:
            existing = existing.parent
        if existing != path and not existing.is_dir():
            return f"must be a folder, got {str(path)!r}, whose parent {str(existing)!r} is a file"
        if not os.access(existing, os.W_OK | os.X_OK):
            return f"must be a folder you can write to, got {str(path)!r} ({str(existing)!r} is not writable)"
    except OSError as error:
        return f"must be a folder you can write to, got {str(path)!r} ({error.strerror or error})"
    return None


def folder(raw: str) -> str:
    """An output folder (`--out` of run, sweep and reproduce), refused at parse time when `folder_problem`
    finds one."""
    problem = folder_problem(raw)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return raw
