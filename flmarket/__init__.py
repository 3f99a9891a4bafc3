"""flmarket: a discrete-event, agent-based simulator of federated-learning data markets (BGFL and MMZD).

The project's folders install under this one namespace: `flmarket.sim`, `flmarket.agents`, `flmarket.market`
and `flmarket.analysis` (see `[tool.setuptools] package-dir` in pyproject.toml).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("flmarket")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
