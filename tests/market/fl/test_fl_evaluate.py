"""Batched coalition losses of the MLP (`evaluate.CoalitionLosses`) against one `evaluate` call per aggregate."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils import parameters_to_vector

from flmarket.market.errors import MarketError
from flmarket.market.fl.evaluate import CoalitionLosses, evaluate
from flmarket.market.fl.models import build_model

torch.set_num_threads(1)


def _round(update_count: int, samples: int, inputs: int = 12, hidden: tuple[int, ...] = (9, 7)):
    generator = torch.Generator().manual_seed(update_count)
    model = build_model("mlp", (inputs,), 4, generator, hidden)
    global_vector = parameters_to_vector(model.parameters()).detach().clone()
    updates = 0.3 * torch.randn(update_count, global_vector.numel(), generator=generator)
    features = torch.randn(samples, inputs, generator=generator)
    labels = torch.randint(0, 4, (samples,), generator=generator)
    return model, global_vector, updates, features, labels


@pytest.mark.parametrize(("update_count", "samples"), [(3, 5), (40, 30), (1, 2)])
def test_each_row_is_the_loss_of_its_aggregate(update_count: int, samples: int) -> None:
    """Row j of C gives H(w + C_j @ U) as `evaluate` computes it on the model loaded with that vector; (3, 5)
    takes the first layer's projections (n x samples small), (40, 30) the weight matrices of every layer."""
    model, global_vector, updates, features, labels = _round(update_count, samples)
    losses = CoalitionLosses(model, global_vector, updates, features, labels)
    assert losses._project_first == (update_count != 40)
    weights = torch.rand(7, update_count, generator=torch.Generator().manual_seed(5))
    weights[0] = 0.0  # the global model itself
    weights[1] = torch.nn.functional.one_hot(torch.tensor(0), update_count)  # w + u_0
    batched = losses.losses(weights)
    assert batched.shape == (7,)
    for row in range(7):
        aggregate = (global_vector.double() + weights[row].double() @ updates.double()).float()
        assert float(batched[row]) == pytest.approx(evaluate(model, aggregate, features, labels).loss, rel=1e-5)


def test_rejects_what_it_cannot_batch() -> None:
    model, global_vector, updates, features, labels = _round(2, 4)
    with pytest.raises(MarketError, match="updates: must be"):
        CoalitionLosses(model, global_vector, updates[:, :-1], features, labels)
    with pytest.raises(MarketError, match="labels: the evaluation set must not be empty"):
        CoalitionLosses(model, global_vector, updates, features[:0], labels[:0])
    cnn = build_model("cnn", (1, 8, 8), 4, torch.Generator().manual_seed(0))
    vector = parameters_to_vector(cnn.parameters()).detach()
    with pytest.raises(MarketError, match="model: CoalitionLosses needs a stack of linear layers"):
        CoalitionLosses(cnn, vector, vector.unsqueeze(0), torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long))
