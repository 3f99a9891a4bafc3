"""The torch learning backend: real federated training on a partitioned data set (SPEC A.2, A.4, A.5, D.4-5).

Providers train the global model locally with SGD, upload clipped and Laplace-perturbed differences, and the
platform aggregates them with FedAvg, FedAdp or a FedAsync-style mix. Coalition values aggregate subsets of
the round's stored updates with the same rule and evaluate them on the held-out set, with no retraining.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch
from torch.nn.utils import parameters_to_vector

from flmarket.market.errors import MarketError
from flmarket.market.fl.aggregate import FedAdpState, fedadp, fedasync_mix, fedavg
from flmarket.market.fl.backend import (
    BackendConfig,
    LocalUpdate,
    RoundResult,
    check_upload_request,
    disguised_sigma,
)
from flmarket.market.fl.data import load_dataset, partition
from flmarket.market.fl.evaluate import Evaluation, evaluate
from flmarket.market.fl.models import build_model, torch_generator
from flmarket.market.fl.train import PrivacyLedger, SGDSettings, privatise, train_local
from flmarket.market.fl.value import CoalitionValue
from flmarket.market.quality import QualityParameters, model_quality


def vector_digest(vector: np.ndarray) -> str:
    """SHA-256 hex of a flat float32 vector's bytes (the digest written to the ledger)."""
    return hashlib.sha256(np.ascontiguousarray(vector, dtype=np.float32).tobytes()).hexdigest()


class TorchBackend:
    """LearningBackend with real training (see module docstring).

    The training set is partitioned into `config.providers` shards when the backend is built; providers get
    the shards in registration order. Seeds: the data split, the partition and each task's w0 come from
    independent streams of `config.seed`, so the same seed gives the same run.
    """

    name = "torch"

    def __init__(self, config: BackendConfig) -> None:
        if config.torch_threads is not None:
            torch.set_num_threads(config.torch_threads)
        self.config = config
        split_seed, partition_seed = np.random.SeedSequence(config.seed).spawn(2)
        split = load_dataset(config.dataset, np.random.default_rng(split_seed), config.root, config.verify_checksums)
        self.dataset_digest = split.train.digest()
        self.partition = partition(
            config.partition,
            split.train.labels,
            config.providers,
            np.random.default_rng(partition_seed),
            alpha=config.alpha,
            min_size=config.min_partition_size,
            dataset_digest=self.dataset_digest,
        )
        self._train_features = torch.from_numpy(split.train.features)
        self._train_labels = torch.from_numpy(split.train.labels)
        self._test_features = torch.from_numpy(split.test.features)
        self._test_labels = torch.from_numpy(split.test.labels)
        self.num_classes = split.train.num_classes
        self.input_shape = split.train.input_shape
        self.model = build_model(
            config.model,
            self.input_shape,
            self.num_classes,
            torch.Generator().manual_seed(0),
            config.hidden_sizes,
        )
        self.hidden_layers: int = self.model.hidden_layers
        self.quality_parameters = QualityParameters(self.hidden_layers, self.num_classes)
        self.settings = SGDSettings(config.learning_rate, config.momentum, config.batch_size)
        self.privacy = PrivacyLedger()
        self._shard_of: dict[int, int] = {}
        self._task_id: int | None = None
        self.round_index = 0
        self.global_vector = np.zeros(0, dtype=np.float32)
        self._global_history: dict[int, np.ndarray] = {}
        self._fedadp_state = FedAdpState()
        self._last_honest: dict[int, tuple[np.ndarray, int]] = {}
        self._upload_base: dict[int, tuple[str, int]] = {}
        self._evaluation = Evaluation(loss=0.0, accuracy=0.0)
        self._quality = 0.0

    # --- providers and tasks -------------------------------------------------------------------------
    def register_provider(self, provider_id: int, rng: np.random.Generator) -> int:
        """Give `provider_id` the next unassigned shard (registration order; `rng` is not drawn from)."""
        if provider_id in self._shard_of:
            raise MarketError(f"provider_id: {provider_id} is already registered")
        shard = len(self._shard_of)
        if shard >= len(self.partition.shards):
            raise MarketError(
                f"providers: the partition has {len(self.partition.shards)} shards, all assigned; "
                f"raise BackendConfig.providers to register provider {provider_id}"
            )
        self._shard_of[provider_id] = shard
        return int(self.partition.shards[shard].size)

    def _shard(self, provider_id: int) -> np.ndarray:
        shard = self._shard_of.get(provider_id)
        if shard is None:
            raise MarketError(f"provider_id: {provider_id} is not registered")
        return self.partition.shards[shard]

    def _evaluate(self, vector: np.ndarray) -> tuple[Evaluation, float]:
        evaluation = evaluate(self.model, vector, self._test_features, self._test_labels)
        quality = float(model_quality(self.config.freshness, evaluation.loss, self.quality_parameters))
        return evaluation, quality

    def _set_global(self, vector: np.ndarray, participants: tuple[int, ...]) -> RoundResult:
        self.global_vector = np.asarray(vector, dtype=np.float32)
        self._global_history[self.round_index] = self.global_vector
        self._evaluation, self._quality = self._evaluate(self.global_vector)
        return RoundResult(
            round_index=self.round_index,
            participants=participants,
            quality=self._quality,
            loss=self._evaluation.loss,
            accuracy=self._evaluation.accuracy,
            model_digest=vector_digest(self.global_vector),
        )

    def start_task(self, task_id: int) -> RoundResult:
        """Reset to the task's initial model w0 (seeded by config.seed and task_id) and evaluate it."""
        generator = torch_generator(np.random.default_rng([self.config.seed, 2, task_id]))
        fresh = build_model(self.config.model, self.input_shape, self.num_classes, generator, self.config.hidden_sizes)
        self._task_id = task_id
        self.round_index = 0
        self._global_history.clear()
        self._fedadp_state = FedAdpState()
        self._last_honest.clear()
        self._upload_base.clear()
        return self._set_global(parameters_to_vector(fresh.parameters()).detach().numpy(), ())

    # --- uploads ---------------------------------------------------------------------------------------
    def local_update(
        self,
        provider_id: int,
        local_iterations: int,
        privacy_budget: float | None,
        behaviour: str,
        rng: np.random.Generator,
    ) -> LocalUpdate:
        """Honest: SGD from the global model, then clip + Laplace if `privacy_budget` is set (SPEC A.2).

        Free riders (SPEC D.5) use no data and spend no privacy: plain uploads a zero update (the global model
        unchanged), disguised uploads Gaussian noise of decaying sigma, stale re-sends its last honest update
        (a zero update if it has none).
        """
        check_upload_request(self._task_id, local_iterations, privacy_budget, behaviour)
        shard = self._shard(provider_id)
        privacy_spent = 0.0
        base_round = self.round_index
        if behaviour == "honest":
            generator = torch_generator(rng)
            local = train_local(
                self.model,
                torch.from_numpy(self.global_vector),
                self._train_features[shard],
                self._train_labels[shard],
                local_iterations,
                self.settings,
                generator,
            )
            vector = local.numpy() - self.global_vector
            if privacy_budget is not None:
                vector = privatise(vector, self.config.clip, privacy_budget, rng, self.config.noise_location)
                privacy_spent = privacy_budget
                self.privacy.spend(provider_id, privacy_budget)
            self._last_honest[provider_id] = (vector, self.round_index)
        elif behaviour == "disguised":
            sigma = disguised_sigma(self.config, self.round_index)
            vector = rng.normal(0.0, sigma, size=self.global_vector.shape).astype(np.float32)
        elif behaviour == "stale" and provider_id in self._last_honest:
            vector, base_round = self._last_honest[provider_id]
        else:
            vector = np.zeros_like(self.global_vector)
        vector = np.asarray(vector, dtype=np.float32)
        digest = vector_digest(vector)
        self._upload_base[provider_id] = (digest, base_round)
        return LocalUpdate(
            provider_id=provider_id,
            data_size=int(shard.size),
            local_iterations=local_iterations,
            l1_norm=float(np.abs(vector, dtype=np.float64).sum()),
            digest=digest,
            privacy_spent=privacy_spent,
            behaviour=behaviour,
            vector=vector,
        )

    def privacy_spent_total(self, provider_id: int) -> float:
        """Cumulative epsilon of `provider_id` under basic composition (SPEC D.5)."""
        return self.privacy.spent(provider_id)

    # --- aggregation and values ----------------------------------------------------------------------
    @staticmethod
    def _check_updates(updates: Sequence[LocalUpdate]) -> None:
        seen: set[int] = set()
        for update in updates:
            if update.vector is None:
                raise MarketError(f"updates: provider {update.provider_id}'s update carries no vector")
            if update.provider_id in seen:
                raise MarketError(f"updates: provider {update.provider_id} uploaded twice in one round")
            seen.add(update.provider_id)

    def _aggregate(self, updates: Sequence[LocalUpdate]) -> tuple[np.ndarray, FedAdpState]:
        """The configured rule applied to `updates` from the committed global model and FedAdp state."""
        vectors = [update.vector for update in updates]
        sizes = [update.data_size for update in updates]
        if self.config.aggregation == "fedavg":
            return fedavg(self.global_vector, vectors, sizes), self._fedadp_state
        if self.config.aggregation == "fedadp":
            ids = [update.provider_id for update in updates]
            return fedadp(self.global_vector, self._fedadp_state, ids, vectors, sizes)
        mixed = np.asarray(self.global_vector, dtype=np.float64)
        for update in updates:
            digest, base_round = self._upload_base.get(update.provider_id, (update.digest, self.round_index))
            if digest != update.digest:
                base_round = self.round_index
            base = self._global_history.get(base_round, self.global_vector)
            local_model = base.astype(np.float64) + update.vector
            mixed = fedasync_mix(
                mixed,
                local_model,
                self.round_index - base_round,
                self.config.fedasync_mixing,
                self.config.fedasync_staleness_exponent,
            )
        return mixed, self._fedadp_state

    def coalition_value(self, updates: Sequence[LocalUpdate]) -> CoalitionValue:
        """v(S) = Q(aggregate of S's updates) - Q(current global model) (SPEC A.5), cached by frozenset."""
        self._check_updates(updates)
        by_provider = {update.provider_id: update for update in updates}
        order = [update.provider_id for update in updates]
        base_quality = self._quality

        def value_of(coalition: frozenset[int]) -> float:
            members = [by_provider[provider] for provider in order if provider in coalition]
            vector, _ = self._aggregate(members)
            _, quality = self._evaluate(np.asarray(vector, dtype=np.float32))
            return quality - base_quality

        return CoalitionValue(order, value_of)

    def commit_round(self, updates: Sequence[LocalUpdate]) -> RoundResult:
        """Aggregate `updates` into the global model, advance the round, evaluate (no updates: w is kept)."""
        if self._task_id is None:
            raise MarketError("task: call start_task before commit_round")
        self._check_updates(updates)
        if updates:
            vector, self._fedadp_state = self._aggregate(updates)
        else:
            vector = self.global_vector
        self.round_index += 1
        return self._set_global(vector, tuple(update.provider_id for update in updates))

    @property
    def evaluation(self) -> Evaluation:
        """Loss and accuracy of the current global model on the held-out set."""
        return self._evaluation
