"""analysis/report.py: the HTML page of a quick-start run and of a small sweep parses, and every figure is a PNG."""

from __future__ import annotations

import argparse
import base64
import io
import json
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from flmarket.analysis.report import register, write_report
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


def test_default_output_is_inside_the_run_and_the_command_line_writes_it(quickstart_run, capsys) -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["report", str(quickstart_run)])
    assert args.func(args) == 0
    assert capsys.readouterr().out.strip() == str(quickstart_run / "report.html")
    assert (quickstart_run / "report.html").is_file()


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
    assert len(page.images) == 2
    assert_valid_pngs(page.images)
    text = target.read_text()
    assert "half_width" in text and "Student-t confidence interval" in text
