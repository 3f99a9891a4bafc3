"""flmarket/arguments.py: the option value types every subcommand shares."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from flmarket.arguments import integer_in, seed


def test_integers_in_a_range_give_the_rule_and_the_value() -> None:
    rows = integer_in(0, note=" (0: every row)")
    assert rows("0") == 0 and rows("7") == 7
    with pytest.raises(argparse.ArgumentTypeError, match=r"^must be an integer >= 0 \(0: every row\), got -1$"):
        rows("-1")
    width = integer_in(20, 1000)
    assert width("20") == 20 and width("1000") == 1000
    for bad, message in (("19", "must be an integer in 20..1000, got 19"), ("1001", "in 20..1000, got 1001")):
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            width(bad)
    for bad in ("1_0", "x", "1.5", ""):  # int() reads 1_0 as 10
        with pytest.raises(argparse.ArgumentTypeError, match=f"must be an integer, got {bad!r}"):
            rows(bad)


def test_seeds_are_numpy_seeds() -> None:
    assert seed("0") == 0 and seed(str(2**63 - 1)) == 2**63 - 1
    for bad in ("-1", str(2**63), str(2**64)):
        with pytest.raises(argparse.ArgumentTypeError, match=r"must be in \[0, 2\*\*63\)"):
            seed(bad)


def test_calibrate_help_loads_no_plotting_library() -> None:
    """calibrate took reproduce's seed type, and with it matplotlib, pandas and statsmodels (1.2 s more)."""
    probe = "import sys, flmarket.sim.calibrate; print(sorted({'matplotlib', 'statsmodels'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
