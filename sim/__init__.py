"""The run: MarketModel (Mesa + SimPy), scenarios, overlay network, event log, runner and CLI."""
