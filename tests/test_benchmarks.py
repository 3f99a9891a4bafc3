"""benchmarks/run_all.py: every benchmark script takes the --quick that run_all passes it (bench_view refused it,
so the README's one benchmark command exited 1)."""

from __future__ import annotations

import ast
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _options(script: Path) -> set[str]:
    """The option strings of every `add_argument` call in the script (read from its source, nothing run)."""
    tree = ast.parse(script.read_text(encoding="utf-8"))
    return {
        argument.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument"
        for argument in node.args
        if isinstance(argument, ast.Constant) and isinstance(argument.value, str)
    }


def test_every_benchmark_that_run_all_runs_takes_quick() -> None:
    scripts = sorted(BENCHMARKS.glob("bench_*.py"))
    assert len(scripts) >= 8
    refusing = [script.name for script in scripts if "--quick" not in _options(script)]
    assert refusing == []
