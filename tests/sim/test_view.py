"""`flmarket view`: the session that drives the model (same event log as `flmarket run`), the public-goods
reference lines, bad input in the page, and the page itself in a real headless Chromium."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas.testing as pdt
import pytest

from flmarket.analysis.load import events_frame
from flmarket.market.public_goods import welfare_references
from flmarket.sim.cli import main
from flmarket.sim.config import ScenarioError, load_scenario
from flmarket.sim.model import MarketModel
from flmarket.sim.sweep import bundled_grids
from flmarket.sim.view.browser import CHROMEDRIVER, CHROMIUM, headless_chromium
from flmarket.sim.view.charts import nice_ticks, welfare_chart
from flmarket.sim.view.session import (
    ViewSession,
    ViewSettings,
    parse_mix,
    with_free_riders,
)


# -- the session drives the same model as `flmarket run` -------------------------------------------------------
def _run_events(tasks: int):
    model = MarketModel(load_scenario("quickstart", {"run.tasks": tasks}))
    model.run()
    return events_frame(model.log.to_arrow())


def _assert_same_events(session: ViewSession, tasks: int) -> None:
    """The same records in the same order. (The view reads the log after every step, so its in-memory parts
    group the kinds differently and the union of their columns comes out in another order: compare by name.)"""
    viewed, ran = events_frame(session.model.log.to_arrow()), _run_events(tasks)
    assert sorted(viewed.columns) == sorted(ran.columns)
    pdt.assert_frame_equal(viewed[list(ran.columns)], ran)


def test_stepping_n_tasks_gives_the_event_log_of_running_n_tasks() -> None:
    session = ViewSession(ViewSettings("quickstart"))
    for _ in range(3):
        assert session.step()
    assert session.tasks_finished == 3
    _assert_same_events(session, 3)
    session.step()  # stepping on continues the same run
    _assert_same_events(session, 4)


def test_the_first_connection_gets_the_model_flmarket_view_built_to_check_its_input() -> None:
    """`flmarket view` builds the model before serving (bad input fails there, in the terminal); the first
    connection now takes that model instead of building its own again, and later connections build."""
    from flmarket.sim.view import page

    settings = ViewSettings("quickstart")
    checked = MarketModel(settings.load())
    page.hand_over_first_model(checked)
    first = ViewSession(settings, page.take_first_model())
    second = ViewSession(settings, page.take_first_model())
    assert first.model is checked and first.scenario is checked.scenario
    assert second.model is not checked and second.scenario == checked.scenario
    for _ in range(3):
        assert first.step()
    _assert_same_events(first, 3)  # the handed-over model runs the same market


def test_panels_agree_with_the_event_log_and_the_task_games() -> None:
    session = ViewSession(ViewSettings("quickstart"))
    for _ in range(4):
        session.step()
    state = session.state()
    frame = events_frame(session.model.log.to_arrow())
    finished = frame[frame["kind"] == "task_finished"]
    assert state["tasks"] == 4 and state["welfare"]["task"] == finished["task"].tolist()
    assert state["welfare"]["welfare"] == finished["welfare"].tolist()
    assert state["welfare"]["nash"] == [0.0] * 4  # P(0) = 0: nobody takes part (Lemma 1)
    payoffs = frame[frame["kind"] == "provider_payoff"]
    chosen = frame[frame["kind"] == "action_chosen"]
    rounds = session.model.rounds_per_task
    for task, welfare, optimum in zip(finished["task"], finished["welfare"], state["welfare"]["optimum"], strict=True):
        # The reference lines are those of the task's game at its start (every provider that chose an action),
        # rebuilt here from the logged types: the social optimum fills the cheapest providers first (SPEC B).
        starting = session.game_of(chosen[chosen["task"] == task]["agent"].tolist(), rounds)
        assert optimum == pytest.approx(welfare_references(starting).optimum_welfare, rel=1e-12)
        rows = payoffs[payoffs["task"] == task]
        game = session.game_of(rows["agent"].tolist(), rounds)
        realised = np.rint(rows["cost"].to_numpy(float) / game.cost_array).astype(int)  # Psi_i = kappa_i * y_i
        assert game.welfare(realised) == pytest.approx(welfare, rel=1e-9)  # the types the view rebuilt are right
        assert optimum >= welfare - 1e-12
    shares = frame[frame["kind"] == "strategy_share"]
    assert state["shares"]["time_s"] == sorted(set(shares["time"].tolist()))
    last = shares[shares["time"] == shares["time"].max()]
    for name, share in zip(last["strategy"], last["share"], strict=True):
        assert state["shares"]["series"][name][-1] == share
    assert state["participation"] == {
        name: tally[0] / tally[1] for name, tally in sorted(session.model.participation_by_strategy.items())
    }
    paid = frame[(frame["kind"] == "reward_paid") & (frame["task"] == 3)].groupby("agent")["reward"].sum()
    assert {row["agent"]: row["reward"] for row in state["rewards"]} == pytest.approx(paid.to_dict())
    blocks = frame[frame["kind"] == "block_committed"]
    assert state["consensus"]["block"]["height"] == blocks["height"].iloc[-1]
    assert state["consensus"]["primary"] in state["consensus"]["members"]
    overlay = state["overlay"]
    online = {node["id"] for node in overlay["nodes"] if node["online"]}
    assert online == set(session.model.overlay.graph.nodes)
    assert all(a in online and b in online for a, b in overlay["edges"])
    json.dumps(state)  # the page embeds it as JSON


# -- bad input: the CLI's line, the model untouched -------------------------------------------------------------
@pytest.mark.parametrize(
    ("mix_text", "cli_value"),
    [("ALLC=0.5, ALLD=0.6", "{ALLC=0.5, ALLD=0.6}"), ("ALLC=0.5, Cheater=0.5", "{ALLC=0.5, Cheater=0.5}")],
)
def test_a_bad_mix_shows_the_cli_error_and_keeps_the_model(mix_text: str, cli_value: str, capsys) -> None:
    from flmarket.sim.view.page import error_line

    session = ViewSession(ViewSettings("quickstart"))
    session.step()
    model, events = session.model, session.model.log.count
    with pytest.raises(ScenarioError) as caught:
        session.reset(session.settings.with_mix(parse_mix(mix_text)))
    assert session.model is model and session.tasks_finished == 1 and model.log.count == events
    assert session.scenario.providers.strategy_mix == {"ALLC": 0.25, "ALLD": 0.25, "Rand": 0.25, "TFT": 0.25}
    assert main(["run", "--tasks", "1", "--set", f"providers.strategy_mix={cli_value}"]) == 2
    assert error_line(caught.value) == capsys.readouterr().err.strip()


def test_reset_applies_a_good_mix_and_starts_over() -> None:
    session = ViewSession(ViewSettings("quickstart", (("providers.count", 12),)))
    session.step()
    session.reset(session.settings.with_mix(with_free_riders({"ALLC": 0.5, "TFT": 0.5}, 0.5)))
    assert session.tasks_finished == 0 and session.model.log.count > 0
    assert session.scenario.providers.strategy_mix == {"ALLC": 0.25, "TFT": 0.25, "ALLD": 0.5}
    assert session.scenario.providers.count == 12


def test_free_rider_share_rescales_the_others() -> None:
    assert with_free_riders({"ALLC": 0.25, "ALLD": 0.25, "TFT": 0.5}, 0.4) == pytest.approx(
        {"ALLC": 0.2, "TFT": 0.4, "ALLD": 0.4}
    )
    assert with_free_riders({"ALLC": 0.0, "TFT": 0.0}, 0.5) == {"ALLC": 0.25, "TFT": 0.25, "ALLD": 0.5}
    with pytest.raises(ScenarioError, match="providers.strategy_mix.ALLC: share must be a number, got 'x'"):
        parse_mix("ALLC=x")
    assert parse_mix("ALLC=0.5; ALLD = 0.5,") == {"ALLC": 0.5, "ALLD": 0.5}
    with pytest.raises(ScenarioError, match="providers.strategy_mix.ALLC: given twice"):
        parse_mix("ALLC=0.5, ALLC=0.5")
    with pytest.raises(ScenarioError, match="expected NAME=SHARE pairs .* got '=1'"):
        parse_mix("=1")
    with pytest.raises(ScenarioError, match="providers.strategy_mix.ALLC: share must be a number, got '1_0'"):
        parse_mix("ALLC=1_0")  # float() would read 10


@pytest.mark.parametrize("scenario", ["quickstart", "free-riders", "mmzd-fig3"])
def test_every_slider_position_gives_a_mix_the_field_applies(scenario: str) -> None:
    """The sliders write the mix into the text field, and Apply parses that text: it must load at every position
    (six significant digits did not: 1/3 came back as 0.333333, and the shares no longer summed to 1)."""
    from flmarket.sim.view.page import _mix_text

    mix = dict(load_scenario(scenario).providers.strategy_mix)
    positions = [step / 20 for step in range(21)]
    mixes = [with_free_riders(mix, share) for share in positions]
    mixes += [with_free_riders({**mix, name: share}, mix.get("ALLD", 0.0)) for name in mix for share in positions]
    for slid in mixes:
        if sum(slid.values()) == 0 or abs(sum(slid.values()) - 1) > 1e-9:
            continue  # a strategy slider alone can leave the mix off 1: the scenario rightly refuses it
        parsed = parse_mix(_mix_text(slid))
        assert parsed == pytest.approx(slid, abs=1e-12)
        load_scenario(scenario, {"providers.strategy_mix": parsed, "providers.strategy_counts": None})


def test_view_rejects_bad_input_before_serving(capsys) -> None:
    assert main(["view", "--set", "providers.strategy_mix={ALLC=0.5}", "--port", "1"]) == 2
    assert capsys.readouterr().err.startswith("flmarket: error: providers.strategy_mix: shares must sum to 1")
    # the model's own checks too (it used to be built only when a browser connected, showing a traceback there)
    assert main(["view", "--set", "learning.theta1=1.0", "--port", "1"]) == 2
    assert "the initial population is not a social dilemma" in capsys.readouterr().err
    assert main(["view", "market_size", "--port", "1"]) == 2  # a bundled grid, by name and by path
    assert "bundled sweep grid, not a scenario; run it with `flmarket sweep market_size`" in capsys.readouterr().err
    assert main(["view", str(bundled_grids()["market_size"]), "--port", "1"]) == 2
    assert "is a sweep grid ([sweep] with [grid] or [[cells]]), not a scenario" in capsys.readouterr().err


def test_an_error_mid_run_stops_the_session_until_a_reset() -> None:
    """A joiner who finds every torch data shard held stops `flmarket run` with exit 2. In the view the page was
    replaced by the traceback, and the next step carried on with the arrival process dead (a corrupt run)."""
    from flmarket.market.errors import MarketError

    overrides = (
        ("providers.arrival_rate_per_s", 0.5),
        ("providers.mean_lifetime_s", 1e6),
        ("learning.rounds_per_task", 2),
    )
    with pytest.warns(UserWarning, match="learning.shards = 10"):
        session = ViewSession(ViewSettings("bgfl-table3-torch", overrides))
    with pytest.raises(MarketError, match="all 10 shards are held .* the run stopped in task 1: reset to start over"):
        session.step()
    assert session.finished and session.state()["failure"] == session.failure
    events = session.model.log.count
    for _ in range(2):  # no further step: the same error, and nothing logged
        with pytest.raises(MarketError, match="reset to start over"):
            session.step()
    assert session.model.log.count == events
    with pytest.warns(UserWarning, match="learning.shards = 10"):
        session.reset(session.settings.with_mix({"ALLC": 1.0}))
    assert session.failure is None and not session.finished and session.state()["failure"] is None


def test_applying_a_mix_replaces_the_scenario_files_strategy_counts() -> None:
    """mmzd-fig3 fixes exact strategy counts in its file; a mix applied from the page changed nothing there
    while the panels listed the mix's strategies."""
    session = ViewSession(ViewSettings("mmzd-fig3"))
    assert session.scenario.providers.strategy_counts is not None
    session.reset(session.settings.with_mix({"ALLC": 1.0}))
    assert session.scenario.providers.strategy_counts is None
    assert {provider.strategy_label for provider in session.model.online_providers.values()} == {"ALLC"}
    assert session.state()["strategies"] == ["ALLC"]


def test_the_free_rider_slider_fills_a_free_riders_only_mix_with_cooperators() -> None:
    assert with_free_riders({"ALLD": 1.0}, 0.5) == {"ALLC": 0.5, "ALLD": 0.5}  # was {"ALLD": 0.5}: never valid
    assert with_free_riders({"ALLD": 1.0}, 1.0) == {"ALLD": 1.0}


def test_stopping_the_server_waits_for_every_play_thread_then_allows_play_again() -> None:
    """A play thread still inside a torch task when the interpreter exited aborted the server (SIGABRT)."""
    from flmarket.sim.view import page

    finished = []

    def player() -> None:  # registered as the page's play loop registers itself, looping until told to stop
        me = threading.current_thread()
        with page._players_lock:
            page._players.add(me)
        try:
            while not page._stopping.is_set():
                time.sleep(0.01)
            time.sleep(0.2)  # the task in progress when the server stops still finishes
            finished.append(True)
        finally:
            with page._players_lock:
                page._players.discard(me)

    threads = [threading.Thread(target=player) for _ in range(2)]
    for thread in threads:
        thread.start()
    page.stop_players(timeout_s=30)
    assert finished == [True, True] and not any(thread.is_alive() for thread in threads)
    assert not page._players and not page._stopping.is_set()


def test_charts_leave_out_values_that_are_not_finite_and_label_extreme_axes() -> None:
    import xml.etree.ElementTree as ElementTree

    from flmarket.sim.view.charts import participation_chart, rewards_chart, shares_chart, tick_labels
    from flmarket.sim.view.page import state_json

    def coordinates(svg: str) -> list[str]:
        root = ElementTree.fromstring(svg)
        names = ("x", "y", "cx", "cy", "x1", "x2", "y1", "y2", "width", "height")
        values = [element.get(name) for element in root.iter() for name in names if element.get(name) is not None]
        values += [
            number for element in root.iter() for number in (element.get("points") or "").replace(",", " ").split()
        ]
        return values

    bad = [math.nan, math.inf, -math.inf]
    svgs = [
        welfare_chart(
            {"welfare": {"task": [0, 1, 2, 3], "welfare": [1.0, *bad], "optimum": [2.0] * 4, "nash": [0.0] * 4}}
        ),
        welfare_chart(
            {"welfare": {"task": [0, 1], "welfare": [1.7e308, -1.7e308], "optimum": [0.0, 0.0], "nash": [0.0, 0.0]}}
        ),
        participation_chart({"strategies": ["ALLC", "ALLD"], "participation": {"ALLC": math.nan, "ALLD": math.inf}}),
        rewards_chart(
            {
                "rewards": [
                    {"task": 1, "agent": 1, "shapley_value": math.nan, "reward": 1.0, "strategy": "ALLC"},
                    {"task": 1, "agent": 2, "shapley_value": 2.0, "reward": math.inf, "strategy": "ALLC"},
                    {"task": 1, "agent": 3, "shapley_value": 1.0, "reward": 0.5, "strategy": "ALLC"},
                ]
            }
        ),
        shares_chart(
            {
                "shares": {
                    "time_s": [0.0, math.nan, 20.0],
                    "series": {"ALLC": [0.5, 0.5, math.inf], "ALLD": [0.5, 0.5, 0.5]},
                }
            }
        ),
    ]
    for svg in svgs:
        assert all(math.isfinite(float(value)) for value in coordinates(svg)), svg
    assert svgs[0].count("<circle") == 1  # only the finite point is drawn
    assert svgs[3].count("data-agent=") == 1
    assert all(len(label) < 12 for label in tick_labels(nice_ticks(-1e300, 1e300)))  # were 300-digit labels
    assert tick_labels(nice_ticks(0.0, 3e-300)) == ["0", "1e-300", "2e-300", "3e-300"]  # were all "0"
    assert json.loads(state_json({"welfare": [1.0, math.nan, math.inf]})) == {"welfare": [1.0, None, None]}


def test_chart_data_and_ticks() -> None:
    assert nice_ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(-0.7, 9.8) == [0.0, 2.5, 5.0, 7.5]
    state = {"welfare": {"task": [0, 1], "welfare": [1.5, 2.0], "optimum": [3.0, 3.0], "nash": [0.0, 0.0]}}
    svg = welfare_chart(state)
    assert svg.count("data-welfare=") == 2 and "data-welfare='2.0'" in svg and "social optimum" in svg


# -- the page in a real browser ----------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_server(process: subprocess.Popen, port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"flmarket view exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"flmarket view did not listen on port {port} within {timeout_s} s")


@contextlib.contextmanager
def _served_page(tmp_path, *arguments: str) -> Iterator[tuple[Any, subprocess.Popen]]:
    """`flmarket view ARGUMENTS` on a free port with headless Chromium on its page: (driver, server). The server
    is terminated (killed if it hangs) and the browser profile removed afterwards, unless the test ended it."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("Chromium is not installed (.ci/run installs Debian's chromium and chromium-driver)")
    port = _free_port()
    environment = {**os.environ, "SOLARA_TELEMETRY_MIXPANEL_ENABLE": "False"}
    server = subprocess.Popen(
        [sys.executable, "-m", "flmarket.sim.cli", "view", *arguments, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=environment,
    )
    profile = tempfile.mkdtemp(dir=tmp_path)
    driver = None
    try:
        _wait_for_server(server, port, timeout_s=180)
        driver = headless_chromium(profile)
        driver.get(f"http://127.0.0.1:{port}/")
        yield driver, server
    finally:
        if driver is not None:
            driver.quit()
        if server.poll() is None:
            server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(profile, ignore_errors=True)


# The browser tests share one pytest-xdist worker: one Chromium and one view server at a time.
@pytest.mark.slow
@pytest.mark.xdist_group("chromium")
def test_page_in_headless_chromium(tmp_path) -> None:
    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    with _served_page(tmp_path, "quickstart") as (driver, _server):
        wait = WebDriverWait(driver, 180)

        def tasks() -> str | None:
            return driver.execute_script(
                "const e = document.getElementById('flmarket-tasks'); return e && e.dataset.tasks"
            )

        def step_enabled() -> bool:
            return driver.execute_script(
                "const b = document.querySelector('.flmarket-step'); return !!b && !b.disabled"
            )

        wait.until(lambda _: tasks() == "0")
        for count in range(1, 4):
            wait.until(lambda _: step_enabled())
            driver.find_element(By.CSS_SELECTOR, ".flmarket-step").click()
            wait.until(lambda _, count=count: tasks() == str(count))
        # The panels are separate widgets and may arrive one message after another: wait until all show task 3.
        wait.until(
            lambda _: (
                driver.execute_script(
                    "return [JSON.parse(document.getElementById('flmarket-view-state').textContent).tasks,"
                    " document.querySelectorAll(\"svg[data-chart='welfare'] circle\").length]"
                )
                == [3, 3]
            )
        )
        state = json.loads(driver.execute_script("return document.getElementById('flmarket-view-state').textContent"))
        plotted = driver.execute_script(
            "return Array.from(document.querySelectorAll(\"svg[data-chart='welfare'] circle\"))"
            ".map(c => [Number(c.dataset.task), Number(c.dataset.welfare)])"
        )
        bars = driver.execute_script(
            "return Object.fromEntries(Array.from(document.querySelectorAll(\"svg[data-chart='participation'] rect\"))"
            ".map(r => [r.dataset.strategy, Number(r.dataset.participation)]))"
        )

        reference = ViewSession(ViewSettings("quickstart"))  # an independent model with the same seed
        for _ in range(3):
            reference.step()
        expected = json.loads(json.dumps(reference.state()))
        assert state["tasks"] == 3 == reference.tasks_finished
        assert state["time_s"] == pytest.approx(reference.model.time, abs=1e-9)
        for panel in ("welfare", "shares", "participation", "rewards"):
            assert state[panel] == expected[panel], panel
        assert plotted == [
            list(pair) for pair in zip(expected["welfare"]["task"], expected["welfare"]["welfare"], strict=True)
        ]
        assert bars == pytest.approx(expected["participation"])
        assert state["consensus"]["block"] == expected["consensus"]["block"]

        screenshot = tmp_path / "view.png"
        driver.save_screenshot(str(screenshot))
        with Image.open(screenshot) as image:
            colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 200, "the screenshot is (nearly) blank"

        # Bad input in the page: the CLI's one-line error, and the model stays at task 3.
        field = driver.find_element(By.CSS_SELECTOR, ".flmarket-mix input")
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys("ALLC=0.5, ALLD=0.6", Keys.ENTER)  # the field sends its value on Enter (or leaving it)
        wait.until(lambda _: field.get_attribute("value") == "ALLC=0.5, ALLD=0.6")
        driver.find_element(By.CSS_SELECTOR, ".flmarket-apply").click()
        wait.until(lambda _: driver.find_elements(By.CSS_SELECTOR, ".flmarket-error"))
        shown = driver.find_element(By.CSS_SELECTOR, ".flmarket-error").text
        assert shown.startswith("flmarket: error: providers.strategy_mix: shares must sum to 1"), shown
        assert tasks() == "3"

        # Play runs tasks on its own until paused. Applying the bad mix while playing shows its line and does not
        # stop play (it used to pause first); after pausing (and the task in flight) the counter stays.
        driver.find_element(By.CSS_SELECTOR, ".flmarket-play").click()
        wait.until(lambda _: int(tasks()) >= 5)
        driver.find_element(By.CSS_SELECTOR, ".flmarket-apply").click()
        applied_at = int(tasks())
        wait.until(lambda _: int(tasks()) >= applied_at + 2)
        assert driver.find_element(By.CSS_SELECTOR, ".flmarket-error").text == shown
        assert driver.find_element(By.CSS_SELECTOR, ".flmarket-pause").is_enabled()
        driver.find_element(By.CSS_SELECTOR, ".flmarket-pause").click()
        wait.until(lambda _: step_enabled())
        time.sleep(5.0)  # a task in flight when Pause was clicked still finishes
        paused_at = tasks()
        time.sleep(5.0)
        assert tasks() == paused_at and int(paused_at) >= 5


@pytest.mark.slow
@pytest.mark.xdist_group("chromium")
def test_an_error_mid_run_shows_its_line_in_the_page_and_ctrl_c_exits_130(tmp_path) -> None:
    """A MarketError in a step replaced the whole page (controls included) with a Python traceback, and during
    Play it killed the play thread silently; Ctrl-C on the server exited 0 (and aborted it with the torch backend
    while playing)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    arguments = (
        "bgfl-table3-torch",
        "--set",
        "providers.arrival_rate_per_s=0.5",
        "--set",
        "learning.rounds_per_task=2",
    )
    arguments += ("--set", "providers.mean_lifetime_s=1e6")
    with _served_page(tmp_path, *arguments) as (driver, server):
        wait = WebDriverWait(driver, 180)
        wait.until(lambda _: driver.find_elements(By.CSS_SELECTOR, ".flmarket-play"))
        driver.find_element(By.CSS_SELECTOR, ".flmarket-play").click()
        wait.until(lambda _: driver.find_elements(By.CSS_SELECTOR, ".flmarket-error"))
        shown = driver.find_element(By.CSS_SELECTOR, ".flmarket-error").text
        assert shown.startswith("flmarket: error: providers: all 10 shards are held"), shown
        assert shown.endswith("reset to start over"), shown
        assert "Traceback" not in driver.find_element(By.TAG_NAME, "body").text
        wait.until(lambda _: driver.find_element(By.CSS_SELECTOR, ".flmarket-pause").get_attribute("disabled"))
        for control in (".flmarket-play", ".flmarket-step"):  # the run is over; Reset is still there
            assert driver.find_element(By.CSS_SELECTOR, control).get_attribute("disabled")
        assert driver.find_element(By.CSS_SELECTOR, ".flmarket-reset").is_enabled()
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=60)
        assert server.returncode == 130, output
        assert output.decode().rstrip().endswith("flmarket: interrupted")
