"""analysis/report.py: the HTML page of a quick-start run and of a small sweep parses, and every figure is a PNG."""

from __future__ import annotations

import argparse
import base64
import io
import json
import math
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import flmarket as fm
from flmarket.analysis.report import register, write_report
from flmarket.analysis.sweeps import bootstrap_interval, by_parameter, confidence_interval
from flmarket.sim.config import load_scenario
from flmarket.sim.runner import run_scenario
from flmarket.sim.sweep import parse_grid, run_sweep

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DATA_URI = "data:image/png;base64,"


class PageParser(HTMLParser):
    """Collects image sources, section titles, notes, tables and any external reference."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.titles: list[str] = []
        self.notes: list[str] = []
        self.tables = 0
        self.external: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "img":
            self.images.append(attributes.get("src") or "")
        if tag in ("script", "link") or (tag == "img" and not (attributes.get("src") or "").startswith("data:")):
            self.external.append(tag)
        if tag == "table":
            self.tables += 1
        if tag == "h2":
            self._in = "title"
        if tag == "p" and attributes.get("class") == "note":
            self._in = "note"

    def handle_endtag(self, tag: str) -> None:
        if tag in ("h2", "p"):
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "title":
            self.titles.append(data)
        elif self._in == "note":
            self.notes.append(data)


def parse(path) -> PageParser:
    parser = PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return parser


def assert_valid_pngs(sources: list[str]) -> None:
    for source in sources:
        assert source.startswith(DATA_URI)
        payload = base64.b64decode(source.removeprefix(DATA_URI), validate=True)
        assert payload.startswith(PNG_SIGNATURE)
        image = Image.open(io.BytesIO(payload))
        image.verify()
        pixels = np.asarray(Image.open(io.BytesIO(payload)).convert("L"), dtype=float)
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100
        assert pixels.std() > 1.0  # something was drawn: not a blank canvas


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory):
    output = tmp_path_factory.mktemp("runs")
    return run_scenario(
        load_scenario("quickstart", {"run.tasks": 20}), output_dir=output, run_id="quickstart", show_progress=False
    ).run_dir


def test_quickstart_report_is_self_contained_with_valid_figures(quickstart_run, tmp_path) -> None:
    target = write_report(quickstart_run, tmp_path / "page.html")
    assert target == tmp_path / "page.html" and not list(tmp_path.glob(".*.tmp"))
    page = parse(target)
    assert not page.external  # no scripts, stylesheets or remote images: opens without a server
    # the quick-start logs every figure's events: welfare, shares, participation, rewards, budget, consensus
    assert len(page.images) >= 6
    assert_valid_pngs(page.images)
    for title in (
        "Welfare over time",
        "Strategy shares",
        "Participation and free riding",
        "Reward distribution",
        "Budget use",
        "Consensus costs",
    ):
        assert title in page.titles
    # nothing is missing, so no figure is replaced by a note about absent events
    joined = " ".join(page.notes)
    assert "reward_paid" not in joined and "consensus_decided" not in joined
    assert page.tables >= 3
    # provenance: the scenario, the seed, the package versions and the commit the run was made with
    manifest = json.loads((quickstart_run / "manifest.json").read_text())
    text = target.read_text()
    assert manifest["scenario_name"] in text and f"flmarket {manifest['versions']['flmarket']}" in text
    assert "git commit" in text
    # the metrics table names each measure, its unit and what it is, not the raw column name
    assert "<th>unit</th><th>definition</th>" in text
    assert "mean welfare per task" in text and ">mean_welfare<" not in text
    assert text.count(">Consensus costs</h") == 1  # the section heading, not repeated as a table heading
    assert text.count("<figcaption>") == len(page.images)


def test_default_output_is_inside_the_run_and_the_command_line_writes_it(quickstart_run, capsys) -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["report", str(quickstart_run)])
    assert args.dpi == 200 and args.format == "pdf" and args.figures is None
    assert args.func(args) == 0
    assert capsys.readouterr().out.strip() == str(quickstart_run / "report.html")
    assert (quickstart_run / "report.html").is_file()


def test_dpi_sets_the_embedded_png_size_and_figures_are_written_on_request(quickstart_run, tmp_path) -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    widths = {}
    for dpi in (50, 100):
        args = parser.parse_args(
            ["report", str(quickstart_run), "--out", str(tmp_path / f"{dpi}.html"), "--dpi", str(dpi)]
            + (["--figures", str(tmp_path / "figures"), "--format", "svg"] if dpi == 100 else [])
        )
        assert args.func(args) == 0
        first = parse(tmp_path / f"{dpi}.html").images[0]
        widths[dpi] = Image.open(io.BytesIO(base64.b64decode(first.removeprefix(DATA_URI)))).size[0]
    assert widths[100] == pytest.approx(2 * widths[50], abs=2)  # pixels scale with the dpi
    written = sorted(path.name for path in (tmp_path / "figures").iterdir())
    assert "welfare.png" in written and "welfare.svg" in written and "welfare.caption.txt" in written
    assert (tmp_path / "figures" / "welfare.caption.txt").read_text().strip()
    with pytest.raises(SystemExit):
        parser.parse_args(["report", str(quickstart_run), "--dpi", "0"])


def test_a_directory_that_is_neither_is_an_error(tmp_path, capsys) -> None:
    with pytest.raises(FileNotFoundError, match="path: not a run directory"):
        write_report(tmp_path)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["report", str(tmp_path)])
    assert args.func(args) == 2
    assert "flmarket: error: path: not a run directory" in capsys.readouterr().err


def test_sweep_report_plots_each_parameter_with_confidence_intervals(tmp_path) -> None:
    grid = parse_grid(
        {
            "sweep": {"name": "size", "scenario": "quickstart", "seeds": [1, 2], "overrides": {"run.tasks": 6}},
            "grid": {"providers.count": [6, 8], "learning.rounds_per_task": [2, 3]},
        }
    )
    run_sweep(grid, workers=0, output_dir=tmp_path, show_progress=False)
    target = write_report(tmp_path / "size")
    assert target == tmp_path / "size" / "report.html"
    page = parse(target)
    assert "Against providers.count" in page.titles and "Against learning.rounds_per_task" in page.titles
    assert "Participation over tasks" in page.titles
    assert len(page.images) == 3
    assert_valid_pngs(page.images)
    text = target.read_text()
    # 4 runs per point: the bounded measures get Student t clipped to their bounds, not a percentile bootstrap,
    # whose coverage at a few runs is far below 95%
    assert "Student-t confidence interval" in text and "Student-t interval clipped to those bounds" in text
    assert "percentile bootstrap interval" not in text
    assert text.count('<div class="table-wrap">') == text.count("<table>")  # every table scrolls, none overflows
    assert "ZD welfare target" not in text  # no zero-determinant player: no empty ZD columns


def test_bootstrap_interval_of_a_bounded_measure_stays_in_its_bounds() -> None:
    values = pd.Series([0.0, 0.0, 1.0])
    # Student t: 1/3 -/+ t(0.975, 2) * 0.5774 / sqrt(3) = 1/3 -/+ 1.434, below 0 for a variance
    mean, half_width, _ = confidence_interval(values)
    low = mean - half_width
    assert low == pytest.approx(1 / 3 - 4.302653 * math.sqrt(1 / 3) / math.sqrt(3), abs=1e-5) and low < 0
    # percentile bootstrap: resample means are 0, 1/3, 2/3, 1 with P(1) = 1/27 > 2.5% and P(0) = 8/27
    mean, low, high, count = bootstrap_interval(values, bounds=(0.0, math.inf))
    assert (mean, low, high, count) == (pytest.approx(1 / 3), 0.0, 1.0, 3)
    assert bootstrap_interval(pd.Series([2.0, 2.0]))[1:3] == (2.0, 2.0)  # identical values: no spread
    assert all(math.isnan(value) for value in bootstrap_interval(pd.Series([1.0]))[1:3])
    summary = pd.DataFrame({"x": [1, 1, 1, 2, 2], "variance": [0.0, 0.0, 1.0, 0.5, 0.5]})
    table = by_parameter(summary, "x", "variance", interval="bootstrap", bounds=(0.0, math.inf))
    assert table["low"].tolist() == [0.0, 0.5] and table["high"].tolist() == [1.0, 0.5]
    assert (by_parameter(summary, "x", "variance")["low"] < 0).any()  # what the report no longer shows
    with pytest.raises(ValueError, match="interval: must be one of t, bootstrap"):
        by_parameter(summary, "x", "variance", interval="wald")


def test_bad_destinations_are_refused_before_any_work_and_leave_nothing(quickstart_run, tmp_path, capsys) -> None:
    """--out at a folder used to fail after rendering and leave .NAME.tmp; --figures at a file failed after the
    page was written."""
    folder = tmp_path / "page"
    folder.mkdir()
    with pytest.raises(ValueError, match="out: must be the HTML file to write, got .*page', which is a folder"):
        write_report(quickstart_run, folder)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for figures in (a_file, a_file / "inside"):
        with pytest.raises(ValueError, match="figures: .*a_file' is a file, where a folder is needed"):
            write_report(quickstart_run, tmp_path / "report.html", figures_dir=figures)
    with pytest.raises(ValueError, match="out: .*a_file' is a file, where a folder is needed"):
        write_report(quickstart_run, a_file / "report.html")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a_file", "page"] and not any(folder.iterdir())


def test_a_figure_that_cannot_be_written_leaves_no_page_and_no_other_figure(quickstart_run, tmp_path, capsys) -> None:
    """A folder where a figure's PNG goes failed after the page and two figures were written."""
    from flmarket.sim.cli import main

    figures = tmp_path / "figures"
    (figures / "participation.png").mkdir(parents=True)
    page = tmp_path / "half.html"
    argv = ["report", str(quickstart_run), "--out", str(page), "--figures", str(figures)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("flmarket: error: --figures: cannot replace ") and "participation.png: it is a folder" in err
    assert err.rstrip().endswith("choose another --figures"), err  # the folder is --figures', not --out's
    assert not page.exists()
    assert [path.name for path in figures.iterdir()] == ["participation.png"]  # only what was there before


def test_a_partial_run_is_reported_with_one_warning_line(quickstart_run, tmp_path, capsys) -> None:
    """Each section reads the run again, and each read warned: the same raw warning came out a dozen times."""
    import shutil

    copy = tmp_path / "interrupted"
    shutil.copytree(quickstart_run, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**manifest, "status": "interrupted"}))
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["report", str(copy), "--out", str(tmp_path / "page.html")])
    assert args.func(args) == 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flmarket: warning: run interrupted is interrupted"), lines


def test_the_command_names_the_options_typed(quickstart_run, tmp_path, capsys) -> None:
    """`flmarket report` named `--out` and `--figures` by write_report's parameters (`out:`, `figures:`)."""
    from flmarket.sim.cli import main

    (tmp_path / "a_file").write_text("x")
    assert main(["report", str(quickstart_run), "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("flmarket: error: --out: must be the HTML file to write, got ")
    assert main(["report", str(quickstart_run), "--out", str(tmp_path / "a_file" / "r.html")]) == 2
    assert capsys.readouterr().err.startswith("flmarket: error: --out: ")
    figures = str(tmp_path / "a_file" / "figures")
    assert main(["report", str(quickstart_run), "--out", str(tmp_path / "r.html"), "--figures", figures]) == 2
    err = capsys.readouterr().err
    assert err.startswith("flmarket: error: --figures: ") and "is a file, where a folder is needed" in err, err
    same = str(tmp_path / "r.html")
    assert main(["report", str(quickstart_run), "--out", same, "--figures", same]) == 2
    err = capsys.readouterr().err  # it wrote 21 figures into a folder r.html, then failed on the page
    assert err.startswith("flmarket: error: --out and --figures: the figures' folder cannot be the page"), err
    assert main(["report", str(quickstart_run), "--out", same, "--figures", str(tmp_path / "r.html" / "f")]) == 2
    assert "--out and --figures: the figures' folder cannot be the page or inside it" in capsys.readouterr().err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a_file"]


def test_a_file_given_as_the_run_is_named_as_the_path_and_the_window_is_checked_when_read(tmp_path, capsys) -> None:
    """`flmarket report plain.txt` blamed `out` (its default, <path>/report.html, is under a file); --window 0
    got past the command line and failed in the stability summary."""
    from flmarket.sim.cli import main

    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert main(["report", str(plain)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("flmarket: error: path: not a run directory (manifest.json) or a sweep directory"), err
    assert "plain.txt" in err and sorted(path.name for path in tmp_path.iterdir()) == ["plain.txt"]
    with pytest.raises(SystemExit) as exited:
        main(["report", str(plain), "--window", "1"])
    assert exited.value.code == 2
    assert "argument --window: must be an integer >= 2, got 1" in capsys.readouterr().err


def test_a_run_with_zd_players_reports_their_target_beside_the_welfare_and_others_do_not(
    quickstart_run, tmp_path
) -> None:
    from flmarket.analysis.metrics import zero_determinant_welfare
    from flmarket.analysis.report import run_sections

    def summary_rows(run_dir) -> pd.DataFrame:
        (summary, *_) = run_sections(run_dir, window=4)[1]
        return dict(summary.tables)[next(name for name, _ in summary.tables if name.startswith("Metrics"))]

    zd_run = run_scenario(
        load_scenario("mmzd-fig3", {"run.tasks": 4}), output_dir=tmp_path / "runs", run_id="zd", show_progress=False
    ).run_dir
    rows = summary_rows(zd_run).set_index("measure")["value"]
    aim = zero_determinant_welfare(zd_run)
    assert rows["ZD welfare target P*"] == f"{aim['zd_target']:.4g}" and "mean welfare of ZD players' tasks" in rows
    assert not summary_rows(quickstart_run)["measure"].str.startswith("ZD").any()


def test_the_welfare_caption_gives_kpss_bounds_as_bounds_and_says_why_a_verdict_is_inconclusive(
    quickstart_run,
) -> None:
    """statsmodels' KPSS p of 0.1 means '>= 0.1', which only a docstring said; an inconclusive verdict said not why."""
    from flmarket.analysis.metrics import task_outcomes
    from flmarket.analysis.report import _kpss_p, run_sections
    from flmarket.analysis.stability import stationarity_verdict

    assert (_kpss_p(0.1), _kpss_p(0.01), _kpss_p(0.0529)) == (">= 0.1", "<= 0.01", "0.0529")
    (welfare,) = [section for section in run_sections(quickstart_run)[1] if section.title == "Welfare over time"]
    tasks = task_outcomes(quickstart_run)
    verdict = stationarity_verdict(tasks["welfare"].to_numpy(dtype=float))
    shown = ", ".join(_kpss_p(p_value) for p_value in verdict.kpss_p_values)
    assert f"KPSS (p = {shown} at bandwidths" in welfare.caption
    assert f"give the verdict '{verdict.verdict}'" + (f" ({verdict.why})" if verdict.why else "") in welfare.caption


def test_a_final_window_longer_than_the_run_is_said(quickstart_run) -> None:
    """`--window 100` on a shorter run printed 'final window: 100 tasks' and n/a values without a word."""
    from flmarket.analysis.report import run_sections

    finished = int(fm.open_run(quickstart_run).manifest["tasks_finished"])
    with pytest.warns(UserWarning, match=rf"^window: the final window of {finished + 1} tasks is longer than the run"):
        run_sections(quickstart_run, window=finished + 1)
