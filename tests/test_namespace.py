"""The folders install under one namespace: `flmarket.sim`, `flmarket.agents`, `flmarket.market`,
`flmarket.analysis`, and no generic top-level name (`sim`, `analysis`, ...) is importable from outside the repo."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, check=False)


@pytest.mark.parametrize("layer", ["sim", "agents", "market", "analysis"])
def test_generic_names_are_not_installed(layer: str, tmp_path: Path) -> None:
    result = _python(f"import {layer}", tmp_path)
    assert result.returncode != 0
    assert f"No module named '{layer}'" in result.stderr


def test_the_layers_import_under_flmarket_from_anywhere(tmp_path: Path) -> None:
    (tmp_path / "analysis.py").write_text("raise SystemExit('a paper repository’s own analysis.py was imported')\n")
    code = (
        "import flmarket, flmarket.sim.model, flmarket.agents.provider, flmarket.market.shapley\n"
        "from flmarket.analysis import load_events\n"
        "print(flmarket.__version__, flmarket.analysis.__name__)\n"
    )
    result = _python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    version, name = result.stdout.split()
    assert name == "flmarket.analysis"
    assert version[0].isdigit()


def test_bundled_files_resolve_through_the_namespace() -> None:
    from flmarket.sim.config import bundled_scenarios

    assert "quickstart" in bundled_scenarios()
    assert all(path.is_file() for path in bundled_scenarios().values())
