"""Tests for analysis/reproduce_bgfl.py: the BGFL figures at tiny sizes (digits, few rounds, 2 repeats).

The side-by-side tables must carry SPEC A.9's numbers and differences equal to ours minus the paper's; the
curves must be finite, accuracies in [0, 1] and of the requested length; each round's welfare must be (B 21a)
of its rewards and costs. The test market uses a smaller budget than Table 3 so that (B 12) and (B 24) allow a
couple of epochs per round at 3 rounds (Table 3's B = 5000 over 3 rounds would allow about 50). Also: the progress
bar counts aggregation rounds, bad output folders are refused before any training, files are written all or
none, the captions describe what each figure draws, and the side-by-side tables say where ours and the paper's
number are not the same quantity.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import numpy as np
import pytest

from flmarket.analysis import plots, reproduce_bgfl
from flmarket.analysis.reproduce_bgfl import (
    COMPARISON_COLUMNS,
    BGFLReproductionSettings,
    MarketTerms,
    backend_for,
    datasets_in,
    relative_rise_percent,
    run_asyfl,
    run_bgfl,
    run_experiment,
    t_interval,
)
from flmarket.market.errors import MarketError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ROUNDS = 3
REPEATS = 2
TEST_TERMS = MarketTerms(budget=300.0, initial_local_epochs=1)  # r_max = floor(60 / 9.8) = 6 >= ROUNDS
LN_TABLE_3_COMPUTATION_COST = 7.966379  # SPEC A.3: ln 2882.4

# SPEC A.9's numbers, by experiment: (quantity prefix, paper value)
PAPER = {
    "bgfl-fig2": [("accuracy after the last aggregation", 95.34), ("loss after the last aggregation", 0.1616)],
    "bgfl-fig3": [
        ("accuracy after the last aggregation, eps 1", 94.12),
        ("loss after the last aggregation, eps 1", 0.1973),
        ("accuracy after the last aggregation, eps 3", 94.31),
        ("loss after the last aggregation, eps 3", 0.1829),
        ("accuracy after the last aggregation, eps 4", 94.68),
        ("loss after the last aggregation, eps 4", 0.1616),
        ("accuracy after the last aggregation, eps 5", 95.36),
        ("loss after the last aggregation, eps 5", 0.1541),
    ],
    "bgfl-fig4": [
        ("providers' average total cost, rise from eps 1 to 5", 16.53),
        ("providers' average total utility, rise from eps 1 to 5", 0.11),
        ("unit utility at eps 3, round 1", 42.74),
        ("unit utility at eps 3, last round", 45.28),
    ],
}


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def settings(out: Path) -> BGFLReproductionSettings:
    return BGFLReproductionSettings(out=out, repeats=REPEATS, rounds=ROUNDS, seed=5, progress=False, terms=TEST_TERMS)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[object, list[dict[str, str]]]]:
    out = tmp_path_factory.mktemp("reproduce-bgfl")
    results = {}
    for name in PAPER:
        output = run_experiment(name, settings(out))
        results[name] = (output, read_rows(output.csv_path))
    return results


def numeric(rows: list[dict[str, str]], suffixes: tuple[str, ...] = ("_mean", "_low", "_high")) -> np.ndarray:
    return np.array([float(row[key]) for row in rows for key in row if key.endswith(suffixes)])


# ------------------------------------------------------------------------------------------------------------
# Pure helpers: hand-computed numbers.


def test_t_interval_is_the_student_t_interval() -> None:
    mean, low, high = t_interval(np.array([[1.0], [2.0], [3.0]]))
    # s = 1, n = 3, t(0.975, 2) = 4.302653: half width 4.302653 / sqrt(3) = 2.484138
    assert mean[0] == pytest.approx(2.0)
    assert low[0] == pytest.approx(2.0 - 2.484138, abs=1e-6)
    assert high[0] == pytest.approx(2.0 + 2.484138, abs=1e-6)
    with pytest.raises(MarketError, match="needs >= 2 repeats, got 1"):
        t_interval(np.array([[1.0]]))


def test_relative_rise_is_a_percentage_and_nan_on_zero() -> None:
    rise = relative_rise_percent(np.array([116.53, 5.0, 1.0]), np.array([100.0, 4.0, 0.0]))
    assert rise[:2] == pytest.approx([16.53, 25.0])
    assert math.isnan(rise[2])


def test_data_root_selects_torchvision_sets(tmp_path: Path) -> None:
    assert datasets_in(None) == ("digits",)
    with pytest.raises(MarketError, match="holds neither MNIST/raw nor cifar-10-batches-py"):
        datasets_in(str(tmp_path))
    with pytest.raises(MarketError, match="data_root: .*absent does not exist or is not a folder"):
        datasets_in(str(tmp_path / "absent"))
    (tmp_path / "cifar-10-batches-py").mkdir()
    assert datasets_in(str(tmp_path)) == ("cifar10",)
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    assert datasets_in(str(tmp_path)) == ("mnist", "cifar10")


def test_settings_are_checked() -> None:
    with pytest.raises(MarketError, match="repeats: must be >= 2"):
        BGFLReproductionSettings(repeats=1)
    with pytest.raises(MarketError, match="rounds: must be >= 1, got 0"):
        BGFLReproductionSettings(rounds=0)
    with pytest.raises(MarketError, match="unknown experiment 'bgfl-fig9'"):
        run_experiment("bgfl-fig9", BGFLReproductionSettings(progress=False))
    assert BGFLReproductionSettings().learning_rate_for("mnist") == 0.01  # Table 3
    assert BGFLReproductionSettings(learning_rate=0.2).learning_rate_for("digits") == 0.2


# ------------------------------------------------------------------------------------------------------------
# One BGFL run and one AsyFL run: the mechanism's arithmetic holds round by round.


@pytest.mark.slow
def test_a_bgfl_run_follows_the_mechanism_and_is_seeded(tmp_path: Path) -> None:
    run_settings = settings(tmp_path)
    traces = []
    for _ in range(2):
        backend = backend_for(run_settings, "digits", "mlp", "fedadp", repeat=0)
        traces.append(run_bgfl(backend, (1, 8), 2.0, ROUNDS, TEST_TERMS, np.random.default_rng(3)))
    trace = traces[0]
    np.testing.assert_array_equal(trace.accuracy, traces[1].accuracy)  # same seed, same run
    np.testing.assert_array_equal(trace.unit_cost, traces[1].unit_cost)
    assert trace.accuracy.shape == (ROUNDS,) and np.all((trace.accuracy >= 0) & (trace.accuracy <= 1))
    assert trace.epochs[0] == TEST_TERMS.initial_local_epochs
    # after round 1 providers train max(gamma_NE, minimum) epochs (the simulator's minimum_local_iterations)
    np.testing.assert_array_equal(trace.epochs[1:], np.maximum(trace.equilibrium_epochs[1:], 1))
    # C_unit = ln C_com + C_pr with C_pr > 0 for a perturbed upload (B 6)
    assert np.all(trace.unit_cost > LN_TABLE_3_COMPUTATION_COST)
    np.testing.assert_allclose(trace.cost, trace.epochs * trace.unit_cost)
    pool = TEST_TERMS.task(ROUNDS).pool_per_round  # 300 * 0.8 / 6 = 40
    assert pool == pytest.approx(40.0)
    paid = 2 * trace.reward
    assert np.all(np.isclose(paid, pool) | np.isclose(paid, 0.0))  # (B 13): the pool or nothing
    # (B 21a) with two providers and 7 committee nodes at 1.4: W = 2 mean(rho) - 2 mean(k C_unit) - 9.8
    np.testing.assert_allclose(trace.welfare, 2 * trace.reward - 2 * trace.cost - 9.8)


@pytest.mark.slow
def test_asyfl_run_has_one_point_per_aggregation(tmp_path: Path) -> None:
    backend = backend_for(settings(tmp_path), "digits", "mlp", "fedasync", repeat=0)
    accuracy, loss = run_asyfl(backend, (1, 8, 0), 3.0, 4, 1, np.random.default_rng(0))
    assert accuracy.shape == loss.shape == (4,)
    assert np.all((accuracy >= 0) & (accuracy <= 1)) and np.all(np.isfinite(loss))
    assert backend.round_index == 4  # each arrival is one aggregation


# ------------------------------------------------------------------------------------------------------------
# The three experiments at tiny sizes.


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PAPER))
def test_each_experiment_writes_its_files(outputs, name: str) -> None:
    output, rows = outputs[name]
    assert output.png_path.read_bytes()[:8] == PNG_MAGIC
    assert output.png_path.with_suffix(".pdf").read_bytes()[:4] == b"%PDF"
    caption = (output.png_path.parent / f"{name}.caption.txt").read_text()
    assert "95% Student-t intervals" in caption and f"means of {REPEATS} repeats" in caption
    assert len(rows) == output.rows > 0
    values = numeric(rows)
    assert values.size and np.all(np.isfinite(values))
    assert all(int(row["repeats"]) == REPEATS and int(row["seed"]) == 5 for row in rows)
    # an accuracy's interval stays in [0, 1] and a loss's above 0, whatever the t-interval of 2 repeats says
    accuracy = numeric(rows, ("accuracy_low", "accuracy_high"))
    assert np.all((accuracy >= 0) & (accuracy <= 1))
    assert np.all(numeric(rows, ("loss_low",)) >= 0)
    assert output.figure is not None and output.caption_path.read_text() == caption


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PAPER))
def test_side_by_side_table_has_the_papers_numbers(outputs, name: str) -> None:
    output, _ = outputs[name]
    table = read_rows(output.comparison_csv_path)
    assert tuple(table[0]) == COMPARISON_COLUMNS
    by_quantity = {row["quantity"]: row for row in table}
    markdown = output.comparison_markdown_path.read_text()
    for prefix, paper in PAPER[name]:
        (row,) = [row for quantity, row in by_quantity.items() if quantity.startswith(prefix)]
        assert float(row["paper"]) == paper
        assert f"| {paper:.4g} |" in markdown
    for row in table:
        if math.isfinite(float(row["ours"])):
            assert float(row["difference"]) == pytest.approx(float(row["ours"]) - float(row["paper"]), abs=1e-12)
            assert float(row["ours_low"]) <= float(row["ours"]) <= float(row["ours_high"])
        if row["quantity"].startswith("accuracy after"):  # a percentage: its interval stays in [0, 100]
            assert 0.0 <= float(row["ours_low"]) and float(row["ours_high"]) <= 100.0
        if ", rise " in row["quantity"] and math.isfinite(float(row["ours"])):  # not the ratio of the CSV's means
            assert "each repeat's rise" in row["note"], row


@pytest.mark.slow
def test_figure_2_has_every_coalition_curve(outputs) -> None:
    _, rows = outputs["bgfl-fig2"]
    coalitions = {row["coalition"] for row in rows}
    assert coalitions == {"P1", "P8", "P0", "P1+P8", "P1+P0", "P8+P0", "P1+P8+P0"}
    for coalition in coalitions:
        curve = [row for row in rows if row["coalition"] == coalition]
        assert [int(row["round"]) for row in curve] == list(range(1, ROUNDS + 1))
        accuracy = np.array([float(row["accuracy_mean"]) for row in curve])
        assert np.all((accuracy >= 0) & (accuracy <= 1))
        assert float(curve[0]["epochs_mean"]) == TEST_TERMS.initial_local_epochs


@pytest.mark.slow
def test_figure_3_has_bgfl_and_asyfl_per_budget(outputs) -> None:
    _, rows = outputs["bgfl-fig3"]
    keys = {(row["series"], float(row["privacy_budget"])) for row in rows}
    assert keys == {(series, eps) for series in ("BGFL", "AsyFL") for eps in (1.0, 3.0, 4.0, 5.0)}
    assert len(rows) == len(keys) * ROUNDS
    for key in keys:
        curve = [row for row in rows if (row["series"], float(row["privacy_budget"])) == key]
        accuracy = np.array([float(row[f"accuracy_{part}"]) for row in curve for part in ("mean", "low", "high")])
        assert np.all(np.isfinite(accuracy))
        means = np.array([float(row["accuracy_mean"]) for row in curve])
        assert np.all((means >= 0) & (means <= 1))


@pytest.mark.slow
def test_figure_4_has_totals_per_model_and_budget(outputs) -> None:
    _, rows = outputs["bgfl-fig4"]
    assert {(row["model"], float(row["privacy_budget"])) for row in rows} == {
        (model, eps) for model in ("mlp", "cnn") for eps in (1.0, 3.0, 4.0, 5.0)
    }
    for row in rows:
        assert float(row["cost_mean"]) > 0.0  # the first round trains delta_k epochs at C_unit > 0
        assert 0.0 <= float(row["final_accuracy_mean"]) <= 1.0
        assert float(row["cost_low"]) <= float(row["cost_mean"]) <= float(row["cost_high"])


@pytest.mark.slow
def test_cli_runs_a_bgfl_figure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from flmarket.analysis.reproduce import register

    root = argparse.ArgumentParser(prog="flmarket")
    register(root.add_subparsers(dest="command", required=True))
    args = root.parse_args(
        ["reproduce", "bgfl-fig2", "--out", str(tmp_path), "--repeats", "2", "--rounds", "1", "--format", "svg"]
    )
    assert args.data_root is None and args.repeats == 2 and args.dpi == 200
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "bgfl-fig2" in printed and "paper 95.34" in printed
    rows = read_rows(tmp_path / "bgfl-fig2.csv")
    assert {int(row["round"]) for row in rows} == {1}
    assert (tmp_path / "bgfl-fig2-vs-paper.md").read_text().count("| 95.34 |") == 1
    assert (tmp_path / "bgfl-fig2.svg").is_file() and not (tmp_path / "bgfl-fig2.pdf").exists()


# ------------------------------------------------------------------------------------------------------------
# Progress per round, bad output folders, all-or-none files, captions and notes.


class RecordingBar:
    """Stands in for tqdm: records the total and the steps taken."""

    made: list[RecordingBar] = []

    def __init__(self, iterable: object = None, total: int | None = None, **options: object) -> None:
        self.iterable, self.total, self.steps = iterable, total, 0
        RecordingBar.made.append(self)

    def __iter__(self):
        for item in self.iterable:  # the old per-repeat bar: one step per item
            self.steps += 1
            yield item

    def __enter__(self) -> RecordingBar:
        return self

    def __exit__(self, *exception: object) -> None:
        return None

    def update(self, steps: int = 1) -> None:
        self.steps += steps

    def set_postfix_str(self, *args: object, **kwargs: object) -> None:
        pass

    def close(self) -> None:
        pass


def test_the_progress_bar_advances_per_aggregation_round(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    RecordingBar.made = []
    monkeypatch.setattr(reproduce_bgfl, "tqdm", RecordingBar)
    tiny = BGFLReproductionSettings(out=tmp_path, repeats=2, rounds=2, seed=5, progress=False, terms=TEST_TERMS)
    run_experiment("bgfl-fig2", tiny)
    (bar,) = RecordingBar.made
    # 2 repeats x 7 coalitions x 2 rounds: a step every round, not one per repeat (a minute apart at full size)
    assert bar.total == bar.steps == 2 * 7 * 2


def test_runs_report_every_aggregation_round(tmp_path: Path) -> None:
    steps: list[str] = []
    backend = backend_for(settings(tmp_path), "digits", "mlp", "fedadp", repeat=0)
    run_bgfl(backend, (1, 8), 2.0, 2, TEST_TERMS, np.random.default_rng(3), on_round=lambda: steps.append("bgfl"))
    backend = backend_for(settings(tmp_path), "digits", "mlp", "fedasync", repeat=0)
    run_asyfl(backend, (1, 8), 2.0, 3, 1, np.random.default_rng(0), on_round=lambda: steps.append("asyfl"))
    assert steps == ["bgfl"] * 2 + ["asyfl"] * 3


def test_an_out_that_is_a_file_is_refused_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flmarket.analysis.reproduce import register

    existing = tmp_path / "f"
    existing.write_text("")
    for out in (existing, existing / "rep"):
        with pytest.raises(MarketError, match=f"out: must be a folder, got {str(out)!r}, (which|whose parent)"):
            BGFLReproductionSettings(out=out)
    ran = []
    monkeypatch.setitem(reproduce_bgfl.EXPERIMENTS, "bgfl-fig3", lambda chosen: ran.append(chosen))
    root = argparse.ArgumentParser(prog="flmarket")
    register(root.add_subparsers(dest="command", required=True))
    args = root.parse_args(["reproduce", "bgfl-fig3", "--rounds", "3", "--repeats", "2", "--out", str(tmp_path)])
    args.out = str(existing)  # as if the file appeared after parsing
    with pytest.raises(MarketError, match="out: must be a folder"):
        args.func(args)
    assert not ran and existing.read_text() == ""


def test_a_failure_while_drawing_leaves_no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def out_of_memory(*args: object, **kwargs: object) -> None:
        raise MemoryError("std::bad_alloc")

    monkeypatch.setattr(plots, "save_figure", out_of_memory)
    figure, _ = plots.new_figure()
    comparison = reproduce_bgfl.compare(reproduce_bgfl.PAPER_SETTING_1[1], [0.2, 0.3])
    with pytest.raises(MemoryError):
        reproduce_bgfl._save(
            "bgfl-fig2",
            [{"round": 1}],
            [comparison],
            figure,
            settings(tmp_path / "out"),
            ["n"] * 5,
            model="mlp",
            dataset="digits",
        )
    assert not (tmp_path / "out").exists()  # no CSV, no side-by-side table, no staging folder


def test_unit_utility_bound_with_table_3_numbers() -> None:
    from flmarket.analysis.reproduce_bgfl import unit_utility_bound, unit_utility_note

    pool = MarketTerms().task(100).pool_per_round  # 5000 * 0.8 / r_max, r_max = floor(1000 / 9.8) = 102
    assert pool == pytest.approx(4000 / 102)
    # mean (B 8) utility of 3 providers < pool * mu0 F / mu1 / 3 = 39.2157 * 2 * 1 / 10 / 3 = 2.6144
    assert unit_utility_bound(pool, 3, 2 * 1 / 10) == pytest.approx(2.6144, abs=1e-4)
    note = unit_utility_note(pool, 3, 0.2, 42.74)
    assert note.startswith("not the same quantity") and "39.22 * 0.2 / 3 = 2.614" in note
    assert "16.3 times that bound" in note  # 42.74 / 2.6144 = 16.35
    assert "not the same quantity" not in unit_utility_note(pool, 3, 0.2, 1.0)


@pytest.mark.slow
def test_figure_4_caption_describes_its_bars(outputs) -> None:
    output, _ = outputs["bgfl-fig4"]
    caption = output.caption_path.read_text()
    assert "accuracy intervals" not in caption and "loss intervals" not in caption  # Fig. 4 draws neither
    assert "cost intervals clipped to >= 0; utility and welfare intervals not clipped" in caption.splitlines()[0]
    for name in ("bgfl-fig2", "bgfl-fig3"):  # the curves' captions keep their clipping
        first = outputs[name][0].caption_path.read_text().splitlines()[0]
        assert "accuracy intervals clipped to [0, 1], loss intervals clipped to >= 0" in first


@pytest.mark.slow
def test_side_by_side_notes_say_where_ours_is_not_the_papers_quantity(outputs) -> None:
    output, _ = outputs["bgfl-fig4"]
    table = {row["quantity"]: row for row in read_rows(output.comparison_csv_path)}
    # TEST_TERMS: pool = 300 * 0.8 / floor(60 / 9.8) = 240 / 6 = 40; the MLP's mu0 F / mu1 = 2 / 10: 40 * 0.2 / 3
    for quantity in ("unit utility at eps 3, round 1", "unit utility at eps 3, last round"):
        row = table[quantity]
        assert row["note"].startswith("not the same quantity") and "40 * 0.2 / 3 = 2.667" in row["note"]
        assert abs(float(row["ours"])) < 2.667
    assert "| note |" in output.comparison_markdown_path.read_text()
    fig2 = read_rows(outputs["bgfl-fig2"][0].comparison_csv_path)
    assert {row["note"] for row in fig2} == {"ours on digits, the paper's on MNIST"}


def test_the_epochs_note_gives_the_minimum_trained_not_delta_k() -> None:
    """Round 1 trains delta_k = 5 epochs; later rounds train max(gamma_NE, minimum). The caption said "(5
    epochs ...)" of the minimum, reading round 1; it now reads the rounds that were raised to the minimum."""
    from flmarket.analysis.reproduce_bgfl import RunTrace, _epochs_note

    def trace(epochs: list[int], gamma: list[int]) -> RunTrace:
        zeros = np.zeros(len(epochs))
        return RunTrace(zeros, zeros, np.array(epochs), np.array(gamma), zeros, zeros, zeros, zeros, zeros)

    raised = _epochs_note([trace([5, 1, 1, 25], [5, 0, 0, 25])])
    assert "gamma_NE (B 24, capped by B 12) after round 1, value: rounds = 0: 2, 25: 1;" in raised
    assert "2 of 3 rounds trained the minimum instead (1 epoch, the simulator's" in raised
    never = _epochs_note([trace([5, 25, 25], [5, 25, 25])])
    assert "0 of 2 rounds trained the minimum instead (the simulator's mechanism.minimum_local_iterations" in never


@pytest.mark.slow
def test_figure_4_at_one_round_labels_its_model_and_cannot_measure_a_rise(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--rounds 1 reported the unit utility's rise from round 1 to the last as '0 (0 to 0)' against the paper's
    5.89; the table, from the MLP only (the CSV has CNN rows too), did not say so; the summary line listed the
    -vs-paper.md file but not the -vs-paper.csv."""
    from flmarket.sim.cli import main

    out = tmp_path / "out"
    assert (
        main(["reproduce", "bgfl-fig4", "--rounds", "1", "--repeats", "2", "--format", "svg", "--out", str(out)]) == 0
    )
    printed = capsys.readouterr().out
    assert f"{out / 'bgfl-fig4-vs-paper.csv'}, {out / 'bgfl-fig4-vs-paper.md'}" in printed.splitlines()[0]
    why = "a rise from round 1 to the last needs >= 2 rounds, this run has 1"
    assert f"unit utility at eps 3, rise round 1 to last: paper 5.89, ours not measurable ({why})" in printed
    markdown = (out / "bgfl-fig4-vs-paper.md").read_text()
    assert markdown.startswith("bgfl-fig4: 1 rounds, 2 repeats, seed 0; ours = the MLP on digits, mean")
    assert (
        f"| unit utility at eps 3, rise round 1 to last | 5.89 | not measurable | n/a | % | paper Section 5.2 | {why} |"
        in markdown
    )
    table = read_rows(out / "bgfl-fig4-vs-paper.csv")
    assert {(row["model"], row["dataset"]) for row in table} == {("mlp", "digits")}
    (rise,) = [row for row in table if row["quantity"] == "unit utility at eps 3, rise round 1 to last"]
    assert math.isnan(float(rise["ours"])) and math.isnan(float(rise["difference"])) and rise["note"] == why
    assert {row["model"] for row in read_rows(out / "bgfl-fig4.csv")} == {"mlp", "cnn"}
    assert "the side-by-side table compares the MLP on digits" in (out / "bgfl-fig4.caption.txt").read_text()


@pytest.mark.slow
def test_figure_4_at_two_rounds_measures_the_rise(outputs) -> None:
    """The counterpart: with >= 2 rounds the rise is a number (ROUNDS = 3 here)."""
    output, _ = outputs["bgfl-fig4"]
    (rise,) = [row for row in read_rows(output.comparison_csv_path) if row["quantity"].endswith("rise round 1 to last")]
    assert math.isfinite(float(rise["ours"])) and rise["note"].startswith("a ratio, so units cancel")


def test_repeats_left_out_is_the_papers_ten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--repeats now defaults to None (so that `reproduce mmzd-fig3 --repeats 3` can be refused); a BGFL figure
    without it still averages DEFAULT_REPEATS = 10 runs."""
    from flmarket.analysis.reproduce import register

    chosen: list[BGFLReproductionSettings] = []

    def capture(name: str, settings: BGFLReproductionSettings) -> None:
        chosen.append(settings)
        raise KeyboardInterrupt  # stop before anything is printed or run

    monkeypatch.setattr(reproduce_bgfl, "run_experiment", capture)
    root = argparse.ArgumentParser(prog="flmarket")
    register(root.add_subparsers(dest="command", required=True))
    args = root.parse_args(["reproduce", "bgfl-fig3", "--out", str(tmp_path)])
    assert args.repeats is None and args.data_root is None
    with pytest.raises(KeyboardInterrupt):
        args.func(args)
    assert chosen[0].repeats == reproduce_bgfl.DEFAULT_REPEATS == 10
