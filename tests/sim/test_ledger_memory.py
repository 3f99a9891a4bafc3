"""The canonical ledger's window in memory (agents/committee.py): bounded in blocks and in transactions, and never
shorter than what the honest member furthest behind needs to catch up."""

from __future__ import annotations

import math

from flmarket.analysis.load import events_frame
from flmarket.market.ledger import GENESIS_PREV_HASH, Block, Chain
from flmarket.sim.config import load_scenario
from flmarket.sim.model import MarketModel

SMALL = {
    "run.tasks": 4,
    "providers.count": 12,
    "providers.arrival_rate_per_s": 0.0,
    "providers.mean_lifetime_s": math.inf,
}


def expected_window(transactions_newest_first: list[int], max_blocks: int, max_transactions: int) -> int:
    """The head, then older blocks while the block limit and the transaction budget (beyond the head) allow."""
    keep, total = 1, 0
    for count in transactions_newest_first[1:]:
        total += count
        if keep >= max_blocks or total > max_transactions:
            break
        keep += 1
    return keep


def test_the_window_holds_the_blocks_the_transaction_budget_allows() -> None:
    budget = 20
    model = MarketModel(load_scenario("quickstart", {**SMALL, "committee.ledger_transactions_in_memory": budget}))
    model.run()
    frame = events_frame(model.log.to_arrow())
    logged = frame[frame["kind"] == "block_committed"].sort_values("height")["transactions"].astype(int).tolist()
    assert len(logged) == 4 * model.scenario.learning.rounds_per_task and min(logged) > 0
    kept = model.committee.ledger.blocks
    want = expected_window(logged[::-1], max_blocks=256, max_transactions=budget)
    assert 1 < len(kept) == want < len(logged)  # the budget, not the block limit, decided
    assert sum(len(block.txs) for block in kept[1:]) <= budget  # beyond the head, within the budget
    assert [len(block.txs) for block in kept] == logged[-want:]  # the most recent blocks, in order
    assert model.committee.ledger.verify().valid


def test_the_window_never_drops_blocks_a_member_behind_still_needs() -> None:
    model = MarketModel(load_scenario("quickstart", {**SMALL, "committee.ledger_blocks_in_memory": 1}))
    model.run()
    committee = model.committee
    assert committee._blocks_to_keep() == 1  # every honest member at the head: the head alone
    head = committee.ledger.head
    lagging = next(member for member in committee.members.values() if member.honest)
    lagging.state.chain = Chain.from_head(Block.create(head.height - 5, GENESIS_PREV_HASH, 0.0, ()))
    assert committee._blocks_to_keep() == 5  # heights head-4 .. head, which it lacks
