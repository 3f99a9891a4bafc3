"""Build `examples/market_study.ipynb` from the cells below (run `python examples/build_notebook.py`).

The notebook does three jobs through `import flmarket as fm`: a population-mix experiment with confidence
intervals over seeds, a long-horizon stability study of the `evolution` scenario, and a pandas analysis of the
logged events. The notebook is written without outputs; `tests/test_api.py` executes it with nbclient.
`CELLS` is also what that test runs as a plain script when no Jupyter kernel can start.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

NOTEBOOK = Path(__file__).with_name("market_study.ipynb")

CELLS: list[tuple[str, str]] = [
    (
        "markdown",
        """# A market study with flmarket

Three jobs, all through `import flmarket as fm`:

1. **A population-mix experiment**: the quick-start market with three strategy mixes x two seeds, and the mean
   welfare per task of each mix with a 95% confidence interval over the seeds.
2. **A long-horizon stability study**: one long run of the `evolution` scenario (Fermi imitation and
   mutation), its warm-up, whether the welfare series is stationary after it, and the fate of each strategy.
3. **A pandas analysis of the logged events**: every state change of a run is a row of its event log.

Everything is written under `example-output/` in the working directory; re-running the notebook resumes the
sweep (finished runs are skipped) and writes a new run directory for job 2.""",
    ),
    (
        "code",
        """from pathlib import Path

import matplotlib.pyplot as plt

import flmarket as fm

OUT = Path("example-output")
print("flmarket", fm.__version__, "| scenarios:", ", ".join(fm.scenarios()), "| grids:", ", ".join(fm.grids()))""",
    ),
    (
        "markdown",
        """## 1. Population mix

A grid is a dictionary (or a TOML file, or a bundled grid's name such as `population_mix`). Each cell's
`providers.strategy_mix` replaces the scenario's mix whole. `workers=0` runs the six runs in this process;
`workers=2` would start a local dask cluster.""",
    ),
    (
        "code",
        """mixes = {
    "cooperators": {"ALLC": 0.8, "ALLD": 0.1, "TFT": 0.1},
    "even": {"ALLC": 0.25, "ALLD": 0.25, "Rand": 0.25, "TFT": 0.25},
    "defectors": {"ALLC": 0.1, "ALLD": 0.8, "TFT": 0.1},
}
grid = {
    "sweep": {
        "name": "population_mix",
        "scenario": "quickstart",
        "seeds": [1, 2],
        "overrides": {"run.tasks": 10, "providers.count": 10},
    },
    "cells": [{"label": label, "overrides": {"providers.strategy_mix": mix}} for label, mix in mixes.items()],
}
sweep = fm.sweep(grid, workers=0, out=OUT / "sweeps")
summary = sweep.summary()
summary[["label", "seed", "providers.strategy_mix.ALLD", "tasks", "mean_welfare"]]""",
    ),
    (
        "markdown",
        """The mix is in numeric columns (`providers.strategy_mix.ALLC`, `...ALLD`, ...), so grouping needs no
parsing. `fm.by_parameter` gives the mean over seeds with a Student-t interval (with two seeds,
t = 12.7: the intervals are wide; add seeds with `seeds=5`).""",
    ),
    (
        "code",
        """by_mix = fm.by_parameter(summary, "providers.strategy_mix.ALLD", "mean_welfare", level=0.95)
print(by_mix.to_string(index=False))

figure, axis = plt.subplots(figsize=(5, 3))
axis.errorbar(by_mix["providers.strategy_mix.ALLD"], by_mix["mean"], yerr=by_mix["half_width"], marker="o", capsize=4)
axis.set_xlabel("share of ALLD (defectors) in the mix")
axis.set_ylabel("mean welfare per task")
axis.set_title("95% confidence intervals over seeds")
plt.show()""",
    ),
    (
        "markdown",
        """## 2. Long-horizon stability

One run of the `evolution` scenario (40 providers imitating better-paid neighbours, 1% mutation), longer than
the bundled 150 tasks. MSER-5 finds the warm-up; KPSS and ADF judge the welfare series after it; batch means
give the interval of its mean; the strategy shares say which strategies went extinct or fixated.""",
    ),
    (
        "code",
        """TASKS = 200
run = fm.run("evolution", seed=1, overrides={"run.tasks": TASKS}, out=OUT / "runs")
tasks = run.tasks()
welfare = tasks["welfare"].to_numpy()
warmup = fm.mser_warmup(welfare)
verdict = fm.stationarity_verdict(welfare, warmup=warmup)
interval = fm.batch_means_interval(welfare[warmup.index :])
print(f"{run.directory}: {len(tasks)} tasks, status {run.status}")
print(f"warm-up: the first {warmup.index} tasks (reliable: {warmup.reliable}); after it: {verdict.verdict}")
print(f"mean welfare after the warm-up: {interval.mean:.3f} +/- {interval.half_width:.3f} (95%, batch means)")""",
    ),
    (
        "code",
        """shares = fm.strategy_shares(run.directory)
wide = shares.pivot_table(index="time", columns="strategy", values="share")
figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3))
wide.plot(ax=left, title="strategy shares")
left.set_xlabel("simulated time (s)")
tasks.plot(x="task", y="welfare", ax=right, legend=False, title="welfare per task")
right.axvline(warmup.index, color="grey", linestyle="--")
plt.show()
fm.extinction_and_fixation(shares)""",
    ),
    (
        "code",
        """fm.time_averaged_shares(shares, start_time=float(tasks["time"].iloc[warmup.index]))""",
    ),
    (
        "markdown",
        """## 3. The event log with pandas

`run.events()` is one frame with a row per event (ordered by `seq`); the columns `time`, `seq`, `kind` and
`agent` are common, and each kind adds its fields. `kinds=[...]` reads only some kinds.""",
    ),
    (
        "code",
        """events = run.events()
print(f"{len(events):,} events of {events['kind'].nunique()} kinds")
events["kind"].value_counts().head(8)""",
    ),
    (
        "code",
        """payoffs = run.events(kinds=["provider_payoff"])
by_strategy = payoffs.groupby("strategy", observed=True).agg(
    decisions=("utility", "size"), mean_utility=("utility", "mean"), participation=("action", "mean")
)
by_strategy.round(4)""",
    ),
    (
        "code",
        """# participation per task against the task's welfare: join the providers' choices with the task outcomes
choices = run.events(kinds=["action_chosen"])
per_task = choices.groupby("task")["action"].mean().rename("mean_participation")
joined = tasks.set_index("task").join(per_task)
print("correlation of mean participation and welfare:", round(joined["mean_participation"].corr(joined["welfare"]), 3))
joined[["players", "mean_participation", "welfare"]].describe().round(3)""",
    ),
]


def build() -> nbformat.NotebookNode:
    """The notebook, without outputs."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    notebook.metadata["language_info"] = {"name": "python"}
    for index, (kind, source) in enumerate(CELLS):
        cell = nbformat.v4.new_markdown_cell(source) if kind == "markdown" else nbformat.v4.new_code_cell(source)
        cell["id"] = f"cell-{index:02d}"  # stable ids: rebuilding gives the same file
        notebook.cells.append(cell)
    nbformat.validate(notebook)
    return notebook


def script() -> str:
    """The code cells as one Python script (for running the notebook's code without a Jupyter kernel)."""
    return "\n\n".join(source for kind, source in CELLS if kind == "code")


if __name__ == "__main__":
    nbformat.write(build(), NOTEBOOK)
    print(f"wrote {NOTEBOOK}")
