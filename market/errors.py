"""Errors raised by the mechanism math: each names the quantity, its value and what is allowed."""

from __future__ import annotations


class MarketError(ValueError):
    """Base class for invalid or infeasible mechanism inputs."""


class InfeasibleBudgetError(MarketError):
    """A budget cannot pay for what the mechanism needs (e.g. r_max = 0 in (B 11))."""


class SocialDilemmaError(MarketError):
    """A public-goods game breaks Assumption 1 or the dilemma condition of SPEC B.2."""
