"""The suite's own set-up (tests/conftest.py): how many pytest-xdist workers `-n auto` starts, and no Hypothesis
deadline, so that a property fails for the code and never for the machine's load."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st


def test_auto_workers_are_the_usable_cpus_capped_and_the_environment_overrides_them(monkeypatch, pytestconfig) -> None:
    """The hook as pytest calls it, so the conftest's answer must come before pytest-xdist's (psutil's cores)."""

    def auto_workers() -> int:
        return pytestconfig.hook.pytest_xdist_auto_num_workers(config=pytestconfig)

    monkeypatch.delenv("PYTEST_XDIST_AUTO_NUM_WORKERS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert auto_workers() == 2  # CI's two vCPUs
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert auto_workers() == 8  # conftest's MOST_WORKERS
    monkeypatch.setenv("PYTEST_XDIST_AUTO_NUM_WORKERS", "3")
    assert auto_workers() == 3


def test_the_suite_runs_under_its_own_hypothesis_profile_without_a_deadline() -> None:
    assert settings.default.deadline is None


@settings(max_examples=2)
@given(st.integers())
def test_a_slow_example_is_not_a_failure(number: int) -> None:
    """Under Hypothesis's default profile this fails with DeadlineExceeded (an example of 250 ms > 200 ms)."""
    import time

    time.sleep(0.25)
    assert isinstance(number, int)
