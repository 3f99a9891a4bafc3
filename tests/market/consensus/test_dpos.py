"""Tests for market/consensus/dpos.py: stake-weighted approval voting, ties, re-election per epoch."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flmarket.market.consensus.dpos import (
    DposElection,
    ElectionError,
    elect_committee,
    stakes_after_rewards,
    tally_votes,
)


def test_hand_computed_election() -> None:
    approvals = {"a": ["x", "y"], "b": ["y", "z"], "c": ["z"], "d": ["w"]}
    stakes = {"a": 10.0, "b": 5.0, "c": 1.0, "d": 0.0}
    # x = 10, y = 10 + 5 = 15, z = 5 + 1 = 6, w = 0 (no positive votes: never elected).
    assert tally_votes(approvals, stakes) == {"x": 10.0, "y": 15.0, "z": 6.0, "w": 0.0}
    committee = elect_committee(approvals, stakes, committee_size=2)
    assert committee.members == ("y", "x") and committee.votes == (15.0, 10.0)
    assert elect_committee(approvals, stakes, committee_size=7).members == ("y", "x", "z")


def test_ties_go_to_the_smaller_id_whatever_the_input_order() -> None:
    approvals = {"v1": ["n3", "n1", "n2"], "v2": ["n9"]}
    stakes = {"v1": 4.0, "v2": 4.0}
    first = elect_committee(approvals, stakes, 3)
    assert first.members == ("n1", "n2", "n3")
    reversed_input = {key: list(reversed(value)) for key, value in reversed(list(approvals.items()))}
    assert elect_committee(reversed_input, dict(reversed(list(stakes.items()))), 3) == first


def test_invalid_inputs_are_named() -> None:
    with pytest.raises(ElectionError, match=r"stakes\['v'\]: must be finite and >= 0, got -1"):
        tally_votes({"v": ["c"]}, {"v": -1.0})
    with pytest.raises(ElectionError, match="committee_size: must be >= 1, got 0"):
        elect_committee({}, {}, 0)


def brute_force_top(approval_matrix: np.ndarray, stakes: np.ndarray, size: int) -> tuple[str, ...]:
    votes = stakes @ approval_matrix
    order = sorted(range(len(votes)), key=lambda j: (-votes[j], f"c{j:02d}"))
    return tuple(f"c{j:02d}" for j in order[:size] if votes[j] > 0)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), committee_size=st.integers(1, 7))
def test_committee_changes_exactly_when_the_top_ranking_changes(seed: int, committee_size: int) -> None:
    rng = np.random.default_rng(seed)
    voters, candidates = 12, 10
    approval_matrix = rng.random((voters, candidates)) < 0.3
    balances = rng.integers(0, 20, size=voters).astype(float)
    election = DposElection(committee_size)
    previous = None
    for epoch in range(15):
        # Small reward flows move stakes; integer stakes make ties common.
        balances = np.maximum(0.0, balances + rng.integers(-2, 3, size=voters))
        approvals = {f"v{i}": [f"c{j:02d}" for j in np.flatnonzero(approval_matrix[i])] for i in range(voters)}
        stakes = {f"v{i}": float(balances[i]) for i in range(voters)}
        committee = election.run_epoch(epoch, approvals, stakes)
        expected = brute_force_top(approval_matrix.astype(float), balances, committee_size)
        assert committee.members == expected
        if previous is not None:
            assert (committee is previous) == (expected == previous.members)
        previous = committee


def test_stake_is_balance_with_rewards() -> None:
    assert stakes_after_rewards({"a": 5.0, "b": 1.0}, {"a": 2.5, "b": -3.0, "c": 1.0}) == {
        "a": 7.5,
        "b": 0.0,
        "c": 1.0,
    }
