"""The MLP and CNN: shapes, mu0 (hidden layers), seeded initialisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn.utils import parameters_to_vector

from flmarket.market.errors import MarketError
from flmarket.market.fl.models import build_model, torch_generator


@pytest.mark.parametrize("input_shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_models_map_a_batch_to_class_logits(name: str, input_shape: tuple[int, int, int]) -> None:
    model = build_model(name, input_shape, 10, torch.Generator().manual_seed(0))
    assert model(torch.zeros(5, *input_shape)).shape == (5, 10)


def test_mlp_size_and_mu0() -> None:
    model = build_model("mlp", (1, 8, 8), 10, torch.Generator().manual_seed(0), hidden_sizes=(200, 200))
    assert model.hidden_layers == 2  # mu0 of Table 3
    expected = (64 * 200 + 200) + (200 * 200 + 200) + (200 * 10 + 10)
    assert sum(parameter.numel() for parameter in model.parameters()) == expected == 55_210


def test_initialisation_follows_the_generator_only() -> None:
    def weights(seed: int) -> torch.Tensor:
        torch.manual_seed(999 + seed)  # the global state must not matter
        return parameters_to_vector(build_model("cnn", (1, 8, 8), 10, torch.Generator().manual_seed(7)).parameters())

    torch.testing.assert_close(weights(0), weights(1), rtol=0, atol=0)
    first = torch_generator(np.random.default_rng(1)).initial_seed()
    assert first == torch_generator(np.random.default_rng(1)).initial_seed()
    assert first != torch_generator(np.random.default_rng(2)).initial_seed()


def test_bad_model_arguments_are_named() -> None:
    with pytest.raises(MarketError, match="model: must be one of mlp, cnn, got 'rnn'"):
        build_model("rnn", (1, 8, 8), 10, torch.Generator())
    with pytest.raises(MarketError, match="hidden_sizes"):
        build_model("mlp", (1, 8, 8), 10, torch.Generator(), hidden_sizes=())
