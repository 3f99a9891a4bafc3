"""Reproductions of the MMZD paper's figures (SPEC B.6): a CSV and a PNG per experiment, feasibility stated.

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
every CSV row and figure says which (`feasible`). Reproduced honestly: a single organisation usually has no
enforceable target for N >= 3 (SPEC B.4), so its welfare then depends on the opponents.
"""

from __future__ import annotations

import argparse
import csv
import textwrap
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
from tqdm import tqdm

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

    def __post_init__(self) -> None:
        if self.repetitions < 2:
            raise MarketError(f"repetitions: must be >= 2 (for a standard error), got {self.repetitions}")
        if self.rounds < 1:
            raise MarketError(f"rounds: must be >= 1, got {self.rounds}")
        if self.game_rounds < 1:
            raise MarketError(f"game_rounds: must be >= 1, got {self.game_rounds}")
        if self.draws < 1:
            raise MarketError(f"draws: must be >= 1, got {self.draws}")


@dataclass(frozen=True)
class ReproductionOutput:
    """Where an experiment wrote its table and figure, and its one-line findings."""

    name: str
    csv_path: Path
    png_path: Path
    rows: int
    findings: tuple[str, ...]


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


def _wrap(text: str, width: int = 110) -> str:
    return textwrap.fill(text, width)


def _write_csv(path: Path, rows: list[dict[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _figure(columns: int = 1, width: float = 7.0) -> tuple[Figure, np.ndarray]:
    """A constrained-layout figure with `columns` axes side by side (matplotlib imported only here)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width * columns, 4.6), layout="constrained")
    axes = figure.subplots(1, columns, squeeze=False)[0]
    return figure, axes


def _progress(items: Sequence[T], settings: ReproductionSettings, description: str) -> Iterable[T]:
    """A tqdm progress bar on a terminal (silent otherwise or when disabled)."""
    return tqdm(items, desc=description, disable=None if settings.progress else True, leave=False)


def _game(settings: ReproductionSettings, players: int, offset: int = 0) -> PublicGoodsGame:
    return sample_dilemma_game(np.random.default_rng([settings.seed, offset]), players, settings.game_rounds)


# ------------------------------------------------------------------------------------------------------------
# The experiments.


def figure_3(settings: ReproductionSettings) -> ReproductionOutput:
    """Fig. 3: final welfare for each focal x others' strategy; only a feasible MMZD is opponent-free."""
    game = _game(settings, FIGURE_PLAYERS)
    design = auto_design(game, (0,))
    rows: list[dict[str, object]] = []
    finals: dict[tuple[str, str], tuple[float, float]] = {}
    pairs = [(focal, others) for focal in FOCAL_STRATEGIES for others in OPPONENTS]
    for index, (focal, others) in enumerate(_progress(pairs, settings, "mmzd-fig3")):
        rng = np.random.default_rng([settings.seed, 3, index])
        result = play_against(game, (0,), focal, others, settings, rng, design if focal == "MMZD" else None)
        finals[(focal, others)] = (result.mean_welfare[-1], result.welfare_standard_error[-1])
        rows.extend(_round_rows("mmzd-fig3", focal, others, result, game, settings, design, focal == "MMZD"))
    spread = np.ptp([finals[("MMZD", others)][0] for others in OPPONENTS])
    findings = (
        design_note("MMZD of organisation 0", design),
        f"MMZD final welfare spread across opponents {spread:.4g}",
    )
    figure, (axis,) = _figure(width=8.0)
    width = 0.8 / len(FOCAL_STRATEGIES)
    positions = np.arange(len(OPPONENTS))
    for offset, focal in enumerate(FOCAL_STRATEGIES):
        values = [finals[(focal, others)] for others in OPPONENTS]
        axis.bar(
            positions + offset * width,
            [v[0] for v in values],
            width,
            yerr=[v[1] for v in values],
            label=focal,
        )
    if design.playable:
        axis.axhline(design.target, color="black", linestyle="--", linewidth=1, label="MMZD target P*")
    axis.set_xticks(positions + width * (len(FOCAL_STRATEGIES) - 1) / 2, OPPONENTS)
    axis.set_xlabel("strategy of the other organisations")
    axis.set_ylabel(f"mean welfare in game round {settings.rounds}")
    axis.set_title(
        f"Fig. 3 (N={game.players}, R={game.rounds}): organisation 0's strategy\n{_wrap(findings[0])}",
        fontsize=8,
    )
    axis.legend(fontsize=8)
    return _save("mmzd-fig3", rows, figure, settings, findings)


def figure_6(settings: ReproductionSettings) -> ReproductionOutput:
    """Fig. 6: per-round expected welfare under MMZD of organisation 0 against each opponent mix."""
    game = _game(settings, FIGURE_PLAYERS)
    design = auto_design(game, (0,))
    rows: list[dict[str, object]] = []
    figure, (axis,) = _figure()
    rounds = np.arange(1, settings.rounds + 1)
    for index, others in enumerate(_progress(OPPONENTS, settings, "mmzd-fig6")):
        rng = np.random.default_rng([settings.seed, 6, index])
        result = play_against(game, (0,), "MMZD", others, settings, rng, design)
        rows.extend(_round_rows("mmzd-fig6", "MMZD", others, result, game, settings, design, True))
        axis.errorbar(rounds, result.mean_welfare, yerr=result.welfare_standard_error, label=others, capsize=2)
    if design.playable:
        axis.axhline(design.target, color="black", linestyle="--", linewidth=1, label="target P*")
    findings = (design_note("MMZD of organisation 0", design),)
    axis.set_xlabel("game round")
    axis.set_ylabel("expected social welfare")
    axis.set_title(f"Fig. 6 (N={game.players}, R={game.rounds}): MMZD vs others\n{_wrap(findings[0])}", fontsize=8)
    axis.legend(title="others", fontsize=8)
    return _save("mmzd-fig6", rows, figure, settings, findings)


def figure_7(settings: ReproductionSettings) -> ReproductionOutput:
    """Fig. 7: an alliance of 4 (MMZDA) against a single MMZD organisation, for every opponent mix."""
    game = _game(settings, FIGURE_PLAYERS)
    chooser = np.random.default_rng([settings.seed, 7])
    alliance = tuple(sorted(int(j) for j in chooser.choice(game.players, ALLIANCE_OF_FIG7, replace=False)))
    single = auto_design(game, (alliance[0],))
    joint = auto_design(game, alliance)
    rows: list[dict[str, object]] = []
    finals: dict[tuple[str, str], float] = {}
    figure, (bars, lines) = _figure(columns=2)
    rounds = np.arange(1, settings.rounds + 1)
    cases = [(kind, others) for others in OPPONENTS for kind in ("MMZD", "MMZDA")]
    for index, (kind, others) in enumerate(_progress(cases, settings, "mmzd-fig7")):
        members, design = ((alliance[0],), single) if kind == "MMZD" else (alliance, joint)
        rng = np.random.default_rng([settings.seed, 70, index])
        result = play_against(game, members, kind, others, settings, rng, design)
        finals[(kind, others)] = float(result.mean_welfare[-1])
        rows.extend(_round_rows("mmzd-fig7", kind, others, result, game, settings, design, True, members))
        lines.plot(
            rounds,
            result.mean_welfare,
            linestyle="-" if kind == "MMZDA" else "--",
            label=f"{kind} / {others}",
        )
    positions = np.arange(len(OPPONENTS))
    for offset, kind in enumerate(("MMZD", "MMZDA")):
        bars.bar(positions + 0.4 * offset, [finals[(kind, o)] for o in OPPONENTS], 0.4, label=kind)
    bars.set_xticks(positions + 0.2, OPPONENTS)
    bars.set_ylabel(f"mean welfare in game round {settings.rounds}")
    bars.legend(fontsize=8)
    lines.set_xlabel("game round")
    lines.set_ylabel("expected social welfare")
    lines.legend(fontsize=6, ncol=2)
    findings = (
        design_note(f"MMZD of organisation {alliance[0]}", single),
        design_note(f"MMZDA {alliance}", joint),
    )
    figure.suptitle(
        f"Fig. 7 (N={game.players}, R={game.rounds})\n" + "\n".join(_wrap(line, 160) for line in findings),
        fontsize=8,
    )
    return _save("mmzd-fig7", rows, figure, settings, findings)


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
        exact = float(np.mean(exact_values)) if exact_values else float("nan")
        rows.append(
            {
                "figure": "mmzd-fig8",
                "players": game.players,
                "alliance_size": size,
                "draws": settings.draws,
                "feasible_draws": feasible,
                "largest_enforceable_welfare": exact,
                "paper_maximum": float(np.mean(paper_values)),
                "monte_carlo_final_welfare": float(np.mean(welfare)),
                "full_participation_welfare": full,
                "relative_maximum": exact / full,
                "relative_paper_maximum": float(np.mean(paper_values)) / full,
                "social_optimum": optimum,
                "relative_to_optimum": exact / optimum,
                "repetitions": settings.repetitions,
                "rounds": settings.rounds,
                "seed": settings.seed,
            }
        )
    findings = _alliance_findings(rows, "alliance_size")
    figure, (left, right) = _figure(columns=2)
    size_axis = [row["alliance_size"] for row in rows]
    left.plot(size_axis, [r["largest_enforceable_welfare"] for r in rows], "o-", label="P'_max (enforceable)")
    left.plot(size_axis, [r["paper_maximum"] for r in rows], "s--", label="paper P_max (Z 12/13)")
    left.plot(size_axis, [r["monte_carlo_final_welfare"] for r in rows], "^:", label="Monte Carlo vs Rand")
    left.axhline(full, color="grey", linewidth=1, label="P(R,...,R)")
    left.set_xlabel("alliance size M")
    left.set_ylabel("social welfare")
    left.legend(fontsize=8)
    right.plot(size_axis, [r["relative_maximum"] for r in rows], "o-", label="P'_max / P(R,...,R)")
    right.plot(size_axis, [r["relative_to_optimum"] for r in rows], "s--", label="P'_max / max_y P(y)")
    right.set_xlabel("alliance size M")
    right.set_ylabel("relative maximum")
    right.legend(fontsize=8)
    feasible_note = ", ".join(f"M={r['alliance_size']}: {r['feasible_draws']}/{r['draws']}" for r in rows)
    figure.suptitle(f"Fig. 8 (N={game.players}, R={game.rounds}); enforceable draws {feasible_note}", fontsize=7)
    return _save("mmzd-fig8", rows, figure, settings, findings)


def _analytic_rows(
    figure_name: str,
    settings: ReproductionSettings,
    players_axis: Sequence[int],
    alliance_size: Callable[[int], int],
) -> list[dict[str, object]]:
    """Averages over `draws` games x `draws` alliances of the enforceable maximum and the relative maximum."""
    rows: list[dict[str, object]] = []
    for players in _progress(list(players_axis), settings, figure_name):
        size = alliance_size(players)
        exact, relative, paper, feasible, total = [], [], [], 0, 0
        for game_draw in range(settings.draws):
            game = _game(settings, players, offset=1000 * players + game_draw)
            full = full_participation_welfare(game)
            chooser = np.random.default_rng([settings.seed, players, game_draw])
            for _ in range(settings.draws):
                alliance = tuple(int(j) for j in chooser.choice(players, size, replace=False))
                extremes = ControlledGame(game, alliance).extremes()
                general = largest_enforceable_welfare(extremes)
                paper.append(paper_maximum(extremes)[0] / full)
                total += 1
                if general.feasible:
                    feasible += 1
                    exact.append(general.value)
                    relative.append(general.value / full)
        rows.append(
            {
                "figure": figure_name,
                "players": players,
                "alliance_size": size,
                "samples": total,
                "feasible_samples": feasible,
                "largest_enforceable_welfare": float(np.mean(exact)) if exact else float("nan"),
                "relative_maximum": float(np.mean(relative)) if relative else float("nan"),
                "relative_paper_maximum": float(np.mean(paper)),
                "game_rounds": settings.game_rounds,
                "seed": settings.seed,
            }
        )
    return rows


def _analytic_figure(
    name: str, title: str, rows: list[dict[str, object]], settings: ReproductionSettings
) -> ReproductionOutput:
    """Two panels against N: the enforceable maximum and the relative maximum."""
    figure, (left, right) = _figure(columns=2)
    players = [r["players"] for r in rows]
    left.plot(players, [r["largest_enforceable_welfare"] for r in rows], "o-")
    left.set_xlabel("number of organisations N")
    left.set_ylabel("largest enforceable welfare P'_max (mean)")
    right.plot(players, [r["relative_maximum"] for r in rows], "o-", label="P'_max / P(R,...,R)")
    right.plot(players, [r["relative_paper_maximum"] for r in rows], "s--", label="paper P_max / P(R,...,R)")
    right.set_xlabel("number of organisations N")
    right.set_ylabel("relative maximum")
    right.legend(fontsize=8)
    feasible = ", ".join(f"N={r['players']}: {r['feasible_samples']}/{r['samples']}" for r in rows)
    figure.suptitle(f"{title}; enforceable samples {feasible}", fontsize=7)
    return _save(name, rows, figure, settings, _alliance_findings(rows, "players"))


def figure_9(settings: ReproductionSettings) -> ReproductionOutput:
    """Fig. 9: alliance of M = 5, N = 6..14: the relative maximum against N (analytic)."""
    rows = _analytic_rows("mmzd-fig9", settings, range(6, 15), lambda players: FIG9_ALLIANCE)
    return _analytic_figure("mmzd-fig9", f"Fig. 9 (M={FIG9_ALLIANCE}, R={settings.game_rounds})", rows, settings)


def figure_10(settings: ReproductionSettings) -> ReproductionOutput:
    """Fig. 10: M / N = 1/2, N = 4..16 (even): maximum and relative maximum against N (analytic)."""
    rows = _analytic_rows("mmzd-fig10", settings, range(4, 17, 2), lambda players: players // 2)
    return _analytic_figure("mmzd-fig10", f"Fig. 10 (M/N=1/2, R={settings.game_rounds})", rows, settings)


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
) -> ReproductionOutput:
    """Write NAME.csv and NAME.png (Agg canvas; no pyplot global state)."""
    csv_path = settings.out / f"{name}.csv"
    png_path = settings.out / f"{name}.png"
    _write_csv(csv_path, rows)
    figure.savefig(png_path, dpi=120)
    return ReproductionOutput(name, csv_path, png_path, len(rows), findings)


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


def handler(args: argparse.Namespace) -> int:
    """`flmarket reproduce`: run the experiments named, print where the files went; exit code 0."""
    from flmarket.analysis import reproduce_bgfl  # the BGFL figures (Figs. 2-4) live in their own module

    if args.name in reproduce_bgfl.EXPERIMENTS:
        return reproduce_bgfl.handler(args)
    rounds = args.rounds if args.rounds is not None else DEFAULT_ROUNDS
    settings = ReproductionSettings(out=Path(args.out), repetitions=args.repetitions, rounds=rounds, seed=args.seed)
    names = sorted(EXPERIMENTS) if args.name == "all" else [args.name]
    for name in names:
        output = run_experiment(name, settings)
        print(f"{output.name}: {output.csv_path} ({output.rows} rows), {output.png_path}")
        for line in output.findings:
            print(f"  {line}")
    return 0


def _seed(raw: str) -> int:
    """A seed for numpy: an integer in [0, 2**63)."""
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {raw!r}") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"must be in [0, 2**63), got {value}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `reproduce` subcommand (handler set with set_defaults(func=handler))."""
    parser = subparsers.add_parser(
        "reproduce",
        help="reproduce a figure of the MMZD or BGFL paper (CSV, PNG, side-by-side table)",
        description=(
            "Reproduce a figure of the BGFL paper (bgfl-fig2, bgfl-fig3, bgfl-fig4: real training on digits, or "
            "MNIST/CIFAR-10 from --data-root, through the mechanism, with a table of the paper's numbers beside "
            "ours) or of 'Alliance Makes Difference?' (SPEC B.6), the MMZD figures, by Monte-Carlo play: ROUNDS game "
            "rounds x REPETITIONS runs averaged, random initial actions, a social-dilemma game drawn from "
            "SEED. "
            "Writes NAME.csv and NAME.png to OUT; every row and figure states whether the ZD target is "
            "enforceable (a single organisation usually has none for N >= 3; it then plays the paper's "
            "clipped strategy and its welfare depends on the opponents). "
            "Experiments: "
            + "; ".join(f"{name}: {(EXPERIMENTS[name].__doc__ or '').split(':')[0]}" for name in sorted(EXPERIMENTS))
            + "."
        ),
    )
    from flmarket.analysis import reproduce_bgfl

    bgfl_names = sorted(reproduce_bgfl.EXPERIMENTS)
    parser.add_argument(
        "name", choices=[*sorted(EXPERIMENTS), *bgfl_names, "all"], help="experiment to run, or 'all' (MMZD)"
    )
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument(
        "--repetitions", type=int, default=DEFAULT_REPETITIONS, help="independent runs averaged (default 100)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help=f"MMZD: game rounds per run (default {DEFAULT_ROUNDS}); BGFL: aggregation rounds (default "
        f"{reproduce_bgfl.DEFAULT_ROUNDS})",
    )
    parser.add_argument(
        "--seed", type=_seed, default=0, help="seed of the game draw and of the play, 0 <= SEED < 2**63 (default 0)"
    )
    reproduce_bgfl.add_arguments(parser)
    parser.set_defaults(func=handler)
