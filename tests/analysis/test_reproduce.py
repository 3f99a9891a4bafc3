"""Tests for analysis/reproduce.py: each experiment at reduced size writes a sound CSV, PNG, PDF and caption;
the intervals (Wilson, cluster bootstrap); the figures' legends; the CLI, its refusals of bad input before any
work, and files written all or none."""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_hex

from flmarket.analysis import plots
from flmarket.analysis.reproduce import (
    EXPERIMENTS,
    ReproductionSettings,
    cluster_bootstrap_mean,
    register,
    run_experiment,
    wilson_interval,
)
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
def test_every_experiment_writes_csv_png_pdf_and_caption(outputs, name: str) -> None:
    output, rows = outputs[name]
    assert output.png_path.read_bytes()[:8] == PNG_MAGIC
    assert output.vector_path == output.png_path.with_suffix(".pdf")
    assert output.vector_path.read_bytes()[:4] == b"%PDF"
    caption = output.caption_path.read_text()
    assert caption.startswith(f"Fig. {name.removeprefix('mmzd-fig')} (") and "95%" in caption
    assert len(rows) == output.rows > 0
    assert output.findings


def test_wilson_interval_matches_the_closed_form_at_the_edges() -> None:
    # Wilson at k = 0: upper = z^2 / (n + z^2); z = 1.959964, n = 10: 3.841459 / 13.841459 = 0.277533
    assert wilson_interval(0, 10) == (pytest.approx(0.0, abs=1e-12), pytest.approx(0.277533, abs=1e-6))
    assert wilson_interval(10, 10) == (pytest.approx(1 - 0.277533, abs=1e-6), pytest.approx(1.0))


def test_cluster_bootstrap_resamples_whole_games() -> None:
    # games A = [1, 1] and B = [3]: pooled mean 5/3; resampling two games gives AA (mean 1, p 1/4), AB or BA
    # (5/3, p 1/2), BB (3, p 1/4), so the 2.5% and 97.5% percentiles are 1 and 3
    assert cluster_bootstrap_mean([[1.0, 1.0], [3.0]]) == (pytest.approx(5 / 3), 1.0, 3.0)
    mean, low, high = cluster_bootstrap_mean([[2.0, 4.0], []])  # one game holds values: no interval
    assert mean == 3.0 and math.isnan(low) and math.isnan(high)
    assert all(math.isnan(value) for value in cluster_bootstrap_mean([[], []]))


@pytest.mark.parametrize("name, trials", [("mmzd-fig8", "draws"), ("mmzd-fig9", "samples"), ("mmzd-fig10", "samples")])
def test_enforceable_share_has_its_wilson_interval_and_averages_only_enforceable_draws(
    outputs, name: str, trials: str
) -> None:
    output, rows = outputs[name]
    successes = "feasible_draws" if trials == "draws" else "feasible_samples"
    caption = output.caption_path.read_text()
    for row in rows:
        k, n = int(row[successes]), int(row[trials])
        share, low, high = (float(row[f"enforceable_share{suffix}"]) for suffix in ("", "_low", "_high"))
        assert share == pytest.approx(k / n)
        assert (low, high) == pytest.approx(wilson_interval(k, n))
        assert f"{k}/{n}" in caption  # "k of n enforceable" shown for every point
        mean = float(row["largest_enforceable_welfare"])
        assert math.isnan(mean) == (k == 0)  # averaged over the enforceable draws only
        bounds = [float(row[f"largest_enforceable_welfare_{end}"]) for end in ("low", "high")]
        if not math.isnan(bounds[0]):
            assert bounds[0] <= mean <= bounds[1]


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
    with pytest.raises(MarketError, match=f"dpi: must be an integer in {plots.MIN_DPI}..{plots.MAX_DPI} .*, got 0"):
        ReproductionSettings(dpi=0)
    with pytest.raises(MarketError, match="format: must be one of pdf, svg, got 'eps'"):
        ReproductionSettings(figure_format="eps")


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
            "--dpi",
            "60",
            "--format",
            "svg",
        ]
    )
    assert args.func(args) == 0
    assert (tmp_path / "mmzd-fig7.csv").exists() and (tmp_path / "mmzd-fig7.png").exists()
    assert (tmp_path / "mmzd-fig7.svg").read_text().lstrip().startswith("<?xml")
    assert (tmp_path / "mmzd-fig7.caption.txt").read_text().strip()
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
    assert "--dpi" in text and "--format" in text
    with pytest.raises(SystemExit) as bad_exit:
        parser().parse_args(["reproduce", "fig99"])
    assert bad_exit.value.code == 2


# ------------------------------------------------------------------------------------------------------------
# Exact Wilson bounds, distinguishable legends, bad input refused up front, files all or none.


def test_wilson_bounds_are_exact_at_the_extremes_and_inside_the_unit_interval() -> None:
    # 0 of n has lower bound 0 and n of n upper bound 1 exactly; the closed form gave float noise at some n
    # (5.6e-17 at 0 of 3, 0.9999999999999999 at 10 of 10), which the CSVs printed
    for trials in range(1, 61):
        assert wilson_interval(0, trials)[0] == 0.0
        assert wilson_interval(trials, trials)[1] == 1.0
        for successes in range(trials + 1):
            low, high = wilson_interval(successes, trials)
            assert 0.0 <= low <= successes / trials <= high <= 1.0


def test_share_columns_print_exact_zero_and_one(tmp_path: Path) -> None:
    def run(name: str, draws: int) -> list[dict[str, str]]:
        settings = ReproductionSettings(out=tmp_path, repetitions=2, rounds=1, draws=draws, progress=False, dpi=30)
        return read_rows(run_experiment(name, settings).csv_path)

    grand = run("mmzd-fig8", 10)[-1]  # the grand alliance is enforceable in all 10 draws
    assert (grand["feasible_draws"], grand["draws"]) == ("10", "10")
    assert grand["enforceable_share_high"] == "1.0"
    none = [row for row in run("mmzd-fig9", 5) if row["feasible_samples"] == "0"]  # 0 of 25 at large N
    assert none and all(row["enforceable_share_low"] == "0.0" for row in none)


def _legend_styles(figure) -> dict[str, tuple[str, str, str]]:
    """Each legend label's (marker, colour, line style) as the figure legend draws it."""
    styles = {}
    for axis in figure.axes:
        for handle, label in zip(*axis.get_legend_handles_labels(), strict=True):
            line = handle.lines[0] if hasattr(handle, "lines") else handle  # an errorbar: its data line
            styles[label] = (str(line.get_marker()), to_hex(line.get_color()), str(line.get_linestyle()))
    return styles


@pytest.mark.parametrize("name", ["mmzd-fig8", "mmzd-fig9", "mmzd-fig10"])
def test_every_legend_entry_of_the_alliance_figures_has_its_own_style(outputs, name: str) -> None:
    output, _ = outputs[name]
    styles = _legend_styles(output.figure)
    welfare = next(label for label in styles if label.startswith("P'_max, enforceable"))
    relative = next(label for label in styles if label.startswith("P'_max / P(R, ..., R)"))
    assert styles[welfare] != styles[relative]
    assert len(set(styles.values())) == len(styles), styles


def test_dpi_is_bounded_on_the_command_line_and_in_the_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "rep"
    with pytest.raises(SystemExit) as bad_exit:
        parser().parse_args(["reproduce", "mmzd-fig6", "--dpi", "100000", "--out", str(out)])
    assert bad_exit.value.code == 2
    error = capsys.readouterr().err
    assert f"argument --dpi: must be an integer in {plots.MIN_DPI}..{plots.MAX_DPI}" in error
    assert error.rstrip().endswith("got 100000") and "Traceback" not in error
    assert parser().parse_args(["reproduce", "mmzd-fig6", "--dpi", str(plots.MAX_DPI)]).dpi == plots.MAX_DPI
    with pytest.raises(MarketError, match=f"dpi: must be an integer in 8..1200 .*, got {plots.MAX_DPI + 1}"):
        ReproductionSettings(out=out, dpi=plots.MAX_DPI + 1)
    with pytest.raises(SystemExit):
        parser().parse_args(["reproduce", "--help"])
    assert f"{plots.MIN_DPI}..{plots.MAX_DPI} dots per inch" in " ".join(capsys.readouterr().out.split())
    assert not out.exists()


@pytest.mark.parametrize("dpi", [1, 4, 5, 7])
def test_a_dpi_too_small_to_draw_text_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dpi: int
) -> None:
    """--dpi 1..4 ran the experiment and then crashed in FreeType ('invalid ppem value') drawing the PNG; 5 did
    too for mmzd-fig8..10 (their x-small k/n labels), and at 7 mmzd-fig7's layout collapses. Every figure draws
    at plots.MIN_DPI (tests/analysis/test_plots.py)."""
    from flmarket.sim.cli import main

    out = tmp_path / "rep"
    argv = ["reproduce", "mmzd-fig3", "--rounds", "2", "--repetitions", "2", "--dpi", str(dpi), "--out", str(out)]
    with pytest.raises(SystemExit) as bad_exit:
        main(argv)
    assert bad_exit.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error
    assert f"argument --dpi: must be an integer in {plots.MIN_DPI}..{plots.MAX_DPI} (below {plots.MIN_DPI}" in error
    assert error.rstrip().endswith(f"got {dpi} (see `flmarket reproduce --help`)")
    with pytest.raises(MarketError, match=f"^dpi: must be an integer in {plots.MIN_DPI}..{plots.MAX_DPI} "):
        ReproductionSettings(out=out, dpi=dpi)
    assert not out.exists()


@pytest.mark.parametrize("name", ["mmzd-fig6", "all", "bgfl-fig3"])
def test_an_out_that_is_a_file_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    existing = tmp_path / "f"
    existing.write_text("")
    for out, why in ((existing, "which is a file"), (existing / "rep", f"whose parent {str(existing)!r} is a file")):
        with pytest.raises(SystemExit) as bad_exit:
            parser().parse_args(["reproduce", name, "--out", str(out)])
        assert bad_exit.value.code == 2
        error = capsys.readouterr().err
        assert f"argument --out: must be a folder, got {str(out)!r}, {why}" in error
        assert "Traceback" not in error
    with pytest.raises(MarketError, match="out: must be a folder, got .*, which is a file"):
        ReproductionSettings(out=existing)
    assert existing.read_text() == ""


def test_the_handler_refuses_a_file_out_before_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    existing = tmp_path / "f"
    existing.write_text("")
    ran = []
    monkeypatch.setitem(EXPERIMENTS, "mmzd-fig6", lambda settings: ran.append(settings))
    args = parser().parse_args(["reproduce", "mmzd-fig6", "--out", str(tmp_path)])
    args.out = str(existing)  # as if the file appeared after parsing
    with pytest.raises(MarketError, match="out: must be a folder"):
        args.func(args)
    assert not ran


def test_a_failure_while_writing_leaves_no_partial_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "rep"
    first = run_experiment("mmzd-fig6", small(folder, seed=1))
    before = {path.name: path.read_bytes() for path in folder.iterdir()}
    assert set(before) == {"mmzd-fig6.csv", "mmzd-fig6.png", "mmzd-fig6.pdf", "mmzd-fig6.caption.txt"}
    assert first.csv_path == folder / "mmzd-fig6.csv" and first.vector_path == folder / "mmzd-fig6.pdf"

    def out_of_memory(*args: object, **kwargs: object) -> None:
        raise MemoryError("std::bad_alloc")  # what the Agg renderer raised at --dpi 100000

    monkeypatch.setattr(plots, "save_figure", out_of_memory)
    with pytest.raises(MemoryError):
        run_experiment("mmzd-fig6", small(folder, seed=2))  # another seed: another CSV, had it been written
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before  # no staging folder either
    with pytest.raises(MemoryError):
        run_experiment("mmzd-fig6", small(tmp_path / "new"))
    assert not (tmp_path / "new").exists()


def test_repetitions_is_refused_for_a_bgfl_figure_it_would_not_change(tmp_path, capsys) -> None:
    """bgfl-fig2 --repetitions 0 ran and wrote everything: the BGFL figures average --repeats runs."""
    from flmarket.sim.cli import main

    argv = ["reproduce", "bgfl-fig2", "--repetitions", "5", "--rounds", "2", "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    assert "--repetitions: the MMZD experiments' option; bgfl-fig2 averages --repeats" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("mmzd-fig3", ["--repeats", "3"], "--repeats: the BGFL experiments' option; mmzd-fig3 averages --repetitions"),
        ("mmzd-fig3", ["--data-root", "/nonexistent"], "--data-root: the BGFL experiments' option; mmzd-fig3 reads no"),
        ("all", ["--repeats", "3"], "--repeats: the BGFL experiments' option; all runs the MMZD figures, which"),
        ("all", ["--data-root", "/nonexistent"], "--data-root: the BGFL experiments' option; all runs the MMZD"),
    ],
)
def test_bgfl_options_are_refused_for_mmzd_figures_they_would_not_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, options: list[str], message: str
) -> None:
    """mmzd-fig3 --repeats 3 --data-root /nonexistent ran and ignored both. 'all' runs the MMZD figures only (its
    choice says so), so it refuses them too."""
    from flmarket.sim.cli import main

    out = tmp_path / "out"
    argv = ["reproduce", name, *options, "--rounds", "2", "--repetitions", "2", "--out", str(out)]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"flmarket: error: {message}") and error.count("\n") == 1
    assert not out.exists()


def test_repetitions_below_two_names_the_option_and_the_help_says_what_rounds_are(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--repetitions 1 said 'repetitions: must be >= 2' (the settings' field); --rounds was called 'game rounds
    per run' beside a game_rounds column that is R, not it."""
    for option, value, rule in (("--repetitions", "1", ">= 2"), ("--rounds", "0", ">= 1"), ("--repeats", "1", ">= 2")):
        with pytest.raises(SystemExit) as bad_exit:
            parser().parse_args(["reproduce", "mmzd-fig6", option, value])
        assert bad_exit.value.code == 2
        error = capsys.readouterr().err
        assert f"argument {option}: must be an integer {rule}" in error and f"got {value}" in error
    with pytest.raises(SystemExit):
        parser().parse_args(["reproduce", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "independent runs averaged, at least 2 (default 100)" in help_text
    assert (
        "how many times each run plays the game, the CSV's round 1..ROUNDS, at least 1 (default 20; not the "
        in help_text
    )
    assert "game_rounds, R = 3" in help_text and "game rounds per run" not in help_text
    assert "with 95% t-intervals, at least 2 (default 10" in help_text


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every entry of `folder` (hidden ones included): a file's bytes, None for a folder."""
    return {path.name: path.read_bytes() if path.is_file() else None for path in folder.iterdir()}


def test_a_destination_that_cannot_be_replaced_is_named_and_nothing_moves(tmp_path: Path) -> None:
    """A folder where mmzd-fig6.pdf goes: the error named the hidden staging file, and the CSV and caption were
    replaced while the PNG stayed old."""
    folder = tmp_path / "rep"
    run_experiment("mmzd-fig6", small(folder, seed=1))
    (folder / "mmzd-fig6.pdf").unlink()
    (folder / "mmzd-fig6.pdf" / "x").mkdir(parents=True)
    before = _snapshot(folder)
    with pytest.raises(MarketError) as error:
        run_experiment("mmzd-fig6", small(folder, seed=2))  # another seed: another CSV, had it been written
    assert str(error.value) == (
        f"out: cannot replace {folder / 'mmzd-fig6.pdf'}: it is a folder; move it away or choose another --out"
    )
    assert _snapshot(folder) == before  # no staging folder left either
    assert (folder / "mmzd-fig6.pdf" / "x").is_dir()


def test_a_move_that_fails_midway_puts_the_earlier_files_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The files move one by one; when the last (the PNG) fails, the caption, CSV and PDF already moved are
    taken back and the earlier ones restored: the folder is as before, and the error names the destination."""
    folder = tmp_path / "rep"
    run_experiment("mmzd-fig6", small(folder, seed=1))
    before = _snapshot(folder)
    replace = Path.replace

    def failing_replace(self: Path, target: Path) -> Path:
        if self.name == "mmzd-fig6.png" and self.parent.name.endswith(".partial"):
            raise PermissionError(13, "Permission denied")
        return replace(self, target)

    monkeypatch.setattr(Path, "replace", failing_replace)
    with pytest.raises(MarketError) as error:
        run_experiment("mmzd-fig6", small(folder, seed=2))
    assert str(error.value) == f"out: cannot replace {folder / 'mmzd-fig6.png'}: Permission denied; no file was changed"
    assert _snapshot(folder) == before


def test_the_command_names_its_options_in_errors_not_the_settings_fields(tmp_path: Path, capsys) -> None:
    """`flmarket reproduce` said 'data_root: ...', 'rounds: ...' and 'out: ...' (the Python settings' fields) and
    advised "use dataset='digits'", a Python argument; it now names --data-root, --rounds and --out."""
    from flmarket.analysis.reproduce import in_option_terms
    from flmarket.sim.cli import main

    raw = tmp_path / "root" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    argv = ["reproduce", "bgfl-fig2", "--data-root", str(tmp_path / "root"), "--rounds", "1", "--repeats", "2"]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    said = capsys.readouterr().err
    assert said.startswith("flmarket: error: --data-root: "), said
    assert not (tmp_path / "out").exists()
    assert in_option_terms("rounds: Table 3's budget allows r_max = 102 rounds (B 11), got 103").startswith("--rounds:")
    assert in_option_terms("out: cannot replace x: it is a folder") == "--out: cannot replace x: it is a folder"
    missing = (
        "root: MNIST files missing from r: a; flmarket never downloads: place the files there or use dataset='digits'"
    )
    assert in_option_terms(missing).endswith("or leave out --data-root (digits, bundled)")
    assert in_option_terms("a: b") == "a: b"  # a message that starts with no settings field is left alone
