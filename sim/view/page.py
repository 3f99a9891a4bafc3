"""The Solara page of `flmarket view`: controls, panels and a machine-readable copy of what the panels show.

Each browser connection gets its own `ViewSession` built from `LAUNCH` (the scenario and overrides given on the
command line). Play steps the session in a background thread; a lock keeps stepping and reading apart. When the
server stops, `stop_players` ends every play thread before the interpreter exits (a thread left inside torch
then aborted the process). The state the charts are drawn from is also written into the page as JSON
(`#flmarket-view-state`), and the tasks counter carries `data-tasks`, so a browser test can check the page
against an independent model.
"""

from __future__ import annotations

import html
import json
import math
import threading
from typing import Any

import solara

from flmarket.market.errors import MarketError
from flmarket.sim.config import ScenarioError
from flmarket.sim.view.charts import overlay_chart, participation_chart, rewards_chart, shares_chart, welfare_chart
from flmarket.sim.view.session import FREE_RIDER, ViewSession, ViewSettings, parse_mix, with_free_riders

LAUNCH = ViewSettings("quickstart")
"""What every new connection starts from; `flmarket view` sets it before the server starts."""

_first_model: list[Any] = []  # the model `flmarket view` built from LAUNCH to check it: the first connection's
_first_model_lock = threading.Lock()


def hand_over_first_model(model: Any) -> None:
    """Give the model built from `LAUNCH` before serving to the first connection, which then need not build one."""
    with _first_model_lock:
        _first_model[:] = [model]


def take_first_model() -> Any:
    """The model handed over for the first connection, once; None afterwards (each later connection builds)."""
    with _first_model_lock:
        return _first_model.pop() if _first_model else None


PLAY_PAUSE_S = 0.05
"""Pause between tasks while playing, so clicks and redraws get through."""

_stopping = threading.Event()  # set when the server stops: every play loop ends after its current task
_players: set[threading.Thread] = set()
_players_lock = threading.Lock()


def stop_players(timeout_s: float = 120.0) -> None:
    """End every play thread: each finishes the task it is in, then stops; wait for them up to `timeout_s`. Play
    works again afterwards (a later server in the same process)."""
    _stopping.set()
    with _players_lock:
        players = list(_players)
    for player in players:
        player.join(timeout_s)
    _stopping.clear()


def error_line(error: ScenarioError | MarketError) -> str:
    """The line the CLI prints for bad input (`flmarket: error: ...`)."""
    return "; ".join(f"flmarket: error: {line}" for line in str(error).splitlines())


def state_json(state: Any) -> str:
    """The state as strict JSON for the page's hidden copy: NaN and infinities become null (json.dumps writes
    them as NaN and Infinity, which the browser's JSON.parse refuses)."""

    def strict(value: Any) -> Any:
        if isinstance(value, float):
            return value if math.isfinite(value) else None
        if isinstance(value, dict):
            return {key: strict(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [strict(item) for item in value]
        return value

    return json.dumps(strict(state), allow_nan=False)


def _mix_text(mix: dict[str, float]) -> str:
    """The mix as the field shows it. Twelve significant digits: short for a slider's shares, and the text parses
    back to shares that still sum to 1 within the scenario's 1e-9 (six digits did not: 1/3 -> 0.333333)."""
    return ", ".join(f"{name}={share:.12g}" for name, share in mix.items())


@solara.component
def ConsensusCard(consensus: dict[str, Any]) -> None:
    """The current round's consensus: primary, DPoS votes of the members, view changes and the last block."""
    block = consensus.get("block")
    members = consensus.get("members", [])
    votes = consensus.get("votes", [])
    primary = consensus.get("primary")
    cells = "".join(
        f"<td class='{'flmarket-primary' if name == primary else ''}'>{'&#9733; ' if name == primary else ''}"
        f"{html.escape(name)}<br><span>{vote:,.1f}</span></td>"
        for name, vote in zip(members, votes, strict=False)
    )
    block_text = (
        f"#{block['height']} &middot; {block['transactions']} transactions &middot; "
        f"<code>{block['block_hash'][:20]}&hellip;</code>"
        if block
        else "none yet"
    )
    decided = (
        f"task {consensus['task']}, round {consensus['round']}: decided in view {consensus['view']} "
        f"(<b>{consensus['view_changes']}</b> view changes), {consensus['messages']} PBFT messages, "
        f"{consensus['latency_s']:.2f} s"
        if "task" in consensus
        else "no round decided yet"
    )
    solara.HTML(
        tag="div",
        unsafe_innerHTML=(
            "<div class='flmarket-consensus'><div>"
            "<div class='flmarket-panel-title'>Consensus (PPBG-AC over PBFT, DPoS committee)</div>"
            + (
                f"<div><b>Primary:</b> {html.escape(str(primary))} &nbsp; <b>Epoch:</b> {consensus.get('epoch')}</div>"
                if primary is not None
                else "<div><b>Committee:</b> not elected yet (DPoS elects it as each task starts)</div>"
            )
            + f"<div><b>Last round:</b> {decided}</div>"
            f"<div><b>Last block:</b> {block_text}</div></div>"
            f"<table class='flmarket-votes'><tr><th>DPoS votes</th>{cells}</tr></table></div>"
        ),
    )


@solara.component
def Panel(svg: str, name: str) -> None:
    """One chart in a white card."""
    solara.HTML(tag="div", unsafe_innerHTML=svg, classes=["flmarket-panel", name])


CSS = """
.flmarket-panels { display: grid; grid-template-columns: 580px 460px 460px; grid-auto-rows: auto; gap: 12px; }
.flmarket-panel { background: white; border-radius: 6px; box-shadow: 0 1px 3px rgba(0,0,0,0.15); padding: 6px; }
.flmarket-overlay { grid-row: span 2; }
.flmarket-consensus-panel { grid-column: span 3; }
.flmarket-consensus { font-size: 13px; line-height: 1.6; color: #263238; padding: 4px 8px; display: flex;
  gap: 28px; align-items: center; flex-wrap: wrap; }
.flmarket-panel-title { font-weight: bold; font-size: 15px; margin-bottom: 4px; }
.flmarket-votes { border-collapse: collapse; font-size: 12px; }
.flmarket-votes td, .flmarket-votes th { padding: 3px 9px; text-align: center; border-left: 1px solid #eceff1; }
.flmarket-votes td span { color: #607d8b; }
.flmarket-votes td.flmarket-primary { background: #fff8e1; font-weight: bold; }
.flmarket-counter { font-size: 16px; color: #263238; }
.flmarket-counter b { font-size: 20px; }
.flmarket-error { color: #b71c1c; font-family: monospace; font-size: 13px; }
"""


@solara.component
def Page() -> None:
    """The live view of one market run."""
    session = solara.use_memo(lambda: ViewSession(LAUNCH, take_first_model()), [])
    lock = solara.use_memo(threading.RLock, [])
    version, set_version = solara.use_state(0)
    playing, set_playing = solara.use_state(False)
    error, set_error = solara.use_state("")
    mix, set_mix = solara.use_state(dict(session.scenario.providers.strategy_mix))
    mix_text, set_mix_text = solara.use_state(_mix_text(mix))

    def bump() -> None:
        set_version(lambda value: value + 1)

    def advance() -> bool:
        """One task: the session steps under the lock; an error shows the CLI's line (the setters run outside the
        lock, as in `apply`). A line already shown stays: a failed step ends the run until a reset, and a bad mix
        applied while playing stays in its field until a good one is applied. Whether a task finished."""
        failure = ""
        with lock:
            try:
                stepped = session.step()
            except (ScenarioError, MarketError) as bad:
                stepped, failure = False, error_line(bad)
        if failure:
            set_error(failure)
        bump()
        return stepped

    def play_loop(cancel: threading.Event) -> None:
        if not playing:
            return
        me = threading.current_thread()
        with _players_lock:
            _players.add(me)
        try:
            while not cancel.is_set() and not _stopping.is_set():
                if not advance():
                    set_playing(False)
                    return
                cancel.wait(PLAY_PAUSE_S)
        finally:
            with _players_lock:
                _players.discard(me)

    solara.use_thread(play_loop, dependencies=[playing], intrusive_cancel=False)

    def apply(new_mix: dict[str, float] | None) -> None:
        """Reset with the mix (None: the current settings) and pause; on bad input show the CLI's line and keep
        the model, playing if it was. State setters are called outside the lock: a setter may render the page at
        once, and rendering reads the session under the same lock."""
        try:  # builds the new model without touching the session, so a play thread keeps stepping meanwhile
            prepared = session.prepare(session.settings.with_mix(new_mix) if new_mix is not None else None)
        except (ScenarioError, MarketError) as bad:
            set_error(error_line(bad))
            return
        set_playing(False)
        with lock:
            session.start_over(prepared)
        set_error("")
        current = dict(session.scenario.providers.strategy_mix)
        set_mix(current)
        set_mix_text(_mix_text(current))
        bump()

    def apply_text() -> None:
        try:
            apply(parse_mix(mix_text))
        except ScenarioError as bad:
            set_error(error_line(bad))

    def set_share(name: str, value: float) -> None:
        updated = {**mix, name: float(value)}
        set_mix(updated)
        set_mix_text(_mix_text(updated))

    def set_free_riders(value: float) -> None:
        updated = with_free_riders(mix, float(value))
        set_mix(updated)
        set_mix_text(_mix_text(updated))

    with lock:
        state = session.state()
    _ = version  # every step or reset bumps it, which re-renders the page and redraws the charts

    with solara.Column(
        style={"padding": "12px 18px 40px 18px", "background": "#fafafa", "min-height": "100vh"}
    ) as page:
        solara.Style(CSS)
        solara.Title("flmarket view")
        with solara.Row(style={"align-items": "center", "gap": "14px"}):
            solara.HTML(tag="h2", unsafe_innerHTML="flmarket &middot; live market", style={"margin": "0 12px 0 0"})
            solara.Button(
                "Play",
                on_click=lambda: set_playing(True),
                disabled=playing or state["finished"],
                color="primary",
                classes=["flmarket-play"],
            )
            solara.Button(
                "Pause", on_click=lambda: set_playing(False), disabled=not playing, classes=["flmarket-pause"]
            )
            solara.Button(
                "Step one task",
                on_click=advance,
                disabled=playing or state["finished"],
                outlined=True,
                classes=["flmarket-step"],
            )
            solara.Button("Reset", on_click=lambda: apply(None), outlined=True, classes=["flmarket-reset"])
            solara.HTML(
                tag="div",
                unsafe_innerHTML=(
                    f"<span id='flmarket-tasks' data-tasks='{state['tasks']}'>tasks <b>{state['tasks']}</b></span>"
                    f" &middot; t = <b>{state['time_s']:,.1f}</b> s &middot; online providers "
                    f"<b>{state['online_providers']}</b> &middot; {html.escape(state['scenario'])}, seed "
                    f"{state['seed']}{' &middot; finished' if state['finished'] else ''}"
                ),
                classes=["flmarket-counter"],
            )
        with solara.Row(style={"align-items": "center", "gap": "18px", "flex-wrap": "wrap"}):
            for name, share in mix.items():
                with solara.Column(style={"flex": "0 0 230px", "gap": "0"}):
                    solara.SliderFloat(
                        f"{name} {share:.2f}",
                        value=share,
                        min=0.0,
                        max=1.0,
                        step=0.05,
                        on_value=lambda value, name=name: set_share(name, value),
                        thumb_label=True,
                        tick_labels=False,
                    )
            with solara.Column(style={"flex": "0 0 290px", "gap": "0"}):
                solara.SliderFloat(
                    f"free riders (ALLD) {mix.get(FREE_RIDER, 0.0):.2f}",
                    value=mix.get(FREE_RIDER, 0.0),
                    min=0.0,
                    max=1.0,
                    step=0.05,
                    on_value=set_free_riders,
                    thumb_label=True,
                )
        with solara.Row(style={"align-items": "center", "gap": "18px", "flex-wrap": "wrap"}):
            solara.InputText(
                "population mix (NAME=SHARE, ...)",
                value=mix_text,
                on_value=set_mix_text,
                continuous_update=True,  # every keystroke reaches the state: Play's re-renders keep the typed text
                classes=["flmarket-mix"],
                style={"flex": "0 0 420px"},
            )
            solara.Button("Apply mix and reset", on_click=apply_text, color="secondary", classes=["flmarket-apply"])
        if error:
            solara.HTML(tag="div", unsafe_innerHTML=html.escape(error), classes=["flmarket-error"])
        with solara.Div(classes=["flmarket-panels"]):
            Panel(overlay_chart(state), "flmarket-overlay")
            Panel(welfare_chart(state), "flmarket-welfare")
            Panel(shares_chart(state), "flmarket-shares")
            Panel(participation_chart(state), "flmarket-participation")
            Panel(rewards_chart(state), "flmarket-rewards")
            with solara.Div(classes=["flmarket-panel", "flmarket-consensus-panel"]):
                ConsensusCard(state["consensus"])
        solara.HTML(
            tag="pre",
            unsafe_innerHTML=html.escape(state_json(state)),
            attributes={"id": "flmarket-view-state"},
            style={"display": "none"},
        )
    return page
