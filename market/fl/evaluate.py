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


class CoalitionLosses:
    """Mean cross-entropy H (SPEC A.4) of many coalition aggregates w + c @ U of one round, for the MLP.

    Every FedAvg or FedAdp aggregate of a round is the committed global vector w plus a weighted sum of the
    round's stacked updates U (n x d), its weights one row c of a (k x n) matrix C (SPEC D.4). The MLP is a
    stack of linear layers, so each layer's weight matrix of all k aggregates is W + (C @ U_layer) reshaped,
    and the k forward passes are batched matrix products (`torch.baddbmm`), with no per-coalition Python and
    no functional_call. The first layer is linear in c before its ReLU: when it is cheaper (n x samples <=
    n x inputs + samples x inputs), its pre-activations are X W^T + b + sum_i c_i (X U_i^T + b_i), the n
    projections computed once per round.

    `losses(C)` equals `evaluate` on each aggregate up to float32 rounding (a different summation order).
    """

    def __init__(
        self,
        model: nn.Module,
        global_vector: torch.Tensor,
        updates: torch.Tensor,
        features: torch.Tensor,
        labels: torch.Tensor,
    ) -> None:
        linears = [module for module in model.modules() if isinstance(module, nn.Linear)]
        parameter_count = sum(parameter.numel() for parameter in model.parameters())
        if not linears or sum(layer.weight.numel() + layer.bias.numel() for layer in linears) != parameter_count:
            raise MarketError("model: CoalitionLosses needs a stack of linear layers with biases (the MLP)")
        if labels.shape[0] == 0:
            raise MarketError("labels: the evaluation set must not be empty, got 0 samples")
        if updates.ndim != 2 or updates.shape[1] != parameter_count or global_vector.shape != (parameter_count,):
            raise MarketError(
                f"updates: must be (n, {parameter_count}) beside a ({parameter_count},) global vector, got "
                f"{tuple(updates.shape)} and {tuple(global_vector.shape)}"
            )
        self.labels = labels
        self.update_count = int(updates.shape[0])
        inputs = features.reshape(features.shape[0], -1)
        self._layers: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        start = 0
        for layer in linears:  # parameters_to_vector order: each layer's weight, then its bias
            out_size, in_size = layer.weight.shape
            weight = slice(start, start + out_size * in_size)
            bias = slice(weight.stop, weight.stop + out_size)
            start = bias.stop
            self._layers.append(
                (
                    global_vector[weight].view(out_size, in_size),
                    global_vector[bias],
                    updates[:, weight].contiguous(),
                    updates[:, bias].contiguous(),
                )
            )
        first_weight, first_bias, first_updates, first_bias_updates = self._layers[0]
        out_size, in_size = first_weight.shape
        samples = inputs.shape[0]
        self._inputs = inputs
        self._project_first = self.update_count * samples <= self.update_count * in_size + samples * in_size
        if self._project_first:
            self._first_base = torch.addmm(first_bias, inputs, first_weight.T)  # (samples, out)
            projected = inputs @ first_updates.reshape(self.update_count * out_size, in_size).T  # (samples, n * out)
            projected = projected.view(samples, self.update_count, out_size).transpose(0, 1)
            self._first_projections = (projected + first_bias_updates[:, None, :]).reshape(self.update_count, -1)

    def loss_of(self, weights: torch.Tensor) -> torch.Tensor:
        """H of the one aggregate w + weights @ U ((n,) `weights`), differentiable in `weights`: torch.func takes
        its gradient and curvature along the round's n update directions instead of the d parameters."""
        hidden = self._inputs
        for index, (weight, bias, weight_updates, bias_updates) in enumerate(self._layers):
            out_size, in_size = weight.shape
            if index == 0 and self._project_first:
                hidden = self._first_base + (weights @ self._first_projections).view(-1, out_size)
            else:
                matrix = weight + (weights @ weight_updates).view(out_size, in_size)
                hidden = torch.addmm(bias + weights @ bias_updates, hidden, matrix.T)
            if index < len(self._layers) - 1:
                hidden = torch.relu(hidden)
        return nn.functional.cross_entropy(hidden, self.labels)

    def losses(self, weights: torch.Tensor) -> torch.Tensor:
        """H of each aggregate w + weights[j] @ U, j < k: a (k,) float32 tensor (k x n `weights`)."""
        count = weights.shape[0]
        samples = self._inputs.shape[0]
        hidden = torch.empty(0)
        with torch.no_grad():
            for index, (weight, bias, weight_updates, bias_updates) in enumerate(self._layers):
                out_size, in_size = weight.shape
                biases = torch.addmm(bias, weights, bias_updates)  # (k, out)
                if index == 0 and self._project_first:
                    hidden = torch.addmm(self._first_base.reshape(1, -1), weights, self._first_projections)
                    hidden = hidden.view(count, samples, out_size)
                else:
                    matrices = torch.addmm(weight.reshape(1, -1), weights, weight_updates).view(
                        count, out_size, in_size
                    )
                    previous = self._inputs.expand(count, samples, in_size) if index == 0 else hidden
                    hidden = torch.baddbmm(biases.unsqueeze(1), previous, matrices.transpose(1, 2))
                if index < len(self._layers) - 1:
                    hidden = torch.relu_(hidden)
            logits = hidden.reshape(count * samples, -1)
            per_sample = nn.functional.cross_entropy(logits, self.labels.repeat(count), reduction="none")
            return per_sample.view(count, samples).mean(dim=1)
