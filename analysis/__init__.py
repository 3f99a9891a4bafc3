"""Read event logs into pandas; metrics, sweeps' results, reports and paper reproductions."""

from analysis.load import load_events, load_manifest

__all__ = ["load_events", "load_manifest"]
