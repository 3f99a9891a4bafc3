"""Local training of one provider and the differential privacy of its upload (SPEC A.2, B 2, B 4, SPEC D.5).

Mini-batch SGD with momentum descends for `local_iterations` steps from the global model; the upload is the
flat difference w_local - w_global, clipped to L1 norm `clip` (so the sensitivity is Delta_f = 2 * clip) and
perturbed with i.i.d. Laplace(mu, Delta_f / eps) noise per coordinate. Privacy spent composes additively
(basic composition) in a `PrivacyLedger`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from flmarket.market.errors import MarketError


@dataclass(frozen=True)
class SGDSettings:
    """Table 3 defaults: learning rate 0.01, momentum 0.5, batch size 64."""

    learning_rate: float = 0.01
    momentum: float = 0.5
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.learning_rate <= 0:
            raise MarketError(f"learning_rate: must be > 0, got {self.learning_rate}")
        if not 0.0 <= self.momentum < 1.0:
            raise MarketError(f"momentum: must be in [0, 1), got {self.momentum}")
        if self.batch_size < 1:
            raise MarketError(f"batch_size: must be >= 1, got {self.batch_size}")


def batch_schedule(
    sample_count: int, batch_size: int, iterations: int, generator: torch.Generator
) -> list[torch.Tensor]:
    """Index batches for `iterations` SGD steps: shuffled passes over the shard, reshuffled when exhausted.

    A shard smaller than `batch_size` gives full-shard batches (in a fresh order each pass).
    """
    if sample_count < 1:
        raise MarketError(f"sample_count: must be >= 1, got {sample_count}")
    batches: list[torch.Tensor] = []
    order = torch.randperm(sample_count, generator=generator)
    position = 0
    size = min(batch_size, sample_count)
    while len(batches) < iterations:
        if position + size > sample_count:
            order = torch.randperm(sample_count, generator=generator)
            position = 0
        batches.append(order[position : position + size])
        position += size
    return batches


def train_local(
    model: nn.Module,
    global_vector: torch.Tensor,
    features: torch.Tensor,
    labels: torch.Tensor,
    local_iterations: int,
    settings: SGDSettings,
    generator: torch.Generator,
) -> torch.Tensor:
    """(B 2) w_t = w_{t-1} - lr * g(w, b) with momentum, for `local_iterations` mini-batches; returns w_local.

    The momentum buffer starts at zero for every upload (a fresh optimiser per local update).
    """
    if local_iterations < 0:
        raise MarketError(f"local_iterations: must be >= 0, got {local_iterations}")
    # vector_to_parameters makes the parameters views of its argument: train on a copy, never the caller's.
    vector_to_parameters(global_vector.detach().clone(), model.parameters())
    model.train()
    optimiser = torch.optim.SGD(model.parameters(), lr=settings.learning_rate, momentum=settings.momentum)
    loss_function = nn.CrossEntropyLoss()
    for batch in batch_schedule(labels.shape[0], settings.batch_size, local_iterations, generator):
        optimiser.zero_grad(set_to_none=True)
        loss = loss_function(model(features[batch]), labels[batch])
        loss.backward()
        optimiser.step()
    return parameters_to_vector(model.parameters()).detach().clone()


def clip_l1(update: np.ndarray, clip: float) -> np.ndarray:
    """Scale `update` so its L1 norm is at most `clip` (SPEC A.2: bounds the sensitivity by 2 * clip)."""
    if clip <= 0:
        raise MarketError(f"clip: must be > 0, got {clip}")
    norm = float(np.abs(update).sum())
    if norm <= clip:
        return update.copy()
    return update * (clip / norm)


def laplace_scale(clip: float, privacy_budget: float) -> float:
    """(B 4) b = Delta_f / eps with Delta_f = 2 * clip (SPEC A.2 resolution)."""
    if clip <= 0:
        raise MarketError(f"clip: must be > 0, got {clip}")
    if privacy_budget <= 0:
        raise MarketError(f"privacy_budget: must be > 0, got {privacy_budget}")
    return 2.0 * clip / privacy_budget


def privatise(
    update: np.ndarray,
    clip: float,
    privacy_budget: float,
    rng: np.random.Generator,
    noise_location: float = 0.0,
) -> np.ndarray:
    """(B 4) g~ = clip_L1(g) + Lap(mu, 2 * clip / eps), i.i.d. per coordinate; float32 like the model."""
    scale = laplace_scale(clip, privacy_budget)
    clipped = clip_l1(np.asarray(update, dtype=np.float64), clip)
    noise = rng.laplace(noise_location, scale, size=clipped.shape)
    return (clipped + noise).astype(np.float32)


@dataclass
class PrivacyLedger:
    """Cumulative privacy spent per provider under basic composition (SPEC D.5): the sum of per-upload eps."""

    _spent: dict[int, float] = field(default_factory=dict)

    def spend(self, provider_id: int, privacy_budget: float) -> float:
        """Record one upload at budget `privacy_budget`; returns the provider's cumulative epsilon."""
        if privacy_budget < 0:
            raise MarketError(f"privacy_budget: must be >= 0, got {privacy_budget}")
        total = self._spent.get(provider_id, 0.0) + privacy_budget
        self._spent[provider_id] = total
        return total

    def spent(self, provider_id: int) -> float:
        """Cumulative epsilon of `provider_id` so far (0 if it never uploaded)."""
        return self._spent.get(provider_id, 0.0)
