"""FedAvg, FedAdp and the FedAsync-style mix on flat vectors (SPEC D.4)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flmarket.market.errors import MarketError
from flmarket.market.fl.aggregate import (
    FedAdpState,
    fedadp,
    fedadp_coalition_weights,
    fedadp_step,
    fedasync_mix,
    fedavg,
    gompertz,
    staleness_weight,
    update_angles,
)


def test_fedavg_by_hand() -> None:
    global_vector = np.array([1.0, 1.0])
    updates = [np.array([1.0, 0.0]), np.array([0.0, 4.0])]
    # D = (1, 3): w + 1/4 * (1, 0) + 3/4 * (0, 4) = (1.25, 4.0)
    np.testing.assert_allclose(fedavg(global_vector, updates, [1, 3]), [1.25, 4.0])
    with pytest.raises(MarketError, match="data_sizes: must all be > 0"):
        fedavg(global_vector, updates, [1, 0])


def test_gompertz_anchors() -> None:
    assert gompertz(1.0) == pytest.approx(5.0 * (1 - math.exp(-1)))  # f(1) = a (1 - 1/e)
    assert gompertz(0.0) == pytest.approx(5.0, abs=1e-12)
    assert gompertz(math.pi) == pytest.approx(0.0, abs=1e-3)


@given(
    sizes=st.lists(st.integers(1, 100), min_size=2, max_size=6),
    dimension=st.integers(2, 20),
    seed=st.integers(0, 1000),
)
@settings(max_examples=40, deadline=None)
def test_fedadp_equals_fedavg_when_all_angles_are_equal(sizes: list[int], dimension: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=dimension)
    updates = np.array([scale * direction for scale in rng.uniform(0.1, 3.0, size=len(sizes))])  # all angle 0
    global_vector = rng.normal(size=dimension)
    ids = list(range(len(sizes)))
    new_global, _ = fedadp(global_vector, FedAdpState(), ids, updates, sizes)
    np.testing.assert_allclose(new_global, fedavg(global_vector, updates, sizes), rtol=1e-10, atol=1e-12)


def test_anti_aligned_update_gets_about_e_to_minus_5_of_the_weight() -> None:
    # Two aligned nodes dominate G, so node 0 has angle 0 and node 2 (anti-aligned) angle pi.
    updates = np.array([[1.0, 0.0], [1.0, 0.0], [-0.5, 0.0]])
    step = fedadp_step(FedAdpState(), [0, 1, 2], updates, [10, 10, 10])
    np.testing.assert_allclose(step.instantaneous_angles, [0.0, 0.0, math.pi], atol=1e-7)
    ratio = step.weights[2] / step.weights[0]
    assert ratio == pytest.approx(math.exp(-5.0), rel=1e-3)


def test_smoothed_angles_use_participation_counts() -> None:
    ids = [7, 8]
    first = fedadp_step(FedAdpState(), ids, np.array([[1.0, 0.0], [1.0, 1.0]]), [1, 1])
    # G = (1, 0.5): angles arctan(0.5) and pi/4 - arctan(0.5)
    expected = [math.atan(0.5), math.pi / 4 - math.atan(0.5)]
    np.testing.assert_allclose(first.smoothed_angles, expected)
    assert dict(first.state.participation_counts) == {7: 1, 8: 1}
    # second round: node 7 alone is G itself, so its angle is 0
    second = fedadp_step(first.state, [7], np.array([[0.0, 2.0]]), [1])
    assert second.smoothed_angles[0] == pytest.approx(0.5 * expected[0] + 0.5 * 0.0)
    assert second.state.participation_counts[7] == 2 and second.state.participation_counts[8] == 1
    assert second.state.smoothed_angles[8] == pytest.approx(expected[1])  # absent node keeps its angle
    assert dict(first.state.participation_counts) == {7: 1, 8: 1}  # the old state is unchanged


def test_weights_follow_the_formula_with_data_sizes() -> None:
    updates = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    sizes = np.array([2.0, 3.0, 5.0])
    step = fedadp_step(FedAdpState(), [0, 1, 2], updates, sizes)
    gradient = (sizes / sizes.sum()) @ updates
    cosines = updates @ gradient / (np.linalg.norm(updates, axis=1) * np.linalg.norm(gradient))
    scores = sizes * np.exp(gompertz(np.arccos(cosines)))
    np.testing.assert_allclose(step.weights, scores / scores.sum(), rtol=1e-12)


def test_zero_update_is_orthogonal() -> None:
    angles = update_angles(np.array([1.0, 0.0]), np.array([[0.0, 0.0], [2.0, 0.0]]))
    np.testing.assert_allclose(angles, [math.pi / 2, 0.0])


def test_duplicate_provider_ids_are_rejected() -> None:
    with pytest.raises(MarketError, match="provider_ids"):
        fedadp_step(FedAdpState(), [1, 1], np.ones((2, 3)), [1, 1])


def test_coalition_weights_from_the_gram_matrix_equal_fedadp_step_per_coalition() -> None:
    """Every non-empty coalition of 6 providers (a zero update among them, a committed state with history):
    the batched weights from K = U U^T equal `fedadp_step` on the members' own vectors, 0 for the others."""
    rng = np.random.default_rng(3)
    updates = rng.normal(size=(6, 40))
    updates[4] = 0.0  # a plain free rider: angle pi/2
    sizes = rng.integers(20, 200, 6)
    ids = [10, 11, 12, 13, 14, 15]
    _, state = fedadp(np.zeros(40), FedAdpState(), ids[:3], updates[:3] + 0.3, sizes[:3])
    masks = [mask for mask in range(1, 1 << 6)]
    membership = np.array([[mask >> index & 1 for index in range(6)] for mask in masks], dtype=float)
    batched = fedadp_coalition_weights(state, ids, updates @ updates.T, sizes, membership)
    for row, mask in enumerate(masks):
        members = [index for index in range(6) if mask >> index & 1]
        step = fedadp_step(state, [ids[i] for i in members], updates[members], sizes[members])
        expected = np.zeros(6)
        expected[members] = step.weights
        np.testing.assert_allclose(batched[row], expected, rtol=1e-9, atol=1e-15)
    with pytest.raises(MarketError, match="membership: every coalition must have at least one member"):
        fedadp_coalition_weights(state, ids, updates @ updates.T, sizes, np.zeros((1, 6)))
    with pytest.raises(MarketError, match=r"gram, membership: must be \(6, 6\)"):
        fedadp_coalition_weights(state, ids, np.eye(5), sizes, membership)


def test_fedasync_staleness_weight_and_mix() -> None:
    assert staleness_weight(0, 0.6, 0.5) == pytest.approx(0.6)
    assert staleness_weight(3, 0.6, 0.5) == pytest.approx(0.6 / 2.0)  # (3 + 1)^(-1/2) = 1/2
    mixed = fedasync_mix(np.array([0.0, 2.0]), np.array([4.0, 2.0]), staleness=3, mixing=0.6)
    np.testing.assert_allclose(mixed, [0.3 * 4.0, 2.0])
    with pytest.raises(MarketError, match="staleness: must be >= 0, got -1"):
        staleness_weight(-1)
