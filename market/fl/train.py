"""Local training of one provider and the differential privacy of its upload (SPEC A.2, B 2, B 4, SPEC D.5).

Public training API (the torch backend and `analysis.reproduce_bgfl` build on it; keep it stable):

- `SGDSettings(learning_rate, momentum, batch_size)`: Table 3's SGD (0.01, 0.5, 64); the learning rate at most
  `LARGEST_LEARNING_RATE`, float32's largest number (the weights' type).
- `epoch_batches(sample_count, batch_size, epochs, generator)`: the index batches of `epochs` local epochs, one
  shuffled pass over the shard each, the last batch of a pass possibly smaller. `steps_per_epoch(n, b)` counts
  them: ceil(n / b).
- `train_local(model, global_vector, features, labels, epochs, settings, generator, record_clip=None)`: w_local
  after `epochs` local epochs (B 2); a local iteration is one epoch (SPEC A.2). With `record_clip` set, every
  step uses per-record gradients (torch.func vmap + grad) clipped to L1 norm `record_clip`, summed and divided by
  the batch size (formal DP, `learning.sensitivity = "per_record"`).
- `per_record_sensitivity(learning_rate, clip, steps, sample_count, momentum)`: Delta_f of that formal mode.
- `laplace_scale(sensitivity, eps)` = Delta_f / eps (B 4); `privatise(update, sensitivity, eps, rng)`:
  u~ = u + Lap(mu, Delta_f / eps)^d, i.i.d. per coordinate, no clipping of the whole update (SPEC A.2 revised).
- `expected_perturbed_l1_norm(update_l1_norm, parameter_count, scale)`: E||u~||_1 (the surrogate's and the prior's).
- `PrivacyLedger`: each provider's spent eps under basic composition (the sum over its releases).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from flmarket.market.errors import MarketError
from flmarket.market.fl.privacy import (
    PER_RECORD,
    expected_perturbed_l1_norm,
    laplace_scale,
    per_record_sensitivity,
    privatise,
    steps_per_epoch,
)

__all__ = [
    "LARGEST_LEARNING_RATE",
    "PER_RECORD",
    "PrivacyLedger",
    "SGDSettings",
    "epoch_batches",
    "expected_perturbed_l1_norm",
    "laplace_scale",
    "per_record_sensitivity",
    "privatise",
    "steps_per_epoch",
    "train_local",
]


LARGEST_LEARNING_RATE = float(torch.finfo(torch.float32).max)
"""The models' weights are float32, and torch refuses to step them by a larger learning rate ("value cannot be
converted to type float without overflow")."""


@dataclass(frozen=True)
class SGDSettings:
    """Table 3 defaults: learning rate 0.01, momentum 0.5, batch size 64. The learning rate must lie in
    (0, LARGEST_LEARNING_RATE]."""

    learning_rate: float = 0.01
    momentum: float = 0.5
    batch_size: int = 64

    def __post_init__(self) -> None:
        if not 0 < self.learning_rate <= LARGEST_LEARNING_RATE:
            raise MarketError(
                f"learning_rate: must be > 0 and at most {LARGEST_LEARNING_RATE!r} (float32's largest, the weights' "
                f"type), got {self.learning_rate}"
            )
        if not 0.0 <= self.momentum < 1.0:
            raise MarketError(f"momentum: must be in [0, 1), got {self.momentum}")
        if self.batch_size < 1:
            raise MarketError(f"batch_size: must be >= 1, got {self.batch_size}")


def epoch_batches(sample_count: int, batch_size: int, epochs: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Index batches of `epochs` local epochs: each epoch is one pass over the shard in a fresh random order,
    cut into batches of `batch_size` (the last one of a pass holds the remainder)."""
    steps = steps_per_epoch(sample_count, batch_size)
    if epochs < 0:
        raise MarketError(f"epochs: must be >= 0, got {epochs}")
    batches: list[torch.Tensor] = []
    for _ in range(epochs):
        order = torch.randperm(sample_count, generator=generator)
        batches.extend(order[step * batch_size : (step + 1) * batch_size] for step in range(steps))
    return batches


def _clipped_gradient_sum(
    model: nn.Module, features: torch.Tensor, labels: torch.Tensor, record_clip: float
) -> dict[str, torch.Tensor]:
    """Sum over the batch of per-record gradients, each scaled to L1 norm <= `record_clip` (torch.func)."""
    parameters = {name: parameter.detach() for name, parameter in model.named_parameters()}

    def record_loss(weights: dict[str, torch.Tensor], inputs: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, weights, (inputs.unsqueeze(0),))
        return nn.functional.cross_entropy(logits, label.unsqueeze(0))

    per_record = vmap(grad(record_loss), in_dims=(None, 0, 0))(parameters, features, labels)
    norms = sum(gradient.abs().flatten(1).sum(dim=1) for gradient in per_record.values())
    scale = torch.clamp(record_clip / (norms + 1e-12), max=1.0)
    return {
        name: (gradient * scale.view(-1, *([1] * (gradient.dim() - 1)))).sum(dim=0)
        for name, gradient in per_record.items()
    }


def train_local(
    model: nn.Module,
    global_vector: torch.Tensor,
    features: torch.Tensor,
    labels: torch.Tensor,
    epochs: int,
    settings: SGDSettings,
    generator: torch.Generator,
    record_clip: float | None = None,
) -> torch.Tensor:
    """(B 2) w_t = w_{t-1} - lr * g(w, b) with momentum, over `epochs` local epochs (SPEC A.2); returns w_local.

    The momentum buffer starts at zero for every upload (a fresh optimiser per local update). With
    `record_clip`, g is the sum of the batch's per-record gradients clipped to L1 norm `record_clip`, divided
    by min(batch_size, |D_i|), so one record moves each step by at most lr * record_clip / that size.
    """
    if epochs < 0:
        raise MarketError(f"epochs: must be >= 0, got {epochs}")
    if record_clip is not None and not record_clip > 0:
        raise MarketError(f"record_clip: must be > 0 or None, got {record_clip}")
    sample_count = int(labels.shape[0])
    # vector_to_parameters makes the parameters views of its argument: train on a copy, never the caller's.
    vector_to_parameters(global_vector.detach().clone(), model.parameters())
    model.train()
    parameters = list(model.parameters())
    momentum_buffers: list[torch.Tensor | None] = [None] * len(parameters)
    loss_function = nn.CrossEntropyLoss()
    divisor = float(min(settings.batch_size, sample_count))
    for batch in epoch_batches(sample_count, settings.batch_size, epochs, generator):
        for parameter in parameters:
            parameter.grad = None
        if record_clip is None:
            loss = loss_function(model(features[batch]), labels[batch])
            loss.backward()
        else:
            summed = _clipped_gradient_sum(model, features[batch], labels[batch], record_clip)
            for name, parameter in model.named_parameters():
                parameter.grad = summed[name] / divisor
        _sgd_step(parameters, momentum_buffers, settings)
    return parameters_to_vector(model.parameters()).detach().clone()


def _sgd_step(
    parameters: list[nn.Parameter], momentum_buffers: list[torch.Tensor | None], settings: SGDSettings
) -> None:
    """One step of heavy-ball SGD exactly as torch.optim.SGD takes it (no dampening, no Nesterov, no weight
    decay): b <- g on the first step, else b <- momentum * b + g; w <- w - lr * b. Written out because building
    a torch.optim optimiser imports torch._dynamo (about 2 s once per process) and costs per-step overhead."""
    with torch.no_grad():
        for index, parameter in enumerate(parameters):
            gradient = parameter.grad
            if gradient is None:
                continue
            if settings.momentum != 0:
                buffer = momentum_buffers[index]
                if buffer is None:
                    buffer = torch.clone(gradient).detach()
                    momentum_buffers[index] = buffer
                else:
                    buffer.mul_(settings.momentum).add_(gradient)
                gradient = buffer
            parameter.add_(gradient, alpha=-settings.learning_rate)


@dataclass
class PrivacyLedger:
    """Cumulative privacy spent per provider under basic composition (SPEC A.2, D.5): the sum of per-upload eps."""

    _spent: dict[int, float] = field(default_factory=dict)

    def spend(self, provider_id: int, privacy_budget: float) -> float:
        """Record one upload at budget `privacy_budget`; returns the provider's cumulative epsilon."""
        if privacy_budget < 0:
            raise MarketError(f"privacy_budget: must be >= 0, got {privacy_budget}")
        total = self._spent.get(provider_id, 0.0) + privacy_budget
        self._spent[provider_id] = total
        return total

    def forget(self, provider_id: int) -> None:
        """Drop a departed provider's total (nothing if it never uploaded)."""
        self._spent.pop(provider_id, None)

    def spent(self, provider_id: int) -> float:
        """Cumulative epsilon of `provider_id` so far (0 if it never uploaded)."""
        return self._spent.get(provider_id, 0.0)
