"""Local SGD, L1 clipping, Laplace perturbation and privacy accounting (SPEC A.2, B 2, B 4, D.5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from flmarket.market.errors import MarketError
from flmarket.market.fl.data import load_dataset
from flmarket.market.fl.evaluate import evaluate
from flmarket.market.fl.models import build_model, torch_generator
from flmarket.market.fl.train import (
    PrivacyLedger,
    SGDSettings,
    epoch_batches,
    expected_perturbed_l1_norm,
    laplace_scale,
    per_record_sensitivity,
    privatise,
    steps_per_epoch,
    train_local,
)

torch.set_num_threads(1)


def test_laplace_scale_is_the_sensitivity_over_epsilon() -> None:
    assert laplace_scale(1e-4, 4.0) == pytest.approx(2.5e-5)  # b = Delta_f / eps (B 4)
    assert laplace_scale(0.25, 0.1) == pytest.approx(2.5)
    with pytest.raises(MarketError, match="privacy_budget: must be > 0, got -1"):
        laplace_scale(1.0, -1)
    with pytest.raises(MarketError, match="sensitivity: must be > 0, got 0"):
        laplace_scale(0, 1.0)


@pytest.mark.parametrize("privacy_budget", [0.5, 3.0, 50.0])
def test_empirical_noise_matches_the_laplace_scale(privacy_budget: float) -> None:
    # A zero update is pure noise: E|X| = b, sd(|X|) = b.
    samples = 200_000
    upload = privatise(np.zeros(samples), 2.0, privacy_budget, np.random.default_rng(7)).astype(np.float64)
    scale = 2.0 / privacy_budget
    standard_error = scale / np.sqrt(samples)
    assert abs(np.abs(upload).mean() - scale) < 4 * standard_error
    assert abs(upload.mean()) < 4 * np.sqrt(2) * standard_error  # location mu = 0


def test_noise_location_shifts_the_upload() -> None:
    upload = privatise(np.zeros(100_000), 1.0, 10.0, np.random.default_rng(1), noise_location=0.3)
    assert upload.mean() == pytest.approx(0.3, abs=0.005)


def test_privatise_does_not_clip_the_update() -> None:
    big = np.full(1000, 5.0)  # L1 norm 5000: kept whole (SPEC A.2 revised), noise ~ 1e-13 per coordinate
    upload = privatise(big, 1e-4, 1e9, np.random.default_rng(0)).astype(np.float64)
    assert np.abs(upload).sum() == pytest.approx(5000.0, rel=1e-6)


@pytest.mark.parametrize(("update_l1", "scale"), [(0.0, 0.01), (50.0, 1e-3), (500.0, 1e-4)])
def test_expected_perturbed_l1_norm_matches_simulation(update_l1: float, scale: float) -> None:
    coordinates = 20_000
    update = np.full(coordinates, update_l1 / coordinates)
    rng = np.random.default_rng(3)
    simulated = np.mean([np.abs(update + rng.laplace(0, scale, coordinates)).sum() for _ in range(20)])
    expected = expected_perturbed_l1_norm(update_l1, coordinates, scale)
    assert expected == pytest.approx(simulated, rel=2e-3)
    assert max(update_l1, coordinates * scale) <= expected <= update_l1 + coordinates * scale + 1e-9


def test_per_record_sensitivity_by_hand() -> None:
    # 2 * lr * clip * steps / |D_i| (SPEC A.2): 2 * 0.05 * 1 * 3 / 144 = 1/480; momentum 0.5 doubles it.
    assert per_record_sensitivity(0.05, 1.0, 3, 144) == pytest.approx(1 / 480)
    assert per_record_sensitivity(0.05, 1.0, 3, 144, momentum=0.5) == pytest.approx(2 / 480)
    assert steps_per_epoch(144, 64) == 3 and steps_per_epoch(64, 64) == 1 and steps_per_epoch(10, 64) == 1


def test_privacy_ledger_composes_basically() -> None:
    ledger = PrivacyLedger()
    assert ledger.spend(3, 1.5) == 1.5
    assert ledger.spend(3, 2.0) == 3.5
    assert ledger.spend(4, 0.5) == 0.5
    assert ledger.spent(3) == 3.5 and ledger.spent(99) == 0.0


def test_epoch_batches_visit_every_sample_once_per_epoch() -> None:
    batches = epoch_batches(10, 3, 2, torch.Generator().manual_seed(0))
    assert [len(batch) for batch in batches] == [3, 3, 3, 1] * 2  # ceil(10 / 3) = 4 steps per epoch
    for epoch in range(2):
        assert sorted(torch.cat(batches[4 * epoch : 4 * epoch + 4]).tolist()) == list(range(10))
    assert [len(batch) for batch in epoch_batches(4, 64, 3, torch.Generator().manual_seed(0))] == [4, 4, 4]


def _digits_setup(seed: int = 0):
    rng = np.random.default_rng(seed)
    split = load_dataset("digits", rng)
    model = build_model("mlp", split.train.input_shape, 10, torch_generator(rng))
    tensors = [
        torch.from_numpy(part)
        for part in (split.train.features, split.train.labels, split.test.features, split.test.labels)
    ]
    return model, tensors


def test_local_training_descends_and_is_seeded() -> None:
    model, (features, labels, test_features, test_labels) = _digits_setup()
    start = parameters_to_vector(model.parameters()).detach().clone()
    untouched = start.clone()
    first = train_local(model, start, features, labels, 1, SGDSettings(), torch.Generator().manual_seed(5))
    torch.testing.assert_close(start, untouched)  # the caller's global vector is never modified
    second = train_local(model, start, features, labels, 1, SGDSettings(), torch.Generator().manual_seed(5))
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    before = evaluate(model, start, features, labels).loss
    after = evaluate(model, first, features, labels).loss
    assert after < before - 0.05


@pytest.mark.parametrize("momentum", [0.5, 0.0])
def test_local_training_takes_torch_optim_sgds_steps_exactly(momentum: float) -> None:
    """train_local's written-out heavy-ball step gives the same bits as torch.optim.SGD over the same batches
    (3 epochs, so the momentum buffer carries over many steps)."""
    model, (features, labels, _, _) = _digits_setup()
    features, labels = features[:150], labels[:150]
    start = parameters_to_vector(model.parameters()).detach().clone()
    settings = SGDSettings(learning_rate=0.05, momentum=momentum, batch_size=32)
    trained = train_local(model, start, features, labels, 3, settings, torch.Generator().manual_seed(2))
    vector_to_parameters(start.clone(), model.parameters())
    model.train()
    optimiser = torch.optim.SGD(model.parameters(), lr=settings.learning_rate, momentum=settings.momentum)
    for batch in epoch_batches(150, 32, 3, torch.Generator().manual_seed(2)):
        optimiser.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(features[batch]), labels[batch]).backward()
        optimiser.step()
    torch.testing.assert_close(trained, parameters_to_vector(model.parameters()).detach(), rtol=0, atol=0)


@pytest.mark.slow
def test_central_mlp_reaches_95_percent_on_digits() -> None:
    model, (features, labels, test_features, test_labels) = _digits_setup()
    vector = parameters_to_vector(model.parameters()).detach()
    vector = train_local(model, vector, features, labels, 110, SGDSettings(), torch.Generator().manual_seed(1))
    result = evaluate(model, vector, test_features, test_labels)
    print(f"central MLP on digits: accuracy {result.accuracy:.4f}, loss {result.loss:.4f}")
    assert result.accuracy >= 0.95


def test_per_record_clipping_bounds_each_records_step() -> None:
    """With record_clip, one SGD step (momentum 0) moves w by at most lr * clip * |b| / |b| in L1, and a
    record's removal changes the step by at most lr * clip / |b| (the per-record sensitivity's premise)."""
    model, (features, labels, _, _) = _digits_setup()
    start = parameters_to_vector(model.parameters()).detach().clone()
    settings = SGDSettings(learning_rate=0.1, momentum=0.0, batch_size=8)
    batch_features, batch_labels = features[:8], labels[:8]
    step = train_local(model, start, batch_features, batch_labels, 1, settings, torch.Generator(), record_clip=0.5)
    assert float((step - start).abs().sum()) <= 0.1 * 0.5 * (1 + 1e-5)
    # unclipped per-record gradients are far larger than 0.5 in L1, so clipping bites
    unclipped = train_local(model, start, batch_features, batch_labels, 1, settings, torch.Generator())
    assert float((unclipped - start).abs().sum()) > 0.1 * 0.5 * 2
    # removing record 0 (7 records, divisor 7 vs 8): the L1 change is bounded by the formula's 2 lr clip / |b|
    without = train_local(model, start, features[1:8], labels[1:8], 1, settings, torch.Generator(), record_clip=0.5)
    rescaled = start + (without - start) * 7 / 8  # the same divisor 8 for both
    assert float((step - rescaled).abs().sum()) <= 2 * 0.1 * 0.5 / 8 * (1 + 1e-4)
