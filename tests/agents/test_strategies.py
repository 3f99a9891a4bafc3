"""Tests for agents/strategies: Axelrod-style seeded plays, exact probabilities and a shared base test."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from flmarket.agents.strategies import REGISTRY, Alliance, PreviousOutcome, Strategy, make_strategy
from flmarket.agents.strategies.base import sample_action
from flmarket.agents.strategies.memoryone import Mixed, TitForTat
from flmarket.agents.strategies.zero_determinant import MMZD, MMZDAMember
from flmarket.analysis.load import events_frame
from flmarket.market.errors import MarketError
from flmarket.market.iterated import point_mass
from flmarket.market.public_goods import PublicGoodsGame, sample_dilemma_game
from flmarket.market.zero_determinant import ControlledGame, InfeasibleTargetError, largest_enforceable_welfare

GAME = sample_dilemma_game(np.random.default_rng(0), 4, 3)


def feasible_pair_game() -> PublicGoodsGame:
    """A two-organisation game in which organisation 0 alone has an enforceable welfare target."""
    for seed in range(200):
        game = sample_dilemma_game(np.random.default_rng(seed), 2, 3)
        if largest_enforceable_welfare(ControlledGame(game, (0,)).extremes()).feasible:
            return game
    raise AssertionError("no feasible instance")


def outcome(game: PublicGoodsGame, actions: list[int], player: int) -> PreviousOutcome:
    return PreviousOutcome(
        own_action=actions[player],
        total_participation=sum(actions),
        players=game.players,
        rounds=game.rounds,
        welfare=game.welfare(actions),
        actions=tuple(actions),
    )


def play(strategies: list[Strategy], game: PublicGoodsGame, rounds: int, rng: np.random.Generator) -> list[list[int]]:
    """A plain loop of the iterated game, as the market simulation runs it."""
    history: list[list[int]] = []
    previous: list[PreviousOutcome | None] = [None] * len(strategies)
    for _ in range(rounds):
        actions = []
        for index, strategy in enumerate(strategies):
            strategy.prepare(game, index)
            actions.append(strategy.choose(previous[index], rng))
        history.append(actions)
        previous = [outcome(game, actions, index) for index in range(len(strategies))]
    return history


FACTORIES: dict[str, Callable[[], Strategy]] = {
    "ALLC": lambda: make_strategy("ALLC"),
    "ALLD": lambda: make_strategy("ALLD"),
    "Rand": lambda: make_strategy("Rand"),
    "TFT": lambda: make_strategy("TFT"),
    "Mixed": lambda: make_strategy("Mixed"),
    "MMZD": lambda: make_strategy("MMZD"),
    "MMZDA-member": lambda: make_strategy("MMZDA-member", alliance=Alliance([0])),
    "BNE": lambda: make_strategy("BNE"),
}


def test_every_registered_strategy_has_a_factory() -> None:
    assert set(REGISTRY) == set(FACTORIES)


@pytest.mark.parametrize("name", sorted(FACTORIES))
class TestEveryStrategy:
    """The shared base test: reproducibility, reset, clone and valid distributions for every strategy."""

    def focal_history(self, strategy: Strategy, seed: int) -> list[list[int]]:
        opponents = [make_strategy("Rand"), make_strategy("TFT"), make_strategy("ALLC")]
        return play([strategy, *opponents], GAME, 15, np.random.default_rng(seed))

    def test_same_seed_same_play(self, name: str) -> None:
        first = self.focal_history(FACTORIES[name](), 5)
        second = self.focal_history(FACTORIES[name](), 5)
        assert first == second

    def test_reset_replays_the_same_sequence(self, name: str) -> None:
        strategy = FACTORIES[name]()
        first = self.focal_history(strategy, 6)
        strategy.reset()
        assert self.focal_history(strategy, 6) == first

    def test_clone_is_equal_and_fresh(self, name: str) -> None:
        strategy = FACTORIES[name]()
        self.focal_history(strategy, 7)
        clone = strategy.clone()
        assert type(clone) is type(strategy)
        assert repr(clone) == repr(strategy)
        strategy.reset()
        assert self.focal_history(clone, 8) == self.focal_history(strategy, 8)

    def test_probabilities_are_distributions(self, name: str) -> None:
        strategy = FACTORIES[name]()
        strategy.prepare(GAME, 0)
        rng = np.random.default_rng(9)
        for previous in [None] + [outcome(GAME, list(rng.integers(0, 4, size=4)), 0) for _ in range(20)]:
            distribution = strategy.probabilities(previous)
            assert distribution.shape == (GAME.rounds + 1,)
            assert distribution.min() >= 0
            assert distribution.sum() == pytest.approx(1.0)

    def test_name_and_classifier(self, name: str) -> None:
        strategy = FACTORIES[name]()
        assert strategy.name == name
        assert {"memory_depth", "stochastic"} <= set(strategy.classifier)


def test_make_strategy_names_the_unknown_and_the_allowed() -> None:
    with pytest.raises(MarketError, match=r"unknown strategy 'WSLS'; allowed: \['ALLC', 'ALLD'"):
        make_strategy("WSLS")


def test_deterministic_draws_consume_no_randomness() -> None:
    rng = np.random.default_rng(1)
    untouched = np.random.default_rng(1)
    for name, action in (("ALLC", 3), ("ALLD", 0)):
        strategy = make_strategy(name, initial=action)
        strategy.prepare(GAME, 0)
        assert strategy.choose(None, rng) == action
        assert strategy.choose(outcome(GAME, [1, 2, 3, 0], 0), rng) == action
    assert rng.random() == untouched.random()


def test_sample_action_uses_one_uniform() -> None:
    rng, copy = np.random.default_rng(2), np.random.default_rng(2)
    distribution = np.array([0.2, 0.3, 0.5])
    action = sample_action(distribution, rng)
    draw = copy.random()
    assert action == (0 if draw < 0.2 else 1 if draw < 0.5 else 2)
    assert rng.random() == copy.random()


def test_sample_action_is_the_inverse_cdf_of_numpy_cumsum_and_searchsorted() -> None:
    """Independent computation: the draw numpy's cumsum + searchsorted(side="right") gives, for random
    distributions with zeros (a draw beyond the last positive action falls back to it)."""
    generator = np.random.default_rng(11)
    for seed in range(2_000):
        weights = generator.random(int(generator.integers(2, 9)))
        weights[generator.random(weights.size) < 0.3] = 0.0
        weights[int(generator.integers(weights.size))] += 0.1
        distribution = weights / weights.sum()
        support = np.flatnonzero(distribution > 0)
        if support.size == 1:
            expected = int(support[0])
        else:
            draw = np.random.default_rng(seed).random()
            expected = min(int(np.searchsorted(np.cumsum(distribution), draw, side="right")), int(support[-1]))
        assert sample_action(distribution, np.random.default_rng(seed)) == expected


def test_memoryless_strategies_play_their_rule_from_the_first_round() -> None:
    strategy = make_strategy("ALLC")
    others = [make_strategy("ALLD") for _ in range(3)]
    rng = np.random.default_rng(3)
    state = rng.bit_generator.state
    history = play([strategy, *others], GAME, 6, rng)
    assert [actions[0] for actions in history] == [3] * 6
    assert all(actions[1:] == (0, 0, 0) for actions in map(tuple, history))
    assert rng.bit_generator.state == state  # point masses consume no randomness


def test_strategies_with_memory_play_a_uniform_first_round() -> None:
    strategy = make_strategy("TFT")
    strategy.prepare(GAME, 0)
    assert strategy.probabilities(None).tolist() == [0.25] * 4


def test_tit_for_tat_exact_probabilities() -> None:
    strategy = TitForTat()
    strategy.prepare(GAME, 0)
    # N = 4, R = 3: threshold 6, low {0, 1}, high {2, 3}.
    np.testing.assert_allclose(strategy.probabilities(outcome(GAME, [1, 1, 1, 2], 0)), [0.5, 0.5, 0, 0])
    np.testing.assert_allclose(strategy.probabilities(outcome(GAME, [3, 0, 1, 2], 0)), [0, 0, 0.5, 0.5])
    custom = TitForTat(threshold=2, low_actions=[0], high_actions=[3])
    custom.prepare(GAME, 0)
    np.testing.assert_allclose(custom.probabilities(outcome(GAME, [1, 0, 0, 0], 0)), [1, 0, 0, 0])
    assert repr(custom.clone()) == "TitForTat(threshold=2, low_actions=(0,), high_actions=(3,))"


def test_tit_for_tat_against_alld_falls_to_the_low_range() -> None:
    history = play(
        [TitForTat(), make_strategy("ALLD")],
        sample_dilemma_game(np.random.default_rng(1), 2, 3),
        30,
        np.random.default_rng(4),
    )
    # N = 2, R = 3: threshold 3. From round 2 ALLD plays 0, so once TFT plays <= 2 the total stays below 3.
    first_low = next(t for t in range(1, 30) if history[t][0] <= 2)
    assert all(actions[0] in (0, 1) for actions in history[first_low + 1 :])


RANDOM_OTHERS = [make_strategy("Rand") for _ in range(3)]


def test_mixed_keeps_its_component_and_redraws_after_reset() -> None:
    components = set()
    for seed in range(40):
        strategy = Mixed()
        play([strategy, *RANDOM_OTHERS], GAME, 3, np.random.default_rng(seed))
        assert strategy.component is not None
        kept = strategy.component
        play([strategy, *RANDOM_OTHERS], GAME, 3, np.random.default_rng(seed + 100))
        assert strategy.component is kept
        components.add(strategy.component.name)
        strategy.reset()
        assert strategy.component is None
    assert components == {"ALLC", "ALLD", "Rand", "TFT"}


def test_mixed_marginal_before_the_draw() -> None:
    strategy = Mixed()
    strategy.prepare(GAME, 0)
    previous = outcome(GAME, [0, 0, 0, 0], 0)  # TFT plays low {0, 1}
    expected = (np.array([0, 0, 0, 1.0]) + np.array([1.0, 0, 0, 0]) + np.full(4, 0.25) + [0.5, 0.5, 0, 0]) / 4
    np.testing.assert_allclose(strategy.probabilities(previous), expected)


def test_mmzd_probabilities_follow_z10_from_previous_welfare_and_own_action() -> None:
    game = feasible_pair_game()
    strategy = MMZD(mode="exact")
    strategy.prepare(game, 0)
    design = strategy.design
    assert design is not None and design.feasible
    weights = design.action_weights()
    for actions in ([0, 0], [1, 3], [3, 2], [2, 0]):
        previous = outcome(game, actions, 0)
        distribution = strategy.probabilities(previous)
        controlled = weights[actions[0]] + design.phi * (previous.welfare - design.target)
        assert distribution[design.controlled_action] == pytest.approx(controlled)


def test_mmzd_exact_mode_raises_when_infeasible_and_auto_falls_back_to_paper() -> None:
    with pytest.raises(InfeasibleTargetError, match="mode='auto'"):
        MMZD(mode="exact").prepare(GAME, 0)
    strategy = MMZD()
    strategy.prepare(GAME, 0)
    assert strategy.design is not None
    assert strategy.design.mode == "paper" and not strategy.design.feasible


def test_an_explicit_target_beyond_reach_raises_in_exact_mode_and_plays_the_paper_design_in_auto() -> None:
    """ "auto" plays the exact design when its target is enforceable and the paper's clipped design otherwise,
    for a target given as well as for the largest one; "exact" refuses an unenforceable target."""
    game = feasible_pair_game()
    largest = largest_enforceable_welfare(ControlledGame(game, (0,)).extremes()).value
    assert largest is not None
    beyond = largest + 1.0
    with pytest.raises(InfeasibleTargetError, match="not enforceable"):
        MMZD(mode="exact", target=beyond).prepare(game, 0)
    strategy = MMZD(target=beyond)
    strategy.prepare(game, 0)
    assert strategy.design is not None
    assert (strategy.design.mode, strategy.design.target, strategy.design.feasible) == ("paper", beyond, False)
    within = MMZD(target=largest)
    within.prepare(game, 0)
    assert within.design is not None and (within.design.mode, within.design.feasible) == ("exact", True)


def test_mmzd_long_run_welfare_approaches_the_target() -> None:
    game = feasible_pair_game()
    strategy = MMZD(mode="exact")
    rounds = 3000
    history = play([strategy, make_strategy("Rand")], game, rounds, np.random.default_rng(5))
    welfare = np.array([game.welfare(actions) for actions in history])
    design = strategy.design
    assert design is not None
    # ZD identity: |mean E[s] - P*| <= 1 / (|phi| T); allow 5 standard errors (correlated, so generously x3).
    tolerance = 1 / (abs(design.phi) * rounds) + 15 * welfare.std() / np.sqrt(rounds)
    assert abs(welfare.mean() - design.target) <= tolerance


def test_alliance_members_play_one_shared_draw_per_round() -> None:
    game = sample_dilemma_game(np.random.default_rng(2), 5, 3)
    alliance = Alliance([1, 2, 4])
    members = {index: MMZDAMember(alliance=alliance) for index in (1, 2, 4)}
    strategies: list[Strategy] = [
        make_strategy("Rand"),
        members[1],
        members[2],
        make_strategy("TFT"),
        members[4],
    ]
    history = play(strategies, game, 30, np.random.default_rng(6))
    assert all(actions[1] == actions[2] == actions[4] for actions in history)
    assert len({actions[1] for actions in history}) > 1
    assert alliance.design is not None and alliance.design.feasible


def test_alliance_draws_once_per_round_whatever_the_order() -> None:
    alliance = Alliance([0, 1])
    alliance.prepare(GAME)
    rng, copy = np.random.default_rng(7), np.random.default_rng(7)
    first = alliance.action_for(1, None, rng)
    assert alliance.action_for(0, None, rng) == first
    assert first == sample_action(alliance.probabilities(None), copy)
    assert rng.random() == copy.random()  # exactly one draw was consumed for the round


def test_member_must_belong_to_its_alliance() -> None:
    member = MMZDAMember(alliance=Alliance([0, 1]))
    with pytest.raises(MarketError, match="not in the alliance"):
        member.prepare(GAME, 3)
    with pytest.raises(MarketError, match="members: must be distinct"):
        Alliance([1, 1])
    with pytest.raises(MarketError, match="mode: must be one of"):
        MMZD(mode="fast")  # type: ignore[arg-type]


def test_member_without_alliance_is_rejected_with_advice() -> None:
    with pytest.raises(MarketError, match="alliance: an MMZDA member needs the Alliance"):
        make_strategy("MMZDA-member")


def test_alliance_redesigns_when_members_change() -> None:
    alliance = Alliance([0, 1])
    alliance.prepare(GAME)
    before = alliance.design
    alliance.update_members([1, 2, 3])
    alliance.prepare(GAME)
    assert alliance.members == (1, 2, 3)
    fresh = Alliance([1, 2, 3])
    fresh.prepare(GAME)
    assert alliance.design == fresh.design != before


def test_strategy_needs_prepare_before_probabilities() -> None:
    with pytest.raises(MarketError, match="call prepare"):
        make_strategy("ALLC").probabilities(None)


def test_bne_follower_takes_part_iff_its_cost_is_below_the_cutoff() -> None:
    strategy = make_strategy("BNE")
    strategy.prepare(GAME, 0)
    assert strategy.probabilities(None).tolist() == [1.0, 0.0, 0.0, 0.0]  # uninformed: stays out
    strategy.inform(own_unit_cost=9.0, cost_cutoff=10.0)
    assert strategy.probabilities(None).tolist() == [0.0, 0.0, 0.0, 1.0]  # all R = 3 rounds
    strategy.inform(own_unit_cost=10.0, cost_cutoff=10.0)
    assert strategy.choose(None, np.random.default_rng(0)) == 3  # the cutoff itself takes part (B 19: <=)
    strategy.inform(own_unit_cost=10.5, cost_cutoff=10.0)
    assert strategy.choose(None, np.random.default_rng(0)) == 0
    strategy.reset()
    assert not strategy.takes_part


def test_after_a_task_of_another_r_every_strategy_plays_inside_this_task_s_actions() -> None:
    """A budget caps a task's rounds, so R changes between tasks. TFT used the previous task's ranges (action 5
    in a task of R = 1) and MMZD / MMZDA indexed this game's weights by an own action of 4 (IndexError)."""
    long_game = sample_dilemma_game(np.random.default_rng(3), 4, 4)
    short_game = sample_dilemma_game(np.random.default_rng(3), 4, 1)
    high = outcome(long_game, [4, 4, 4, 0], 0)  # total 12 >= threshold N R / 2 = 8
    low = outcome(long_game, [4, 0, 0, 0], 0)  # total 4 < 8
    tit_for_tat = make_strategy("TFT")
    tit_for_tat.prepare(short_game, 0)
    assert tit_for_tat.probabilities(high).tolist() == [0.0, 1.0]  # R = 1: high range {1}
    assert tit_for_tat.probabilities(low).tolist() == [1.0, 0.0]  # low range {0}
    tit_for_tat.prepare(long_game, 0)
    assert np.allclose(tit_for_tat.probabilities(high), [0, 0, 1 / 3, 1 / 3, 1 / 3])  # same R: {2..4}, as before
    zero_determinant = MMZD()
    zero_determinant.prepare(short_game, 0)
    first_round = zero_determinant.probabilities(None)
    assert zero_determinant.probabilities(high).tolist() == first_round.tolist()  # starts afresh
    alliance = Alliance([0, 1])
    alliance.prepare(short_game)
    assert alliance.probabilities(high).tolist() == alliance.probabilities(None).tolist()
    member = MMZDAMember(alliance=alliance)
    member.prepare(short_game, 1)
    assert member.choose(high, np.random.default_rng(0)) in (0, 1)
    same_r = outcome(short_game, [1, 1, 0, 0], 0)  # the same R: Z 10 reads it, as before
    assert zero_determinant.design is not None
    expected = zero_determinant.design.probabilities(same_r.welfare, same_r.own_action)[0]
    assert zero_determinant.probabilities(same_r).tolist() == expected.tolist()


# -- a strategy of your own -----------------------------------------------------------------------------------------
class WinStayLoseShift(Strategy):
    """Axelrod's WSLS in the participation game: after a task that did not lose (own payoff >= 0) play the same
    y again, else the opposite, R - y."""

    name = "WSLS"
    classifier = {"memory_depth": 1, "stochastic": False}
    payoffs_seen: list[float] = []

    def next_distribution(self, previous: PreviousOutcome) -> np.ndarray:
        assert previous.own_payoff is not None
        WinStayLoseShift.payoffs_seen.append(previous.own_payoff)
        action = previous.own_action if previous.own_payoff >= 0 else self.rounds - previous.own_action
        return point_mass(self.rounds + 1, action)


@pytest.fixture
def registered_wsls():
    from flmarket.agents.strategies import register_strategy

    assert register_strategy(WinStayLoseShift) is WinStayLoseShift
    WinStayLoseShift.payoffs_seen = []
    try:
        yield WinStayLoseShift
    finally:
        REGISTRY.pop("WSLS", None)


def test_a_registered_strategy_plays_in_a_scenario_and_evolution_like_a_built_in(registered_wsls) -> None:
    """There was no way to add a strategy: the scenario schema checked names against a fixed tuple."""
    import flmarket as fm
    from flmarket.agents.strategies import strategy_names

    assert strategy_names()[-1] == "WSLS" and "MMZDA" in strategy_names() and "MMZDA-member" not in strategy_names()
    mix = {"ALLC": 0.3, "ALLD": 0.3, "WSLS": 0.4}
    evolution = {"evolution.enabled": True, "evolution.mutation_rate": 0.5, "evolution.strategy_set": ["ALLD", "WSLS"]}
    overrides = {"providers.strategy_mix": mix, "run.tasks": 4, "providers.count": 10, **evolution}
    model = fm.MarketModel("quickstart", seed=3, **overrides)
    model.run()
    joined = {provider.strategy_label for provider in model.online_providers.values()}
    assert "WSLS" in joined and model.participation_by_strategy.get("WSLS")
    assert registered_wsls.payoffs_seen  # the market gives every strategy its own payoff
    frame = events_frame(model.log.to_arrow())
    assert "WSLS" in set(frame.loc[frame["kind"] == "provider_joined", "strategy"].astype(str))
    switched = frame[frame["kind"] == "strategy_switched"]
    assert {"WSLS", "ALLD"} <= set(switched["to_strategy"].astype(str))  # mutation draws it like a built-in


def test_registering_refuses_what_the_market_could_not_build_or_would_confuse(registered_wsls) -> None:
    from flmarket.agents.strategies import register_strategy

    assert register_strategy(WinStayLoseShift) is WinStayLoseShift  # again: the same class, allowed

    class Other(WinStayLoseShift):
        name = "WSLS"

    class Unnamed(Strategy):
        pass

    class Built(Strategy):
        name = "TFT"

    class Alliance(Strategy):
        name = "MMZDA"

    with pytest.raises(MarketError, match=r"^Other\.name: 'WSLS' is taken by WinStayLoseShift$"):
        register_strategy(Other)
    with pytest.raises(MarketError, match=r"^Unnamed\.name: must be the class's own name .* got None$"):
        register_strategy(Unnamed)
    with pytest.raises(MarketError, match=r"^Built\.name: 'TFT' is taken by TitForTat$"):
        register_strategy(Built)
    with pytest.raises(MarketError, match=r"^Alliance\.name: 'MMZDA' is taken by MMZDAMember$"):
        register_strategy(Alliance)
    with pytest.raises(MarketError, match=r"^strategy: must be a subclass of .*Strategy, got <class 'int'>$"):
        register_strategy(int)  # type: ignore[arg-type]


def test_an_unregistered_name_is_still_refused_with_the_names_allowed() -> None:
    from flmarket.sim.config import ScenarioError, load_scenario

    with pytest.raises(
        ScenarioError, match=r"providers\.strategy_mix\.WSLS: unknown strategy \(allowed: ALLC, .*BNE\)"
    ):
        load_scenario("quickstart", {"providers.strategy_mix": {"WSLS": 1.0}})
