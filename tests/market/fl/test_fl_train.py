"""Local SGD, L1 clipping, Laplace perturbation and privacy accounting (SPEC A.2, B 2, B 4, D.5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch.nn.utils import parameters_to_vector

from flmarket.market.errors import MarketError
from flmarket.market.fl.data import load_dataset
from flmarket.market.fl.evaluate import evaluate
from flmarket.market.fl.models import build_model, torch_generator
from flmarket.market.fl.train import (
    PrivacyLedger,
    SGDSettings,
    batch_schedule,
    clip_l1,
    laplace_scale,
    privatise,
    train_local,
)

torch.set_num_threads(1)


@given(
    arrays(np.float64, st.integers(1, 50), elements=st.floats(-100, 100)),
    st.floats(0.01, 10.0),
)
def test_clip_l1_bounds_the_norm_and_keeps_direction(update: np.ndarray, clip: float) -> None:
    clipped = clip_l1(update, clip)
    norm = np.abs(update).sum()
    assert np.abs(clipped).sum() <= clip * (1 + 1e-9)
    if norm <= clip:
        np.testing.assert_array_equal(clipped, update)
    else:
        np.testing.assert_allclose(clipped * norm / clip, update, rtol=1e-9, atol=1e-12)


def test_laplace_scale_is_twice_clip_over_epsilon() -> None:
    assert laplace_scale(1.0, 4.0) == 0.5  # Delta_f = 2 * clip = 2, b = 2 / 4
    assert laplace_scale(0.25, 0.1) == pytest.approx(5.0)
    with pytest.raises(MarketError, match="privacy_budget: must be > 0, got -1"):
        laplace_scale(1.0, -1)


@pytest.mark.parametrize("privacy_budget", [0.5, 3.0, 50.0])
def test_empirical_noise_matches_the_laplace_scale(privacy_budget: float) -> None:
    # A zero update is not changed by clipping, so the upload is pure noise: E|X| = b, sd(|X|) = b.
    samples = 200_000
    upload = privatise(np.zeros(samples), 1.0, privacy_budget, np.random.default_rng(7)).astype(np.float64)
    scale = 2.0 / privacy_budget
    standard_error = scale / np.sqrt(samples)
    assert abs(np.abs(upload).mean() - scale) < 4 * standard_error
    assert abs(upload.mean()) < 4 * np.sqrt(2) * standard_error  # location mu = 0


def test_noise_location_shifts_the_upload() -> None:
    upload = privatise(np.zeros(100_000), 1.0, 10.0, np.random.default_rng(1), noise_location=0.3)
    assert upload.mean() == pytest.approx(0.3, abs=0.005)


def test_privatise_clips_before_adding_noise() -> None:
    big = np.full(1000, 5.0)  # L1 norm 5000
    upload = privatise(big, 1.0, 1e9, np.random.default_rng(0)).astype(np.float64)  # noise ~ 2e-9
    assert np.abs(upload).sum() == pytest.approx(1.0, rel=1e-5)


def test_privacy_ledger_composes_basically() -> None:
    ledger = PrivacyLedger()
    assert ledger.spend(3, 1.5) == 1.5
    assert ledger.spend(3, 2.0) == 3.5
    assert ledger.spend(4, 0.5) == 0.5
    assert ledger.spent(3) == 3.5 and ledger.spent(99) == 0.0


def test_batch_schedule_visits_every_sample_once_per_pass() -> None:
    batches = batch_schedule(10, 3, 6, torch.Generator().manual_seed(0))
    assert [len(batch) for batch in batches] == [3] * 6
    first_pass = torch.cat(batches[:3])
    assert len(set(first_pass.tolist())) == 9  # three disjoint batches, then a reshuffle
    assert all(len(batch) == 4 for batch in batch_schedule(4, 64, 3, torch.Generator().manual_seed(0)))


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
    first = train_local(model, start, features, labels, 20, SGDSettings(), torch.Generator().manual_seed(5))
    torch.testing.assert_close(start, untouched)  # the caller's global vector is never modified
    second = train_local(model, start, features, labels, 20, SGDSettings(), torch.Generator().manual_seed(5))
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    before = evaluate(model, start, features, labels).loss
    after = evaluate(model, first, features, labels).loss
    assert after < before - 0.05


@pytest.mark.slow
def test_central_mlp_reaches_95_percent_on_digits() -> None:
    model, (features, labels, test_features, test_labels) = _digits_setup()
    vector = parameters_to_vector(model.parameters()).detach()
    vector = train_local(model, vector, features, labels, 2500, SGDSettings(), torch.Generator().manual_seed(1))
    result = evaluate(model, vector, test_features, test_labels)
    print(f"central MLP on digits: accuracy {result.accuracy:.4f}, loss {result.loss:.4f}")
    assert result.accuracy >= 0.95
