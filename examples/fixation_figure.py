"""The README's fixation figure: simulated against closed-form fixation probability of one ALLD invader.

Runs `analysis.fixation.fixation_table` (the pairwise comparison process that `evolution.process = "pairwise"`
uses, on a complete graph, without mutation) on the `evolution` scenario's public-goods game at N = 10 and
N = 40, for selection strengths beta x payoff gap from 0.05 to 3, and draws it with
`analysis.plots.fixation_figure`. Writes fixation.png, fixation.pdf, fixation.caption.txt and fixation.csv.

Run: `python examples/fixation_figure.py [--out docs] [--trials 1000] [--seed 1] [--dpi 200]`
(about a minute of CPU at 1,000 trials).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from flmarket.analysis.fixation import EVOLUTION_GAME, betas_for_selection, fixation_table
from flmarket.analysis.plots import DEFAULT_DPI, fixation_figure, save_figure

SELECTION_STRENGTHS = (0.05, 0.1, 0.3, 1.0, 3.0)
POPULATIONS = (10, 40)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs", help="output folder (default docs)")
    parser.add_argument("--trials", type=int, default=1000, help="runs per point (default 1000)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the simulation (default 1)")
    parser.add_argument("--dpi", type=int, default=DEFAULT_DPI, help=f"PNG resolution (default {DEFAULT_DPI})")
    args = parser.parse_args(argv)
    tables = []
    for population in POPULATIONS:
        game = EVOLUTION_GAME.game(population)
        betas = betas_for_selection(SELECTION_STRENGTHS, game)
        tables.append(fixation_table(betas, game, trials=args.trials, seed=args.seed))
    table = pd.concat(tables, ignore_index=True)
    inside = ((table["wilson_low"] <= table["theory"]) & (table["theory"] <= table["wilson_high"])).sum()
    caption = (
        "Fixation probability of one ALLD invader among ALLC residents under the pairwise comparison process "
        "(Fermi rule, complete graph, no mutation) on the evolution scenario's public-goods game (SPEC B.1 at its "
        f"prior means), N = {' and '.join(map(str, POPULATIONS))}. Squares: share of {args.trials} simulated runs "
        "that fixed (seed "
        f"{args.seed}), with 95% Wilson intervals. Line with open circles: the closed form of Traulsen, Pacheco "
        "and Nowak (2006). Dotted: the neutral 1/N. x: selection strength beta x payoff gap (the gap is the "
        f"constant kappa R). The closed form lies inside {inside} of {len(table)} intervals (at 95%, about one in "
        "twenty is expected outside by chance)."
    )
    out = Path(args.out)
    saved = save_figure(fixation_figure(table, x="selection"), out, "fixation", caption, dpi=args.dpi)
    table.to_csv(out / "fixation.csv", index=False)
    print(table.to_string(index=False))
    print(f"wrote {saved.png}, {saved.vector}, {saved.caption} and {out / 'fixation.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
