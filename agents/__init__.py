"""Mesa agents and their SimPy processes: providers, requesters, committee nodes, and strategies."""
