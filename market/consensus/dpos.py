"""Delegated proof of stake committee election (SPEC A.8, D.3, after EOSIO).

Token holders approve candidates; each approval carries the voter's whole stake (its token balance, rewards
included). The T candidates with the most stake-weighted approvals, all with positive votes, form the
committee for an epoch; ties go to the smaller node id, so the result does not depend on the order of the
inputs. A new epoch keeps the previous committee object unless the ranking of its top T changes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from flmarket.market.errors import ElectionError


@dataclass(frozen=True)
class Committee:
    """An elected committee: members in rank order, their stake-weighted votes, and the epoch it started."""

    members: tuple[str, ...]
    votes: tuple[float, ...]
    epoch: int

    @property
    def size(self) -> int:
        return len(self.members)


def tally_votes(approvals: Mapping[str, Iterable[str]], stakes: Mapping[str, float]) -> dict[str, float]:
    """Stake-weighted approval voting (SPEC D.3): each candidate gets the sum of its approvers' stakes."""
    tallies: dict[str, float] = {}
    for voter, candidates in approvals.items():
        stake = stakes.get(voter, 0.0)
        if not math.isfinite(stake) or stake < 0:
            raise ElectionError(f"stakes[{voter!r}]: must be finite and >= 0, got {stake}")
        for candidate in set(candidates):
            tallies[candidate] = tallies.get(candidate, 0.0) + stake
    return tallies


def rank_candidates(tallies: Mapping[str, float]) -> list[tuple[str, float]]:
    """Candidates with positive votes, most votes first, ties by node id (SPEC D.3)."""
    positive = [(candidate, votes) for candidate, votes in tallies.items() if votes > 0]
    return sorted(positive, key=lambda item: (-item[1], item[0]))


def elect_committee(
    approvals: Mapping[str, Iterable[str]], stakes: Mapping[str, float], committee_size: int, epoch: int = 0
) -> Committee:
    """The top `committee_size` candidates with positive stake-weighted votes (SPEC A.8, D.3; T = 7)."""
    if committee_size < 1:
        raise ElectionError(f"committee_size: must be >= 1, got {committee_size}")
    ranking = rank_candidates(tally_votes(approvals, stakes))[:committee_size]
    return Committee(
        members=tuple(candidate for candidate, _ in ranking),
        votes=tuple(votes for _, votes in ranking),
        epoch=epoch,
    )


class DposElection:
    """Re-election each epoch (SPEC D.3): the committee is replaced only when the top-T ranking changes."""

    def __init__(self, committee_size: int = 7) -> None:
        if committee_size < 1:
            raise ElectionError(f"committee_size: must be >= 1, got {committee_size}")
        self.committee_size = committee_size
        self.committee: Committee | None = None
        self.changes = 0

    def run_epoch(self, epoch: int, approvals: Mapping[str, Iterable[str]], stakes: Mapping[str, float]) -> Committee:
        """Elect for `epoch`; return the previous committee unchanged if its members and rank order hold."""
        elected = elect_committee(approvals, stakes, self.committee_size, epoch)
        if self.committee is not None and elected.members == self.committee.members:
            return self.committee
        self.committee = elected
        self.changes += 1
        return elected


def stakes_after_rewards(balances: Mapping[str, float], rewards: Mapping[str, float]) -> dict[str, float]:
    """Stake = token balance, rewards included (SPEC A.8); a balance never goes below zero."""
    stakes = dict(balances)
    for holder, reward in rewards.items():
        stakes[holder] = max(0.0, stakes.get(holder, 0.0) + reward)
    return stakes
