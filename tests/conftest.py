"""Fixtures shared by test modules."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
from hypothesis import settings

# No timed tests: Hypothesis's default 200 ms deadline per example fails a property for the machine's load, not for
# the code (the suite runs beside itself on every core, on shared machines). Speed lives in benchmarks/.
settings.register_profile("flmarket", deadline=None)
settings.load_profile("flmarket")

MOST_WORKERS = 8
"""`pytest -n auto`'s cap: each worker imports torch and some tests start dask clusters or a browser."""


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """Workers for `-n auto` (pyproject's default): the CPUs this process may run on, at most MOST_WORKERS.
    pytest-xdist's own count is psutil's physical cores: half the CPUs where each core runs two threads.
    PYTEST_XDIST_AUTO_NUM_WORKERS overrides it, as in pytest-xdist."""
    chosen = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS", "")
    if chosen.strip().isdigit():
        return int(chosen)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(usable, MOST_WORKERS))


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
