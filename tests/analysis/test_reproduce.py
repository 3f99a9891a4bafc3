"""Tests for analysis/reproduce.py: each experiment at reduced size writes a sound CSV and PNG; the CLI."""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import numpy as np
import pytest

from flmarket.analysis.reproduce import EXPERIMENTS, ReproductionSettings, register, run_experiment
from flmarket.market.errors import MarketError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def small(out: Path, seed: int = 0) -> ReproductionSettings:
    return ReproductionSettings(out=out, repetitions=4, rounds=3, seed=seed, draws=2, progress=False)


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[object, list[dict[str, str]]]]:
    out = tmp_path_factory.mktemp("reproduce")
    results = {}
    for name in EXPERIMENTS:
        output = run_experiment(name, small(out))
        results[name] = (output, read_rows(output.csv_path))
    return results


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_every_experiment_writes_csv_and_png(outputs, name: str) -> None:
    output, rows = outputs[name]
    assert output.png_path.read_bytes()[:8] == PNG_MAGIC
    assert len(rows) == output.rows > 0
    assert output.findings


@pytest.mark.parametrize("name", ["mmzd-fig3", "mmzd-fig6", "mmzd-fig7"])
def test_round_tables_state_feasibility_and_cover_every_round(outputs, name: str) -> None:
    _, rows = outputs[name]
    design_rows = [row for row in rows if row["controller_strategy"] in ("MMZD", "MMZDA")]
    assert design_rows and all(row["feasible"] in ("True", "False") for row in design_rows)
    assert {int(row["round"]) for row in rows} == {1, 2, 3}
    assert all(int(row["repetitions"]) == 4 for row in rows)


def test_figure_3_has_every_strategy_pair(outputs) -> None:
    _, rows = outputs["mmzd-fig3"]
    pairs = {(row["controller_strategy"], row["others_strategy"]) for row in rows}
    assert len(pairs) == 4 * 5


def test_figure_7_feasible_alliance_rows_carry_their_target(outputs) -> None:
    _, rows = outputs["mmzd-fig7"]
    alliance = [row for row in rows if row["controller_strategy"] == "MMZDA"]
    assert len(alliance[0]["controllers"].split()) == 4
    for row in alliance:
        # mode "auto": an enforceable target is played exactly; otherwise the paper's clipped P_max.
        expected_mode = "exact" if row["feasible"] == "True" else "paper"
        assert row["design_mode"] == expected_mode
        assert math.isfinite(float(row["target"]))
        if expected_mode == "paper":
            assert float(row["target"]) == pytest.approx(float(row["paper_maximum"]))


def test_figure_8_maxima_rise_with_alliance_size(outputs) -> None:
    _, rows = outputs["mmzd-fig8"]
    assert [int(row["alliance_size"]) for row in rows] == list(range(1, 11))
    paper = [float(row["paper_maximum"]) for row in rows]
    assert all(b >= a - 1e-12 for a, b in zip(paper, paper[1:], strict=False))
    # The grand alliance can always enforce its best common action (SPEC B.5 with M = N).
    assert int(rows[-1]["feasible_draws"]) == int(rows[-1]["draws"])
    exact = float(rows[-1]["largest_enforceable_welfare"])
    assert float(rows[-1]["relative_maximum"]) == pytest.approx(exact / float(rows[-1]["full_participation_welfare"]))


def test_analytic_figures_count_their_samples(outputs) -> None:
    _, rows9 = outputs["mmzd-fig9"]
    assert [int(row["players"]) for row in rows9] == list(range(6, 15))
    assert all(int(row["alliance_size"]) == 5 and int(row["samples"]) == 4 for row in rows9)
    _, rows10 = outputs["mmzd-fig10"]
    assert all(int(row["alliance_size"]) * 2 == int(row["players"]) for row in rows10)


def test_same_seed_same_table(tmp_path: Path) -> None:
    first = run_experiment("mmzd-fig6", small(tmp_path / "a", seed=3)).csv_path.read_bytes()
    second = run_experiment("mmzd-fig6", small(tmp_path / "b", seed=3)).csv_path.read_bytes()
    other = run_experiment("mmzd-fig6", small(tmp_path / "c", seed=4)).csv_path.read_bytes()
    assert first == second
    assert first != other


def test_settings_and_names_are_checked(tmp_path: Path) -> None:
    with pytest.raises(MarketError, match="repetitions: must be >= 2"):
        ReproductionSettings(repetitions=1)
    with pytest.raises(MarketError, match="rounds: must be >= 1, got 0"):
        ReproductionSettings(rounds=0)
    with pytest.raises(MarketError, match="unknown experiment 'fig99'"):
        run_experiment("fig99", small(tmp_path))


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="flmarket")
    register(root.add_subparsers(dest="command", required=True))
    return root


def test_cli_runs_an_experiment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = parser().parse_args(
        [
            "reproduce",
            "mmzd-fig7",
            "--out",
            str(tmp_path),
            "--repetitions",
            "3",
            "--rounds",
            "2",
            "--seed",
            "1",
        ]
    )
    assert args.func(args) == 0
    assert (tmp_path / "mmzd-fig7.csv").exists() and (tmp_path / "mmzd-fig7.png").exists()
    printed = capsys.readouterr().out
    assert "mmzd-fig7" in printed and "enforceable" in printed
    rows = read_rows(tmp_path / "mmzd-fig7.csv")
    assert {int(row["round"]) for row in rows} == {1, 2}
    assert np.all([int(row["seed"]) == 1 for row in rows])


def test_cli_help_explains_and_rejects_unknown_names(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as help_exit:
        parser().parse_args(["reproduce", "--help"])
    assert help_exit.value.code == 0
    text = capsys.readouterr().out
    assert "mmzd-fig3" in text and "--repetitions" in text and "enforceable" in text
    with pytest.raises(SystemExit) as bad_exit:
        parser().parse_args(["reproduce", "fig99"])
    assert bad_exit.value.code == 2
