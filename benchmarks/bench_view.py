"""Benchmark `flmarket view`: how long a click on "Step one task" takes to update every panel in the browser.

Run: python benchmarks/bench_view.py [--steps 20] [--scenario quickstart]

Starts `flmarket view` on a free port, opens it in headless Chromium (Debian's /usr/bin/chromium and chromedriver),
and clicks step `--steps` times. Each latency runs from the click to the moment the page shows the new task in
every panel at once: the tasks counter, the welfare chart's points and the JSON state all at the new count. It
also gives the CPU time each click costs the server and the browser (on a loaded machine the wall latency mostly
waits for a core; their sum is what an idle 2-core machine needs), and the model-side CPU per step in-process
(the task, the panel data and the five SVG charts). Target: under one second per step on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import psutil

from flmarket.arguments import integer_in
from flmarket.sim.config import ScenarioError, load_scenario

QUERY = """
const counter = document.getElementById('flmarket-tasks');
const state = document.getElementById('flmarket-view-state');
const points = document.querySelectorAll("svg[data-chart='welfare'] circle").length;
return [counter && Number(counter.dataset.tasks), state && JSON.parse(state.textContent).tasks, points];
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_cpu_per_step(scenario: str, steps: int) -> list[float]:
    """CPU seconds of one step in-process: the task, the panel data and the five charts."""
    from flmarket.sim.view import charts
    from flmarket.sim.view.session import ViewSession, ViewSettings

    session = ViewSession(ViewSettings(scenario))
    costs = []
    for _ in range(steps):
        start = time.thread_time()
        session.step()
        state = session.state()
        for chart in (
            charts.overlay_chart,
            charts.welfare_chart,
            charts.shares_chart,
            charts.participation_chart,
            charts.rewards_chart,
        ):
            chart(state)
        costs.append(time.thread_time() - start)
    return costs


def _cpu_seconds(process: psutil.Process) -> float:
    """User + system CPU of a process and all its descendants (those still alive)."""
    total = 0.0
    for each in [process, *process.children(recursive=True)]:
        try:
            times = each.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def browser_latencies(scenario: str, steps: int) -> tuple[list[float], list[float], list[float]]:
    """Seconds from each click on step to every panel showing the new task, and the CPU seconds the server
    and the browser (chromedriver and Chromium's processes) spent on each step."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from flmarket.sim.view.browser import headless_chromium

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "flmarket.sim.cli", "view", scenario, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "SOLARA_TELEMETRY_MIXPANEL_ENABLE": "False"},
    )
    driver = None
    profile = tempfile.TemporaryDirectory(prefix="flmarket-bench-view-")  # Chromium's profile, removed at the end
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("flmarket view did not start") from None
                time.sleep(0.5)
        driver = headless_chromium(profile.name)
        driver.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(driver, 180, poll_frequency=0.05)
        wait.until(lambda _: driver.execute_script(QUERY)[0] == 0)
        latencies, server_cpu, browser_cpu = [], [], []
        server_process = psutil.Process(server.pid)
        browser_process = psutil.Process(driver.service.process.pid)
        idle_before = _cpu_seconds(browser_process)
        time.sleep(2.0)
        idle = (_cpu_seconds(browser_process) - idle_before) / 2.0
        print(f"browser CPU while idle: {idle * 1000:.0f} ms per second")
        for count in range(1, steps + 1):
            wait.until(
                lambda _: driver.execute_script(
                    "const b = document.querySelector('.flmarket-step'); return !b.disabled"
                )
            )
            button = driver.find_element(By.CSS_SELECTOR, ".flmarket-step")
            server_before, browser_before = _cpu_seconds(server_process), _cpu_seconds(browser_process)
            start = time.perf_counter()
            button.click()
            wait.until(lambda _, count=count: driver.execute_script(QUERY) == [count, count, count])
            latencies.append(time.perf_counter() - start)
            server_cpu.append(_cpu_seconds(server_process) - server_before)
            browser_cpu.append(_cpu_seconds(browser_process) - browser_before)
        return latencies, server_cpu, browser_cpu
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        server.wait(timeout=30)
        profile.cleanup()


DEFAULT_STEPS = 20
QUICK_STEPS = 3
"""Steps of `--quick`: run_all.py passes --quick to every benchmark, which this one refused (exit 2)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps",
        type=integer_in(1),
        default=None,
        help=f"tasks stepped and clicks measured (default {DEFAULT_STEPS})",
    )
    parser.add_argument("--scenario", default="quickstart", help="bundled scenario or path (default quickstart)")
    parser.add_argument(
        "--quick", action="store_true", help=f"a smoke run of {QUICK_STEPS} steps (what benchmarks/run_all.py asks)"
    )
    args = parser.parse_args()
    if args.quick and args.steps is not None:
        parser.error(f"--steps: not with --quick, which runs {QUICK_STEPS} steps")
    if args.steps is None:
        args.steps = QUICK_STEPS if args.quick else DEFAULT_STEPS
    try:  # a bad --scenario: the command line's one-line refusal, before anything is measured or printed
        load_scenario(args.scenario)
    except ScenarioError as error:
        parser.error(f"--scenario: {error}")
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    cpu = server_cpu_per_step(args.scenario, args.steps)
    print(
        f"server CPU per step (task + panel data + charts): median {statistics.median(cpu) * 1000:.0f} ms, "
        f"max {max(cpu) * 1000:.0f} ms"
    )
    latencies, server_cpu, browser_cpu = browser_latencies(args.scenario, args.steps)
    print(
        f"click to every panel updated: median {statistics.median(latencies) * 1000:.0f} ms, "
        f"max {max(latencies) * 1000:.0f} ms over {len(latencies)} steps"
    )
    print(
        f"CPU per click: server (Solara + model) median {statistics.median(server_cpu) * 1000:.0f} ms, "
        f"max {max(server_cpu) * 1000:.0f} ms; browser median {statistics.median(browser_cpu) * 1000:.0f} ms, "
        f"max {max(browser_cpu) * 1000:.0f} ms (the wall latency on an idle 2-core machine is about their sum)"
    )
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
