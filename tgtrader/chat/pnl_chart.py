"""`/pnl chart [DAYS]` (issue 17): realized profit per UTC day as bars (green gains, red losses), PNG bytes.

The same numbers as `/pnl` (the core's books: every sale against its cost, fees once); the object API of
matplotlib (Figure + Agg), as chart.py, so renders share no global state.
"""

from __future__ import annotations

import io
from datetime import date

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tgtrader.core.api import PnlView

GAIN, LOSS = "#2ca02c", "#d62728"


def render_pnl_png(view: PnlView, width_in: float = 9.0, height_in: float = 4.0, dpi: int = 100) -> bytes:
    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    days = [date.fromisoformat(day) for day, _, _ in view.days]
    values = [float(profit) for _, profit, _ in view.days]
    if days:
        ax.bar(days, values, color=[GAIN if v >= 0 else LOSS for v in values], width=0.8)
        ax.axhline(0.0, color="#444444", linewidth=0.8)
        fig.autofmt_xdate()
    else:
        ax.text(0.5, 0.5, "nothing realized yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(f"Realized PnL per day (UTC), total {float(view.total):+,.2f} {view.quote_asset}")
    ax.set_ylabel(view.quote_asset)
    ax.grid(axis="y", alpha=0.2)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
