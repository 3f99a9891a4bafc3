"""The layer rules of docs/architecture.md, checked on the source: imports only point downward.

sim -> agents -> market, with analysis/ beside them reading only files. market/ is pure (no simpy, mesa, sim,
agents, analysis); agents/ does not import sim/ or analysis/ (type-checking imports excepted); analysis/ imports
nothing from agents/ and nothing from sim/ either (it reads what runs wrote: Parquet parts and manifests).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN = {
    "market": {"simpy", "mesa", "sim", "agents", "analysis"},
    "agents": {"sim", "analysis"},
    "analysis": {"agents", "sim"},
}


def _runtime_imports(path: Path) -> set[str]:
    """Top-level packages imported at run time (imports under `if TYPE_CHECKING:` are skipped)."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for child in ast.walk(node))
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(_layer_of(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(_layer_of(node.module))
    return found


def _layer_of(module: str) -> str:
    """The layer (or third-party package) a module belongs to: `flmarket.sim.model` -> `sim`."""
    parts = module.split(".")
    if parts[0] == "flmarket" and len(parts) > 1:
        return parts[1]
    return parts[0]


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layers_import_only_downward(layer: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_runtime_imports(path) & FORBIDDEN[layer])
        for path in sorted((ROOT / layer).rglob("*.py"))
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_market_reads_files_only_in_its_data_module() -> None:
    readers = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "market").rglob("*.py"))
        if any(token in path.read_text() for token in ("open(", ".read_text(", ".read_bytes(", ".write_"))
    ]
    assert set(readers) <= {"market/fl/data.py"}


def test_the_surrogate_path_never_imports_torch(tmp_path) -> None:
    """docs/architecture.md: `market/fl/backend.py` loads the torch backend lazily, so a surrogate run never
    imports torch (about 1.5 s and hundreds of MB before the first task)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import flmarket as fm\n"
        f"fm.run('quickstart', overrides={{'run.tasks': 1}}, out={str(tmp_path)!r}, progress=False)\n"
        "print(sorted(name for name in ('torch', 'torchvision') if name in sys.modules))\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert completed.stdout.strip().splitlines()[-1] == "[]"
