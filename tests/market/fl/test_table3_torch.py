"""BGFL Table 3 with real learning (SPEC A.9, issue 12 item 1): the bundled `bgfl-table3-torch` scenario, one
task shortened to 20 aggregation rounds, seed 3.

Pins what the run shows. The model learns; C_unit is ln C_com plus a few. Three economic targets are NOT met
under SPEC A.2 as revised, and the strict xfails below say by how much (they turn into failures, to be
promoted to plain tests, the day they pass):
- (B 24) gives gamma_NE = floor((B/r - sum C_com) / sum C_unit) = floor(40.2 / sum C_unit). The BNE cutoff
  (B 19) lets 6 of 10 providers in, and each claims C_unit = ln C_com + eps ln(1 + ||u~||_1) with ||u~||_1
  about 13 (one epoch of the digits MLP), so sum C_unit is 85.6 per round in the 20-round run and gamma_NE
  floors to 0. The paper's own Setting 2 (cost +16.53% from eps 1 to 5) implies ||g~||_1 of about 0.4, i.e.
  C_unit about 8.3 to 9.7.
- Providers then train the minimum of one epoch and claim it, so r * sum k C_unit passes B (1 - sigma) = 4000
  near round 52 of 100: (B 15b) fails from there (full run: 52% of rounds), and IR fails for most paid updates
  (the normalised Shapley pool of B 13 is 39.2 per round for 6 claims of about 13 each).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from flmarket.analysis import load_events
from flmarket.sim.config import load_scenario
from flmarket.sim.runner import run_scenario

LN_COMPUTATION_COST = math.log(2882.4)  # Table 3's C_com (SPEC A.3)
ROUNDS = 20

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def table3_run(tmp_path_factory: pytest.TempPathFactory):
    scenario = load_scenario("bgfl-table3-torch", {"run.tasks": 1, "learning.rounds_per_task": ROUNDS})
    run_dir = run_scenario(scenario, output_dir=tmp_path_factory.mktemp("t3"), run_id="run", show_progress=False)
    return {kind: load_events(run_dir.run_dir, kinds=[kind]) for kind in _KINDS}


_KINDS = ("round_started", "round_finished", "reward_paid", "ir_violation", "budget_check", "claim_rejected")


def test_table3_torch_learns(table3_run) -> None:
    finished = table3_run["round_finished"].sort_values("round")
    accuracy = finished["accuracy"].to_numpy()
    print(f"accuracy after {ROUNDS} rounds: {accuracy[-1]:.4f} (round 0: {accuracy[0]:.4f})")
    assert accuracy[-1] >= 0.90  # measured 0.93 at round 20; the full 100-round task reaches 0.972
    assert finished["loss"].iloc[-1] < finished["loss"].iloc[0]
    assert table3_run["claim_rejected"].empty  # every claimed privacy cost matches its received update


def test_unit_cost_is_ln_computation_cost_plus_a_few(table3_run) -> None:
    excess = table3_run["reward_paid"]["unit_cost"].to_numpy() - LN_COMPUTATION_COST
    print(f"C_unit - ln C_com: mean {excess.mean():.3f}, max {excess.max():.3f}")
    assert np.all(excess > 0)
    assert excess.mean() < 8.0  # measured about 4.9 (eps in [1.2, 2.4] times ln(1 + ||u~||_1) of about 2.6)


def test_gamma_is_what_b24_gives_for_the_claimed_costs(table3_run) -> None:
    """The logged gamma_NE of round r + 1 is floor(40.2 / sum of round r's claimed C_unit) (B 24 with Table 3)."""
    paid = table3_run["reward_paid"]
    started = table3_run["round_started"].set_index("round")["gamma"]
    for round_index, claims in paid.groupby("round"):
        if round_index + 1 in started.index:
            expected = max(math.floor((5000 / ROUNDS - 9.8) / claims["unit_cost"].sum()), 0)
            # r = the task's rounds (ROUNDS here, 100 in Table 3), capped by (B 12)
            assert started[round_index + 1] <= expected


@pytest.mark.xfail(strict=True, reason="sum C_unit of 85.6 per round (20-round run) > 40.2: gamma_NE floors to 0")
def test_gamma_ne_is_at_least_one_epoch_with_table3_rounds(table3_run) -> None:
    paid = table3_run["reward_paid"]
    sums = paid.groupby("round")["unit_cost"].sum()
    gammas = np.floor((5000 / 100 - 9.8) / sums)  # Table 3: r = 100 rounds
    print(f"sum C_unit per round: {sums.mean():.1f}; gamma_NE (B 24, r = 100): {gammas.unique()}")
    assert np.all(gammas >= 1)


@pytest.mark.xfail(
    strict=True, reason="IR holds for 4 of 120 paid updates in the 20-round run (reward pool 39.2 per round)"
)
def test_individual_rationality_for_90_percent_of_paid_updates(table3_run) -> None:
    paid = len(table3_run["reward_paid"])
    violations = len(table3_run["ir_violation"][["round", "agent"]].drop_duplicates())  # one update, one count
    print(f"IR violations: {violations} of {paid} paid updates")
    assert violations <= 0.1 * paid


@pytest.mark.xfail(strict=True, reason="gamma floored to 0, one epoch trained: r * sum k C_unit reaches 48,676 > 4000")
def test_budget_balance_b15b_in_every_round_of_table3(table3_run) -> None:
    paid = table3_run["reward_paid"]
    per_round = (paid["unit_cost"] * paid["local_iterations"]).groupby(paid["round"]).sum()
    spend = 100 * per_round  # r * sum_i k_i C_unit at Table 3's r = 100 rounds against B (1 - sigma) = 4000
    print(f"(B 15b) at r = 100: max spend {spend.max():.0f} against 4000")
    assert np.all(spend <= 4000)
