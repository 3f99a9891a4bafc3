"""The baseline strategies of SPEC B.3: ALLC, ALLD, Rand, TFT and Mixed.

The rules themselves are the pure functions of market/iterated.py, shared with the paper reproductions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from flmarket.agents.strategies.base import PreviousOutcome, Strategy, sample_action
from flmarket.market.iterated import TitForTatRule, point_mass, uniform
from flmarket.market.public_goods import PublicGoodsGame


class AllCooperate(Strategy):
    """ALLC: take part in every one of the R rounds, y = R (SPEC B.3)."""

    name: ClassVar[str] = "ALLC"
    classifier: ClassVar[dict[str, Any]] = {"memory_depth": 0, "stochastic": False}

    def next_distribution(self, previous: PreviousOutcome) -> np.ndarray:
        """Point mass on R."""
        return point_mass(self.rounds + 1, self.rounds)


class AllDefect(Strategy):
    """ALLD: never take part, y = 0 (the free rider of SPEC B.3, C)."""

    name: ClassVar[str] = "ALLD"
    classifier: ClassVar[dict[str, Any]] = {"memory_depth": 0, "stochastic": False}

    def next_distribution(self, previous: PreviousOutcome) -> np.ndarray:
        """Point mass on 0."""
        return point_mass(self.rounds + 1, 0)


class Random(Strategy):
    """Rand: y uniform on {0..R} every round (SPEC B.3)."""

    name: ClassVar[str] = "Rand"
    classifier: ClassVar[dict[str, Any]] = {"memory_depth": 0, "stochastic": True}

    def next_distribution(self, previous: PreviousOutcome) -> np.ndarray:
        """Uniform over 0..R."""
        return uniform(self.rounds + 1)


class TitForTat(Strategy):
    """TFT of SPEC B.3: low range after a round with total participation below the threshold, else high range.

    Defaults: threshold N*R/2, low range {0..floor(R/2)}, high range {ceil(R/2)..R}; all configurable.
    """

    name: ClassVar[str] = "TFT"
    classifier: ClassVar[dict[str, Any]] = {"memory_depth": 1, "stochastic": True}

    def __init__(
        self,
        *,
        threshold: float | None = None,
        low_actions: Sequence[int] | None = None,
        high_actions: Sequence[int] | None = None,
        initial: int | None = None,
    ) -> None:
        super().__init__(
            initial=initial,
            threshold=threshold,
            low_actions=None if low_actions is None else tuple(low_actions),
            high_actions=None if high_actions is None else tuple(high_actions),
        )

    def rule(self, players: int, rounds: int) -> TitForTatRule:
        """The TFT rule for a game with N players and R rounds, with this strategy's overrides."""
        default = TitForTatRule.default(players, rounds, self.params["threshold"])
        return TitForTatRule(
            rounds=rounds,
            threshold=default.threshold,
            low_actions=self.params["low_actions"] or default.low_actions,
            high_actions=self.params["high_actions"] or default.high_actions,
        )

    def next_distribution(self, previous: PreviousOutcome) -> np.ndarray:
        """Uniform on this task's high range if the previous task's total participation reached that task's
        threshold (its N and R), else on this task's low range. Tasks differ in R when a budget caps the rounds
        (docs/spec.md B.3): the ranges are this task's, so the action stays in 0..R."""
        assert self.game is not None  # `probabilities` checked it (`rounds`)
        cooperated = previous.total_participation >= self.rule(previous.players, previous.rounds).threshold
        now = self.rule(self.game.players, self.rounds)
        return uniform(self.rounds + 1, now.high_actions if cooperated else now.low_actions)


MIXED_COMPONENTS: tuple[type[Strategy], ...] = (AllCooperate, AllDefect, Random, TitForTat)


class Mixed(Strategy):
    """Mixed of SPEC B.3: at first use draws one of ALLC, ALLD, Rand, TFT uniformly and keeps it for the run.

    Before the draw, `probabilities` gives the marginal (the average of the four components' distributions).
    """

    name: ClassVar[str] = "Mixed"
    classifier: ClassVar[dict[str, Any]] = {"memory_depth": 1, "stochastic": True}

    def __init__(self, *, initial: int | None = None) -> None:
        super().__init__(initial=initial)
        self.component: Strategy | None = None

    def prepare(self, game: PublicGoodsGame, player_index: int) -> None:
        """Prepare self and the drawn component."""
        super().prepare(game, player_index)
        if self.component is not None:
            self.component.prepare(game, player_index)

    def _candidates(self) -> list[Strategy]:
        candidates = [kind(initial=self.initial) for kind in MIXED_COMPONENTS]
        if self.game is not None and self.player_index is not None:
            for candidate in candidates:
                candidate.prepare(self.game, self.player_index)
        return candidates

    def probabilities(self, previous: PreviousOutcome | None) -> np.ndarray:
        """The drawn component's distribution, or the uniform mixture of the components before the draw."""
        if self.component is not None:
            return self.component.probabilities(previous)
        return np.mean([candidate.probabilities(previous) for candidate in self._candidates()], axis=0)

    def choose(self, previous: PreviousOutcome | None, rng: np.random.Generator) -> int:
        """Draw the component with `rng` at first use (one integer draw), then play it."""
        if self.component is None:
            candidates = self._candidates()
            self.component = candidates[int(rng.integers(len(candidates)))]
        return sample_action(self.component.probabilities(previous), rng)

    def reset(self) -> None:
        """Forget the drawn component."""
        self.component = None
