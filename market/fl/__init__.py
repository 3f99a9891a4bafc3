"""Learning backends: real federated learning with torch, and the analytic surrogate."""
