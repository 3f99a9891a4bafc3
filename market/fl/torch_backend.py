"""The torch learning backend: real federated training on a partitioned data set (SPEC A.2, A.4, A.5, D.4-5).

Providers train the global model locally for whole epochs with SGD and upload the difference u = w_local -
w_global perturbed once with Laplace noise of scale Delta_f / eps per coordinate (SPEC A.2 revised; with
`sensitivity = "per_record"` the per-record gradients are clipped and Delta_f is their bound, formal DP). The
platform aggregates them with FedAvg, FedAdp or a FedAsync-style mix. Coalition values aggregate subsets of
the round's stored updates with the same rule and evaluate them on a fixed held-out validation subset, with no
retraining, batched (see `TorchCoalitionValue`); their second-order Taylor model about the mean update is the
control variate of sampled Shapley values (`TorchCoalitionValue.control_game`).
"""

from __future__ import annotations

import hashlib
import heapq
import math
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, jacfwd, jvp, vmap
from torch.nn.utils import parameters_to_vector

from flmarket.market.errors import MarketError, TrainingDivergedError
from flmarket.market.fl.aggregate import FedAdpState, fedadp, fedadp_coalition_weights, fedasync_mix, fedavg
from flmarket.market.fl.backend import (
    BackendConfig,
    LocalUpdate,
    RoundResult,
    check_upload_request,
    disguised_sigma,
)
from flmarket.market.fl.data import load_dataset, partition
from flmarket.market.fl.evaluate import CoalitionLosses, Evaluation, evaluate
from flmarket.market.fl.models import MLP, build_model, torch_generator
from flmarket.market.fl.privacy import PER_RECORD, upload_sensitivity
from flmarket.market.fl.train import PrivacyLedger, SGDSettings, privatise, train_local
from flmarket.market.fl.value import CoalitionValue
from flmarket.market.quality import QualityParameters, model_quality
from flmarket.market.shapley import QuadraticMeanGame

COALITION_BATCH = 32
"""Coalitions evaluated per batched forward pass (32 x 55,210 floats = 7 MB of aggregated weights)."""


def vector_digest(vector: np.ndarray) -> str:
    """SHA-256 hex of a flat float32 vector's bytes (the digest written to the ledger)."""
    return hashlib.sha256(np.ascontiguousarray(vector, dtype=np.float32).tobytes()).hexdigest()


class TorchBackend:
    """LearningBackend with real training (see module docstring).

    The training set is partitioned into `config.providers` shards when the backend is built; providers get
    the shards in registration order. A departed provider's shard returns to the pool (`forget_provider`); once
    every shard has been handed out, a provider who joins gets the lowest-numbered returned one, so the shards
    limit the providers online at once, not those who ever joined. Seeds: the data split, the partition and each
    task's w0 come from independent streams of `config.seed`, so the same seed gives the same run.
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
        self._next_shard = 0  # shards below it have been handed out at least once
        self._returned_shards: list[int] = []  # a heap of the shards departed providers gave back
        self._task_id: int | None = None
        self.round_index = 0
        self.global_vector = np.zeros(0, dtype=np.float32)
        self._global_history: dict[int, np.ndarray] = {}
        self._fedadp_state = FedAdpState()
        self._last_honest: dict[int, tuple[np.ndarray, int]] = {}
        self._upload_base: dict[int, tuple[str, int]] = {}
        self._evaluation = Evaluation(loss=0.0, accuracy=0.0)
        self._quality = 0.0
        validation = np.arange(self._test_labels.shape[0])
        if config.validation_size is not None and config.validation_size < validation.size:
            validation_rng = np.random.default_rng([config.seed, 3])
            validation = np.sort(validation_rng.choice(validation.size, config.validation_size, replace=False))
        self.validation_features = self._test_features[torch.from_numpy(validation)]
        self.validation_labels = self._test_labels[torch.from_numpy(validation)]
        self._parameter_shapes = [(name, parameter.shape) for name, parameter in self.model.named_parameters()]

    # --- providers and tasks -------------------------------------------------------------------------
    def register_provider(self, provider_id: int, rng: np.random.Generator) -> int:
        """Give `provider_id` the next shard never handed out (registration order), or once there is none the
        lowest-numbered shard a departed provider returned; `rng` is not drawn from."""
        if provider_id in self._shard_of:
            raise MarketError(f"provider_id: {provider_id} is already registered")
        if self._next_shard < len(self.partition.shards):
            shard = self._next_shard
            self._next_shard += 1
        elif self._returned_shards:
            shard = heapq.heappop(self._returned_shards)
        else:
            raise MarketError(
                f"providers: all {len(self.partition.shards)} shards are held by providers online now; raise the "
                f"shard count (learning.shards in a scenario) above the largest population the run reaches to "
                f"register provider {provider_id}"
            )
        self._shard_of[provider_id] = shard
        return int(self.partition.shards[shard].size)

    def forget_provider(self, provider_id: int) -> None:
        """Return a departed provider's shard to the pool and drop its privacy total and last honest update.
        Its uploads already sent keep their base round (`_upload_base`, cleared at the next task's start).

        A later provider given the shard trains on records the departed one released before; `privacy_spent_total`
        counts each provider's own releases (SPEC D.5), not the records'."""
        shard = self._shard_of.pop(provider_id, None)
        if shard is None:
            raise MarketError(f"provider_id: {provider_id} is not registered")
        heapq.heappush(self._returned_shards, shard)
        self.privacy.forget(provider_id)
        self._last_honest.pop(provider_id, None)

    def _shard(self, provider_id: int) -> np.ndarray:
        shard = self._shard_of.get(provider_id)
        if shard is None:
            raise MarketError(f"provider_id: {provider_id} is not registered")
        return self.partition.shards[shard]

    def _evaluate(self, vector: np.ndarray) -> tuple[Evaluation, float]:
        evaluation = evaluate(self.model, vector, self._test_features, self._test_labels)
        quality = float(model_quality(self.config.freshness, evaluation.loss, self.quality_parameters))
        return evaluation, quality

    def validation_qualities(self, vectors: torch.Tensor) -> np.ndarray:
        """Q (B 7) of each row of `vectors` (k x d parameter vectors) on the validation subset, in one batched
        forward pass (torch.func.functional_call under vmap)."""
        labels = self.validation_labels
        features = self.validation_features

        def losses_of(vector: torch.Tensor) -> torch.Tensor:
            parameters = {}
            start = 0
            for name, shape in self._parameter_shapes:
                size = math.prod(shape)
                parameters[name] = vector[start : start + size].view(shape)
                start += size
            logits = functional_call(self.model, parameters, (features,))
            return nn.functional.cross_entropy(logits, labels)

        self.model.eval()
        with torch.no_grad():
            if vectors.shape[0] == 1:  # one coalition (sampled Shapley asks one at a time): vmap's overhead is 3 ms
                losses = losses_of(vectors[0]).reshape(1)
            else:
                losses = vmap(losses_of)(vectors)
        return self.qualities_of_losses(losses)

    def qualities_of_losses(self, losses: torch.Tensor) -> np.ndarray:
        """Q (B 7) of validation losses H (a tensor of any shape), as float64."""
        values = losses.double().numpy()
        return np.asarray(model_quality(self.config.freshness, values, self.quality_parameters), dtype=float)

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
        """Honest: `local_iterations` local epochs of SGD from the global model, then Laplace noise of scale
        Delta_f / eps per coordinate if `privacy_budget` is set (SPEC A.2).

        Free riders (SPEC D.5) use no data and spend no privacy: plain uploads a zero update (the global model
        unchanged), disguised uploads Gaussian noise of decaying sigma, stale re-sends an old update: its own last
        honest one, or, for a provider that never trained (an ALLD free rider), the global model's last change
        w^r - w^(r-1), the "delta weights" free rider of Lin et al. (2019); a zero update in a task's first round.
        """
        check_upload_request(self._task_id, local_iterations, privacy_budget, behaviour)
        shard = self._shard(provider_id)
        privacy_spent = 0.0
        base_round = self.round_index
        if behaviour == "honest":
            generator = torch_generator(rng)
            formal = privacy_budget is not None and self.config.sensitivity == PER_RECORD
            local = train_local(
                self.model,
                torch.from_numpy(self.global_vector),
                self._train_features[shard],
                self._train_labels[shard],
                local_iterations,
                self.settings,
                generator,
                record_clip=self.config.clip if formal else None,
            )
            vector = local.numpy() - self.global_vector
            if not np.isfinite(vector).all():
                raise self._diverged(f"provider {provider_id}'s local training gave a non-finite model")
            if privacy_budget is not None:
                sensitivity = self.upload_sensitivity(local_iterations, int(shard.size))
                vector = privatise(vector, sensitivity, privacy_budget, rng, self.config.noise_location)
                privacy_spent = privacy_budget
            self._last_honest[provider_id] = (vector, self.round_index)
        elif behaviour == "disguised":
            sigma = disguised_sigma(self.config, self.round_index)
            vector = rng.normal(0.0, sigma, size=self.global_vector.shape).astype(np.float32)
        elif behaviour == "stale" and provider_id in self._last_honest:
            vector, base_round = self._last_honest[provider_id]
        elif behaviour == "stale" and self.round_index - 1 in self._global_history:
            base_round = self.round_index - 1
            vector = self._global_history[self.round_index] - self._global_history[base_round]
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
            privacy_spent_total=self.privacy.spent(provider_id) + privacy_spent,
        )

    def upload_sensitivity(self, epochs: int, sample_count: int) -> float:
        """Delta_f of an upload after `epochs` local epochs on `sample_count` records (SPEC A.2)."""
        config = self.config
        return upload_sensitivity(
            config.sensitivity,
            config.learning_rate,
            config.clip,
            epochs,
            sample_count,
            config.batch_size,
            config.momentum,
        )

    def record_release(self, update: LocalUpdate) -> None:
        """The provider sent `update`: its epsilon counts from now on (basic composition over releases, SPEC D.5)."""
        if update.provider_id not in self._shard_of:
            raise MarketError(f"provider_id: {update.provider_id} is not registered")
        if update.privacy_spent > 0:
            self.privacy.spend(update.provider_id, update.privacy_spent)

    def privacy_spent_total(self, provider_id: int) -> float:
        """Cumulative epsilon of `provider_id`'s released updates under basic composition (SPEC D.5)."""
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

    def coalition_value(self, updates: Sequence[LocalUpdate]) -> TorchCoalitionValue:
        """v(S) = Q_V(aggregate of S's updates) - Q_V(current global model) (SPEC A.5), Q_V on the fixed
        validation subset; cached by frozenset, batched by `TorchCoalitionValue.values_of`."""
        self._check_updates(updates)
        return TorchCoalitionValue(self, updates)

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
        result = self._set_global(vector, tuple(update.provider_id for update in updates))
        if not (math.isfinite(result.loss) and np.isfinite(self.global_vector).all()):
            raise self._diverged(f"the aggregated model's loss is {result.loss}")
        return result

    def _diverged(self, what: str) -> TrainingDivergedError:
        """The error for a run whose training stopped being finite, with the settings that cause it."""
        config = self.config
        return TrainingDivergedError(
            f"training diverged in task {self._task_id}, round {self.round_index}: {what}. With "
            f"learning.sensitivity = {config.sensitivity!r} the Laplace noise on each coordinate has scale "
            f"Delta_f / eps_i, and learning.learning_rate = {config.learning_rate:g}: lower one of them (`flmarket "
            "calibrate` measures a learning rate that trains)"
        )

    @property
    def evaluation(self) -> Evaluation:
        """Loss and accuracy of the current global model on the held-out set."""
        return self._evaluation


class TorchCoalitionValue(CoalitionValue):
    """v(S) of SPEC A.5 on the torch backend, for one round's updates, cached by frozenset.

    v(S) = Q_V(w_G(S)) - Q_V(w_G^{r-1}), Q_V the quality (B 7) on the backend's fixed validation subset (so a
    value is comparable across coalitions and cheap). FedAvg and FedAdp aggregates are linear in the stacked
    updates: a batch of coalitions is one weights matrix C (k x n) and parameter vectors w + C @ U. For the MLP
    their losses come from `evaluate.CoalitionLosses` (batched matrix products, the first layer's projections
    of the updates computed once per round); other models take one vmapped functional_call. `values_of`
    evaluates many coalitions at once (the Shapley exact path prefetches all 2^n). FedAsync mixes in order and
    is evaluated one coalition at a time. A coalition whose members all uploaded zero updates (plain free
    riders) aggregates to the global model under every rule, so its value is exactly 0: it is set so, since a
    vmapped batch and a single evaluation differ in rounding (1e-9 on the CNN), which (B 13) would otherwise
    scale up to the whole pool.
    """

    def __init__(self, backend: TorchBackend, updates: Sequence[LocalUpdate]) -> None:
        self._backend = backend
        self._updates = list(updates)
        self._index = {update.provider_id: index for index, update in enumerate(self._updates)}
        self._sizes = np.array([update.data_size for update in self._updates], dtype=np.float64)
        self._ids = [update.provider_id for update in self._updates]
        self._global = torch.from_numpy(np.asarray(backend.global_vector, dtype=np.float32))
        self._matrix = (
            torch.from_numpy(np.stack([np.asarray(update.vector, dtype=np.float32) for update in self._updates]))
            if self._updates
            else torch.zeros((0, self._global.numel()))
        )
        self._moving = (self._matrix != 0).any(dim=1).numpy()  # per update: not all zero
        self._control: QuadraticMeanGame | None = None
        self._gram: np.ndarray | None = None  # FedAdp: U U^T, so coalition weights need no d-vector work
        self._losses: CoalitionLosses | None = None
        if backend.config.aggregation != "fedasync" and isinstance(backend.model, MLP) and self._updates:
            self._losses = CoalitionLosses(
                backend.model, self._global, self._matrix, backend.validation_features, backend.validation_labels
            )
            no_update = torch.zeros(1, len(self._ids))
            self.base_quality = float(backend.qualities_of_losses(self._losses.losses(no_update))[0])
        else:
            self.base_quality = float(backend.validation_qualities(self._global.unsqueeze(0))[0])
        super().__init__(self._ids, self._single_value)

    def _membership(self, coalitions: Sequence[frozenset[int]]) -> np.ndarray:
        """The (k x n) 0/1 matrix of the coalitions' members, in the round's update order."""
        rows = np.repeat(np.arange(len(coalitions)), [len(coalition) for coalition in coalitions])
        columns = [self._index[provider] for coalition in coalitions for provider in coalition]
        membership = np.zeros((len(coalitions), len(self._ids)))
        membership[rows, columns] = 1.0
        return membership

    def _weights(self, coalitions: Sequence[frozenset[int]]) -> np.ndarray:
        """The aggregation weights of each coalition's members, zero for the others (SPEC D.4), one row each."""
        membership = self._membership(coalitions)
        if self._backend.config.aggregation == "fedavg":
            sized = membership * self._sizes
            return sized / sized.sum(axis=1, keepdims=True)
        if self._gram is None:
            updates = self._matrix.double()
            self._gram = (updates @ updates.T).numpy()
        return fedadp_coalition_weights(self._backend._fedadp_state, self._ids, self._gram, self._sizes, membership)

    def _evaluate_batch(self, coalitions: Sequence[frozenset[int]]) -> np.ndarray:
        values = self._evaluated(coalitions)
        inert = self._membership(coalitions) @ self._moving == 0  # no member moves the model
        values[inert] = 0.0
        return values

    def _evaluated(self, coalitions: Sequence[frozenset[int]]) -> np.ndarray:
        backend = self._backend
        if backend.config.aggregation == "fedasync":
            vectors = [
                np.asarray(backend._aggregate([self._updates[self._index[p]] for p in self._ids if p in c])[0])
                for c in coalitions
            ]
            return (
                backend.validation_qualities(torch.from_numpy(np.stack(vectors).astype(np.float32))) - self.base_quality
            )
        weights = torch.from_numpy(self._weights(coalitions).astype(np.float32))
        if self._losses is not None:
            return backend.qualities_of_losses(self._losses.losses(weights)) - self.base_quality
        return backend.validation_qualities(self._global + weights @ self._matrix) - self.base_quality

    def _single_value(self, coalition: frozenset[int]) -> float:
        return float(self._evaluate_batch([coalition])[0])

    def control_game(self) -> QuadraticMeanGame | None:
        """The second-order Taylor model of v about FedAvg's aggregate update of all, a control variate
        for sampled Shapley values (`shapley.shapley_values`); None for FedAsync (order-dependent) or no updates.

        With F(z) = Q_V(w + z) - Q_V(w), rho_i = D_i / mean D, m = mean_i rho_i u_i (FedAvg's aggregate update of
        all), d_i = rho_i u_i - m and e_i = rho_i - 1, FedAvg's aggregate update of S is (m + delta) / (1 + eps),
        delta = mean_S d, eps = mean_S e; G(S) is F's second-order expansion in (delta, eps) about m, a
        `QuadraticMeanGame` (with equal data, eps = 0 and G = F(m) + <g, delta> + delta^T H delta / 2). g and H
        are F's gradient and Hessian at m, needed only along d_1 .. d_n and m: for the MLP, torch.func's
        gradient and Hessian of a -> F(m + a @ [d; m]) in n + 1 dimensions through `CoalitionLosses.loss_of`
        (the first layer from the round's projections: 0.17 s at n = 60 on MNIST-sized inputs, where one grad
        and n + 1 Hessian-vector products over all parameters took about 1 s); for other models those
        products (`_taylor_terms`). In float32: float64 left the same residual spread at 3x the time. For FedAdp
        G approximates the aggregate less well; the estimate stays unbiased either way, only less tight.
        Computed once per round.
        """
        if self._backend.config.aggregation == "fedasync" or not self._updates:
            return None
        if self._control is None:
            self._control = self._taylor_game()
        return self._control

    def _taylor_game(self) -> QuadraticMeanGame:
        backend = self._backend
        parameters = backend.quality_parameters
        scale = parameters.hidden_layers * backend.config.freshness
        # FedAvg: w_S - w = mean_S(rho_i u_i) / mean_S(rho_i), rho_i = D_i / mean D; about m = mean(rho u) this is
        # (m + delta) / (1 + eps) with delta = mean_S d_i, d_i = rho_i u_i - m, and eps = mean_S e_i, e_i = rho_i - 1.
        count = len(self._ids)
        ratios = torch.from_numpy(self._sizes / self._sizes.mean()).to(torch.float32)
        excess = (ratios - 1.0).double()
        point = ratios / count  # m = point @ U
        basis = torch.cat([torch.diag(ratios) - point, point.unsqueeze(0)])  # rows: d_1 .. d_n, m (weights over U)
        backend.model.eval()
        if self._losses is not None:  # the MLP: F along the n + 1 directions, F(a) = F(m + a @ basis @ U)
            losses = self._losses

            def along_directions(offset: torch.Tensor) -> torch.Tensor:
                return scale / (parameters.output_units + losses.loss_of(point + offset @ basis))

            origin = torch.zeros(count + 1)
            with warnings.catch_warnings():  # torch.func's first jvp scripts a helper with the deprecated torch.jit
                warnings.filterwarnings("ignore", message=".*torch.jit.script.*deprecated", category=FutureWarning)
                gradient = grad(along_directions)(origin).detach().double()  # <g, d_i>, <g, m>
                curvature = jacfwd(grad(along_directions))(origin).detach().double()  # d_i^T H d_j, ..., m^T H m
            centre = float(along_directions(origin).detach())
        else:
            gradient, curvature, centre = self._taylor_terms(basis @ self._matrix.to(torch.float32), scale)
        slopes = gradient[:-1]  # a_i = <g, d_i>
        along = float(gradient[-1])  # <g, m>
        cross = curvature[:-1, -1]  # h_i = d_i^T H m
        bend = float(curvature[-1, -1])  # m^T H m
        # second order in (delta, eps): F(m) + <g, delta - eps m - eps delta + eps^2 m>
        #   + (1/2) (delta - eps m)^T H (delta - eps m), a QuadraticMeanGame in the members' (d_i, e_i)
        quadratic = (
            curvature[:-1, :-1]
            - (torch.outer(excess, slopes) + torch.outer(slopes, excess))
            - (torch.outer(excess, cross) + torch.outer(cross, excess))
            + torch.outer(excess, excess) * (2.0 * along + bend)
        )
        return QuadraticMeanGame(
            tuple(self._ids), centre - self.base_quality, (slopes - along * excess).numpy(), quadratic.numpy()
        )

    def _taylor_terms(self, directions: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor, float]:
        """F's gradient and Hessian at m, projected on `directions` (rows d_1 .. d_n, m as parameter vectors), and
        F(m), for any model: one grad and n + 1 Hessian-vector products over all parameters (functional_call)."""
        backend = self._backend
        features = backend.validation_features.to(torch.float32)
        labels = backend.validation_labels
        shapes = backend._parameter_shapes
        parameters = backend.quality_parameters
        global_vector = self._global.to(torch.float32)
        mean = directions[-1]

        def quality(offset: torch.Tensor) -> torch.Tensor:
            vector = global_vector + offset
            named = {}
            start = 0
            for name, shape in shapes:
                size = math.prod(shape)
                named[name] = vector[start : start + size].view(shape)
                start += size
            logits = functional_call(backend.model, named, (features,))
            return scale / (parameters.output_units + nn.functional.cross_entropy(logits, labels))

        gradient_of = grad(quality)
        with warnings.catch_warnings():  # torch.func's first jvp scripts a helper with the deprecated torch.jit
            warnings.filterwarnings("ignore", message=".*torch.jit.script.*deprecated", category=FutureWarning)
            gradient = gradient_of(mean)
            products = vmap(lambda direction: jvp(gradient_of, (mean,), (direction,))[1])(directions)
        projected = directions.double() @ gradient.detach().double()
        curvature = products.detach().double() @ directions.double().T
        return projected, curvature, float(quality(mean).detach())

    def values_of(self, coalitions: Iterable[frozenset[int]]) -> np.ndarray:
        """v of each coalition, evaluating the uncached ones in batches of COALITION_BATCH (and caching them)."""
        wanted = [frozenset(coalition) for coalition in coalitions]
        missing = list(dict.fromkeys(c for c in wanted if c and c not in self._cache))
        for coalition in missing:
            if not coalition <= self.members:
                strangers = sorted(coalition - self.members)
                raise MarketError(f"coalition: providers {strangers} did not upload this round")
        for start in range(0, len(missing), COALITION_BATCH):
            chunk = missing[start : start + COALITION_BATCH]
            for coalition, value in zip(chunk, self._evaluate_batch(chunk), strict=True):
                self._store(coalition, float(value))
        return np.array([self(coalition) for coalition in wanted], dtype=float)
