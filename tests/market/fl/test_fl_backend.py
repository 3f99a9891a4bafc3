"""The LearningBackend interface: the surrogate (SPEC B.1) and real torch training (SPEC A.2-A.5, D.4, D.5)."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
import torch

from flmarket.market.errors import MarketError, TrainingDivergedError
from flmarket.market.fl.backend import BackendConfig, LearningBackend, LocalUpdate, make_backend
from flmarket.market.fl.evaluate import evaluate
from flmarket.market.fl.value import model_quality
from flmarket.market.shapley import shapley_values

torch.set_num_threads(1)


def exact_shapley(players: list[int], value) -> dict[int, float]:
    """(B 10) by enumeration, for the tests only (n <= 6)."""
    count = len(players)
    result = {}
    for player in players:
        others = [other for other in players if other != player]
        total = 0.0
        for size in range(count):
            weight = math.factorial(size) * math.factorial(count - size - 1) / math.factorial(count)
            for coalition in itertools.combinations(others, size):
                members = frozenset(coalition)
                total += weight * (value(members | {player}) - value(members))
        result[player] = total
    return result


# --- surrogate -------------------------------------------------------------------------------------------


def _surrogate(providers: int, **overrides) -> LearningBackend:
    backend = make_backend(BackendConfig(name="surrogate", theta0=9.82, theta1=50.0, **overrides))
    rng = np.random.default_rng(0)
    for provider in range(providers):
        backend.register_provider(provider, rng)
    return backend


def test_surrogate_follows_the_precision_function_by_hand() -> None:
    backend = _surrogate(3)
    start = backend.start_task(0)
    assert start.loss == pytest.approx(9.82 / 50.0)
    assert start.quality == pytest.approx(2 / (10 + 9.82 / 50.0))
    rng = np.random.default_rng(1)
    updates = [backend.local_update(provider, 5, None, "honest", rng) for provider in range(3)]
    result = backend.commit_round(updates)
    assert result.loss == pytest.approx(9.82 / (50.0 + 15.0))  # T = 3 providers x 5 iterations
    assert result.accuracy is None and result.participants == (0, 1, 2)
    assert isinstance(backend, LearningBackend)


def test_surrogate_value_depends_only_on_total_contribution() -> None:
    backend = _surrogate(4)
    backend.start_task(0)
    rng = np.random.default_rng(0)
    iterations = {0: 2, 1: 3, 2: 5, 3: 1}
    updates = [backend.local_update(provider, k, None, "honest", rng) for provider, k in iterations.items()]
    value = backend.coalition_value(updates)
    assert value(frozenset()) == 0.0
    assert value(frozenset({0, 1})) == pytest.approx(value(frozenset({2})))  # 2 + 3 == 5
    before = backend.start_task(0).quality
    backend.start_task(0)
    updates = [backend.local_update(provider, k, None, "honest", rng) for provider, k in iterations.items()]
    value = backend.coalition_value(updates)
    after = backend.commit_round(updates).quality
    assert value(frozenset(iterations)) == pytest.approx(after - before)


def test_surrogate_free_riders_add_nothing_and_get_zero_shapley() -> None:
    backend = _surrogate(5)
    backend.start_task(0)
    rng = np.random.default_rng(0)
    behaviours = ["honest", "honest", "honest", "honest", "plain"]
    updates = [backend.local_update(p, 5, None, behaviour, rng) for p, behaviour in enumerate(behaviours)]
    shapley = exact_shapley(list(range(5)), backend.coalition_value(updates))
    assert shapley[4] == 0.0
    assert shapley[0] > 0


def test_surrogate_stale_update_resends_the_old_digest_and_adds_nothing() -> None:
    backend = _surrogate(1)
    backend.start_task(0)
    rng = np.random.default_rng(0)
    honest = backend.local_update(0, 5, 2.0, "honest", rng)
    backend.record_release(honest)
    backend.commit_round([honest])
    stale = backend.local_update(0, 5, 2.0, "stale", rng)
    backend.record_release(stale)
    assert stale.digest == honest.digest and stale.privacy_spent == 0.0
    assert backend.commit_round([stale]).loss == pytest.approx(9.82 / 55.0)
    assert backend.privacy_spent_total(0) == 2.0 and stale.privacy_spent_total == 2.0


def test_surrogate_handles_ten_thousand_providers() -> None:
    """Ten thousand providers in one round: the learning curve (B 7) and a half coalition's value are exact.
    (Speed is measured by benchmarks/bench_market.py, not asserted here.)"""
    providers = 10_000
    backend = _surrogate(providers)
    backend.start_task(0)
    rng = np.random.default_rng(0)
    updates = [backend.local_update(provider, 5, None, "honest", rng) for provider in range(providers)]
    value = backend.coalition_value(updates)
    half = value(frozenset(range(0, providers, 2)))
    result = backend.commit_round(updates)
    assert result.loss == pytest.approx(9.82 / (50.0 + 5 * providers))
    assert half == pytest.approx(backend.quality_at(5 * providers / 2) - backend.quality_at(0))


def test_surrogate_forgets_a_departed_provider_and_its_privacy_total() -> None:
    backend = _surrogate(2, weight_by_data=True)
    rng = np.random.default_rng(0)
    backend.start_task(0)
    kept = backend.local_update(1, 5, 2.0, "honest", rng)
    backend.record_release(kept)
    backend.record_release(backend.local_update(0, 5, 2.0, "honest", rng))
    backend.forget_provider(0)
    with pytest.raises(MarketError, match="provider_id: 0 is not registered"):
        backend.local_update(0, 5, 2.0, "honest", rng)
    with pytest.raises(MarketError, match="provider_id: 0 is not registered"):
        backend.forget_provider(0)
    assert backend.privacy_spent_total(0) == 0.0 and backend.privacy_spent_total(1) == 2.0
    # an update sent before its provider left still counts, weighted by its share of the (equal) data
    assert backend.contribution(kept) == 5.0
    backend.register_provider(0, rng)  # the id may come back (a new registration starts from nothing)
    assert backend.local_update(0, 5, 2.0, "honest", rng).privacy_spent_total == 2.0


def test_bad_inputs_name_the_field() -> None:
    backend = _surrogate(1)
    with pytest.raises(MarketError, match="task: call start_task"):
        backend.local_update(0, 5, None, "honest", np.random.default_rng(0))
    backend.start_task(0)
    with pytest.raises(MarketError, match="behaviour: must be one of"):
        backend.local_update(0, 5, None, "lazy", np.random.default_rng(0))
    with pytest.raises(MarketError, match="privacy_budget: must be > 0 or None, got 0"):
        backend.local_update(0, 5, 0, "honest", np.random.default_rng(0))
    with pytest.raises(MarketError, match="aggregation: must be one of"):
        BackendConfig(aggregation="median")


# --- torch -----------------------------------------------------------------------------------------------


def _torch(providers: int = 5, **overrides) -> LearningBackend:
    backend = make_backend(BackendConfig(name="torch", seed=3, providers=providers, **overrides))
    rng = np.random.default_rng(0)
    sizes = [backend.register_provider(provider, rng) for provider in range(providers)]
    assert sizes == [sum(backend.partition.sizes) // providers] * providers  # IID equal shards
    return backend


def _train_rounds(backend: LearningBackend, rounds: int, providers, rng, privacy_budget=None):
    result = None
    for _ in range(rounds):
        updates = [backend.local_update(p, 1, privacy_budget, "honest", rng) for p in providers]
        result = backend.commit_round(updates)
    return result


def test_torch_same_seed_same_run() -> None:
    digests = []
    for _ in range(2):
        backend = _torch(3)
        backend.start_task(1)
        result = _train_rounds(backend, 3, range(3), np.random.default_rng(9), privacy_budget=100.0)
        digests.append(result.model_digest)
    assert digests[0] == digests[1]
    backend.start_task(1)
    other = _train_rounds(backend, 3, range(3), np.random.default_rng(10), privacy_budget=100.0)
    assert other.model_digest != digests[0]


@pytest.mark.parametrize("aggregation", ["fedavg", "fedadp", "fedasync"])
def test_coalition_values_match_recomputation_and_the_round_gain(aggregation: str) -> None:
    backend = _torch(4, aggregation=aggregation)
    rng = np.random.default_rng(0)
    start = backend.start_task(0)
    _train_rounds(backend, 2, range(4), rng)
    previous_quality = backend.commit_round([]).quality  # an empty round keeps the model
    updates = [backend.local_update(p, 5, None, "honest", rng) for p in range(4)]
    value = backend.coalition_value(updates)
    # recompute v({0, 2}) by hand with FedAvg's formula (D.4) and Q of SPEC A.4 on the validation subset
    if aggregation == "fedavg":
        members = [updates[0], updates[2]]
        sizes = np.array([update.data_size for update in members], dtype=float)
        aggregate = backend.global_vector + (sizes / sizes.sum()) @ np.stack([u.vector for u in members])
        evaluation = evaluate(
            backend.model, aggregate.astype(np.float32), backend.validation_features, backend.validation_labels
        )
        base = evaluate(backend.model, backend.global_vector, backend.validation_features, backend.validation_labels)
        expected = model_quality(evaluation.loss, 2, 10) - model_quality(base.loss, 2, 10)
        assert value(frozenset({0, 2})) == pytest.approx(expected, rel=1e-5)
    full = value(frozenset(range(4)))
    batched = value.values_of([frozenset({1}), frozenset({0, 3}), frozenset(range(4))])
    assert batched[2] == full
    single = backend.coalition_value(updates)  # float32: a batched and a single forward differ by ~1e-8
    assert batched[0] == pytest.approx(single(frozenset({1})), rel=1e-6, abs=1e-7)
    assert batched[1] == pytest.approx(single(frozenset({0, 3})), rel=1e-6, abs=1e-7)
    result = backend.commit_round(updates)
    new_global = evaluate(backend.model, backend.global_vector, backend.validation_features, backend.validation_labels)
    assert full == pytest.approx(model_quality(new_global.loss, 2, 10) - value.base_quality, rel=1e-5)
    assert previous_quality < result.quality
    assert result.quality > start.quality


def test_training_that_stops_being_finite_says_which_settings_cause_it() -> None:
    """learning.sensitivity = 100 puts Laplace noise of scale 100 / eps on every coordinate: the model's loss
    reached 4e28 after one round and NaN after two, and the run died on `update_l1_norm: must be >= 0.0, got
    nan`. The backend now stops with the settings to lower."""
    backend = _torch(3, sensitivity=100.0)
    rng = np.random.default_rng(0)
    backend.start_task(0)
    with pytest.raises(
        TrainingDivergedError, match=r"^training diverged in task 0, round \d: .*learning\.sensitivity = 100\.0"
    ):
        _train_rounds(backend, 4, range(3), rng, privacy_budget=1.0)


@pytest.mark.parametrize("model", ["cnn", "mlp"])
@pytest.mark.parametrize("aggregation", ["fedavg", "fedadp", "fedasync"])
def test_coalitions_of_zero_updates_are_worth_exactly_nothing(model: str, aggregation: str) -> None:
    """Plain free riders upload zero vectors: any coalition of them aggregates to the global model, so v = 0
    exactly, batched or not. On the CNN a vmapped batch and the single base evaluation differed by 1e-9, which
    (B 13) scaled up to the whole round's pool."""
    backend = _torch(4, model=model, aggregation=aggregation)
    rng = np.random.default_rng(2)
    backend.start_task(0)
    _train_rounds(backend, 1, range(4), rng)
    riders = [backend.local_update(p, 1, None, "plain", rng) for p in range(3)]
    honest = backend.local_update(3, 1, None, "honest", rng)
    assert all(not np.any(update.vector) for update in riders)
    value = backend.coalition_value([*riders, honest])
    coalitions = [frozenset(c) for size in range(4) for c in itertools.combinations(range(3), size)]
    assert value.values_of(coalitions).tolist() == [0.0] * len(coalitions)
    assert [value(coalition) for coalition in coalitions] == [0.0] * len(coalitions)
    assert value(frozenset({3})) != 0.0
    shapley = exact_shapley(list(range(3)), backend.coalition_value(riders))
    assert list(shapley.values()) == [0.0, 0.0, 0.0]


def test_taylor_control_game_tracks_the_coalition_values_and_keeps_sampled_shapley_exact_within_its_error() -> None:
    """`control_game()` (FedAvg, equal IID shards): G(S), the second-order Taylor model of v about the mean
    update, is within a tenth of v(S) - v(N)'s spread for every coalition and far closer for most, and
    Shapley sampled on v - G (exact_max = 3 forces sampling) is within 4 SE of the exact values (B 10) from
    all 2^8 coalitions."""
    players = 8
    backend = _torch(players, learning_rate=0.05)
    rng = np.random.default_rng(0)
    backend.start_task(0)
    _train_rounds(backend, 2, range(players), rng, privacy_budget=2.0)
    updates = [backend.local_update(p, 1, 2.0, "honest", rng) for p in range(players)]
    value = backend.coalition_value(updates)
    game = value.control_game()
    assert game is value.control_game() and game.players == tuple(range(players))
    coalitions = [frozenset(c) for size in range(1, players + 1) for c in itertools.combinations(range(players), size)]
    exact_values = value.values_of(coalitions)
    approximations = np.array([game(coalition) for coalition in coalitions])
    spread = np.abs(exact_values - value(frozenset(range(players)))).max()
    errors = np.abs(exact_values - approximations)
    assert errors.max() < 0.1 * spread  # measured 7%, at a singleton (the farthest from the mean update)
    assert np.median(errors) < 0.01 * spread  # measured 0.05%
    exact = shapley_values(range(players), value).values
    sampled = shapley_values(range(players), value, rng=np.random.default_rng(1), exact_max=3, max_evaluations=2_000)
    assert sampled.method == "stratified-by-size-quadratic-control"
    assert np.all(np.abs(sampled.values - exact) <= 4 * sampled.standard_errors + 1e-12)
    asynchronous = _torch(2, aggregation="fedasync")
    asynchronous.start_task(0)
    assert asynchronous.coalition_value([]).control_game() is None  # FedAsync mixes in order: no mean to expand


def test_taylor_control_game_with_unequal_shards_is_exact_at_the_grand_coalition() -> None:
    """Dirichlet shards of unequal size: FedAvg's aggregate update of S is (m + delta) / (1 + eps) about the
    data-weighted mean m, so G(N) = F(m) = v(N) (delta = eps = 0) and G is a second-order model near N; the
    sampled estimate with G stays within 4 SE of the exact values (B 10)."""
    players = 8
    backend = make_backend(BackendConfig(name="torch", seed=3, providers=players, partition="dirichlet"))
    rng = np.random.default_rng(0)
    sizes = [backend.register_provider(provider, rng) for provider in range(players)]
    assert max(sizes) > 2 * min(sizes)
    backend.start_task(0)
    _train_rounds(backend, 2, range(players), rng, privacy_budget=2.0)
    value = backend.coalition_value([backend.local_update(p, 1, 2.0, "honest", rng) for p in range(players)])
    game = value.control_game()
    grand = frozenset(range(players))
    assert game(grand) == pytest.approx(value(grand), rel=1e-4)  # float32 in both computations
    near = [grand - {player} for player in range(players)]  # eps and delta small: the model fits closely
    errors = [abs(game(coalition) - value(coalition)) for coalition in near]
    gaps = [abs(value(grand) - value(coalition)) for coalition in near]
    assert max(errors) < 0.1 * max(gaps)  # measured 1%
    exact = shapley_values(range(players), value).values
    sampled = shapley_values(range(players), value, rng=np.random.default_rng(1), exact_max=3, max_evaluations=2_000)
    assert np.all(np.abs(sampled.values - exact) <= 4 * sampled.standard_errors + 1e-12)


def test_the_mlp_taylor_game_along_the_update_directions_equals_hessian_vector_products_over_all_parameters() -> None:
    """For the MLP the Taylor game takes F's gradient and curvature along the n + 1 directions d_1 .. d_n, m
    (weights over the stacked updates, through `CoalitionLosses.loss_of`: an (n + 1)-dimensional Hessian); the
    generic path (any model) takes one gradient and n + 1 Hessian-vector products over all 55,210 parameters
    through functional_call. Unequal Dirichlet shards, so the eps terms count: the games agree to float32."""
    players = 9
    backend = make_backend(BackendConfig(name="torch", seed=3, providers=players, partition="dirichlet"))
    rng = np.random.default_rng(0)
    for provider in range(players):
        backend.register_provider(provider, rng)
    backend.start_task(0)
    _train_rounds(backend, 2, range(players), rng, privacy_budget=2.0)
    value = backend.coalition_value([backend.local_update(p, 1, 2.0, "honest", rng) for p in range(players)])
    reduced = value.control_game()
    losses, value._losses, value._control = value._losses, None, None  # the generic path, as for the CNN
    generic = value.control_game()
    value._losses = losses
    assert reduced is not generic
    assert reduced.constant == pytest.approx(generic.constant, rel=1e-4, abs=1e-7)
    np.testing.assert_allclose(reduced.linear, generic.linear, rtol=1e-4, atol=1e-5 * np.abs(generic.linear).max())
    scale = np.abs(generic.quadratic).max()
    np.testing.assert_allclose(reduced.quadratic, generic.quadratic, rtol=1e-4, atol=1e-5 * scale)
    grand = frozenset(range(players))
    assert reduced(grand) == pytest.approx(value(grand), rel=1e-4)


@pytest.mark.slow  # about 15 s
def test_sampled_shapley_with_the_control_game_covers_the_exact_values_of_a_torch_round() -> None:
    """Issue 12 item 3 on real coalition values: 10 digits providers, sampled with the control game (exact_max
    = 3) at the 1 % target under 20 seeds; the 95 % t-intervals cover the exact values (all 2^10 coalitions)
    for at least 90 % of the 200 (seed, player) pairs (measured: 189) and every estimate is within 1 % of
    mean |xi| (bench_shapley --torch, another round: coverage 0.975, max error 0.43 %, about 140 calls)."""
    players = 10
    backend = _torch(players, learning_rate=0.05)
    rng = np.random.default_rng(0)
    backend.start_task(0)
    _train_rounds(backend, 2, range(players), rng, privacy_budget=2.0)
    value = backend.coalition_value([backend.local_update(p, 1, 2.0, "honest", rng) for p in range(players)])
    exact = shapley_values(range(players), value).values
    covered = 0
    for seed in range(20):
        result = shapley_values(range(players), value, rng=np.random.default_rng(seed), exact_max=3)
        assert result.converged and result.method == "stratified-by-size-quadratic-control"
        assert np.max(np.abs(result.values - exact)) <= 0.01 * np.mean(np.abs(exact))
        covered += int(np.sum(np.abs(result.values - exact) <= result.interval_half_widths(0.95)))
    print(f"coverage of the 95 % intervals: {covered} of {20 * players}")
    assert covered >= 0.9 * 20 * players


def test_free_rider_behaviours() -> None:
    backend = _torch(3, disguised_sigma=1e-2, disguised_decay=1.0)
    rng = np.random.default_rng(0)
    backend.start_task(0)
    plain = backend.local_update(0, 5, 1.0, "plain", rng)
    assert plain.l1_norm == 0.0 and plain.privacy_spent == 0.0 and not plain.vector.any()
    stale_first = backend.local_update(1, 5, None, "stale", rng)  # nothing old to re-send yet
    assert stale_first.l1_norm == 0.0
    honest = backend.local_update(1, 5, None, "honest", rng)
    disguised_early = backend.local_update(2, 5, None, "disguised", rng)
    backend.commit_round([plain, honest, disguised_early])
    for _ in range(8):
        backend.commit_round([])
    stale = backend.local_update(1, 5, None, "stale", rng)
    assert stale.digest == honest.digest and stale.vector is not None
    disguised_late = backend.local_update(2, 5, None, "disguised", rng)
    # sigma_t = 0.01 / (t + 1): the mean |noise| is sigma * sqrt(2/pi) per coordinate
    coordinates = disguised_early.vector.size
    for update, round_index in ((disguised_early, 0), (disguised_late, 9)):
        sigma = 0.01 / (round_index + 1)
        assert update.l1_norm / coordinates == pytest.approx(sigma * math.sqrt(2 / math.pi), rel=0.02)
    # a provider that never trained (an ALLD free rider) replays the global model's last change (Lin et al.'s
    # delta weights): it used to send a zero update, exactly as a plain free rider
    before = backend.global_vector.copy()
    backend.commit_round([backend.local_update(0, 1, None, "honest", rng)])
    replayed = backend.local_update(2, 5, 1.0, "stale", rng)
    assert np.array_equal(replayed.vector, backend.global_vector - before) and replayed.l1_norm > 0
    assert replayed.privacy_spent == 0.0


@pytest.mark.parametrize("name", ["torch", "surrogate"])
def test_privacy_is_accounted_per_release_and_cumulatively(name: str) -> None:
    """Basic composition over the released updates (SPEC D.5): an update computed but never sent (abandoned)
    spends nothing; each update's total is what the provider has spent once it is out."""
    backend = _torch(2) if name == "torch" else _surrogate(2)
    rng = np.random.default_rng(0)
    backend.start_task(0)
    first = backend.local_update(0, 1, 3.0, "honest", rng)
    backend.record_release(first)
    abandoned = backend.local_update(0, 1, 2.0, "honest", rng)  # never released
    second = backend.local_update(0, 1, 1.5, "honest", rng)
    backend.record_release(second)
    assert first.privacy_spent == 3.0 and first.privacy_spent_total == 3.0 and abandoned.privacy_spent_total == 5.0
    assert second.privacy_spent_total == 4.5
    assert backend.privacy_spent_total(0) == 4.5 and backend.privacy_spent_total(1) == 0.0
    with pytest.raises(MarketError, match="provider_id: 7 is not registered"):
        backend.record_release(dataclasses.replace(first, provider_id=7))


def test_shards_are_handed_out_in_order_then_returned_ones_are_reused() -> None:
    """Registration order first; a departed provider's shard goes back to the pool, and once every shard has
    been handed out a joiner gets the lowest-numbered returned one; with none free the error says so."""
    backend = make_backend(BackendConfig(name="torch", seed=3, providers=3))
    rng = np.random.default_rng(0)
    shards = backend.partition.shards
    backend.register_provider(10, rng)
    backend.register_provider(11, rng)
    backend.start_task(0)
    backend.record_release(backend.local_update(10, 1, 2.0, "honest", rng))
    backend.forget_provider(10)
    assert backend.privacy_spent_total(10) == 0.0
    with pytest.raises(MarketError, match="provider_id: 10 is not registered"):
        backend.local_update(10, 1, 2.0, "honest", rng)
    backend.register_provider(12, rng)  # shard 2 was never handed out: it comes before the returned shard 0
    assert np.array_equal(backend._shard(12), shards[2])
    backend.forget_provider(11)
    backend.register_provider(13, rng)  # shards 0 and 1 are back: the lowest first
    backend.register_provider(14, rng)
    assert np.array_equal(backend._shard(13), shards[0]) and np.array_equal(backend._shard(14), shards[1])
    with pytest.raises(MarketError, match="all 3 shards are held by providers online now"):
        backend.register_provider(15, rng)
    with pytest.raises(MarketError, match="provider_id: 99 is not registered"):
        backend.forget_provider(99)


def test_upload_is_the_unclipped_update_plus_laplace_noise_of_the_sensitivity() -> None:
    """u~ = u + Lap(0, Delta_f / eps)^d (SPEC A.2): the same rng with and without noise gives u, so u~ - u is
    the noise; its mean |.| is Delta_f / eps, and the claimed l1_norm is ||u~||_1 of the uploaded bytes."""
    privacy_budget, sensitivity = 2.0, 1e-3
    uploads = {}
    for budget in (None, privacy_budget):
        backend = _torch(2, sensitivity=sensitivity, learning_rate=0.05)
        backend.start_task(0)
        uploads[budget] = backend.local_update(0, 1, budget, "honest", np.random.default_rng(5))
    noise = uploads[privacy_budget].vector.astype(np.float64) - uploads[None].vector
    assert np.abs(noise).mean() == pytest.approx(sensitivity / privacy_budget, rel=0.02)
    assert uploads[None].l1_norm > 1.0  # one epoch moves the model; it is not clipped to 1 or any bound
    assert uploads[privacy_budget].l1_norm == pytest.approx(np.abs(uploads[privacy_budget].vector).sum(), rel=1e-6)


def test_formal_dp_noise_uses_the_per_record_sensitivity() -> None:
    lr, clip, budget = 0.05, 0.5, 4.0
    uploads = {}
    for sensitivity in (1.0, "per_record"):
        backend = _torch(2, sensitivity=sensitivity, learning_rate=lr, clip=clip, momentum=0.0)
        backend.start_task(0)
        uploads[sensitivity] = backend.local_update(0, 2, budget, "honest", np.random.default_rng(1))
    size = uploads["per_record"].data_size
    steps = 2 * -(-size // 64)  # two epochs of ceil(|D| / 64) steps
    expected_scale = 2 * lr * clip * steps / size / budget
    # Delta_f = 1 gives noise of mean |.| 1/4 per coordinate, the formal mode a few 1e-4
    vector = uploads["per_record"].vector.astype(np.float64)
    assert np.median(np.abs(vector)) == pytest.approx(expected_scale * np.log(2), rel=0.1)  # Laplace median |X|
    assert np.abs(uploads[1.0].vector).mean() == pytest.approx(0.25, rel=0.02)


@pytest.mark.parametrize("aggregation", ["fedavg", "fedadp"])
def test_plain_free_rider_shapley(aggregation: str) -> None:
    """20% plain free riders among honest providers (4 + 1), exact Shapley over the round's updates.

    FedAdp gives the zero update (angle pi/2) about e^-4.7 of an honest node's weight, so its Shapley value is
    about zero. FedAvg weights it by its data size: it dilutes every coalition's step, so its value is negative
    (it would be charged, SPEC A.5), never a gain.
    """
    backend = _torch(5, aggregation=aggregation)
    rng = np.random.default_rng(0)
    backend.start_task(0)
    behaviours = ["honest"] * 4 + ["plain"]
    for _ in range(4):  # the free rider free-rides from the start, so FedAdp's smoothed angle knows it
        updates = [backend.local_update(p, 5, None, behaviour, rng) for p, behaviour in enumerate(behaviours)]
        backend.commit_round(updates)
    updates = [backend.local_update(p, 5, None, behaviour, rng) for p, behaviour in enumerate(behaviours)]
    value = backend.coalition_value(updates)
    shapley = exact_shapley(list(range(5)), value)
    honest_mean = np.mean([shapley[p] for p in range(4)])
    assert honest_mean > 0
    assert sum(shapley.values()) == pytest.approx(value(frozenset(range(5))), rel=1e-9)  # efficiency
    print(f"{aggregation}: free rider {shapley[4]:.3e}, honest mean {honest_mean:.3e}")
    if aggregation == "fedadp":
        assert abs(shapley[4]) < 0.05 * honest_mean
    else:
        assert shapley[4] < 0


@pytest.mark.slow
def test_three_of_ten_iid_providers_with_fedavg_reach_comparable_accuracy() -> None:
    # 3 shards hold 431 of the 1,438 training images; centrally trained the MLP reaches 95-96% (test_fl_train).
    # One local epoch per round (SPEC A.2) at lr 0.1: measured 95.3% after 100 rounds (seed 0 of the backend).
    backend = _torch(10, learning_rate=0.1)
    backend.start_task(0)
    result = _train_rounds(backend, 100, range(3), np.random.default_rng(0))
    print(f"FedAvg, 3 of 10 IID digits providers, 100 rounds: accuracy {result.accuracy:.4f}, loss {result.loss:.4f}")
    assert result.accuracy >= 0.94


@pytest.mark.slow
def test_accuracy_falls_as_the_privacy_budget_falls() -> None:
    # Laplace scale Delta_f / eps per coordinate: at Delta_f = 0.1, eps = 100 is nearly noiseless, eps = 1 noisy.
    backend = _torch(10, learning_rate=0.05, sensitivity=0.1)
    accuracies = {}
    for privacy_budget in (100.0, 5.0, 1.0):
        backend.start_task(0)
        result = _train_rounds(backend, 50, range(3), np.random.default_rng(0), privacy_budget)
        accuracies[privacy_budget] = result.accuracy
    print(f"accuracy by epsilon (Delta_f 0.1, 3 providers, 50 rounds): {accuracies}")
    assert accuracies[100.0] > accuracies[5.0] > accuracies[1.0]


def test_local_update_is_a_frozen_record_compared_without_its_vector() -> None:
    first = LocalUpdate(1, 10, 5, 1.0, "ab", 0.0, "honest", vector=np.ones(3))
    second = LocalUpdate(1, 10, 5, 1.0, "ab", 0.0, "honest", vector=np.zeros(3))
    assert first == second and hash(first) == hash(second)
    with pytest.raises(AttributeError):
        first.provider_id = 2  # type: ignore[misc]
