"""Reproductions of the BGFL paper's Figs. 2-4 (SPEC A.9): curves, bars and a side-by-side table per figure.

Each experiment runs the BGFL mechanism round by round on the torch learning backend (market/fl) and writes, to
the output folder: NAME.csv (the figure's data, means with 95% Student-t intervals over the repeats; the
intervals of bounded quantities clipped to their range, BOUNDS: accuracy to [0, 1], loss, cost, reward and epochs
to >= 0), NAME.png (at `dpi`) and NAME.pdf or NAME.svg drawn by `analysis.plots`, NAME.caption.txt (settings,
diagnostics and what the bands and bars are), and NAME-vs-paper.csv / .md (the paper's number, ours, the
difference ours - paper, and a note where the two are not the same quantity or data). The folder is checked
before any training, and the files are written all or none (`analysis.reproduce.write_together`). The progress
bar counts aggregation rounds over all repeats and runs, so it moves within seconds at the paper's sizes.

One BGFL round (Algorithm 1 without the ledger; the committee's arithmetic is market/'s, not re-derived here):
every provider of the federation trains gamma local epochs from the global model and uploads its perturbed
update (SPEC A.2, the backend's `learning.sensitivity` default); its unit cost is C_unit = ln C_com + C_pr(u~)
(B 3, B 5, B 6) from the update's L1 norm; `settle_round` gives Shapley values, rewards, utilities (B 8, B 10,
B 13) and the IR report (B 14); the round's welfare is (B 21a); the global model is aggregated (FedAdp, as the
paper's Section 5.2) and evaluated; gamma for the next round is `equilibrium_iterations` (B 24 capped by B 12).
The first round trains delta_k = 5 epochs (Table 3's initial local model epochs). A provider's cost in a round is
k_i * C_unit (B 14, B 15b); Fig. 4's totals sum over the rounds and average over the providers.

Experiments (readings of the paper where its text is ambiguous are stated here and in each caption):
- bgfl-fig2 (Setting 1): the 10 equal IID shards of the training set, providers {P1, P8, P0}; accuracy and loss
  of the global model for every non-empty coalition of the three (the paper's "all cooperation combinations";
  singletons are single-node training under the same mechanism). Every provider uses eps = 4: Setting 1 names no
  budget, and its loss (0.1616) is Setting 2's at eps = 4.
- bgfl-fig3 (Setting 2): the same federation with every provider at eps = 1, 3, 4, 5 (one federation per eps),
  against AsyFL (SPEC D.4's FedAsync mix) at the same eps. AsyFL is event-driven: each provider trains delta_k
  epochs (no mechanism adjusts it) from the global model it last received, for a duration drawn Uniform(0.5,
  1.5) time units; each arrival is one aggregation, mixed with staleness weight a (t - tau + 1)^(-b).
- bgfl-fig4 (Setting 2): per eps, the providers' total cost, total utility (B 8) and social welfare (B 21a) over
  the rounds, for the MLP and the CNN. "Unit utility" is a provider's (B 8) utility in one round, averaged over
  the providers; the paper's 42.74 -> 45.28 (eps = 3) is compared at the first and the last round. The two are
  not the same quantity: (B 8) is U_i = rho_i [Q(S) - Q(S minus i)] with Q = mu0 F / (mu1 + H) <= mu0 F / mu1
  (0.2 for the MLP at F = 1), so the providers' mean U_i is at most Pi_r * mu0 F / (mu1 |S_r|) (39.22 * 0.2 / 3
  = 2.61 with Table 3's numbers) whatever the training does, below the paper's 42.74; SPEC A.9 gives no
  definition to convert by, and the table's note column says so with the bound (`unit_utility_note`).

Data: MNIST (or CIFAR-10 for Fig. 4's second pair of panels) when `data_root` names a torchvision root that holds
it; otherwise scikit-learn's digits (embedded). Departure on digits: learning rate DIGITS_LEARNING_RATE instead of
Table 3's 0.01, because a digits provider holds about 144 records (3 mini-batches per epoch, against about 94 on an
MNIST shard), so at 0.01 one epoch per round (what B 12 allows three providers) leaves the MLP at about 89% after
100 aggregations; 0.05 reaches the paper's loss (measured: 95.0%, loss 0.165, noise-free, one repeat).
"""

from __future__ import annotations

import argparse
import csv
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats
from tqdm import tqdm

from flmarket.analysis import plots
from flmarket.analysis.reproduce import check_output_folder, write_together
from flmarket.arguments import integer_in
from flmarket.market.bayesian import welfare
from flmarket.market.costs import CostParameters, privacy_cost, unit_cost
from flmarket.market.errors import MarketError
from flmarket.market.fl.backend import BackendConfig, LearningBackend, LocalUpdate, make_backend
from flmarket.market.mechanism import TaskTerms, configure_task, equilibrium_iterations, settle_round

if TYPE_CHECKING:
    from matplotlib.figure import Figure


DEFAULT_OUT = Path("runs") / "reproduce"
DEFAULT_REPEATS = 10  # SPEC A.9: 10 repetitions averaged
DEFAULT_ROUNDS = 100  # SPEC A.9: 100 aggregation rounds
CONFIDENCE = 0.95
SHARDS = 10  # Setting 1: the training set cut into 10 equal shards
SETTING_1_PROVIDERS = (1, 8, 0)  # Setting 1: P_pi = {P1, P8, P0}
SETTING_1_PRIVACY_BUDGET = 4.0  # see the module docstring
SETTING_2_PRIVACY_BUDGETS = (1.0, 3.0, 4.0, 5.0)
UNIT_UTILITY_PRIVACY_BUDGET = 3.0
PAPER_LEARNING_RATE = 0.01  # Table 3
DIGITS_LEARNING_RATE = 0.05  # departure on digits, see the module docstring
AGGREGATION = "fedadp"  # Section 5.2: FedAdp aggregates the global model
ASYNCHRONOUS_DURATION = (0.5, 1.5)  # AsyFL: a local update takes Uniform(0.5, 1.5) time units


@dataclass(frozen=True)
class MarketTerms:
    """Table 3's mechanism numbers (SPEC A.3, A.5, A.9): budget, fee ratio, committee, delta_k, cost type.

    `minimum_local_epochs` is the simulator's `mechanism.minimum_local_iterations` resolution (default 1): a
    provider that takes part trains max(gamma_NE, minimum) epochs when (B 24) floors to less.
    """

    budget: float = 5000.0
    fee_ratio: float = 0.2
    committee_size: int = 7
    committee_node_cost: float = 1.4
    initial_local_epochs: int = 5
    minimum_local_epochs: int = 1
    cost: CostParameters = field(default_factory=CostParameters)

    def task(self, rounds: int) -> TaskTerms:
        """r_max (B 11), the task's rounds and the pool per round (B 13)."""
        return configure_task(self.budget, self.fee_ratio, [self.committee_node_cost] * self.committee_size, rounds)


@dataclass(frozen=True)
class BGFLReproductionSettings:
    """What every BGFL experiment shares: output folder, repeats, rounds, seed, data root, progress bar.

    `learning_rate` None means Table 3's 0.01 on MNIST and CIFAR-10 and DIGITS_LEARNING_RATE on digits.
    """

    out: Path = DEFAULT_OUT
    repeats: int = DEFAULT_REPEATS
    rounds: int = DEFAULT_ROUNDS
    seed: int = 0
    data_root: str | None = None
    progress: bool = True
    learning_rate: float | None = None
    terms: MarketTerms = field(default_factory=MarketTerms)
    dpi: int = plots.DEFAULT_DPI
    figure_format: str = plots.DEFAULT_FORMAT

    def __post_init__(self) -> None:
        if self.repeats < 2:
            raise MarketError(f"repeats: must be >= 2 (for a t-interval), got {self.repeats}")
        if self.rounds < 1:
            raise MarketError(f"rounds: must be >= 1, got {self.rounds}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise MarketError(f"learning_rate: must be > 0, got {self.learning_rate}")
        try:
            plots.check_output_options(self.dpi, self.figure_format)
        except ValueError as error:
            raise MarketError(str(error)) from None
        check_output_folder(self.out)  # last: the cheap checks of the values first

    def learning_rate_for(self, dataset: str) -> float:
        """The learning rate used on `dataset` (see the class docstring)."""
        if self.learning_rate is not None:
            return self.learning_rate
        return DIGITS_LEARNING_RATE if dataset == "digits" else PAPER_LEARNING_RATE


@dataclass(frozen=True)
class BGFLReproductionOutput:
    """Where an experiment wrote its files, its one-line findings, and the figure itself."""

    name: str
    csv_path: Path
    png_path: Path
    comparison_csv_path: Path
    comparison_markdown_path: Path
    rows: int
    findings: tuple[str, ...]
    vector_path: Path | None = None
    caption_path: Path | None = None
    figure: Figure | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class PaperNumber:
    """One number the paper reports (SPEC A.9 unless `source` says otherwise); `bounds`, the quantity's range
    (an accuracy in % lies in [0, 100]), clips our interval."""

    quantity: str
    value: float
    unit: str
    source: str = "SPEC A.9"
    bounds: tuple[float, float] = (-math.inf, math.inf)
    note: str = ""


@dataclass(frozen=True)
class Comparison:
    """One row of a side-by-side table: the paper's number, ours (mean and t-interval), ours - paper, and a note
    when the two differ in definition, units or data."""

    quantity: str
    paper: float
    ours: float
    low: float
    high: float
    unit: str
    source: str
    note: str = ""

    @property
    def difference(self) -> float:
        """Ours minus the paper's."""
        return self.ours - self.paper


# ------------------------------------------------------------------------------------------------------------
# Data, intervals and one run.


def datasets_in(root: str | None) -> tuple[str, ...]:
    """The torchvision data sets present under `root` (mnist, cifar10, in that order), or ("digits",) for None.

    A root that holds neither is an error naming what was looked for.
    """
    if root is None:
        return ("digits",)
    folder = Path(root)
    if not folder.is_dir():
        raise MarketError(
            f"data_root: {root} does not exist or is not a folder; give a torchvision root with MNIST or CIFAR-10, "
            f"or no root for digits"
        )
    found = tuple(
        name
        for name, marker in (("mnist", folder / "MNIST" / "raw"), ("cifar10", folder / "cifar-10-batches-py"))
        if marker.is_dir()
    )
    if not found:
        raise MarketError(
            f"data_root: {root} holds neither MNIST/raw nor cifar-10-batches-py; "
            f"give a torchvision root with MNIST or CIFAR-10, or no root for digits"
        )
    return found


def t_interval(samples: np.ndarray, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over axis 0 and its two-sided Student-t interval, mean -/+ t_{(1+c)/2, n-1} * s / sqrt(n)."""
    values = np.asarray(samples, dtype=float)
    count = values.shape[0]
    if count < 2:
        raise MarketError(f"samples: a t-interval needs >= 2 repeats, got {count}")
    mean = values.mean(axis=0)
    half = stats.t.ppf(0.5 + confidence / 2.0, count - 1) * values.std(axis=0, ddof=1) / math.sqrt(count)
    return mean, mean - half, mean + half


@dataclass(frozen=True, eq=False)  # holds numpy arrays
class RunTrace:
    """One run's per-round series (index r - 1 for aggregation round r).

    accuracy, loss: the global model after the round; epochs: what every provider trained that round,
    equilibrium_epochs: the gamma_NE it was told (B 24 capped by B 12; epochs = max(gamma_NE, minimum)); the
    economics are means over the round's providers: unit_cost C_unit (B 6), cost k_i C_unit, reward rho (B 13),
    utility U (B 8); welfare is (B 21a) for the round; rational_updates counts paid updates meeting (B 14) and
    paid_updates the updates with a non-zero reward.
    """

    accuracy: np.ndarray
    loss: np.ndarray
    epochs: np.ndarray
    equilibrium_epochs: np.ndarray
    unit_cost: np.ndarray
    cost: np.ndarray
    reward: np.ndarray
    utility: np.ndarray
    welfare: np.ndarray
    rational_updates: int = 0
    paid_updates: int = 0


SERIES = ("accuracy", "loss", "epochs", "equilibrium_epochs", "unit_cost", "cost", "reward", "utility", "welfare")


def backend_for(settings: BGFLReproductionSettings, dataset: str, model: str, aggregation: str, repeat: int):
    """A torch backend over SHARDS equal IID shards, providers 0..9 registered in shard order (seeded per repeat)."""
    config = BackendConfig(
        name="torch",
        seed=int(np.random.SeedSequence([settings.seed, repeat]).generate_state(1)[0]),
        dataset=dataset,
        root=settings.data_root,
        model=model,
        providers=SHARDS,
        partition="iid",
        aggregation=aggregation,
        learning_rate=settings.learning_rate_for(dataset),
    )
    backend = make_backend(config)
    for provider in range(SHARDS):
        backend.register_provider(provider, np.random.default_rng(provider))
    return backend


def run_bgfl(
    backend: LearningBackend,
    providers: Sequence[int],
    privacy_budget: float,
    rounds: int,
    terms: MarketTerms,
    rng: np.random.Generator,
    task_id: int = 0,
    on_round: Callable[[], object] | None = None,
) -> RunTrace:
    """`rounds` BGFL rounds of `providers` at budget eps (see the module docstring); the run's RunTrace.
    `on_round` is called after each aggregation round (the progress bar's step)."""
    task = terms.task(rounds)
    if task.rounds < rounds:
        raise MarketError(f"rounds: Table 3's budget allows r_max = {task.round_cap} rounds (B 11), got {rounds}")
    computation = terms.cost.computation_cost()
    committee = [terms.committee_node_cost] * terms.committee_size
    backend.start_task(task_id)
    series: dict[str, list[float]] = {key: [] for key in SERIES}
    rational = paid = 0
    epochs = equilibrium = terms.initial_local_epochs
    for _ in range(rounds):
        updates = [backend.local_update(provider, epochs, privacy_budget, "honest", rng) for provider in providers]
        unit_costs = [float(unit_cost(computation, privacy_cost(privacy_budget, u.l1_norm))) for u in updates]
        iterations = [epochs] * len(updates)
        settlement = settle_round(
            [update.provider_id for update in updates],
            backend.coalition_value(updates),
            task.pool_per_round,
            iterations,
            unit_costs,
            rng,
        )
        result = backend.commit_round(updates)
        violators = {violation.provider for violation in settlement.rationality.violations}
        paid_now = [index for index, reward in enumerate(settlement.rewards) if reward != 0.0]
        paid += len(paid_now)
        rational += sum(1 for index in paid_now if index not in violators)
        series["accuracy"].append(float(result.accuracy if result.accuracy is not None else math.nan))
        series["loss"].append(result.loss)
        series["epochs"].append(epochs)
        series["equilibrium_epochs"].append(equilibrium)
        series["unit_cost"].append(float(np.mean(unit_costs)))
        series["cost"].append(epochs * float(np.mean(unit_costs)))
        series["reward"].append(float(np.mean(settlement.rewards)))
        series["utility"].append(float(np.mean(settlement.utilities)))
        series["welfare"].append(welfare(settlement.rewards, iterations, unit_costs, committee))
        equilibrium = equilibrium_iterations(task, unit_costs)
        epochs = max(equilibrium, terms.minimum_local_epochs)
        if on_round is not None:
            on_round()
    arrays = {key: np.asarray(values, dtype=float) for key, values in series.items()}
    return RunTrace(**arrays, rational_updates=rational, paid_updates=paid)


def run_asyfl(
    backend: LearningBackend,
    providers: Sequence[int],
    privacy_budget: float,
    aggregations: int,
    local_epochs: int,
    rng: np.random.Generator,
    task_id: int = 0,
    on_round: Callable[[], object] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """AsyFL (SPEC D.4) on a backend with aggregation "fedasync": accuracy and loss after each arrival.

    Every provider starts from w0; the one whose update arrives first is mixed in (staleness = aggregations
    since it started), then starts again from the new global model (see the module docstring). `on_round` is
    called after each aggregation.
    """
    backend.start_task(task_id)
    low, high = ASYNCHRONOUS_DURATION
    pending: dict[int, LocalUpdate] = {}
    arrival: dict[int, float] = {}
    for provider in providers:
        pending[provider] = backend.local_update(provider, local_epochs, privacy_budget, "honest", rng)
        arrival[provider] = float(rng.uniform(low, high))
    accuracy, loss = [], []
    for _ in range(aggregations):
        provider = min(arrival, key=lambda key: (arrival[key], key))
        result = backend.commit_round([pending[provider]])
        accuracy.append(float(result.accuracy if result.accuracy is not None else math.nan))
        loss.append(result.loss)
        pending[provider] = backend.local_update(provider, local_epochs, privacy_budget, "honest", rng)
        arrival[provider] += float(rng.uniform(low, high))
        if on_round is not None:
            on_round()
    return np.asarray(accuracy), np.asarray(loss)


def _round_progress(settings: BGFLReproductionSettings, description: str, runs_per_repeat: int) -> tqdm:
    """A tqdm progress bar over every aggregation round of the experiment (repeats x runs per repeat x rounds),
    advanced by the runs' `on_round`, on a terminal (silent otherwise or when disabled). One round takes a
    fraction of a second, so the bar moves within seconds where a bar over repeats waited a minute per step."""
    return tqdm(
        total=settings.repeats * runs_per_repeat * settings.rounds,
        desc=description,
        unit="round",
        disable=None if settings.progress else True,
        leave=False,
    )


def _run_rng(settings: BGFLReproductionSettings, *key: int) -> np.random.Generator:
    return np.random.default_rng([settings.seed, *key])


def _label(providers: Sequence[int]) -> str:
    return "+".join(f"P{provider}" for provider in providers)


# ------------------------------------------------------------------------------------------------------------
# The paper's numbers (SPEC A.9; the two marked otherwise are from the paper's Section 5.2 text).

PERCENT = (0.0, 100.0)
NON_NEGATIVE = (0.0, math.inf)
PAPER_SETTING_1 = (
    PaperNumber("accuracy after the last aggregation, P1+P8+P0", 95.34, "%", bounds=PERCENT),
    PaperNumber("loss after the last aggregation, P1+P8+P0", 0.1616, "nats", bounds=NON_NEGATIVE),
)
PAPER_SETTING_2_ACCURACY = dict(zip(SETTING_2_PRIVACY_BUDGETS, (94.12, 94.31, 94.68, 95.36), strict=True))
PAPER_SETTING_2_LOSS = dict(zip(SETTING_2_PRIVACY_BUDGETS, (0.1973, 0.1829, 0.1616, 0.1541), strict=True))
PAPER_GAIN_OVER_ASYFL = PaperNumber(
    "accuracy gain over AsyFL, mean over eps (percentage points)", 4.73, "points", "paper Section 5.2"
)
PAPER_COST_RISE = PaperNumber("providers' average total cost, rise from eps 1 to 5", 16.53, "%")
PAPER_UTILITY_RISE = PaperNumber("providers' average total utility, rise from eps 1 to 5", 0.11, "%")
PAPER_UNIT_UTILITY_FIRST = PaperNumber("unit utility at eps 3, round 1", 42.74, "per round")
PAPER_UNIT_UTILITY_LAST = PaperNumber("unit utility at eps 3, last round", 45.28, "per round")
PAPER_UNIT_UTILITY_RISE = PaperNumber("unit utility at eps 3, rise round 1 to last", 5.89, "%", "paper Section 5.2")


def compare(paper: PaperNumber, samples: Sequence[float] | np.ndarray, note: str | None = None) -> Comparison:
    """The paper's number beside the mean of `samples` (one per repeat) and its t-interval, clipped to the
    quantity's bounds; `note` (default the PaperNumber's) says where the two are not alike."""
    mean, low, high = t_interval(np.asarray(samples, dtype=float))
    low, high = np.clip(low, *paper.bounds), np.clip(high, *paper.bounds)
    return Comparison(
        paper.quantity,
        paper.value,
        float(mean),
        float(low),
        float(high),
        paper.unit,
        paper.source,
        paper.note if note is None else note,
    )


def not_measurable(paper: PaperNumber, why: str) -> Comparison:
    """A side-by-side row for a paper's number that this run cannot measure (e.g. a rise from round 1 to the last
    of a one-round run): ours, its interval and the difference are NaN, and the note says `why`."""
    return Comparison(paper.quantity, paper.value, math.nan, math.nan, math.nan, paper.unit, paper.source, why)


def quality_ceiling(backend: LearningBackend) -> float:
    """The largest quality (B 7) any model of `backend` can have, mu0 F / mu1 (Q = mu0 F / (mu1 + H), H >= 0):
    no leave-one-out quality difference of (B 8) reaches it. Both learning backends carry `quality_parameters`
    (mu0 = the model's hidden layers, mu1 = its output units) beside the protocol's `config`."""
    parameters = backend.quality_parameters
    return parameters.hidden_layers * float(backend.config.freshness) / parameters.output_units


def unit_utility_bound(pool: float, providers: int, ceiling: float) -> float:
    """The largest mean (B 8) utility n providers can have in a round whose rewards are >= 0: the rewards sum to
    the pool Pi_r (B 13) and no leave-one-out quality difference reaches the quality ceiling mu0 F / mu1, so
    mean_i rho_i [Q(S) - Q(S minus i)] < Pi_r * ceiling / n."""
    return pool * ceiling / providers


def unit_utility_note(pool: float, providers: int, ceiling: float, paper: float) -> str:
    """Whether our unit utility and the paper's can be the same quantity, with the arithmetic of
    `unit_utility_bound`. SPEC A.9 names the paper's number without its definition, so there is nothing to
    convert by."""
    bound = unit_utility_bound(pool, providers, ceiling)
    if paper <= bound:
        return (
            f"ours is (B 8) U_i = rho_i [Q(S) - Q(S minus i)], mean over the {providers} providers; the paper's "
            "definition is not in SPEC A.9"
        )
    return (
        f"not the same quantity: ours is (B 8) U_i = rho_i [Q(S) - Q(S minus i)], mean over the {providers} "
        f"providers, below pool * mu0 F / mu1 / n = {pool:.4g} * {ceiling:.4g} / {providers} = {bound:.4g} "
        f"whatever the training (Q = mu0 F / (mu1 + H) < mu0 F / mu1); the paper's {paper:.4g} is "
        f"{paper / bound:.3g} times that bound, and SPEC A.9 gives no definition to convert by"
    )


def dataset_note(dataset: str) -> str:
    """The note of an accuracy or loss row: empty on MNIST (the paper's data), else the data set that differs."""
    return "" if dataset == "mnist" else f"ours on {dataset}, the paper's on MNIST"


PER_REPEAT_RISE = (
    "the mean over repeats of each repeat's rise, not the rise between the mean values of the CSV (a repeat "
    "whose first value is near 0 makes it large)"
)
"""What every 'rise' row of the side-by-side tables is: its samples are `relative_rise_percent` per repeat."""


def relative_rise_percent(after: np.ndarray, before: np.ndarray) -> np.ndarray:
    """100 * (after / before - 1) per repeat (NaN where `before` is 0)."""
    after = np.asarray(after, dtype=float)
    before = np.asarray(before, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(before != 0.0, 100.0 * (after / np.where(before != 0.0, before, 1.0) - 1.0), np.nan)


# ------------------------------------------------------------------------------------------------------------
# The experiments.


BOUNDS = {
    "accuracy": (0.0, 1.0),
    "final_accuracy": (0.0, 1.0),
    "loss": (0.0, math.inf),
    "epochs": (0.0, math.inf),
    "mean_epochs": (0.0, math.inf),
    "cost": (0.0, math.inf),
    "reward": (0.0, math.inf),
}
"""Ranges of the bounded series: their t-intervals are clipped to them (a mean of 2 accuracies near 0.2 can have
a t-interval reaching below 0)."""


def _range_text(bounds: tuple[float, float]) -> str:
    low, high = bounds
    return f">= {low:g}" if math.isinf(high) else f"[{low:g}, {high:g}]"


def clipping_note(names: Sequence[str]) -> str:
    """What happens to the intervals of the series `names` a figure draws: clipped to BOUNDS, or not (a series
    that can be negative)."""
    clipped = [f"{name} intervals clipped to {_range_text(BOUNDS[name])}" for name in names if name in BOUNDS]
    free = [name for name in names if name not in BOUNDS]
    parts = [", ".join(clipped)] if clipped else []
    if free:
        parts.append(f"{' and '.join(free)} intervals not clipped (they can be negative)")
    return "; ".join(parts)


def _interval_columns(prefix: str, samples: np.ndarray) -> dict[str, list[float]]:
    """{prefix_mean, prefix_low, prefix_high} per column of `samples` (repeats x points), the interval clipped to
    BOUNDS[prefix] when the series is bounded."""
    mean, low, high = t_interval(samples)
    if prefix in BOUNDS:
        low, high = np.clip(low, *BOUNDS[prefix]), np.clip(high, *BOUNDS[prefix])
    return {f"{prefix}_mean": mean.tolist(), f"{prefix}_low": low.tolist(), f"{prefix}_high": high.tolist()}


def _curve_rows(
    base: dict[str, object], accuracy: np.ndarray, loss: np.ndarray, extra: dict[str, np.ndarray] | None = None
) -> list[dict[str, object]]:
    """One row per round: the curve's mean and t-interval of accuracy and loss (and of any `extra` series)."""
    columns = {**_interval_columns("accuracy", accuracy), **_interval_columns("loss", loss)}
    for name, samples in (extra or {}).items():
        columns.update(_interval_columns(name, samples))
    return [
        {**base, "round": index + 1, **{key: values[index] for key, values in columns.items()}}
        for index in range(accuracy.shape[1])
    ]


def _rationality_note(traces: Sequence[RunTrace]) -> str:
    paid = sum(trace.paid_updates for trace in traces)
    rational = sum(trace.rational_updates for trace in traces)
    share = f"{100.0 * rational / paid:.1f}%" if paid else "no paid updates"
    return f"individual rationality (B 14) held for {rational} of {paid} paid updates ({share})"


def _epochs_note(traces: Sequence[RunTrace]) -> str:
    gamma = np.concatenate([trace.equilibrium_epochs[1:] for trace in traces]) if traces else np.zeros(0)
    if gamma.size == 0:
        return "gamma_NE: only the first round ran (delta_k epochs)"
    values, counts = np.unique(gamma.astype(int), return_counts=True)
    spread = ", ".join(f"{value}: {count}" for value, count in zip(values, counts, strict=True))
    raised_epochs = np.concatenate(
        [trace.epochs[1:][trace.epochs[1:] > trace.equilibrium_epochs[1:]] for trace in traces]
    )
    fewest = int(raised_epochs.min()) if raised_epochs.size else 0
    minimum = f"{fewest} epoch{'s' * (fewest != 1)}, " if raised_epochs.size else ""
    return (
        f"gamma_NE (B 24, capped by B 12) after round 1, value: rounds = {spread}; {raised_epochs.size} of "
        f"{gamma.size} rounds trained the minimum instead ({minimum}the simulator's "
        f"mechanism.minimum_local_iterations resolution)"
    )


def figure_2(settings: BGFLReproductionSettings) -> BGFLReproductionOutput:
    """Fig. 2 (Setting 1): accuracy and loss of every coalition of {P1, P8, P0} over the aggregation rounds."""
    dataset = datasets_in(settings.data_root)[0]
    coalitions = [group for size in (1, 2, 3) for group in combinations(SETTING_1_PROVIDERS, size)]
    traces: dict[tuple[int, ...], list[RunTrace]] = {group: [] for group in coalitions}
    with _round_progress(settings, "bgfl-fig2", len(coalitions)) as bar:
        for repeat in range(settings.repeats):
            backend = backend_for(settings, dataset, "mlp", AGGREGATION, repeat)
            for index, group in enumerate(coalitions):
                bar.set_postfix_str(f"repeat {repeat + 1}/{settings.repeats}, {_label(group)}")
                rng = _run_rng(settings, 2, repeat, index)
                trace = run_bgfl(
                    backend, group, SETTING_1_PRIVACY_BUDGET, settings.rounds, settings.terms, rng, on_round=bar.update
                )
                traces[group].append(trace)
    rows: list[dict[str, object]] = []
    for group in coalitions:
        base = {
            "figure": "bgfl-fig2",
            "dataset": dataset,
            "model": "mlp",
            "coalition": _label(group),
            "providers": len(group),
            "privacy_budget": SETTING_1_PRIVACY_BUDGET,
        }
        accuracy = np.stack([trace.accuracy for trace in traces[group]])
        loss = np.stack([trace.loss for trace in traces[group]])
        epochs = np.stack([trace.epochs for trace in traces[group]])
        rows.extend(_curve_rows(base, accuracy, loss, {"epochs": epochs}))
    for row in rows:
        row.update(repeats=settings.repeats, seed=settings.seed)
    full = traces[SETTING_1_PROVIDERS]
    comparisons = [
        compare(PAPER_SETTING_1[0], [100.0 * trace.accuracy[-1] for trace in full], dataset_note(dataset)),
        compare(PAPER_SETTING_1[1], [trace.loss[-1] for trace in full], dataset_note(dataset)),
    ]
    figure = plots.bgfl_coalition_figure(
        pd.DataFrame(rows), f"Fig. 2: coalitions of P1, P8, P0 (MLP on {dataset})", _label(SETTING_1_PROVIDERS)
    )
    notes = [
        f"Fig. 2 (Setting 1). Test accuracy (left) and loss (right) of the global model after each aggregation "
        "round, for every coalition of P1, P8 and P0 (the grand coalition drawn thicker); lines are means, "
        f"shaded bands {_band_note(settings, ['accuracy', 'loss'])}.",
        _data_note(settings, dataset, "mlp"),
        "every non-empty coalition of P_pi = {P1, P8, P0} of 10 equal IID shards; each provider at eps = 4",
        _epochs_note(full),
        _rationality_note(full),
    ]
    return _save("bgfl-fig2", rows, comparisons, figure, settings, notes, model="mlp", dataset=dataset)


def figure_3(settings: BGFLReproductionSettings) -> BGFLReproductionOutput:
    """Fig. 3 (Setting 2): accuracy and loss at eps = 1, 3, 4, 5 for BGFL and for the AsyFL baseline."""
    dataset = datasets_in(settings.data_root)[0]
    bgfl: dict[float, list[RunTrace]] = {eps: [] for eps in SETTING_2_PRIVACY_BUDGETS}
    asyfl: dict[float, list[tuple[np.ndarray, np.ndarray]]] = {eps: [] for eps in SETTING_2_PRIVACY_BUDGETS}
    local_epochs = settings.terms.initial_local_epochs
    with _round_progress(settings, "bgfl-fig3", 2 * len(SETTING_2_PRIVACY_BUDGETS)) as bar:
        for repeat in range(settings.repeats):
            synchronous = backend_for(settings, dataset, "mlp", AGGREGATION, repeat)
            asynchronous = backend_for(settings, dataset, "mlp", "fedasync", repeat)
            for index, eps in enumerate(SETTING_2_PRIVACY_BUDGETS):
                bar.set_postfix_str(f"repeat {repeat + 1}/{settings.repeats}, BGFL eps {eps:g}")
                rng = _run_rng(settings, 3, repeat, index)
                bgfl[eps].append(
                    run_bgfl(
                        synchronous, SETTING_1_PROVIDERS, eps, settings.rounds, settings.terms, rng, on_round=bar.update
                    )
                )
                bar.set_postfix_str(f"repeat {repeat + 1}/{settings.repeats}, AsyFL eps {eps:g}")
                rng = _run_rng(settings, 30, repeat, index)
                asyfl[eps].append(
                    run_asyfl(
                        asynchronous, SETTING_1_PROVIDERS, eps, settings.rounds, local_epochs, rng, on_round=bar.update
                    )
                )
    rows: list[dict[str, object]] = []
    comparisons: list[Comparison] = []
    gains = []
    for eps in SETTING_2_PRIVACY_BUDGETS:
        base = {"figure": "bgfl-fig3", "dataset": dataset, "model": "mlp", "privacy_budget": eps}
        accuracy = np.stack([trace.accuracy for trace in bgfl[eps]])
        loss = np.stack([trace.loss for trace in bgfl[eps]])
        rows.extend(_curve_rows({**base, "series": "BGFL"}, accuracy, loss))
        baseline_accuracy = np.stack([curve[0] for curve in asyfl[eps]])
        baseline_loss = np.stack([curve[1] for curve in asyfl[eps]])
        rows.extend(_curve_rows({**base, "series": "AsyFL"}, baseline_accuracy, baseline_loss))
        comparisons.append(
            compare(
                PaperNumber(
                    f"accuracy after the last aggregation, eps {eps:g}",
                    PAPER_SETTING_2_ACCURACY[eps],
                    "%",
                    bounds=PERCENT,
                ),
                100.0 * accuracy[:, -1],
                dataset_note(dataset),
            )
        )
        comparisons.append(
            compare(
                PaperNumber(
                    f"loss after the last aggregation, eps {eps:g}",
                    PAPER_SETTING_2_LOSS[eps],
                    "nats",
                    bounds=NON_NEGATIVE,
                ),
                loss[:, -1],
                dataset_note(dataset),
            )
        )
        gains.append(100.0 * (accuracy[:, -1] - baseline_accuracy[:, -1]))
    comparisons.append(compare(PAPER_GAIN_OVER_ASYFL, np.mean(gains, axis=0)))
    for row in rows:
        row.update(repeats=settings.repeats, seed=settings.seed)
    figure = plots.bgfl_budget_figure(pd.DataFrame(rows), f"Fig. 3: privacy budgets, BGFL vs AsyFL (MLP on {dataset})")
    all_bgfl = [trace for traces in bgfl.values() for trace in traces]
    notes = [
        "Fig. 3 (Setting 2). Test accuracy (left) and loss (right) of the global model after each aggregation, "
        "colour = the providers' privacy budget eps, solid = BGFL, dashed = AsyFL; lines are means, shaded bands "
        f"{_band_note(settings, ['accuracy', 'loss'])}.",
        _data_note(settings, dataset, "mlp"),
        "BGFL: P1, P8, P0 all at the eps of the curve, FedAdp, gamma from (B 24); AsyFL: the same providers at "
        f"the same eps, {settings.terms.initial_local_epochs} local epochs per update, event-driven FedAsync "
        f"(SPEC D.4), one arrival per aggregation, durations Uniform{ASYNCHRONOUS_DURATION}",
        _epochs_note(all_bgfl),
        _rationality_note(all_bgfl),
    ]
    return _save("bgfl-fig3", rows, comparisons, figure, settings, notes, model="mlp", dataset=dataset)


FIGURE_4_MODELS = ("mlp", "cnn")
FIGURE_4_TOTALS = (("cost", "total cost"), ("utility", "total utility (B 8)"), ("welfare", "welfare (B 21a)"))


def figure_4(settings: BGFLReproductionSettings) -> BGFLReproductionOutput:
    """Fig. 4 (Setting 2): per eps, the providers' total cost, utility and the welfare, MLP and CNN."""
    pairs = [(model, dataset) for dataset in datasets_in(settings.data_root) for model in FIGURE_4_MODELS]
    traces: dict[tuple[str, str, float], list[RunTrace]] = {
        (model, dataset, eps): [] for model, dataset in pairs for eps in SETTING_2_PRIVACY_BUDGETS
    }
    work = [(repeat, model, dataset) for repeat in range(settings.repeats) for model, dataset in pairs]
    ceiling: dict[tuple[str, str], float] = {}
    with _round_progress(settings, "bgfl-fig4", len(pairs) * len(SETTING_2_PRIVACY_BUDGETS)) as bar:
        for repeat, model, dataset in work:
            backend = backend_for(settings, dataset, model, AGGREGATION, repeat)
            ceiling[(model, dataset)] = quality_ceiling(backend)
            for index, eps in enumerate(SETTING_2_PRIVACY_BUDGETS):
                bar.set_postfix_str(f"repeat {repeat + 1}/{settings.repeats}, {model} on {dataset}, eps {eps:g}")
                rng = _run_rng(settings, 4, repeat, index, FIGURE_4_MODELS.index(model))
                trace = run_bgfl(
                    backend, SETTING_1_PROVIDERS, eps, settings.rounds, settings.terms, rng, on_round=bar.update
                )
                traces[(model, dataset, eps)].append(trace)
    rows: list[dict[str, object]] = []
    for model, dataset in pairs:
        for eps in SETTING_2_PRIVACY_BUDGETS:
            chosen = traces[(model, dataset, eps)]
            row: dict[str, object] = {"figure": "bgfl-fig4", "dataset": dataset, "model": model, "privacy_budget": eps}
            samples = {
                "cost": [trace.cost.sum() for trace in chosen],
                "utility": [trace.utility.sum() for trace in chosen],
                "welfare": [trace.welfare.sum() for trace in chosen],
                "reward": [trace.reward.sum() for trace in chosen],
                "unit_utility_first": [trace.utility[0] for trace in chosen],
                "unit_utility_last": [trace.utility[-1] for trace in chosen],
                "final_accuracy": [trace.accuracy[-1] for trace in chosen],
                "mean_epochs": [trace.epochs.mean() for trace in chosen],
            }
            for name, values in samples.items():
                columns = _interval_columns(name, np.asarray(values, dtype=float)[:, None])
                row.update({key: column[0] for key, column in columns.items()})
            row.update(rounds=settings.rounds, repeats=settings.repeats, seed=settings.seed)
            rows.append(row)
    model, dataset = pairs[0]  # the paper's numbers are for the MLP (on MNIST)
    low_eps, high_eps = SETTING_2_PRIVACY_BUDGETS[0], SETTING_2_PRIVACY_BUDGETS[-1]
    first, last = traces[(model, dataset, low_eps)], traces[(model, dataset, high_eps)]
    middle = traces[(model, dataset, UNIT_UTILITY_PRIVACY_BUDGET)]
    pool, providers = settings.terms.task(settings.rounds).pool_per_round, len(SETTING_1_PROVIDERS)
    comparisons = [
        compare(
            PAPER_COST_RISE,
            relative_rise_percent([t.cost.sum() for t in last], [t.cost.sum() for t in first]),
            PER_REPEAT_RISE,
        ),
        compare(
            PAPER_UTILITY_RISE,
            relative_rise_percent([t.utility.sum() for t in last], [t.utility.sum() for t in first]),
            "a ratio of (B 8) totals; the paper's utility may be another quantity (see the unit-utility rows); "
            + PER_REPEAT_RISE,
        ),
        compare(
            PAPER_UNIT_UTILITY_FIRST,
            [trace.utility[0] for trace in middle],
            unit_utility_note(pool, providers, ceiling[(model, dataset)], PAPER_UNIT_UTILITY_FIRST.value),
        ),
        compare(
            PAPER_UNIT_UTILITY_LAST,
            [trace.utility[-1] for trace in middle],
            unit_utility_note(pool, providers, ceiling[(model, dataset)], PAPER_UNIT_UTILITY_LAST.value),
        ),
        compare(
            PAPER_UNIT_UTILITY_RISE,
            relative_rise_percent([t.utility[-1] for t in middle], [t.utility[0] for t in middle]),
            "a ratio, so units cancel, but of different quantities (see the two rows above); the paper's two "
            f"numbers give {PAPER_UNIT_UTILITY_LAST.value:g} / {PAPER_UNIT_UTILITY_FIRST.value:g} - 1 = "
            f"{100.0 * (PAPER_UNIT_UTILITY_LAST.value / PAPER_UNIT_UTILITY_FIRST.value - 1.0):.2f}%; "
            + PER_REPEAT_RISE,
        )
        if settings.rounds >= 2
        else not_measurable(
            PAPER_UNIT_UTILITY_RISE,
            f"a rise from round 1 to the last needs >= 2 rounds, this run has {settings.rounds}",
        ),
    ]
    figure = plots.bgfl_totals_figure(
        pd.DataFrame(rows), FIGURE_4_TOTALS, "Fig. 4: providers' totals over the rounds, per privacy budget"
    )
    all_traces = [trace for chosen in traces.values() for trace in chosen]
    notes = [
        f"Fig. 4 (Setting 2). Per privacy budget eps, sums over the {settings.rounds} rounds of the providers' cost, "
        "utility and the social welfare, one row of panels per model; bars are means, error bars "
        f"{_band_note(settings, [name for name, _ in FIGURE_4_TOTALS])}.",
        _data_note(settings, pairs[0][1], "mlp and cnn"),
        "P1, P8, P0 all at the eps of the bar; cost = sum over rounds of k_i C_unit (B 6, B 14), utility = sum of "
        "U_i (B 8), both averaged over the providers; welfare = sum over rounds of (B 21a); unit utility = a "
        f"round's mean U_i (B 8); the side-by-side table compares the {model.upper()} on {dataset} (the paper's "
        "numbers are the MLP's), the other rows of the CSV and the figure have no paper number beside them",
        _epochs_note(all_traces),
        _rationality_note(all_traces),
    ]
    return _save("bgfl-fig4", rows, comparisons, figure, settings, notes, model=model, dataset=dataset)


# ------------------------------------------------------------------------------------------------------------
# Output: CSV, side-by-side table, figure and caption.


def _band_note(settings: BGFLReproductionSettings, drawn: Sequence[str]) -> str:
    """What a figure's bands or error bars are, for the series `drawn` (their clipping from BOUNDS)."""
    return (
        f"95% Student-t intervals over the {settings.repeats} repeats (mean -/+ t(0.975, {settings.repeats - 1}) "
        f"s / sqrt(n); {clipping_note(drawn)})"
    )


def _data_note(settings: BGFLReproductionSettings, dataset: str, model: str) -> str:
    rate = settings.learning_rate_for(dataset)
    departure = " (departure from Table 3's 0.01 on digits, see the module docstring)" if rate != 0.01 else ""
    defaults = BackendConfig()
    noise = f"Laplace noise Delta_f / eps per coordinate, Delta_f = {defaults.sensitivity:g} (SPEC A.2)"
    return (
        f"{dataset}, {model}, lr {rate:g}{departure}, momentum {defaults.momentum:g}, batch {defaults.batch_size}, "
        f"{AGGREGATION}; {noise}; {settings.rounds} aggregation rounds; means of {settings.repeats} repeats "
        f"(seed {settings.seed}) with 95% Student-t intervals, mean -/+ t(0.975, n-1) s / sqrt(n)"
    )


def _write_csv(path: Path, rows: Sequence[dict[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


COMPARISON_COLUMNS = (
    "quantity",
    "model",
    "dataset",
    "paper",
    "ours",
    "difference",
    "ours_low",
    "ours_high",
    "unit",
    "source",
    "note",
)


def comparison_rows(comparisons: Sequence[Comparison], model: str, dataset: str) -> list[dict[str, object]]:
    """The side-by-side table as rows of COMPARISON_COLUMNS (difference = ours - paper; ours from `model` trained
    on `dataset`; NaN where the run cannot measure the quantity)."""
    return [
        {
            "quantity": item.quantity,
            "model": model,
            "dataset": dataset,
            "paper": item.paper,
            "ours": item.ours,
            "difference": item.difference,
            "ours_low": item.low,
            "ours_high": item.high,
            "unit": item.unit,
            "source": item.source,
            "note": item.note,
        }
        for item in comparisons
    ]


def comparison_markdown(
    name: str, comparisons: Sequence[Comparison], settings: BGFLReproductionSettings, model: str, dataset: str
) -> str:
    """A Markdown table: quantity, paper, ours (95% t-interval), ours - paper, unit, source, note; the line above
    it names the run and the model and data set ours come from. A quantity the run cannot measure reads "not
    measurable" (its note says why)."""
    lines = [
        f"{name}: {settings.rounds} rounds, {settings.repeats} repeats, seed {settings.seed}; "
        f"ours = the {model.upper()} on {dataset}, mean (95% t-interval over repeats, clipped to the quantity's "
        "range)",
        "",
        "| quantity | paper | ours (95% t-interval) | ours - paper | unit | source | note |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    for item in comparisons:
        if math.isnan(item.ours):
            ours, difference = "not measurable", "n/a"
        else:
            ours, difference = f"{item.ours:.4g} ({item.low:.4g} to {item.high:.4g})", f"{item.difference:+.4g}"
        lines.append(
            f"| {item.quantity} | {item.paper:.4g} | {ours} | {difference} | {item.unit} | {item.source} | "
            f"{item.note.replace('|', '/')} |"
        )
    return "\n".join(lines) + "\n"


def _finding(item: Comparison) -> str:
    """One line of the command's summary for a side-by-side row."""
    note = f" ({item.note})" if item.note else ""
    if math.isnan(item.ours):
        return f"{item.quantity}: paper {item.paper:.4g}, ours not measurable{note}"
    return (
        f"{item.quantity}: paper {item.paper:.4g}, ours {item.ours:.4g} [{item.low:.4g}, {item.high:.4g}], "
        f"difference {item.difference:+.4g} {item.unit}{note}"
    )


def _save(
    name: str,
    rows: list[dict[str, object]],
    comparisons: Sequence[Comparison],
    figure: Figure,
    settings: BGFLReproductionSettings,
    notes: Sequence[str],
    *,
    model: str,
    dataset: str,
) -> BGFLReproductionOutput:
    """Write NAME.png (at settings.dpi), NAME.pdf or .svg, NAME.caption.txt (the notes, then the side-by-side
    table), NAME.csv and NAME-vs-paper.csv / .md under settings.out, all or none (`write_together`); the
    side-by-side numbers are `model`'s on `dataset`."""
    out = settings.out
    markdown = comparison_markdown(name, comparisons, settings, model, dataset)
    caption = "\n".join(notes) + "\n\n" + markdown

    def write(staging: Path) -> None:
        plots.save_figure(figure, staging, name, caption, settings.dpi, settings.figure_format)
        _write_csv(staging / f"{name}.csv", rows)
        _write_csv(staging / f"{name}-vs-paper.csv", comparison_rows(comparisons, model, dataset))
        (staging / f"{name}-vs-paper.md").write_text(markdown, encoding="utf-8")

    write_together(out, name, write)
    findings = tuple(_finding(item) for item in comparisons) + tuple(notes[3:])
    return BGFLReproductionOutput(
        name,
        out / f"{name}.csv",
        out / f"{name}.png",
        out / f"{name}-vs-paper.csv",
        out / f"{name}-vs-paper.md",
        len(rows),
        findings,
        out / f"{name}.{settings.figure_format}",
        out / f"{name}{plots.CAPTION_SUFFIX}",
        figure,
    )


EXPERIMENTS: dict[str, Callable[[BGFLReproductionSettings], BGFLReproductionOutput]] = {
    "bgfl-fig2": figure_2,
    "bgfl-fig3": figure_3,
    "bgfl-fig4": figure_4,
}


def run_experiment(name: str, settings: BGFLReproductionSettings) -> BGFLReproductionOutput:
    """Run one named BGFL experiment and write its files under `settings.out`."""
    if name not in EXPERIMENTS:
        raise MarketError(f"name: unknown experiment {name!r}; allowed: {sorted(EXPERIMENTS)}")
    return EXPERIMENTS[name](settings)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options only the BGFL experiments read (the `reproduce` parser shares --out, --rounds, --seed)."""
    parser.add_argument(
        "--repeats",
        type=integer_in(2, note=" (a t-interval needs two runs)"),
        default=None,
        help=f"BGFL: independent runs averaged, with 95%% t-intervals, at least 2 (default {DEFAULT_REPEATS}, as "
        "the paper); the MMZD figures take --repetitions",
    )
    parser.add_argument(
        "--data-root",
        default=None,
        help="BGFL: a local torchvision root with MNIST/raw or cifar-10-batches-py (default: embedded digits); "
        "the MMZD figures read no data",
    )


def handler(args: argparse.Namespace) -> int:
    """Run the BGFL experiment `args.name`, print where the files went and the side-by-side numbers."""
    settings = BGFLReproductionSettings(
        out=Path(args.out),
        repeats=args.repeats if args.repeats is not None else DEFAULT_REPEATS,
        rounds=args.rounds if args.rounds is not None else DEFAULT_ROUNDS,
        seed=args.seed,
        data_root=args.data_root,
        dpi=args.dpi,
        figure_format=args.format,
    )
    output = run_experiment(args.name, settings)
    print(
        f"{output.name}: {output.csv_path} ({output.rows} rows), {output.png_path}, {output.vector_path}, "
        f"{output.caption_path}, {output.comparison_csv_path}, {output.comparison_markdown_path}"
    )
    for line in output.findings:
        print(f"  {line}")
    return 0
