"""MMZD (SPEC B.4) and MMZD-alliance member (SPEC B.5) strategies and the `Alliance` they share.

The design (a*, sign of phi, P*, phi) comes from market/zero_determinant.py; at run time a strategy needs only
the previous welfare and its own previous action (O(N) for whoever computes the welfare, O(R) here).

Mode "auto" (the default here) plays the exact design when a target is enforceable and the paper's clipped
design otherwise; `design.feasible` always says which holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np

from flmarket.agents.strategies.base import PreviousOutcome, Strategy, sample_action
from flmarket.market.errors import InfeasibleTargetError, MarketError
from flmarket.market.public_goods import PublicGoodsGame
from flmarket.market.zero_determinant import (
    DEFAULT_PHI_SCALE,
    ZeroDeterminantDesign,
    design_mmzda,
)

StrategyMode = Literal["exact", "paper", "auto"]
STRATEGY_MODES = ("exact", "paper", "auto")


def _design(
    game: PublicGoodsGame,
    members: tuple[int, ...],
    mode: StrategyMode,
    target: float | None,
    phi_scale: float,
) -> ZeroDeterminantDesign:
    """Design for `members` acting as one player; "auto" falls back from exact to paper when the target (the
    largest enforceable welfare, or the one given) cannot be enforced."""
    if mode not in STRATEGY_MODES:
        raise MarketError(f"mode: must be one of {STRATEGY_MODES}, got {mode!r}")
    if mode == "paper":
        return design_mmzda(game, members, mode="paper", target=target, phi_scale=phi_scale)
    try:
        design = design_mmzda(game, members, mode="exact", target=target, phi_scale=phi_scale)
    except InfeasibleTargetError:
        if mode == "exact":
            raise
        return design_mmzda(game, members, mode="paper", target=target, phi_scale=phi_scale)
    if not design.playable:
        if mode == "exact":
            raise InfeasibleTargetError(
                f"mode: 'exact' but organisations {members} can enforce no welfare target (Proposition 1); "
                "use mode='auto' or 'paper', or a larger alliance"
            )
        design = design_mmzda(game, members, mode="paper", target=target, phi_scale=phi_scale)
    return design


class MMZD(Strategy):
    """One organisation controlling the expected welfare by p(a*|k) = 1[y^k=a*] + phi (s_k - P*) (B.4)."""

    name: ClassVar[str] = "MMZD"
    classifier: ClassVar[dict[str, Any]] = {"memory_depth": 1, "stochastic": True}
    restarts_when_rounds_change: ClassVar[bool] = True  # Z 10 reads (welfare, own action) as a state of this game

    def __init__(
        self,
        *,
        mode: StrategyMode = "auto",
        target: float | None = None,
        phi_scale: float = DEFAULT_PHI_SCALE,
        initial: int | None = None,
    ) -> None:
        super().__init__(initial=initial, mode=mode, target=target, phi_scale=phi_scale)
        if mode not in STRATEGY_MODES:
            raise MarketError(f"mode: must be one of {STRATEGY_MODES}, got {mode!r}")
        self.design: ZeroDeterminantDesign | None = None
        self._designed_for: tuple[PublicGoodsGame, int] | None = None

    def prepare(self, game: PublicGoodsGame, player_index: int) -> None:
        """Recompute the design when the game or the organisation's index changed (O(N log N + N R^2))."""
        super().prepare(game, player_index)
        if self._designed_for != (game, player_index):
            self.design = _design(
                game, (player_index,), self.params["mode"], self.params["target"], self.params["phi_scale"]
            )
            self._designed_for = (game, player_index)

    def next_distribution(self, previous: PreviousOutcome) -> np.ndarray:
        """Z 10 from the previous welfare and own action."""
        if self.design is None:
            raise MarketError("MMZD: call prepare(game, player_index) before asking for probabilities")
        return self.design.probabilities(previous.welfare, previous.own_action)[0]


class Alliance:
    """An MMZD alliance (SPEC B.5, Algorithm 1): the leader designs one strategy; y_A drawn once a round.

    Members send the leader their utility parameters (here: the game holds them), the leader computes the
    design for the reduced game; every game round the first member to ask draws y_A with its generator (shared
    randomness) and each member reads that draw once; the next request by a member who has read it starts a
    new game round. The simulation asks each member once per round, so all members play the same action.
    """

    def __init__(
        self,
        members: Sequence[int],
        *,
        mode: StrategyMode = "auto",
        target: float | None = None,
        phi_scale: float = DEFAULT_PHI_SCALE,
    ) -> None:
        self.members = tuple(int(member) for member in members)
        if not self.members or len(set(self.members)) != len(self.members):
            raise MarketError(f"members: must be distinct organisation indices, got {self.members}")
        if mode not in STRATEGY_MODES:
            raise MarketError(f"mode: must be one of {STRATEGY_MODES}, got {mode!r}")
        self.mode = mode
        self.target = target
        self.phi_scale = phi_scale
        self.design: ZeroDeterminantDesign | None = None
        self._designed_for: PublicGoodsGame | None = None
        self.current_action: int | None = None
        self._unread: set[int] = set()

    def __repr__(self) -> str:
        return f"Alliance(members={self.members}, mode={self.mode!r})"

    @property
    def leader(self) -> int:
        """The leader organisation (the first member)."""
        return self.members[0]

    def update_members(self, members: Sequence[int]) -> None:
        """New player indices of the members for the coming game round (the population changed)."""
        updated = tuple(int(member) for member in members)
        if not updated or len(set(updated)) != len(updated):
            raise MarketError(f"members: must be distinct organisation indices, got {updated}")
        if updated != self.members:
            self.members = updated
            self._designed_for = None
            self.reset()

    def prepare(self, game: PublicGoodsGame) -> None:
        """The leader (re)computes the alliance strategy when the game changed (SPEC B.5)."""
        if self._designed_for != game:
            self.design = _design(game, self.members, self.mode, self.target, self.phi_scale)
            self._designed_for = game

    def probabilities(self, previous: PreviousOutcome | None) -> np.ndarray:
        """Distribution of y_A: uniform in the first round, else Z 10 on the reduced game. After a task with
        another R the previous outcome is no state of this game: the alliance starts afresh (docs/spec.md B.3)."""
        if self.design is None or self._designed_for is None:
            raise MarketError("Alliance: call prepare(game) before asking for probabilities")
        if previous is None or previous.rounds != self._designed_for.rounds:
            return self.design.initial_probabilities()
        return self.design.probabilities(previous.welfare, previous.own_action)[0]

    def action_for(self, member: int, previous: PreviousOutcome | None, rng: np.random.Generator) -> int:
        """The shared action of this game round for `member` (a new draw if `member` already read it)."""
        if member not in self.members:
            raise MarketError(f"member: {member} is not in the alliance {self.members}")
        if member not in self._unread:
            self.current_action = sample_action(self.probabilities(previous), rng)
            self._unread = set(self.members)
        self._unread.discard(member)
        assert self.current_action is not None
        return self.current_action

    def reset(self) -> None:
        """Forget the current draw."""
        self.current_action = None
        self._unread = set()


class MMZDAMember(Strategy):
    """A member of an MMZD alliance: plays the alliance action drawn by its leader (SPEC B.5)."""

    name: ClassVar[str] = "MMZDA-member"
    classifier: ClassVar[dict[str, Any]] = {"memory_depth": 1, "stochastic": True, "shared_state": True}

    def __init__(self, *, alliance: Alliance | None = None, initial: int | None = None) -> None:
        if alliance is None:
            raise MarketError(
                "alliance: an MMZDA member needs the Alliance it shares with the other members, got None "
                "(use make_strategy('MMZDA-member', alliance=Alliance(members)))"
            )
        if initial is not None:
            raise MarketError(f"initial: an alliance member plays the alliance's first action, got {initial}")
        super().__init__(initial=None, alliance=alliance)
        self.alliance = alliance

    def prepare(self, game: PublicGoodsGame, player_index: int) -> None:
        """Check membership and let the alliance (re)design for this game."""
        super().prepare(game, player_index)
        if player_index not in self.alliance.members:
            raise MarketError(f"player_index: {player_index} is not in the alliance {self.alliance.members}")
        self.alliance.prepare(game)

    def probabilities(self, previous: PreviousOutcome | None) -> np.ndarray:
        """The alliance's distribution of y_A."""
        return self.alliance.probabilities(previous)

    def choose(self, previous: PreviousOutcome | None, rng: np.random.Generator) -> int:
        """Read the alliance action of this game round (drawn once for all members)."""
        if self.player_index is None:
            raise MarketError("MMZDA-member: call prepare(game, player_index) before choose")
        return self.alliance.action_for(self.player_index, previous, rng)

    def reset(self) -> None:
        """Reset the shared alliance draw."""
        self.alliance.reset()
