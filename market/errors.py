"""Errors raised by the `market/` layer: every one a MarketError (a ValueError) naming the field, value and rule.

The modules that raise them re-export their own (e.g. `market.ledger.LedgerError`), so either import works.
"""

from __future__ import annotations


class MarketError(ValueError):
    """Base class for invalid or infeasible mechanism inputs."""


# -------------------- mechanism math
class InfeasibleBudgetError(MarketError):
    """A budget cannot pay for what the mechanism needs (e.g. r_max = 0 in (B 11))."""


class SocialDilemmaError(MarketError):
    """A public-goods game breaks Assumption 1 or the dilemma condition of SPEC B.2."""


class LateUpdateError(MarketError):
    """An update was stamped after its round's deadline: SPEC A.4 rejects it instead of scoring it."""


class InfeasibleTargetError(MarketError):
    """A welfare target that no zero-determinant strategy of the controller can enforce (Proposition 1)."""


# -------------------- ledger and consensus
class LedgerError(MarketError):
    """A block, transaction or encoding that cannot belong to a valid chain."""


class TimerError(MarketError):
    """A trusted timer refused a request (no active timer, not elapsed, stale) or got bad settings."""


class ElectionError(MarketError):
    """Invalid stakes, votes or committee size."""


class PbftError(MarketError):
    """Invalid replica configuration."""


class ProposalError(MarketError):
    """A PPBG-AC input that cannot form a proposal (e.g. a solver returned a negative gamma)."""


# -------------------- federated learning data
class DatasetNotFoundError(MarketError):
    """A data set's files are missing from the local root the caller named."""


class PartitionError(MarketError):
    """A partition cannot be drawn with the requested parameters."""


class TrainingDivergedError(MarketError):
    """Training produced a non-finite update or loss (typically: the learning rate or the privacy noise, through
    `learning.sensitivity`, is too large)."""
