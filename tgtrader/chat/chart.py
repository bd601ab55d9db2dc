"""A grid chart as PNG bytes: price line, grid levels, buy/sell fills (matplotlib, headless Agg).

Uses the object API (`Figure` + Agg canvas) rather than pyplot, so no global state is shared between
concurrent renders and no display is ever needed.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from tgtrader.core.api import ChartData


def render_chart_png(data: ChartData, width_in: float = 9.0, height_in: float = 5.0, dpi: int = 100) -> bytes:
    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
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
    ax.set_title(f"Grid #{data.grid_id} {data.symbol}")
    ax.set_ylabel("price")
    ax.grid(alpha=0.2)
    if times or buys or sells:
        ax.legend(loc="upper left", fontsize="small")
    else:
        ax.text(0.5, 0.5, "no price data yet", ha="center", va="center", transform=ax.transAxes)
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.set_xlabel("UTC")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
