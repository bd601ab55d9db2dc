"""A grid chart as PNG bytes: price line, grid levels (the levels it trades now), buy/sell fills, stop-loss /
take-profit lines, trailing moves (small triangles) and stop triggers (a labelled X), and under it the grid's PnL over time (issue 17) when the fills' quantities are known (matplotlib, headless Agg).

Uses the object API (`Figure` + Agg canvas) rather than pyplot, so no global state is shared between
concurrent renders and no display is ever needed.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from tgtrader.core.api import ChartData
from tgtrader.core.rules import fmt_decimal

PNL_COLOUR = "#9467bd"
# ChartData.marks: a trailing move, a small triangle its way; a stop that fired, a labelled X
TRAIL_MARKS = {"trail-up": ("^", "#ff7f0e", "grid moved up"), "trail-down": ("v", "#17becf", "grid moved down")}
STOP_MARKS = {"stop-loss": ("#8c1c13", "SL"), "take-profit": ("#1b7837", "TP")}


def pnl_series(data: ChartData) -> np.ndarray | None:
    """The grid's PnL before fees at each price point: the cash its fills moved plus the base they left, valued
    at that price (the start buy is one of its fills). None without prices or the fills' quantities."""
    if not data.times_ms or not data.fills or len(data.fill_qty) != len(data.fills):
        return None
    rows = sorted(zip(data.fills, data.fill_qty, strict=True), key=lambda r: r[0][0])
    ts = np.array([f[0] for f, _ in rows], dtype=np.int64)
    dq = np.array([float(q) * (1.0 if f[1] == "BUY" else -1.0) for f, q in rows])
    cash = -dq * np.array([float(f[2]) for f, _ in rows])
    base_c, cash_c = np.cumsum(dq), np.cumsum(cash)
    at = np.searchsorted(ts, np.asarray(data.times_ms, dtype=np.int64), side="right") - 1
    base_t = np.where(at >= 0, base_c[np.maximum(at, 0)], 0.0)
    cash_t = np.where(at >= 0, cash_c[np.maximum(at, 0)], 0.0)
    return cash_t + base_t * np.asarray(data.prices, dtype=np.float64)


def render_chart_png(data: ChartData, width_in: float = 9.0, height_in: float = 5.0, dpi: int = 100) -> bytes:
    pnl = pnl_series(data)
    fig = Figure(figsize=(width_in, height_in + (1.5 if pnl is not None else 0.0)), dpi=dpi)
    FigureCanvasAgg(fig)
    if pnl is not None:
        grid = fig.add_gridspec(2, 1, height_ratios=(3, 1.2))
        ax = fig.add_subplot(grid[0])
        below = fig.add_subplot(grid[1], sharex=ax)
    else:
        ax = fig.add_subplot(1, 1, 1)
    times = [datetime.fromtimestamp(t / 1000, tz=UTC) for t in data.times_ms]
    if times:
        ax.plot(times, data.prices, color="#1f77b4", linewidth=1.2, label="price")
    for level in data.levels:
        ax.axhline(float(level), color="#999999", linewidth=0.6, linestyle="--")
    buys = [(datetime.fromtimestamp(t / 1000, tz=UTC), float(p)) for t, side, p in data.fills if side == "BUY"]
    sells = [(datetime.fromtimestamp(t / 1000, tz=UTC), float(p)) for t, side, p in data.fills if side == "SELL"]
    if buys:
        ax.scatter([b[0] for b in buys], [b[1] for b in buys], marker="^", color="#2ca02c", s=30, label="buy", zorder=3)
    if sells:
        ax.scatter([s[0] for s in sells], [s[1] for s in sells], marker="v", color="#d62728", s=30, label="sell", zorder=3)
    if data.stop_loss is not None:
        ax.axhline(float(data.stop_loss), color="#d62728", linewidth=1.0, linestyle=":", label="stop-loss")
    if data.take_profit is not None:
        ax.axhline(float(data.take_profit), color="#2ca02c", linewidth=1.0, linestyle=":", label="take-profit")
    _draw_marks(ax, data)
    ax.set_title(f"Grid #{data.grid_id} {data.symbol}")
    ax.set_ylabel("price")
    ax.grid(alpha=0.2)
    if times or buys or sells or data.marks:
        ax.legend(loc="upper left", fontsize="small")
    else:
        ax.text(0.5, 0.5, "no price data yet", ha="center", va="center", transform=ax.transAxes)
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    if pnl is not None:
        below.plot(times, pnl, color=PNL_COLOUR, linewidth=1.2)
        below.axhline(0.0, color="#444444", linewidth=0.6)
        below.fill_between(times, pnl, 0.0, where=pnl >= 0, color="#2ca02c", alpha=0.15)
        below.fill_between(times, pnl, 0.0, where=pnl < 0, color="#d62728", alpha=0.15)
        below.set_ylabel("PnL before fees")
        below.grid(alpha=0.2)
        ax.tick_params(labelbottom=False)
        below.set_xlabel("UTC")
    else:
        ax.set_xlabel("UTC")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _draw_marks(ax: Axes, data: ChartData) -> None:
    """Trailing moves (at the market's price when the grid moved) and stop triggers (labelled with their price)."""
    for kind, (marker, colour, label) in TRAIL_MARKS.items():
        points = [(datetime.fromtimestamp(t / 1000, tz=UTC), float(p)) for t, k, p in data.marks if k == kind]
        if points:
            ax.scatter([t for t, _ in points], [p for _, p in points], marker=marker, color=colour, s=22,
                       edgecolors="none", label=label, zorder=4)
    labelled: set[str] = set()
    for ts, kind, price in data.marks:
        if kind not in STOP_MARKS:
            continue
        colour, short = STOP_MARKS[kind]
        at = datetime.fromtimestamp(ts / 1000, tz=UTC)
        label = f"{kind} triggered" if kind not in labelled else "_nolegend_"
        labelled.add(kind)
        ax.scatter([at], [float(price)], marker="X", color=colour, s=110, zorder=5, label=label)
        ax.annotate(f"{short} {fmt_decimal(price)}", (at, float(price)), textcoords="offset points", xytext=(-8, 8),
                    ha="right", color=colour, fontsize="small", fontweight="bold")  # left: a stop is often the end
