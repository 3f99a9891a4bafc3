"""Read event logs into pandas; metrics, sweeps' results, reports and paper reproductions."""
