"""Reproductions of the MMZD paper's figures (SPEC B.6): a CSV, a figure and its caption per experiment.

Protocol (SPEC B.6): `rounds` game rounds (default 20) x `repetitions` runs (default 100) averaged, random
initial actions, Monte-Carlo play of the memory-one rules of market/iterated.py and the ZD designs of
market/zero_determinant.py. Games are drawn by `sample_dilemma_game(rng(seed), N, R)` (SPEC B.1 defaults).

Experiments and their defaults (the paper's N and R were lost with its equations; these are flmarket's):
- mmzd-fig3: N = 6, R = 3. Organisation 0 plays MMZD, ALLD, ALLC or Rand; all others play ALLD, ALLC, Rand,
  TFT or Mixed. Bars: mean welfare of the last game round.
- mmzd-fig6: the same game; per-round expected welfare when organisation 0 plays MMZD.
- mmzd-fig7: the same game; an alliance of 4 randomly chosen organisations (MMZDA) against MMZD of one.
- mmzd-fig8: N = 10, R = 3; alliance size M = 1..10 (nested random alliances, 10 draws): largest enforceable
  welfare P'_max, the paper's P_max of (Z 12)/(Z 13), Monte-Carlo welfare against Rand outsiders, and the
  relative maximum P'_max / P(R, ..., R).
- mmzd-fig9: M = 5, N = 6..14: relative maximum against N (10 games x 10 alliances per N, analytic).
- mmzd-fig10: M / N = 1/2, N = 4..16: maximum and relative maximum (10 games x 10 alliances, analytic).

ZD players use mode "auto": the exact design when a target is enforceable, else the paper's clipped design;
every CSV row and caption says which (`feasible`). Reproduced honestly: a single organisation usually has no
enforceable target for N >= 3 (SPEC B.4), so its welfare then depends on the opponents.

Uncertainty (stated in every caption): Monte-Carlo means carry 95% Student-t intervals over the repetitions
(mean -/+ t(0.975, n-1) SE). For Figs. 8-10 the enforceable share of the random draws has its 95% Wilson score
interval (Wilson 1927); averages over the enforceable draws only carry a 95% percentile bootstrap interval that
resamples the games (Figs. 9, 10: the alliances drawn on one game share it) or the draws (Fig. 8: one game), and
every figure shows "k/n enforceable". Figures are drawn by `analysis.plots` and written as NAME.png (at `dpi`,
plots.MIN_DPI..plots.MAX_DPI), NAME.pdf or NAME.svg and NAME.caption.txt (the title's diagnostics, moved out of the
figure).

Output (both this module and `analysis.reproduce_bgfl`): the output folder is checked before any work (it must be
a folder, or not exist yet under a folder, and be writable), and an experiment's files are written into a hidden
staging folder inside it and moved into place together at the end (`write_together`: every destination is checked
first, and a move that fails is rolled back), so a failure while drawing, writing or moving leaves none of them
behind (and an earlier complete set untouched).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import pandas as pd
from statsmodels.stats.proportion import proportion_confint
from tqdm import tqdm

from flmarket.analysis import plots
from flmarket.arguments import folder as output_folder
from flmarket.arguments import folder_problem as output_folder_problem
from flmarket.arguments import integer_in
from flmarket.arguments import seed as seed_argument
from flmarket.market.errors import MarketError
from flmarket.market.iterated import (
    ConstantPolicy,
    MixturePolicy,
    Policy,
    SimulationResult,
    TitForTatPolicy,
    TitForTatRule,
    point_mass,
    public_goods_finite_game,
    simulate,
    uniform,
)
from flmarket.market.public_goods import PublicGoodsGame, sample_dilemma_game
from flmarket.market.zero_determinant import (
    ControlledGame,
    ZeroDeterminantDesign,
    ZeroDeterminantPolicy,
    design_mmzda,
    full_participation_welfare,
    largest_enforceable_welfare,
    paper_maximum,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

T = TypeVar("T")
DEFAULT_ROUNDS = 20
DEFAULT_REPETITIONS = 100
DEFAULT_GAME_ROUNDS = 3
DEFAULT_OUT = Path("runs") / "reproduce"
OPPONENTS = ("ALLD", "ALLC", "Rand", "TFT", "Mixed")
FOCAL_STRATEGIES = ("MMZD", "ALLD", "ALLC", "Rand")
FIGURE_PLAYERS = 6
ALLIANCE_OF_FIG7 = 4
FIG8_PLAYERS = 10
FIG9_ALLIANCE = 5
DRAWS = 10
LEVEL = 0.95
BOOTSTRAP_RESAMPLES = 2000


@dataclass(frozen=True)
class ReproductionSettings:
    """What every experiment shares: output folder, protocol size, seed and the progress bar."""

    out: Path = DEFAULT_OUT
    repetitions: int = DEFAULT_REPETITIONS
    rounds: int = DEFAULT_ROUNDS
    seed: int = 0
    game_rounds: int = DEFAULT_GAME_ROUNDS
    draws: int = DRAWS
    progress: bool = True
    dpi: int = plots.DEFAULT_DPI
    figure_format: str = plots.DEFAULT_FORMAT

    def __post_init__(self) -> None:
        if self.repetitions < 2:
            raise MarketError(f"repetitions: must be >= 2 (for a standard error), got {self.repetitions}")
        if self.rounds < 1:
            raise MarketError(f"rounds: must be >= 1, got {self.rounds}")
        if self.game_rounds < 1:
            raise MarketError(f"game_rounds: must be >= 1, got {self.game_rounds}")
        if self.draws < 1:
            raise MarketError(f"draws: must be >= 1, got {self.draws}")
        try:
            plots.check_output_options(self.dpi, self.figure_format)
        except ValueError as error:
            raise MarketError(str(error)) from None
        check_output_folder(self.out)  # last: the cheap checks of the values first


@dataclass(frozen=True)
class ReproductionOutput:
    """Where an experiment wrote its table, figure (PNG and vector) and caption, its one-line findings, and the
    figure itself (to inspect or restyle)."""

    name: str
    csv_path: Path
    png_path: Path
    rows: int
    findings: tuple[str, ...]
    vector_path: Path | None = None
    caption_path: Path | None = None
    figure: Figure | None = field(default=None, compare=False, repr=False)


# ------------------------------------------------------------------------------------------------------------
# Building blocks.


def baseline_policy(name: str, players: int, rounds: int) -> Policy:
    """A fresh policy for one organisation playing a baseline rule of SPEC B.3."""
    count = rounds + 1
    if name == "ALLC":
        return ConstantPolicy(point_mass(count, rounds))
    if name == "ALLD":
        return ConstantPolicy(point_mass(count, 0))
    if name == "Rand":
        return ConstantPolicy(uniform(count))
    if name == "TFT":
        return TitForTatPolicy(TitForTatRule.default(players, rounds))
    if name == "Mixed":
        return MixturePolicy([baseline_policy(kind, players, rounds) for kind in ("ALLC", "ALLD", "Rand", "TFT")])
    raise MarketError(f"strategy: unknown baseline {name!r}; allowed: ALLC, ALLD, Rand, TFT, Mixed")


def auto_design(game: PublicGoodsGame, alliance: Sequence[int]) -> ZeroDeterminantDesign:
    """The exact design when some target is enforceable, else the paper's clipped design (mode "auto")."""
    design = design_mmzda(game, tuple(alliance), mode="exact")
    return design if design.playable else design_mmzda(game, tuple(alliance), mode="paper")


def play_against(
    game: PublicGoodsGame,
    controllers: Sequence[int],
    controller_strategy: str,
    others: str,
    settings: ReproductionSettings,
    rng: np.random.Generator,
    design: ZeroDeterminantDesign | None = None,
) -> SimulationResult:
    """Monte Carlo: `controllers` (an organisation or an alliance) play one strategy, the rest `others`."""
    finite = public_goods_finite_game(game)
    members = tuple(controllers)
    outsiders = [j for j in range(game.players) if j not in members]
    if controller_strategy in ("MMZD", "MMZDA"):
        if design is None:
            raise MarketError("design: a ZD controller needs its design")
        controller_policy: Policy = ZeroDeterminantPolicy(design, finite.welfare, members[0])
    else:
        controller_policy = baseline_policy(controller_strategy, game.players, game.rounds)
    policies = [controller_policy] + [baseline_policy(others, game.players, game.rounds) for _ in outsiders]
    groups = [members] + [(j,) for j in outsiders]
    return simulate(finite, policies, settings.rounds, settings.repetitions, rng, groups)


def design_note(label: str, design: ZeroDeterminantDesign) -> str:
    """One line: the target and whether it is enforceable."""
    if design.feasible:
        return f"{label}: P* = {design.target:.4g} enforceable (exact, {design.form} form)"
    return (
        f"{label}: NOT enforceable; paper P_max = {design.paper_maximum:.4g} played clipped "
        f"(interval [{design.lower_bound:.4g}, {design.upper_bound:.4g}] empty), welfare depends on opponents"
    )


def check_output_folder(folder: str | Path, option: str = "out") -> None:
    """Raise MarketError "OPTION: must be a folder, got ..." when `output_folder_problem` finds one."""
    problem = output_folder_problem(folder)
    if problem is not None:
        raise MarketError(f"{option}: {problem}")


def write_together(folder: Path, name: str, write: Callable[[Path], None], option: str = "out") -> None:
    """Run `write(staging)`, which writes an experiment's files into a new hidden folder inside `folder`, then
    move every file it wrote into `folder`, all or none (`move_together`). When writing or moving fails, the
    staging folder is removed (and `folder` too when this call created it and it is empty) and the error
    re-raised: no partial set of files is left, and an earlier complete set is untouched. `option` is the name
    by which the caller's user gave `folder` (the errors name it)."""
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", suffix=".partial", dir=folder))
    try:
        write(staging)
        move_together(sorted(staging.iterdir()), folder, name, option)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created:
            with contextlib.suppress(OSError):  # not empty after all: leave it
                folder.rmdir()
        raise
    staging.rmdir()


def move_together(paths: Sequence[Path], folder: Path, name: str, option: str = "out") -> None:
    """Move the files `paths` into `folder` under their names, replacing what is there, all or none.

    First every destination is checked: one that is a folder (or anything but a file or a link) cannot be
    replaced, and is refused with a MarketError naming it before anything moves. Then each existing destination
    is set aside in a new hidden folder inside `folder` (so on the same file system) and the new file moved in;
    when a move fails, the files moved so far are removed, the set-aside ones put back, and a MarketError names
    the destination that failed. The set-aside folder is deleted afterwards, unless putting a file back failed
    (the error then says where the earlier files are)."""
    for path in paths:
        destination = folder / path.name
        if destination.is_symlink() or not destination.exists() or destination.is_file():
            continue
        kind = "a folder" if destination.is_dir() else "not a regular file"
        raise MarketError(
            f"{option}: cannot replace {destination}: it is {kind}; move it away or choose another --{option}"
        )
    previous = Path(tempfile.mkdtemp(prefix=f".{name}-", suffix=".previous", dir=folder))
    set_aside: list[tuple[Path, Path]] = []  # (destination, where its earlier file waits)
    moved: list[Path] = []
    try:
        for path in paths:
            destination = folder / path.name
            if destination.is_symlink() or destination.exists():
                kept = previous / path.name
                destination.replace(kept)
                set_aside.append((destination, kept))
            path.replace(destination)
            moved.append(destination)
    except OSError as error:
        for new_file in reversed(moved):
            with contextlib.suppress(OSError):
                new_file.unlink()
        stranded = False
        for earlier_place, kept in reversed(set_aside):
            try:
                kept.replace(earlier_place)
            except OSError:
                stranded = True
        if stranded:
            outcome = f"the earlier files that could not be put back are in {previous}"
        else:
            shutil.rmtree(previous, ignore_errors=True)
            outcome = "no file was changed"
        reason = error.strerror or str(error)
        raise MarketError(f"out: cannot replace {destination}: {reason}; {outcome}") from error
    shutil.rmtree(previous)


def _write_csv(path: Path, rows: list[dict[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def wilson_interval(successes: int, trials: int, level: float = LEVEL) -> tuple[float, float]:
    """The Wilson score interval of a proportion (Wilson 1927; statsmodels `proportion_confint`): inside [0, 1]
    and informative at 0 of n and n of n, where the normal interval collapses.

    The bounds are clipped to [0, 1], and the bound at an extreme is exact: 0 of n has lower bound 0 and n of n
    upper bound 1 (the closed form gives them up to float noise, 3.5e-18 or 0.9999999999999999)."""
    low, high = proportion_confint(successes, trials, alpha=1 - level, method="wilson")
    low, high = min(max(float(low), 0.0), 1.0), min(max(float(high), 0.0), 1.0)
    if successes == 0:
        low = 0.0
    if successes == trials:
        high = 1.0
    return low, high


def cluster_bootstrap_mean(
    clusters: Sequence[Sequence[float]],
    level: float = LEVEL,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean of the pooled values and its percentile bootstrap interval resampling whole clusters with
    replacement (the cluster bootstrap, Davison & Hinkley 1997, sec. 3.8): values of one cluster (the alliances
    drawn on one game) are not independent. A resample without any value is skipped. Returns (mean, low, high);
    the interval is NaN when fewer than two clusters hold values."""
    sums = np.array([float(np.sum(values)) for values in clusters])
    counts = np.array([len(values) for values in clusters], dtype=float)
    if counts.sum() == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(sums.sum() / counts.sum())
    if np.count_nonzero(counts) < 2:
        return mean, float("nan"), float("nan")
    picks = np.random.default_rng(seed).integers(0, len(clusters), size=(resamples, len(clusters)))
    totals, sizes = sums[picks].sum(axis=1), counts[picks].sum(axis=1)
    means = totals[sizes > 0] / sizes[sizes > 0]
    low, high = np.percentile(means, [50 * (1 - level), 50 * (1 + level)])
    return mean, float(low), float(high)


def _interval_columns(prefix: str, interval: tuple[float, float, float]) -> dict[str, float]:
    mean, low, high = interval
    return {prefix: mean, f"{prefix}_low": low, f"{prefix}_high": high}


def _share_columns(successes: int, trials: int) -> dict[str, float]:
    low, high = wilson_interval(successes, trials)
    return {"enforceable_share": successes / trials, "enforceable_share_low": low, "enforceable_share_high": high}


def _progress(items: Sequence[T], settings: ReproductionSettings, description: str) -> Iterable[T]:
    """A tqdm progress bar on a terminal (silent otherwise or when disabled)."""
    return tqdm(items, desc=description, disable=None if settings.progress else True, leave=False)


def _game(settings: ReproductionSettings, players: int, offset: int = 0) -> PublicGoodsGame:
    return sample_dilemma_game(np.random.default_rng([settings.seed, offset]), players, settings.game_rounds)


# ------------------------------------------------------------------------------------------------------------
# The experiments.


MC_INTERVAL = (
    "Error bars and bands: 95% confidence intervals over the {repetitions} repetitions, mean -/+ t(0.975, {dof}) "
    "standard errors (Student t)."
)


def _monte_carlo_note(settings: ReproductionSettings) -> str:
    return (
        f"Monte Carlo: {settings.repetitions} repetitions of {settings.rounds} game rounds from random initial "
        f"actions, seed {settings.seed}. "
        + MC_INTERVAL.format(repetitions=settings.repetitions, dof=settings.repetitions - 1)
    )


def figure_3(settings: ReproductionSettings) -> ReproductionOutput:
    """Fig. 3: final welfare for each focal x others' strategy; only a feasible MMZD is opponent-free."""
    game = _game(settings, FIGURE_PLAYERS)
    design = auto_design(game, (0,))
    rows: list[dict[str, object]] = []
    finals: dict[tuple[str, str], float] = {}
    pairs = [(focal, others) for focal in FOCAL_STRATEGIES for others in OPPONENTS]
    for index, (focal, others) in enumerate(_progress(pairs, settings, "mmzd-fig3")):
        rng = np.random.default_rng([settings.seed, 3, index])
        result = play_against(game, (0,), focal, others, settings, rng, design if focal == "MMZD" else None)
        finals[(focal, others)] = float(result.mean_welfare[-1])
        rows.extend(_round_rows("mmzd-fig3", focal, others, result, game, settings, design, focal == "MMZD"))
    spread = np.ptp([finals[("MMZD", others)] for others in OPPONENTS])
    findings = (
        design_note("MMZD of organisation 0", design),
        f"MMZD final welfare spread across opponents {spread:.4g}",
    )
    figure = plots.mmzd_final_welfare_figure(
        pd.DataFrame(rows), f"Fig. 3: organisation 0's strategy (N = {game.players}, R = {game.rounds})"
    )
    caption = (
        f"Fig. 3 (N = {game.players}, R = {game.rounds}). Mean social welfare in game round {settings.rounds} when "
        "organisation 0 plays MMZD, ALLD, ALLC or Rand (bars) and all the others play the strategy on the x axis. "
        + _feasibility_sentence(design, "MMZD of organisation 0")
        + f" {findings[1]}. "
        + _monte_carlo_note(settings)
    )
    return _save("mmzd-fig3", rows, figure, settings, findings, caption)


def _feasibility_sentence(design: ZeroDeterminantDesign, label: str) -> str:
    """The design's verdict as a sentence, and whether the dashed target line is drawn."""
    if design.feasible:
        return f"{design_note(label, design)}; the dashed line is P*."
    return f"{design_note(label, design)}; no target line is drawn."


def figure_6(settings: ReproductionSettings) -> ReproductionOutput:
    """Fig. 6: per-round expected welfare under MMZD of organisation 0 against each opponent mix."""
    game = _game(settings, FIGURE_PLAYERS)
    design = auto_design(game, (0,))
    rows: list[dict[str, object]] = []
    for index, others in enumerate(_progress(OPPONENTS, settings, "mmzd-fig6")):
        rng = np.random.default_rng([settings.seed, 6, index])
        result = play_against(game, (0,), "MMZD", others, settings, rng, design)
        rows.extend(_round_rows("mmzd-fig6", "MMZD", others, result, game, settings, design, True))
    findings = (design_note("MMZD of organisation 0", design),)
    figure = plots.mmzd_welfare_by_round_figure(
        pd.DataFrame(rows), f"Fig. 6: MMZD against others (N = {game.players}, R = {game.rounds})"
    )
    caption = (
        f"Fig. 6 (N = {game.players}, R = {game.rounds}). Expected social welfare per game round when organisation "
        "0 plays MMZD and all the others play the strategy of the line. "
        + _feasibility_sentence(design, "MMZD of organisation 0")
        + " "
        + _monte_carlo_note(settings)
    )
    return _save("mmzd-fig6", rows, figure, settings, findings, caption)


def figure_7(settings: ReproductionSettings) -> ReproductionOutput:
    """Fig. 7: an alliance of 4 (MMZDA) against a single MMZD organisation, for every opponent mix."""
    game = _game(settings, FIGURE_PLAYERS)
    chooser = np.random.default_rng([settings.seed, 7])
    alliance = tuple(sorted(int(j) for j in chooser.choice(game.players, ALLIANCE_OF_FIG7, replace=False)))
    single = auto_design(game, (alliance[0],))
    joint = auto_design(game, alliance)
    rows: list[dict[str, object]] = []
    cases = [(kind, others) for others in OPPONENTS for kind in ("MMZD", "MMZDA")]
    for index, (kind, others) in enumerate(_progress(cases, settings, "mmzd-fig7")):
        members, design = ((alliance[0],), single) if kind == "MMZD" else (alliance, joint)
        rng = np.random.default_rng([settings.seed, 70, index])
        result = play_against(game, members, kind, others, settings, rng, design)
        rows.extend(_round_rows("mmzd-fig7", kind, others, result, game, settings, design, True, members))
    findings = (
        design_note(f"MMZD of organisation {alliance[0]}", single),
        design_note(f"MMZDA {alliance}", joint),
    )
    figure = plots.mmzd_alliance_against_single_figure(
        pd.DataFrame(rows), f"Fig. 7: alliance against one organisation (N = {game.players}, R = {game.rounds})"
    )
    caption = (
        f"Fig. 7 (N = {game.players}, R = {game.rounds}). An alliance of {ALLIANCE_OF_FIG7} organisations "
        f"{alliance} playing MMZDA (solid lines, grey bars) against organisation {alliance[0]} alone playing MMZD "
        "(dashed lines, hatched bars); the other organisations play the strategy of the colour (right) or of the x "
        f"axis (left). Left: mean welfare in game round {settings.rounds}; right: per game round. "
        f"{findings[0]}. {findings[1]}. " + _monte_carlo_note(settings) + " The right panel shows means only."
    )
    return _save("mmzd-fig7", rows, figure, settings, findings, caption)


def figure_8(settings: ReproductionSettings) -> ReproductionOutput:
    """Fig. 8: N = 10; welfare and relative maximum against alliance size M (nested random alliances)."""
    game = _game(settings, FIG8_PLAYERS)
    finite = public_goods_finite_game(game)
    full = full_participation_welfare(game)
    optimum = float(ControlledGame(game, (0,)).extremes().highest.max())
    orders = [
        np.random.default_rng([settings.seed, 8, draw]).permutation(game.players) for draw in range(settings.draws)
    ]
    rows: list[dict[str, object]] = []
    sizes = list(range(1, game.players + 1))
    for size in _progress(sizes, settings, "mmzd-fig8"):
        exact_values, paper_values, welfare, feasible = [], [], [], 0
        for draw, order in enumerate(orders):
            alliance = tuple(int(j) for j in order[:size])
            extremes = ControlledGame(game, alliance).extremes()
            general = largest_enforceable_welfare(extremes)
            paper_values.append(paper_maximum(extremes)[0])
            if general.feasible:
                feasible += 1
                exact_values.append(general.value)
            outsiders = [j for j in range(game.players) if j not in alliance]
            design = auto_design(game, alliance)
            policies: list[Policy] = [ZeroDeterminantPolicy(design, finite.welfare, alliance[0])]
            policies += [baseline_policy("Rand", game.players, game.rounds) for _ in outsiders]
            groups = [alliance] + [(j,) for j in outsiders]
            rng = np.random.default_rng([settings.seed, 80, size, draw])
            welfare.append(
                simulate(finite, policies, settings.rounds, settings.repetitions, rng, groups).mean_welfare[-1]
            )
        # one game: the draws are independent alliances, each its own cluster
        exact = cluster_bootstrap_mean([[value] for value in exact_values], seed=settings.seed)
        rows.append(
            {
                "figure": "mmzd-fig8",
                "players": game.players,
                "alliance_size": size,
                "draws": settings.draws,
                "feasible_draws": feasible,
                **_share_columns(feasible, settings.draws),
                **_interval_columns("largest_enforceable_welfare", exact),
                "paper_maximum": float(np.mean(paper_values)),
                "monte_carlo_final_welfare": float(np.mean(welfare)),
                "full_participation_welfare": full,
                **_interval_columns("relative_maximum", tuple(value / full for value in exact)),
                "relative_paper_maximum": float(np.mean(paper_values)) / full,
                "social_optimum": optimum,
                "relative_to_optimum": exact[0] / optimum,
                "repetitions": settings.repetitions,
                "rounds": settings.rounds,
                "seed": settings.seed,
            }
        )
    findings = _alliance_findings(rows, "alliance_size")
    figure = plots.mmzd_alliance_size_figure(
        pd.DataFrame(rows), f"Fig. 8: alliance size (N = {game.players}, R = {game.rounds})"
    )
    enforceable = ", ".join(f"M = {r['alliance_size']}: {r['feasible_draws']}/{r['draws']}" for r in rows)
    caption = (
        f"Fig. 8 (N = {game.players}, R = {game.rounds}; {settings.draws} nested random alliances of each size M "
        f"on one game, seed {settings.seed}). Left: the largest enforceable welfare P'_max (mean over the "
        "enforceable draws; 95% percentile bootstrap interval over them, "
        f"{BOOTSTRAP_RESAMPLES} resamples, none with fewer than two), the paper's P_max of (Z 12)/(Z 13) (mean over "
        f"all draws), Monte-Carlo welfare in game round {settings.rounds} against Rand outsiders (mean over draws of "
        f"{settings.repetitions} repetitions) and full participation P(R, ..., R). Middle: P'_max relative to "
        "P(R, ..., R) (with the same interval) and to the social optimum max_y P(y). Right: the share of draws "
        "for which a ZD design is enforceable, with 95% Wilson score intervals. Enforceable draws: "
        f"{enforceable}. {findings[0]}."
    )
    return _save("mmzd-fig8", rows, figure, settings, findings, caption)


def _analytic_rows(
    figure_name: str,
    settings: ReproductionSettings,
    players_axis: Sequence[int],
    alliance_size: Callable[[int], int],
) -> list[dict[str, object]]:
    """Over `draws` games x `draws` alliances: the enforceable share (Wilson) and, over the enforceable draws
    only, the mean enforceable maximum and relative maximum (bootstrap over games); the paper's P_max over all."""
    rows: list[dict[str, object]] = []
    for players in _progress(list(players_axis), settings, figure_name):
        size = alliance_size(players)
        exact: list[list[float]] = []
        relative: list[list[float]] = []
        paper, feasible, total = [], 0, 0
        for game_draw in range(settings.draws):
            game = _game(settings, players, offset=1000 * players + game_draw)
            full = full_participation_welfare(game)
            chooser = np.random.default_rng([settings.seed, players, game_draw])
            exact.append([])
            relative.append([])
            for _ in range(settings.draws):
                alliance = tuple(int(j) for j in chooser.choice(players, size, replace=False))
                extremes = ControlledGame(game, alliance).extremes()
                general = largest_enforceable_welfare(extremes)
                paper.append(paper_maximum(extremes)[0] / full)
                total += 1
                if general.feasible:
                    feasible += 1
                    exact[-1].append(general.value)
                    relative[-1].append(general.value / full)
        rows.append(
            {
                "figure": figure_name,
                "players": players,
                "alliance_size": size,
                "samples": total,
                "feasible_samples": feasible,
                **_share_columns(feasible, total),
                **_interval_columns("largest_enforceable_welfare", cluster_bootstrap_mean(exact, seed=settings.seed)),
                **_interval_columns("relative_maximum", cluster_bootstrap_mean(relative, seed=settings.seed)),
                "relative_paper_maximum": float(np.mean(paper)),
                "game_rounds": settings.game_rounds,
                "seed": settings.seed,
            }
        )
    return rows


def _analytic_figure(
    name: str, title: str, rows: list[dict[str, object]], settings: ReproductionSettings, alliance: str
) -> ReproductionOutput:
    """Three panels against N: the enforceable share, the enforceable maximum and the relative maximum."""
    figure = plots.mmzd_against_players_figure(pd.DataFrame(rows), title)
    findings = _alliance_findings(rows, "players")
    enforceable = ", ".join(f"N = {r['players']}: {r['feasible_samples']}/{r['samples']}" for r in rows)
    caption = (
        f"{title.replace(':', ' (' + alliance + ', R = ' + str(settings.game_rounds) + '):', 1)}. For each N, "
        f"{settings.draws} random games x {settings.draws} random alliances (seed {settings.seed}), analytic "
        "(no play). Left: the share of draws for which a ZD alliance design is enforceable, with 95% Wilson score "
        "intervals (draws treated as independent) and k/n at each point. Middle and right: the largest "
        "enforceable welfare P'_max and P'_max / P(R, ..., R), means over the enforceable draws only, with 95% "
        f"percentile bootstrap intervals resampling the games ({BOOTSTRAP_RESAMPLES} resamples; none when fewer "
        "than two games have an enforceable draw; no point when none has); dashed: the paper's P_max / "
        f"P(R, ..., R), mean over all draws. Enforceable draws: {enforceable}. {findings[0]}."
    )
    return _save(name, rows, figure, settings, findings, caption)


def figure_9(settings: ReproductionSettings) -> ReproductionOutput:
    """Fig. 9: alliance of M = 5, N = 6..14: the relative maximum against N (analytic)."""
    rows = _analytic_rows("mmzd-fig9", settings, range(6, 15), lambda players: FIG9_ALLIANCE)
    return _analytic_figure("mmzd-fig9", "Fig. 9: enforceable alliances", rows, settings, f"M = {FIG9_ALLIANCE}")


def figure_10(settings: ReproductionSettings) -> ReproductionOutput:
    """Fig. 10: M / N = 1/2, N = 4..16 (even): maximum and relative maximum against N (analytic)."""
    rows = _analytic_rows("mmzd-fig10", settings, range(4, 17, 2), lambda players: players // 2)
    return _analytic_figure("mmzd-fig10", "Fig. 10: alliances of half the organisations", rows, settings, "M/N = 1/2")


def _alliance_findings(rows: list[dict[str, object]], axis_name: str) -> tuple[str, ...]:
    values = [float(r["largest_enforceable_welfare"]) for r in rows]
    relative = [float(r["relative_maximum"]) for r in rows]
    finite = [v for v in values if not np.isnan(v)]
    monotone = all(b >= a - 1e-12 for a, b in zip(finite, finite[1:], strict=False))
    return (
        f"P'_max against {axis_name}: {', '.join(f'{v:.4g}' for v in values)} (non-decreasing: {monotone})",
        f"relative maximum: {', '.join(f'{v:.3g}' for v in relative)}",
    )


def _round_rows(
    figure_name: str,
    focal: str,
    others: str,
    result: SimulationResult,
    game: PublicGoodsGame,
    settings: ReproductionSettings,
    design: ZeroDeterminantDesign,
    uses_design: bool,
    controllers: Sequence[int] = (0,),
) -> list[dict[str, object]]:
    return [
        {
            "figure": figure_name,
            "controller_strategy": focal,
            "controllers": " ".join(str(j) for j in controllers),
            "others_strategy": others,
            "round": round_index + 1,
            "mean_welfare": float(result.mean_welfare[round_index]),
            "standard_error": float(result.welfare_standard_error[round_index]),
            "target": design.target if uses_design else float("nan"),
            "feasible": design.feasible if uses_design else "",
            "design_mode": design.mode if uses_design else "",
            "paper_maximum": design.paper_maximum if uses_design else float("nan"),
            "players": game.players,
            "game_rounds": game.rounds,
            "repetitions": settings.repetitions,
            "seed": settings.seed,
        }
        for round_index in range(result.rounds)
    ]


def _save(
    name: str,
    rows: list[dict[str, object]],
    figure: Figure,
    settings: ReproductionSettings,
    findings: tuple[str, ...],
    caption: str,
) -> ReproductionOutput:
    """Write NAME.png (at settings.dpi), NAME.pdf or NAME.svg, NAME.caption.txt and NAME.csv, all or none
    (`write_together`)."""

    def write(staging: Path) -> None:
        plots.save_figure(figure, staging, name, caption, settings.dpi, settings.figure_format)
        _write_csv(staging / f"{name}.csv", rows)

    out = settings.out
    write_together(out, name, write)
    return ReproductionOutput(
        name,
        out / f"{name}.csv",
        out / f"{name}.png",
        len(rows),
        findings,
        out / f"{name}.{settings.figure_format}",
        out / f"{name}{plots.CAPTION_SUFFIX}",
        figure,
    )


EXPERIMENTS: dict[str, Callable[[ReproductionSettings], ReproductionOutput]] = {
    "mmzd-fig3": figure_3,
    "mmzd-fig6": figure_6,
    "mmzd-fig7": figure_7,
    "mmzd-fig8": figure_8,
    "mmzd-fig9": figure_9,
    "mmzd-fig10": figure_10,
}


def run_experiment(name: str, settings: ReproductionSettings) -> ReproductionOutput:
    """Run one named experiment and write its CSV and PNG under `settings.out`."""
    if name not in EXPERIMENTS:
        raise MarketError(f"name: unknown experiment {name!r}; allowed: {sorted(EXPERIMENTS)}")
    return EXPERIMENTS[name](settings)


def refuse_bgfl_options(args: argparse.Namespace) -> None:
    """Raise MarketError naming --repeats or --data-root when either is given for `args.name`, an MMZD
    experiment or "all" (which runs the MMZD experiments only): they would be ignored, as --repetitions would be
    by a BGFL figure."""
    what = "all runs the MMZD figures, which average" if args.name == "all" else f"{args.name} averages"
    if getattr(args, "repeats", None) is not None:
        raise MarketError(
            f"--repeats: the BGFL experiments' option; {what} --repetitions game runs (default {DEFAULT_REPETITIONS})"
        )
    if getattr(args, "data_root", None) is not None:
        reads = "all runs the MMZD figures, which read" if args.name == "all" else f"{args.name} reads"
        raise MarketError(f"--data-root: the BGFL experiments' option; {reads} no data (games are drawn from --seed)")


OPTION_OF_FIELD = {
    "root": "--data-root",
    "data_root": "--data-root",
    "rounds": "--rounds",
    "repeats": "--repeats",
    "repetitions": "--repetitions",
    "out": "--out",
    "seed": "--seed",
    "dpi": "--dpi",
}
"""The command's option for each settings field an error may start with (the Python API names the fields)."""


def in_option_terms(message: str) -> str:
    """An experiment's error as `flmarket reproduce` says it: the option, not the settings field, and the data
    set's fallback as the option to leave out (a run names `learning.dataset`, the Python API `dataset=`)."""
    field, separator, rest = message.partition(": ")
    if separator and field in OPTION_OF_FIELD:
        message = f"{OPTION_OF_FIELD[field]}: {rest}"
    return message.replace("or use dataset='digits'", "or leave out --data-root (digits, bundled)")


def handler(args: argparse.Namespace) -> int:
    """`flmarket reproduce`: run the experiments named, print where the files went; exit code 0."""
    try:
        return _run_experiments(args)
    except MarketError as error:
        raise type(error)(in_option_terms(str(error))) from None


def _run_experiments(args: argparse.Namespace) -> int:
    from flmarket.analysis import reproduce_bgfl  # the BGFL figures (Figs. 2-4) live in their own module

    if args.name in reproduce_bgfl.EXPERIMENTS:
        if args.repetitions is not None:  # it would be ignored: the BGFL figures average --repeats training runs
            raise MarketError(
                f"--repetitions: the MMZD experiments' option; {args.name} averages --repeats training runs "
                f"(default {reproduce_bgfl.DEFAULT_REPEATS})"
            )
        return reproduce_bgfl.handler(args)
    refuse_bgfl_options(args)
    rounds = args.rounds if args.rounds is not None else DEFAULT_ROUNDS
    settings = ReproductionSettings(
        out=Path(args.out),
        repetitions=args.repetitions if args.repetitions is not None else DEFAULT_REPETITIONS,
        rounds=rounds,
        seed=args.seed,
        dpi=args.dpi,
        figure_format=args.format,
    )
    names = sorted(EXPERIMENTS) if args.name == "all" else [args.name]
    for name in names:
        output = run_experiment(name, settings)
        print(
            f"{output.name}: {output.csv_path} ({output.rows} rows), {output.png_path}, {output.vector_path}, "
            f"{output.caption_path}"
        )
        for line in output.findings:
            print(f"  {line}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `reproduce` subcommand (handler set with set_defaults(func=handler))."""
    parser = subparsers.add_parser(
        "reproduce",
        help="reproduce a figure of the MMZD or BGFL paper (CSV, PNG and PDF/SVG with caption, paper table)",
        description=(
            "Reproduce a figure of the BGFL paper (bgfl-fig2, bgfl-fig3, bgfl-fig4: real training on digits, or "
            "MNIST/CIFAR-10 from --data-root, through the mechanism, with a table of the paper's numbers beside "
            "ours) or of 'Alliance Makes Difference?' (SPEC B.6), the MMZD figures, by Monte-Carlo play: ROUNDS plays "
            "of the game (game rounds) x REPETITIONS runs averaged, random initial actions, a social-dilemma game "
            "drawn from SEED. "
            "Writes NAME.csv, NAME.png (at --dpi), NAME.pdf or NAME.svg (--format) and NAME.caption.txt to OUT; "
            "every row and caption states whether the ZD target is enforceable (a single organisation usually has "
            "none for N >= 3; it then plays the paper's clipped strategy and its welfare depends on the "
            "opponents), and what each error bar is. "
            "Experiments: "
            + "; ".join(f"{name}: {(EXPERIMENTS[name].__doc__ or '').split(':')[0]}" for name in sorted(EXPERIMENTS))
            + "."
        ),
    )
    from flmarket.analysis import reproduce_bgfl

    bgfl_names = sorted(reproduce_bgfl.EXPERIMENTS)
    parser.add_argument(
        "name",
        choices=[*sorted(EXPERIMENTS), *bgfl_names, "all"],
        help="experiment to run, or 'all' (the six MMZD experiments)",
    )
    parser.add_argument(
        "--out",
        type=output_folder,
        default=str(DEFAULT_OUT),
        help=f"output folder, created if missing; must not be a file (default {DEFAULT_OUT})",
    )
    parser.add_argument(
        "--repetitions",
        type=integer_in(2, note=" (a standard error needs two runs)"),
        default=None,
        help=f"MMZD: independent runs averaged, at least 2 (default {DEFAULT_REPETITIONS}); BGFL takes --repeats",
    )
    parser.add_argument(
        "--rounds",
        type=integer_in(1),
        default=None,
        help=f"MMZD: how many times each run plays the game, the CSV's round 1..ROUNDS, at least 1 (default "
        f"{DEFAULT_ROUNDS}; not the CSV's game_rounds, R = {DEFAULT_GAME_ROUNDS}: the most FL rounds an "
        f"organisation can join in one play); BGFL: aggregation rounds (default {reproduce_bgfl.DEFAULT_ROUNDS})",
    )
    parser.add_argument(
        "--seed",
        type=seed_argument,
        default=0,
        help="seed of the game draw and of the play, 0 <= SEED < 2**63 (default 0)",
    )
    reproduce_bgfl.add_arguments(parser)
    plots.add_figure_arguments(parser)
    parser.set_defaults(func=handler)
