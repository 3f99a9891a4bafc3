"""The page's charts as inline SVG, drawn from `ViewSession.state()` data.

SVG strings cost about a millisecond per chart (matplotlib took 0.1-0.2 s of CPU per figure, too slow to redraw
every panel within a second of a step), scale crisply, and keep their data in the page: every chart carries
`data-chart`, every plotted point its values as `data-*` attributes. Colours are fixed per strategy so a
strategy looks the same in every panel. A value that is not finite (NaN or infinite) is left out of a chart, not
drawn at a `nan` coordinate, and plotted values are clamped to +-PLOT_LIMIT so that axis spans stay finite.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

STRATEGY_COLOURS = {
    "ALLC": "#2e7d32",
    "ALLD": "#c62828",
    "Rand": "#f9a825",
    "TFT": "#1565c0",
    "Mixed": "#6a1b9a",
    "MMZD": "#ef6c00",
    "MMZDA": "#00838f",
    "BNE": "#6d4c41",
    "committee": "#263238",
}
OFFLINE_COLOUR = "#cfd8dc"
OPTIMUM_COLOUR = "#2e7d32"
NASH_COLOUR = "#c62828"
WELFARE_COLOUR = "#1565c0"
PRIMARY_COLOUR = "#ffb300"
TEXT_COLOUR = "#37474f"
GRID_COLOUR = "#eceff1"
FONT = "font-family='Roboto, Helvetica, Arial, sans-serif'"
PLOT_LIMIT = 1e300
"""Plotted values are clamped to [-PLOT_LIMIT, PLOT_LIMIT]: the span of two finite floats can overflow."""


def plottable(value: float) -> float | None:
    """`value` clamped to +-PLOT_LIMIT, or None when it is NaN or infinite (then it is not drawn)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number):
        return None
    return max(-PLOT_LIMIT, min(PLOT_LIMIT, number))


def finite_values(values: Sequence[float]) -> list[float]:
    """The plottable values of a sequence (clamped; NaN and infinities dropped)."""
    return [number for number in map(plottable, values) if number is not None]


def colour(strategy: str) -> str:
    """The colour of a strategy (grey for one the palette does not know)."""
    return STRATEGY_COLOURS.get(strategy, "#78909c")


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round tick values covering [low, high] (steps of 1, 2, 2.5 or 5 times a power of ten)."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low]
    raw = (high - low) / max(1, count)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(factor * power for factor in (1, 2, 2.5, 5, 10) if factor * power >= raw)
    # integer multiples of the step, rounded a few digits below the step's own: no error accumulates (0.6, not
    # 0.6000000000000001), and ticks far below 1e-12 keep their values (rounding to 12 places made them all 0)
    digits = max(0, 3 - math.floor(math.log10(step)))
    index = math.ceil(low / step - 1e-9)
    ticks = []
    while index * step <= high + step * 1e-9:
        ticks.append(round(index * step, digits))
        index += 1
    return ticks


def _whole(value: float) -> bool:
    return abs(value - round(value)) < 1e-6 * max(1.0, abs(value))


def tick_labels(ticks: Sequence[float]) -> list[str]:
    """Tick labels with as many decimals as the step between ticks needs (thousands separated); in scientific
    notation, with as few digits as keep them distinct, when the values are huge (>= 1e9) or tiny (< 1e-4)."""
    if len(ticks) < 2:
        return [f"{tick:g}" for tick in ticks]
    largest = max(abs(tick) for tick in ticks)
    if largest >= 1e9 or 0 < largest < 1e-4:
        for digits in range(3, 17):
            labels = [f"{tick:.{digits}g}" for tick in ticks]
            if len(set(labels)) == len(labels):
                return labels
        return labels
    step = min(abs(b - a) for a, b in zip(ticks, ticks[1:], strict=False)) or 1.0
    decimals = next((digits for digits in range(12) if _whole(step * 10**digits)), 12)
    return [f"{tick:,.{decimals}f}" for tick in ticks]


def _attributes(data: dict[str, Any]) -> str:
    return "".join(f" data-{name}='{html.escape(str(value), quote=True)}'" for name, value in data.items())


@dataclass
class Chart:
    """A plot area with linear axes; elements are added in data coordinates and rendered as one SVG."""

    name: str
    title: str
    width: int = 440
    height: int = 280
    x_range: tuple[float, float] = (0.0, 1.0)
    y_range: tuple[float, float] = (0.0, 1.0)
    x_label: str = ""
    y_label: str = ""
    legend_width: int = 0
    integer_x: bool = False
    left: int = 52
    top: int = 34
    bottom: int = 40
    parts: list[str] = field(default_factory=list)
    legend: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def right(self) -> int:
        return 14 + self.legend_width

    def x(self, value: float) -> float:
        low, high = self.x_range
        return self.left + (value - low) / (high - low or 1.0) * (self.width - self.left - self.right)

    def y(self, value: float) -> float:
        low, high = self.y_range
        return self.height - self.bottom - (value - low) / (high - low or 1.0) * (self.height - self.top - self.bottom)

    def line(
        self, xs: Sequence[float], ys: Sequence[float], stroke: str, label: str = "", dash: str = "", width: float = 2
    ) -> None:
        """A polyline through the plottable points (nothing for none)."""
        pairs = [(plottable(a), plottable(b)) for a, b in zip(xs, ys, strict=True)]
        kept = [(a, b) for a, b in pairs if a is not None and b is not None]
        if not kept:
            return
        points = " ".join(f"{self.x(a):.1f},{self.y(b):.1f}" for a, b in kept)
        dashes = f" stroke-dasharray='{dash}'" if dash else ""
        self.parts.append(
            f"<polyline points='{points}' fill='none' stroke='{stroke}' stroke-width='{width}'{dashes} "
            "stroke-linejoin='round'/>"
        )
        if label:
            self.legend.append(("line" + (":" + dash if dash else ""), stroke, label))

    def points(
        self, xs: Sequence[float], ys: Sequence[float], fill: str, radius: float = 3.5, **data: Sequence
    ) -> None:
        """Dots at the plottable points, each with its values as data-* attributes."""
        for index, (raw_x, raw_y) in enumerate(zip(xs, ys, strict=True)):
            a, b = plottable(raw_x), plottable(raw_y)
            if a is None or b is None:
                continue
            extra = _attributes({name: values[index] for name, values in data.items()})
            self.parts.append(
                f"<circle cx='{self.x(a):.1f}' cy='{self.y(b):.1f}' r='{radius}' fill='{fill}' stroke='white' "
                f"stroke-width='1'{extra}/>"
            )

    def area(self, xs: Sequence[float], lower: Sequence[float], upper: Sequence[float], fill: str, label: str) -> None:
        """The band between two curves (a layer of a stacked area), over the points where all three are
        plottable."""
        kept = [
            (a, low, high)
            for a, low, high in (
                (plottable(a), plottable(low), plottable(high)) for a, low, high in zip(xs, lower, upper, strict=True)
            )
            if a is not None and low is not None and high is not None
        ]
        if not kept:
            return
        top = [f"{self.x(a):.1f},{self.y(high):.1f}" for a, _, high in kept]
        bottom = [f"{self.x(a):.1f},{self.y(low):.1f}" for a, low, _ in reversed(kept)]
        self.parts.append(f"<polygon points='{' '.join(top + bottom)}' fill='{fill}' fill-opacity='0.88'/>")
        self.legend.append(("box", fill, label))

    def bar(self, centre: float, value: float, half_width: float, fill: str, text: str, **data: Any) -> None:
        """A bar from 0 to `value` with its value written above it (no bar, and "n/a", for a value that is not
        finite)."""
        left, right = self.x(centre - half_width), self.x(centre + half_width)
        number = plottable(value)
        if number is None:
            number, text = 0.0, "n/a"
        top, base = self.y(max(number, 0.0)), self.y(0.0)
        self.parts.append(
            f"<rect x='{left:.1f}' y='{top:.1f}' width='{right - left:.1f}' height='{base - top:.1f}' "
            f"fill='{fill}' rx='2'{_attributes(data)}/>"
        )
        self.parts.append(
            f"<text x='{(left + right) / 2:.1f}' y='{top - 4:.1f}' text-anchor='middle' font-size='11' "
            f"fill='{TEXT_COLOUR}'>{html.escape(text)}</text>"
        )

    def svg(self, x_ticks: Sequence[tuple[float, str]] | None = None) -> str:
        """The chart as an SVG element (axes, grid, ticks, elements, legend, title)."""
        plot_right = self.width - self.right
        plot_bottom = self.height - self.bottom
        grid = []
        y_ticks = [
            tick for tick in nice_ticks(*self.y_range) if self.y_range[0] - 1e-12 <= tick <= self.y_range[1] + 1e-12
        ]
        for tick, text in zip(y_ticks, tick_labels(y_ticks), strict=True):
            if True:
                y = self.y(tick)
                grid.append(
                    f"<line x1='{self.left}' x2='{plot_right}' y1='{y:.1f}' y2='{y:.1f}' stroke='{GRID_COLOUR}'/>"
                    f"<text x='{self.left - 6}' y='{y + 4:.1f}' text-anchor='end' font-size='11' "
                    f"fill='{TEXT_COLOUR}'>{text}</text>"
                )
        if x_ticks is None:
            values = [
                tick
                for tick in nice_ticks(*self.x_range)
                if self.x_range[0] - 1e-12 <= tick <= self.x_range[1] + 1e-12
                and (not self.integer_x or float(tick).is_integer())
            ]
            x_ticks = list(zip(values, tick_labels(values), strict=True))
        for tick, text in x_ticks:
            x = self.x(tick)
            grid.append(
                f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{plot_bottom}' y2='{plot_bottom + 4}' stroke='{TEXT_COLOUR}'/>"
                f"<text x='{x:.1f}' y='{plot_bottom + 17}' text-anchor='middle' font-size='11' "
                f"fill='{TEXT_COLOUR}'>{html.escape(text)}</text>"
            )
        axes = (
            f"<line x1='{self.left}' x2='{plot_right}' y1='{plot_bottom}' y2='{plot_bottom}' stroke='{TEXT_COLOUR}'/>"
            f"<line x1='{self.left}' x2='{self.left}' y1='{self.top}' y2='{plot_bottom}' stroke='{TEXT_COLOUR}'/>"
        )
        labels = (
            f"<text x='{(self.left + plot_right) / 2:.1f}' y='{self.height - 6}' text-anchor='middle' "
            f"font-size='12' fill='{TEXT_COLOUR}'>{html.escape(self.x_label)}</text>"
            f"<text transform='translate(13,{(self.top + plot_bottom) / 2:.1f}) rotate(-90)' text-anchor='middle' "
            f"font-size='12' fill='{TEXT_COLOUR}'>{html.escape(self.y_label)}</text>"
        )
        title = f"<text x='10' y='20' font-size='15' font-weight='bold' fill='#263238'>{html.escape(self.title)}</text>"
        return (
            f"<svg xmlns='http://www.w3.org/2000/svg' width='{self.width}' height='{self.height}' "
            f"viewBox='0 0 {self.width} {self.height}' {FONT} data-chart='{self.name}'>"
            f"{''.join(grid)}{''.join(self.parts)}{axes}{labels}{title}{legend(self.legend, plot_right + 10, self.top)}"
            "</svg>"
        )


def legend(entries: Sequence[tuple[str, str, str]], x: float, y: float) -> str:
    """Legend rows (kind, colour, label) from (x, y) down; kinds: box, line[:dash], dot, square, star."""
    rows = []
    for index, (kind, fill, label) in enumerate(entries):
        top = y + index * 18
        if kind == "box":
            mark = f"<rect x='{x}' y='{top - 9}' width='12' height='12' fill='{fill}' rx='2'/>"
        elif kind.startswith("line"):
            dash = kind.partition(":")[2]
            dashes = f" stroke-dasharray='{dash}'" if dash else ""
            mark = (
                f"<line x1='{x}' x2='{x + 16}' y1='{top - 3}' y2='{top - 3}' stroke='{fill}' stroke-width='2'{dashes}/>"
            )
        elif kind == "square":
            mark = (
                f"<rect x='{x + 1}' y='{top - 9}' width='11' height='11' fill='{fill}' stroke='{PRIMARY_COLOUR}' "
                "stroke-width='2'/>"
            )
        elif kind == "star":
            mark = _star(x + 7, top - 3, 8, fill)
        else:
            mark = f"<circle cx='{x + 6}' cy='{top - 3}' r='5' fill='{fill}'/>"
        rows.append(
            f"{mark}<text x='{x + 22}' y='{top + 1}' font-size='11' fill='{TEXT_COLOUR}'>{html.escape(label)}</text>"
        )
    return "".join(rows)


def legend_row(entries: Sequence[tuple[str, str, str]], x: float, y: float, width: float) -> str:
    """Legend entries side by side from (x, y), wrapping at `width`."""
    parts = []
    left, top = x, y
    for entry in entries:
        size = 34 + 6.4 * len(entry[2])
        if left + size > x + width and left > x:
            left, top = x, top + 18
        parts.append(legend([entry], left, top))
        left += size
    return "".join(parts)


def _star(cx: float, cy: float, radius: float, fill: str, data: str = "") -> str:
    points = []
    for index in range(10):
        angle = -math.pi / 2 + index * math.pi / 5
        r = radius if index % 2 == 0 else radius * 0.45
        points.append(f"{cx + r * math.cos(angle):.1f},{cy + r * math.sin(angle):.1f}")
    return f"<polygon points='{' '.join(points)}' fill='{fill}' stroke='#263238' stroke-width='1'{data}/>"


def overlay_chart(state: dict[str, Any], width: int = 566, height: int = 572) -> str:
    """The overlay: providers coloured by strategy, committee nodes as squares (members framed in amber, the
    primary starred), offline nodes greyed where they last were."""
    overlay = state["overlay"]
    nodes = {
        node["id"]: node
        for node in overlay["nodes"]
        if plottable(node["x"]) is not None and plottable(node["y"]) is not None
    }
    legend_height = 44
    margin = 18
    xs = finite_values([node["x"] for node in nodes.values()]) or [0.0]
    ys = finite_values([node["y"] for node in nodes.values()]) or [0.0]
    span_x = (max(xs) - min(xs)) or 1.0
    span_y = (max(ys) - min(ys)) or 1.0
    plot_width, plot_height = width - 2 * margin, height - 30 - legend_height - 2 * margin
    scale = min(plot_width / span_x, plot_height / span_y)

    def place(node: dict[str, Any]) -> tuple[float, float]:
        x, y = plottable(node["x"]), plottable(node["y"])
        assert x is not None and y is not None  # nodes without a plottable position were left out above
        return (
            margin + (x - min(xs)) * scale + (plot_width - span_x * scale) / 2,
            30 + margin + (max(ys) - y) * scale + (plot_height - span_y * scale) / 2,
        )

    where = {node_id: place(node) for node_id, node in nodes.items()}
    parts = [
        f"<line x1='{where[a][0]:.1f}' y1='{where[a][1]:.1f}' x2='{where[b][0]:.1f}' y2='{where[b][1]:.1f}' "
        "stroke='#b0bec5' stroke-width='0.8'/>"
        for a, b in overlay["edges"]
        if a in where and b in where
    ]
    ordered = sorted(nodes.values(), key=lambda node: (node["online"], node["member"], node["primary"]))
    for node in ordered:
        x, y = where[node["id"]]
        data = _attributes(
            {
                "node": node["id"],
                "strategy": node["strategy"],
                "online": int(node["online"]),
                "member": int(node["member"]),
            }
        )
        if node["strategy"] == "committee":
            fill = colour("committee") if node["member"] else "#90a4ae"
            if not node["online"]:
                fill = OFFLINE_COLOUR
            frame = f" stroke='{PRIMARY_COLOUR}' stroke-width='2.2'" if node["member"] else " stroke='white'"
            size = 12 if node["member"] else 10
            parts.append(
                f"<rect x='{x - size / 2:.1f}' y='{y - size / 2:.1f}' width='{size}' height='{size}' fill='{fill}'"
                f"{frame}{data}/>"
            )
            if node["primary"]:
                parts.append(_star(x, y - 15, 9, PRIMARY_COLOUR))
        else:
            fill = colour(node["strategy"]) if node["online"] else OFFLINE_COLOUR
            parts.append(
                f"<circle cx='{x:.1f}' cy='{y:.1f}' r='6' fill='{fill}' stroke='white' stroke-width='1.2'{data}/>"
            )
    online_strategies = {node["strategy"] for node in nodes.values() if node["online"]}
    registered = sorted(online_strategies - set(STRATEGY_COLOURS))  # a user's own (register_strategy)
    present = [name for name in [*STRATEGY_COLOURS, *registered] if name in online_strategies]
    entries = [("dot", colour(name), name) for name in present if name != "committee"]
    entries += [
        ("square", colour("committee"), "committee member"),
        ("star", PRIMARY_COLOUR, "PBFT primary"),
        ("dot", OFFLINE_COLOUR, "offline"),
    ]
    online = sum(1 for node in nodes.values() if node["online"] and node["strategy"] != "committee")
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' viewBox='0 0 {width} {height}' "
        f"{FONT} data-chart='overlay'>"
        f"<text x='10' y='20' font-size='15' font-weight='bold' fill='#263238'>Overlay</text>"
        f"<text x='82' y='20' font-size='12' fill='{TEXT_COLOUR}'>{online} providers online, "
        f"{len(overlay['edges'])} links</text>"
        f"{''.join(parts)}{legend_row(entries, 14, height - legend_height + 12, width - 28)}</svg>"
    )


def shares_chart(state: dict[str, Any]) -> str:
    """Strategy shares of the online providers over simulated time (the periodic samples), stacked."""
    shares = state["shares"]
    times = shares["time_s"]
    names = list(shares["series"])
    chart = Chart(
        "shares",
        "Strategy shares",
        x_range=(0.0, max(finite_values(times) + [1.0])),
        y_range=(0.0, 1.0),
        x_label="simulated time (s)",
        y_label="share of online providers",
        legend_width=70,
    )
    lower = [0.0] * len(times)
    for name in names:
        upper = [a + b for a, b in zip(lower, shares["series"][name], strict=True)]
        chart.area(times, lower, upper, colour(name), name)
        lower = upper
    return chart.svg()


def welfare_chart(state: dict[str, Any]) -> str:
    """Welfare P(y) per task with the task's social optimum and the all-defect Nash level P(0) = 0 (SPEC B)."""
    welfare = state["welfare"]
    tasks = welfare["task"]
    values = finite_values(welfare["welfare"] + welfare["optimum"] + welfare["nash"]) + [0.0]
    low, high = min(values), max(values)
    pad = 0.08 * (high - low or 1.0)
    chart = Chart(
        "welfare",
        "Welfare per task",
        x_range=(min(finite_values(tasks), default=0) - 0.5, max(finite_values(tasks), default=0) + 0.5),
        y_range=(low - pad, high + pad),
        x_label="task",
        y_label="welfare P(y)",
        legend_width=120,
        integer_x=True,
    )
    if tasks:
        steps_x = [edge for task in tasks for edge in (task - 0.5, task + 0.5)]
        chart.line(
            steps_x,
            [v for value in welfare["optimum"] for v in (value, value)],
            OPTIMUM_COLOUR,
            "social optimum",
            "6 4",
        )
        chart.line(
            steps_x, [v for value in welfare["nash"] for v in (value, value)], NASH_COLOUR, "Nash (all defect)", "2 3"
        )
        chart.line(tasks, welfare["welfare"], WELFARE_COLOUR, "welfare")
        chart.points(
            tasks,
            welfare["welfare"],
            WELFARE_COLOUR,
            task=tasks,
            welfare=welfare["welfare"],
            optimum=welfare["optimum"],
        )
    else:
        chart.line([-0.5, 0.5], [0.0, 0.0], NASH_COLOUR, "Nash (all defect)", "2 3")
    return chart.svg()


def participation_chart(state: dict[str, Any]) -> str:
    """Mean realised participation y_i / R per strategy over the tasks so far: the rounds whose honest update
    entered the aggregate, of the providers paid at each task's end (`participation_by_strategy`'s realised_rate)."""
    participation = state["participation"]
    names = list(state["strategies"]) + [name for name in participation if name not in state["strategies"]]
    chart = Chart(
        "participation",
        "Participation by strategy (realised)",
        x_range=(-0.5, len(names) - 0.5),
        y_range=(0.0, 1.1),
        y_label="mean realised y / R",
    )
    for index, name in enumerate(names):
        value = participation.get(name, 0.0)
        chart.bar(index, value, 0.32, colour(name), f"{value:.2f}", strategy=name, participation=value)
    return chart.svg(x_ticks=[(index, name) for index, name in enumerate(names)])


def rewards_chart(state: dict[str, Any]) -> str:
    """The last task's rewards against the providers' Shapley values (summed over the task's rounds)."""
    rewards = state["rewards"]
    shapley = finite_values([row["shapley_value"] for row in rewards]) or [0.0, 1.0]
    paid = finite_values([row["reward"] for row in rewards]) or [0.0, 1.0]
    x_pad = 0.1 * (max(shapley) - min(shapley) or abs(max(shapley)) or 1.0)
    y_pad = 0.1 * (max(paid) - min(paid) or abs(max(paid)) or 1.0)
    task = f" (task {rewards[0]['task']})" if rewards else ""
    chart = Chart(
        "rewards",
        f"Rewards vs Shapley values{task}",
        x_range=(min(shapley) - x_pad, max(shapley) + x_pad),
        y_range=(min(0.0, min(paid) - y_pad), max(paid) + y_pad),
        x_label="Shapley value (sum over the task's rounds)",
        y_label="reward",
        legend_width=64,
        left=56,
    )
    for name in sorted({row["strategy"] for row in rewards}):
        rows = [row for row in rewards if row["strategy"] == name]
        chart.points(
            [row["shapley_value"] for row in rows],
            [row["reward"] for row in rows],
            colour(name),
            radius=4.5,
            agent=[row["agent"] for row in rows],
            shapley=[row["shapley_value"] for row in rows],
            reward=[row["reward"] for row in rows],
        )
        chart.legend.append(("dot", colour(name), name))
    return chart.svg()
