"""Aggregation rules on flat parameter vectors: FedAvg, FedAdp and a FedAsync-style mix (SPEC D.4).

Pure numpy. FedAdp's smoothed angles live in an immutable `FedAdpState`, so the weights of any coalition
can be computed from the committed state without changing it (coalition values need exactly that).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from flmarket.market.errors import MarketError

GOMPERTZ_STEEPNESS = 5.0


def _as_matrix(updates: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    matrix = np.asarray(updates, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] == 0:
        raise MarketError(f"updates: must be a non-empty (participants, parameters) stack, got shape {matrix.shape}")
    return matrix


def _data_shares(data_sizes: Sequence[int] | np.ndarray, participants: int) -> np.ndarray:
    sizes = np.asarray(data_sizes, dtype=np.float64)
    if sizes.shape != (participants,):
        raise MarketError(f"data_sizes: must have one entry per update ({participants}), got shape {sizes.shape}")
    if np.any(sizes <= 0):
        raise MarketError(f"data_sizes: must all be > 0, got {sizes.tolist()}")
    return sizes / sizes.sum()


def fedavg_weights(data_sizes: Sequence[int] | np.ndarray) -> np.ndarray:
    """SPEC D.4 FedAvg weights D_i / D over the round's participants."""
    sizes = np.asarray(data_sizes, dtype=np.float64)
    return _data_shares(sizes, sizes.size)


def weighted_update(updates: Sequence[np.ndarray] | np.ndarray, weights: np.ndarray) -> np.ndarray:
    """sum_i weight_i * delta_i."""
    matrix = _as_matrix(updates)
    if weights.shape != (matrix.shape[0],):
        raise MarketError(f"weights: must have one entry per update ({matrix.shape[0]}), got shape {weights.shape}")
    return weights @ matrix


def fedavg(
    global_vector: np.ndarray,
    updates: Sequence[np.ndarray] | np.ndarray,
    data_sizes: Sequence[int] | np.ndarray,
) -> np.ndarray:
    """SPEC D.4 FedAvg: w <- w + sum_i (D_i / D) * delta_i."""
    matrix = _as_matrix(updates)
    return np.asarray(global_vector, dtype=np.float64) + weighted_update(matrix, _data_shares(data_sizes, len(matrix)))


def update_angles(global_gradient: np.ndarray, updates: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """SPEC D.4 theta_i = arccos(<G, delta_i> / (|G| |delta_i|)), cosine clipped to [-1, 1].

    A zero vector (a plain free rider's update, or G = 0) has no direction: its angle is pi/2 (orthogonal).
    """
    matrix = _as_matrix(updates)
    gradient_norm = float(np.linalg.norm(global_gradient))
    update_norms = np.linalg.norm(matrix, axis=1)
    angles = np.full(matrix.shape[0], math.pi / 2)
    defined = (update_norms > 0) & (gradient_norm > 0)
    if np.any(defined):
        cosines = (matrix[defined] @ global_gradient) / (update_norms[defined] * gradient_norm)
        angles[defined] = np.arccos(np.clip(cosines, -1.0, 1.0))
    return angles


def gompertz(angle: np.ndarray | float, steepness: float = GOMPERTZ_STEEPNESS) -> np.ndarray | float:
    """SPEC D.4 f(th) = a * (1 - exp(-exp(-a * (th - 1)))), a = 5 by default (Wu & Wang's FedAdp)."""
    return steepness * (1.0 - np.exp(-np.exp(-steepness * (np.asarray(angle, dtype=np.float64) - 1.0))))


@dataclass(frozen=True)
class FedAdpState:
    """Per node: smoothed angle th_i and participation count t_i (SPEC D.4); immutable."""

    smoothed_angles: Mapping[int, float] = field(default_factory=lambda: MappingProxyType({}))
    participation_counts: Mapping[int, int] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class FedAdpStep:
    """The weights psi_i of one FedAdp aggregation and the state after it."""

    weights: np.ndarray
    instantaneous_angles: np.ndarray
    smoothed_angles: np.ndarray
    state: FedAdpState


def fedadp_step(
    state: FedAdpState,
    provider_ids: Sequence[int],
    updates: Sequence[np.ndarray] | np.ndarray,
    data_sizes: Sequence[int] | np.ndarray,
    steepness: float = GOMPERTZ_STEEPNESS,
) -> FedAdpStep:
    """SPEC D.4 FedAdp weights for one round, without mutating `state`.

    G = sum_i (D_i/D) delta_i; theta_i = angle(G, delta_i);
    th_i(t) = ((t-1)/t) th_i(t-1) + (1/t) theta_i(t) with t the node's participation count including this
    round; psi_i = D_i exp(f(th_i)) / sum_j D_j exp(f(th_j)).
    """
    matrix = _as_matrix(updates)
    ids = [int(provider) for provider in provider_ids]
    if len(ids) != matrix.shape[0] or len(set(ids)) != len(ids):
        raise MarketError(f"provider_ids: must be {matrix.shape[0]} distinct ids, one per update, got {ids}")
    shares = _data_shares(data_sizes, len(ids))
    angles = update_angles(weighted_update(matrix, shares), matrix)
    counts = np.array([state.participation_counts.get(provider, 0) + 1 for provider in ids], dtype=np.float64)
    previous = np.array([state.smoothed_angles.get(provider, 0.0) for provider in ids])
    smoothed = ((counts - 1.0) / counts) * previous + angles / counts
    logits = np.log(shares) + gompertz(smoothed, steepness)
    weights = np.exp(logits - logits.max())
    weights /= weights.sum()
    new_angles = dict(state.smoothed_angles)
    new_counts = dict(state.participation_counts)
    for provider, angle, count in zip(ids, smoothed, counts, strict=True):
        new_angles[provider] = float(angle)
        new_counts[provider] = int(count)
    new_state = FedAdpState(MappingProxyType(new_angles), MappingProxyType(new_counts))
    return FedAdpStep(weights, angles, smoothed, new_state)


def fedadp_coalition_weights(
    state: FedAdpState,
    provider_ids: Sequence[int],
    gram: np.ndarray,
    data_sizes: Sequence[int] | np.ndarray,
    membership: np.ndarray,
    steepness: float = GOMPERTZ_STEEPNESS,
) -> np.ndarray:
    """`fedadp_step`'s weights psi for many coalitions of one round's updates at once, from their Gram matrix.

    `gram` is K = U U^T of the n stacked updates and `membership` a (k x n) 0/1 matrix, one coalition per row.
    Each angle needs only inner products: with s the coalition's data shares, <G, delta_i> = (s K)_i,
    ||G||^2 = s K s^T and ||delta_i||^2 = K_ii, so no d-dimensional vector is touched per coalition (SPEC D.4).
    Non-members get weight 0; each row equals `fedadp_step(state, members, U[members], sizes[members]).weights`
    up to rounding. Every row must have a member.
    """
    ids = [int(provider) for provider in provider_ids]
    count = len(ids)
    kernel = np.asarray(gram, dtype=np.float64)
    members = np.asarray(membership, dtype=bool)
    if kernel.shape != (count, count) or members.ndim != 2 or members.shape[1] != count:
        raise MarketError(
            f"gram, membership: must be ({count}, {count}) and (k, {count}) for {count} providers, got "
            f"{kernel.shape} and {members.shape}"
        )
    if not np.all(members.any(axis=1)):
        raise MarketError("membership: every coalition must have at least one member")
    sizes = np.asarray(data_sizes, dtype=np.float64)
    if sizes.shape != (count,) or np.any(sizes <= 0):
        raise MarketError(f"data_sizes: must be {count} sizes > 0, got {sizes.tolist()}")
    sized = members * sizes
    shares = sized / sized.sum(axis=1, keepdims=True)
    projections = shares @ kernel  # <G, delta_i>
    gradient_norms = np.sqrt(np.maximum(np.einsum("kn,kn->k", projections, shares), 0.0))
    update_norms = np.sqrt(np.maximum(np.diag(kernel), 0.0))
    defined = members & (update_norms > 0)[None, :] & (gradient_norms > 0)[:, None]
    cosines = np.divide(
        projections, np.outer(gradient_norms, update_norms), out=np.zeros_like(projections), where=defined
    )
    angles = np.where(defined, np.arccos(np.clip(cosines, -1.0, 1.0)), math.pi / 2)
    counts = np.array([state.participation_counts.get(provider, 0) + 1 for provider in ids], dtype=np.float64)
    previous = np.array([state.smoothed_angles.get(provider, 0.0) for provider in ids])
    smoothed = ((counts - 1.0) / counts) * previous + angles / counts
    with np.errstate(divide="ignore"):
        logits = np.where(members, np.log(shares) + gompertz(smoothed, steepness), -np.inf)
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    return weights / weights.sum(axis=1, keepdims=True)


def fedadp(
    global_vector: np.ndarray,
    state: FedAdpState,
    provider_ids: Sequence[int],
    updates: Sequence[np.ndarray] | np.ndarray,
    data_sizes: Sequence[int] | np.ndarray,
    steepness: float = GOMPERTZ_STEEPNESS,
) -> tuple[np.ndarray, FedAdpState]:
    """SPEC D.4 FedAdp: w <- w + sum_i psi_i delta_i; returns the new global vector and the new state."""
    step = fedadp_step(state, provider_ids, updates, data_sizes, steepness)
    new_global = np.asarray(global_vector, dtype=np.float64) + weighted_update(updates, step.weights)
    return new_global, step.state


def staleness_weight(staleness: int, mixing: float = 0.6, staleness_exponent: float = 0.5) -> float:
    """SPEC D.4 AsyFL a_t = a * (t - tau + 1)^(-b), with staleness = t - tau >= 0 (polynomial, FedAsync)."""
    if staleness < 0:
        raise MarketError(f"staleness: must be >= 0, got {staleness}")
    if not 0.0 < mixing <= 1.0:
        raise MarketError(f"mixing: must be in (0, 1], got {mixing}")
    if staleness_exponent < 0:
        raise MarketError(f"staleness_exponent: must be >= 0, got {staleness_exponent}")
    return mixing * (staleness + 1.0) ** (-staleness_exponent)


def fedasync_mix(
    global_vector: np.ndarray,
    local_model: np.ndarray,
    staleness: int,
    mixing: float = 0.6,
    staleness_exponent: float = 0.5,
) -> np.ndarray:
    """SPEC D.4 AsyFL: w <- (1 - a_t) w + a_t w_new, for a local model `staleness` rounds old."""
    weight = staleness_weight(staleness, mixing, staleness_exponent)
    return (1.0 - weight) * np.asarray(global_vector, dtype=np.float64) + weight * np.asarray(
        local_model, dtype=np.float64
    )
