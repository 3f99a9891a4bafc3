"""Evaluation of a flat parameter vector: mean cross-entropy H (the loss of SPEC A.4) and accuracy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.utils import vector_to_parameters

from flmarket.market.errors import MarketError


@dataclass(frozen=True)
class Evaluation:
    """Mean cross-entropy (nats) and accuracy in [0, 1] of one model on one evaluation set."""

    loss: float
    accuracy: float


def evaluate(
    model: nn.Module,
    vector: torch.Tensor | np.ndarray,
    features: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int = 4096,
) -> Evaluation:
    """Load `vector` into `model` and measure mean cross-entropy H and accuracy on (features, labels)."""
    if labels.shape[0] == 0:
        raise MarketError("labels: the evaluation set must not be empty, got 0 samples")
    parameters = torch.as_tensor(vector, dtype=torch.float32).clone()  # the model must not alias `vector`
    vector_to_parameters(parameters, model.parameters())
    model.eval()
    total_loss = 0.0
    correct = 0
    with torch.no_grad():
        for start in range(0, labels.shape[0], batch_size):
            logits = model(features[start : start + batch_size])
            batch_labels = labels[start : start + batch_size]
            total_loss += float(nn.functional.cross_entropy(logits, batch_labels, reduction="sum"))
            correct += int((logits.argmax(dim=1) == batch_labels).sum())
    count = labels.shape[0]
    return Evaluation(loss=total_loss / count, accuracy=correct / count)
