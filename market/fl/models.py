"""The networks trained by the federation: the paper's MLP and a small CNN (SPEC A.9), seeded explicitly.

Each model records `hidden_layers` (mu0 of the quality function, SPEC A.4) and `num_classes` (mu1). Parameters
are initialised from a caller's `torch.Generator`, never from torch's global random state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from flmarket.market.errors import MarketError

MODEL_NAMES = ("mlp", "cnn")


class MLP(nn.Module):
    """Fully connected network with ReLU hidden layers (the paper's MLP; two hidden layers give mu0 = 2)."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, hidden_sizes: Sequence[int] = (200, 200)):
        super().__init__()
        if not hidden_sizes or any(size < 1 for size in hidden_sizes):
            raise MarketError(f"hidden_sizes: must be a non-empty list of positive sizes, got {tuple(hidden_sizes)}")
        input_size = math.prod(input_shape)
        layers: list[nn.Module] = [nn.Flatten()]
        previous = input_size
        for size in hidden_sizes:
            layers += [nn.Linear(previous, size), nn.ReLU()]
            previous = size
        layers.append(nn.Linear(previous, num_classes))
        self.network = nn.Sequential(*layers)
        self.hidden_layers = len(hidden_sizes)
        self.num_classes = num_classes

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.network(inputs)


class CNN(nn.Module):
    """Two 3x3 convolution blocks (ReLU, 2x2 max-pool) and a ReLU hidden linear layer (mu0 = 3)."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (16, 32),
        hidden_size: int = 64,
    ):
        super().__init__()
        in_channels, height, width = input_shape
        if len(channels) != 2 or any(count < 1 for count in channels):
            raise MarketError(f"channels: must be two positive channel counts, got {tuple(channels)}")
        if height < 4 or width < 4:
            raise MarketError(f"input_shape: height and width must be >= 4 for two 2x2 pools, got {input_shape}")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, channels[0], kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(channels[0], channels[1], kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        flat = channels[1] * (height // 4) * (width // 4)
        self.classifier = nn.Sequential(nn.Linear(flat, hidden_size), nn.ReLU(), nn.Linear(hidden_size, num_classes))
        self.hidden_layers = 3
        self.num_classes = num_classes

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(inputs))


def initialise_parameters(model: nn.Module, generator: torch.Generator) -> None:
    """PyTorch's default Linear/Conv initialisation, drawn from `generator` (same seed, same weights)."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear | nn.Conv2d):
                nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
                if module.bias is not None:
                    fan_in = module.weight[0].numel()
                    bound = 1.0 / math.sqrt(fan_in)
                    nn.init.uniform_(module.bias, -bound, bound, generator=generator)


def build_model(
    name: str,
    input_shape: Sequence[int],
    num_classes: int,
    generator: torch.Generator,
    hidden_sizes: Sequence[int] = (200, 200),
) -> nn.Module:
    """The model `name` (mlp or cnn) sized by the input shape and number of classes, seeded by `generator`."""
    if num_classes < 2:
        raise MarketError(f"num_classes: must be >= 2, got {num_classes}")
    if name == "mlp":
        model: nn.Module = MLP(input_shape, num_classes, hidden_sizes)
    elif name == "cnn":
        model = CNN(input_shape, num_classes)
    else:
        raise MarketError(f"model: must be one of {', '.join(MODEL_NAMES)}, got {name!r}")
    initialise_parameters(model, generator)
    return model


def torch_generator(rng: np.random.Generator) -> torch.Generator:
    """A torch.Generator seeded from one 63-bit draw of the numpy Generator `rng`."""
    return torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))
