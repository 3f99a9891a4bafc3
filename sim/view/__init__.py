"""`flmarket view`: a live page of one market run (Solara), served on 127.0.0.1.

`register` adds the subcommand; the page (`flmarket.sim.view.page`) and the model-driving session
(`flmarket.sim.view.session`) load only when the command runs, so `flmarket --help` stays light.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import warnings
from typing import Any

DEFAULT_PORT = 8765


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `flmarket view [SCENARIO] [--set KEY=VALUE ...] [--seed N] [--horizon S] [--tasks N] [--port N]`."""
    from flmarket.sim.cli import COMMANDS, DEFAULT_SCENARIO, _add_override_arguments

    view = subparsers.add_parser(
        "view",
        help=COMMANDS["view"].help if "view" in COMMANDS else "watch one market run live in the browser",
        description="Serve a live page of one market run on 127.0.0.1: play, pause, step one FL task, reset; "
        "sliders for the population mix and the free-rider share; the overlay, strategy shares, welfare "
        "against the social optimum and the all-defect Nash level, participation, consensus, and rewards "
        "against Shapley values. Stepping N tasks gives the same event log as `flmarket run --tasks N` (less "
        "the run_finished record that only a finished run writes). Ctrl-C stops the server (exit status 130).",
    )
    view.add_argument(
        "scenario",
        nargs="?",
        default=DEFAULT_SCENARIO,
        help=f"scenario file or bundled name (default: {DEFAULT_SCENARIO})",
    )
    _add_override_arguments(view)
    view.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port on 127.0.0.1 (default {DEFAULT_PORT})")
    view.set_defaults(func=_view)


def _view(args: argparse.Namespace) -> int:
    from flmarket.sim.cli import _overrides
    from flmarket.sim.config import ScenarioError
    from flmarket.sim.model import MarketModel
    from flmarket.sim.view.session import ViewSettings

    settings = ViewSettings(args.scenario, tuple(_overrides(args).items()))
    if not 0 < args.port < 65536:
        raise ScenarioError(f"--port: must be in 1..65535, got {args.port}")
    # bad input stops here with the CLI's one-line error, before anything is served: the scenario's validation,
    # then the model's own checks of the population (a MarketError such as "not a social dilemma")
    model = MarketModel(settings.load())
    serve(settings, port=args.port, first_model=model)
    return 0


def serve(
    settings: object, host: str = "127.0.0.1", port: int = DEFAULT_PORT, first_model: object | None = None
) -> None:
    """Serve the page for `settings` (a ViewSettings) until interrupted; Solara's own assets, no network.
    `first_model`, a model built from `settings`, is the first connection's (it saves that connection a build)."""
    os.environ.setdefault("SOLARA_TELEMETRY_MIXPANEL_ENABLE", "False")
    os.environ["SOLARA_APP"] = "flmarket.sim.view.page"
    os.environ["SERVER_NAME"] = host
    os.environ["SERVER_PORT"] = str(port)
    import uvicorn

    from flmarket.sim.view import page

    page.LAUNCH = settings  # type: ignore[assignment]
    if first_model is not None:
        page.hand_over_first_model(first_model)
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            from flmarket.sim.config import ScenarioError

            raise ScenarioError(f"--port: {port} is not free on {host} ({error.strerror})") from None
    # Solara warns on every page load over http at 127.0.0.1 that it cannot set a samesite=none cookie; that
    # cookie only matters for a page embedded in a frame of another site, which this local page never is
    warnings.filterwarnings("ignore", message="Cookies with samesite=none require https", category=UserWarning)
    print(f"flmarket view: http://{host}:{port}/  (Ctrl-C to stop)", flush=True)

    class SignalRecordingServer(uvicorn.Server):
        """uvicorn's server, noting the signals that stopped it: uvicorn re-raises them once it has shut down,
        but inside asyncio's runner, which swallows SIGINT (the command then exited 0 on Ctrl-C)."""

        def __init__(self, config: uvicorn.Config) -> None:
            super().__init__(config)
            self.signals: list[int] = []

        def handle_exit(self, sig: int, frame: Any) -> None:
            self.signals.append(sig)
            super().handle_exit(sig, frame)

    server = SignalRecordingServer(
        uvicorn.Config("solara.server.starlette:app", host=host, port=port, log_level="warning")
    )
    try:
        server.run()
    finally:
        page.stop_players()  # no play thread may still be in a task when the interpreter exits (torch aborted it)
    if signal.SIGINT in server.signals:
        raise KeyboardInterrupt  # the CLI's "flmarket: interrupted", exit status 130, as `flmarket run` does
