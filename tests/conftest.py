"""Fixtures shared by test modules."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest


@pytest.fixture
def python_sigint_handler() -> Iterator[None]:
    """SIGINT with Python's own handler during the test, as in a terminal: a pytest started as a background job of
    a non-interactive shell inherits SIGINT ignored (then a held SIGINT is rightly delivered to nothing, and
    children start with it ignored whatever flmarket does)."""
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, inherited)
