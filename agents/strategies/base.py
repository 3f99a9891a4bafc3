"""The interface every participation strategy implements, and the record of the previous game round it reads.

A strategy picks y_i in {0..R} for the coming game round (SPEC B.3) from the previous round's outcome. Axelrod
style: a `name`, a `classifier` dict, the constructor parameters kept so `repr` and `clone()` are exact.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from flmarket.market.errors import MarketError
from flmarket.market.iterated import check_distributions, point_mass, uniform
from flmarket.market.public_goods import PublicGoodsGame


@dataclass(frozen=True)
class PreviousOutcome:
    """What a strategy sees of the previous game round (one FL task).

    `own_action` and `total_participation` count the rounds each provider was paid for (realised), which can be
    fewer than it chose (a late or abandoned update, leaving mid-task). `welfare` is the task's welfare (B.1).
    `own_payoff` is the provider's own utility in the task, with its mechanism reward less its costs (what a
    Win-Stay-Lose-Shift rule compares); the market always gives it. `actions`, every player's action, is for
    pure game play (the market's players do not see each other's choices)."""

    own_action: int
    total_participation: int
    players: int
    rounds: int
    welfare: float
    actions: tuple[int, ...] | None = None
    own_payoff: float | None = None


class Strategy:
    """Base class: a memory-one participation strategy (SPEC B.3).

    Subclasses implement `next_distribution(previous)` for a known previous outcome. The first round
    (previous=None) plays `initial` if configured; else a memory-depth-0 strategy (ALLC, ALLD, Rand) plays its
    rule and a strategy with memory a uniform random action (SPEC B.6's random initial actions).
    """

    name: ClassVar[str] = "Strategy"
    classifier: ClassVar[dict[str, Any]] = {}
    restarts_when_rounds_change: ClassVar[bool] = False

    def __init__(self, *, initial: int | None = None, **params: Any) -> None:
        self.params: dict[str, Any] = {"initial": initial, **params}
        self.initial = initial
        self.game: PublicGoodsGame | None = None
        self.player_index: int | None = None

    def __repr__(self) -> str:
        shown = ", ".join(f"{key}={value!r}" for key, value in self.params.items() if value is not None)
        return f"{type(self).__name__}({shown})"

    def prepare(self, game: PublicGoodsGame, player_index: int) -> None:
        """Called before each game round with the current game (the population may change between tasks)."""
        if not 0 <= player_index < game.players:
            raise MarketError(f"player_index: must be in 0..{game.players - 1}, got {player_index}")
        self.game = game
        self.player_index = player_index

    @property
    def rounds(self) -> int:
        """R of the prepared game."""
        if self.game is None:
            raise MarketError(f"{self.name}: call prepare(game, player_index) before asking for probabilities")
        return self.game.rounds

    def probabilities(self, previous: PreviousOutcome | None) -> np.ndarray:
        """The distribution over 0..R of this round's action given the previous outcome. A strategy whose rule
        reads the previous outcome as a state of this game (`restarts_when_rounds_change`: MMZD) plays as in a
        first round when the previous task had another R (docs/spec.md B.3)."""
        if previous is not None and self.restarts_when_rounds_change and previous.rounds != self.rounds:
            previous = None
        if previous is None:
            action_count = self.rounds + 1
            if self.initial is not None:
                return point_mass(action_count, self.initial)
            if self.classifier.get("memory_depth") == 0:  # ALLC, ALLD, Rand: the first round is the rule
                return check_distributions(self.next_distribution(None), f"{self.name} probabilities")  # type: ignore[arg-type]
            return uniform(action_count)
        return check_distributions(self.next_distribution(previous), f"{self.name} probabilities")

    def next_distribution(self, previous: PreviousOutcome) -> np.ndarray:
        """The distribution after a known previous outcome; subclasses implement it."""
        raise NotImplementedError

    def choose(self, previous: PreviousOutcome | None, rng: np.random.Generator) -> int:
        """Sample an action; a degenerate distribution consumes no randomness (Axelrod's rule)."""
        return sample_action(self.probabilities(previous), rng)

    def reset(self) -> None:
        """Forget per-run state (none for memory-one strategies)."""

    def clone(self) -> Strategy:
        """A fresh strategy with the same parameters and no run state."""
        return type(self)(**self.params)


def sample_action(distribution: np.ndarray, rng: np.random.Generator) -> int:
    """Inverse-CDF draw with one uniform; a point mass returns its action without touching `rng`.

    The first action whose running sum exceeds the draw (numpy's cumsum then searchsorted on the right, done in
    plain Python: the distributions are short and drawn once per provider per task), never past the last
    action of positive probability.
    """
    probabilities = distribution.tolist() if isinstance(distribution, np.ndarray) else list(distribution)
    support = [action for action, probability in enumerate(probabilities) if probability > 0]
    if len(support) == 1:
        return support[0]
    draw = rng.random()
    for action, cumulative in enumerate(itertools.accumulate(probabilities)):
        if cumulative > draw:
            return min(action, support[-1])
    return support[-1]
