"""Turn a backtest Result into what a trader reads: a summary table, a JSON object, a PNG chart."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from tgtrader.backtest.candles import Candles
from tgtrader.backtest.vector import Result


def fmt_num(x: float, digits: int = 8) -> str:
    """Thousands separators and up to `digits` significant digits, no exponent for usual prices."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return str(x)
    if x == 0:
        return "0"
    mag = math.floor(math.log10(abs(x)))
    decimals = max(0, digits - 1 - mag)
    text = f"{x:,.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def fmt_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


def fmt_duration(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def summary_rows(result: Result, load_s: float | None = None) -> list[tuple[str, str]]:
    """(label, value) rows of the human summary, in the order the issue lists them."""
    r = result
    spec = r.spec
    days = (r.end_time_ms - r.start_time_ms) / 86_400_000 + (1 / 1440 if r.candles > 1 else 0)
    rows = [
        ("period", f"{fmt_time(r.start_time_ms)} → {fmt_time(r.end_time_ms)} UTC ({days:.1f} days)"),
        ("candles", f"{r.candles:,}"),
        (
            "grid",
            f"{fmt_num(float(spec.lower))} – {fmt_num(float(spec.upper))}, {spec.grids} {spec.spacing} grids, "
            f"q = {fmt_num(r.qty)}, fee {r.fee:g} paid in {r.fee_asset}",
        ),
        ("start / end price", f"{fmt_num(r.start_price)} → {fmt_num(r.final_price)}"),
        ("buys / sells", f"{r.buys:,} / {r.sells:,}"),
        ("round trips", f"{r.round_trips:,}"),
        ("grid profit", fmt_num(r.grid_profit, 6)),
        ("realized", fmt_num(r.realized, 6)),
        ("fees", fmt_num(r.fees, 6)),
        ("final equity", f"{fmt_num(r.final_equity, 8)} (invested {fmt_num(float(spec.investment))})"),
        ("return", f"{r.return_pct:+.2f} %"),
        ("buy-and-hold return", f"{r.hold_return_pct:+.2f} %"),
        ("max drawdown", f"{r.max_drawdown_pct:.2f} %"),
    ]
    if r.stop is not None:
        label = "stop-loss" if r.stop == "stop_loss" else "take-profit"
        rows.append(
            (label, f"triggered at {fmt_num(r.stop_trigger or 0)} in candle {r.stop_candle:,}, sold "
                    f"{fmt_num(r.stop_qty)} base at {fmt_num(r.stop_price or 0)}"
                    + (f" ({r.slippage_bps:g} bps slippage)" if r.slippage_bps else ""))
        )
    if spec.trail_up is not None or spec.trail_down is not None:
        ups = sum(1 for m in r.trail_moves if m.direction == "up")
        limits = ", ".join(f"{name} {fmt_num(float(x))}" for name, x in (("up to", spec.trail_up),
                                                                         ("down to", spec.trail_down)) if x is not None)
        rows.append(("trailing", f"{len(r.trail_moves):,} moves ({ups:,} up, {len(r.trail_moves) - ups:,} down; "
                                 f"{limits}), levels now {fmt_num(float(r.levels[0]))} – {fmt_num(float(r.levels[-1]))}"))
    taken = fmt_duration(r.elapsed_s)
    if load_s is not None:
        taken += f" (+ {fmt_duration(load_s)} reading the file)"
    rows.append(("time taken", taken))
    return rows


def summary_table(result: Result, load_s: float | None = None) -> Table:
    table = Table(title="grid backtest", show_header=False, title_justify="left")
    table.add_column("", style="bold")
    table.add_column("")
    for label, value in summary_rows(result, load_s):
        table.add_row(label, value)
    return table


def json_ready(obj: Any) -> Any:
    """Plain Python values only (numpy scalars and arrays converted; non-finite floats become None)."""
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_ready(obj.tolist())
    if isinstance(obj, np.generic):
        return json_ready(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _envelope(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Down-sample a long series to min/max pairs per bucket so spikes stay visible."""
    n = y.shape[0]
    if n <= max_points:
        return x, y
    buckets = max_points // 2
    edges = np.linspace(0, n, buckets + 1).astype(np.int64)
    lo = np.minimum.reduceat(y, edges[:-1])
    hi = np.maximum.reduceat(y, edges[:-1])
    xs = np.repeat(x[edges[:-1]], 2)
    ys = np.empty(buckets * 2)
    ys[0::2], ys[1::2] = lo, hi
    return xs, ys


def write_plot(result: Result, candles: Candles, out: str | Path, max_points: int = 4000) -> Path:
    """PNG: close price with grid levels and fills on top, equity beneath (matplotlib Agg, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(out)
    t = candles.open_time.astype("datetime64[ms]")
    fig = Figure(figsize=(12, 7), dpi=100)
    FigureCanvasAgg(fig)
    ax_p, ax_e = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    xs, ys = _envelope(t, candles.close, max_points)
    ax_p.plot(xs, ys, color="#555555", linewidth=0.7, label="close")
    for lv in result.levels:
        ax_p.axhline(lv, color="#9ecae1", linewidth=0.5, zorder=0)
    f = result.fills
    if len(f):
        ft = t[f.candle]
        buy = f.side > 0
        ax_p.scatter(ft[buy], f.price[buy], marker="^", s=14, color="#2ca02c", label=f"buy ({int(buy.sum())})", zorder=3)
        ax_p.scatter(ft[~buy], f.price[~buy], marker="v", s=14, color="#d62728", label=f"sell ({int((~buy).sum())})", zorder=3)
    if result.stop is not None and result.stop_candle is not None:
        ax_p.scatter([t[result.stop_candle]], [result.stop_price], marker="X", s=60, color="black", label=result.stop, zorder=4)
    spec = result.spec
    ax_p.set_title(
        f"grid {float(spec.lower):g}–{float(spec.upper):g}, {spec.grids} {spec.spacing} grids: return {result.return_pct:+.2f} % "
        f"(buy and hold {result.hold_return_pct:+.2f} %), {result.round_trips} round trips"
    )
    ax_p.set_ylabel("price")
    ax_p.legend(loc="upper left", fontsize=8)
    ex, ey = _envelope(t, result.equity, max_points)
    ax_e.plot(ex, ey, color="#1f77b4", linewidth=0.8)
    ax_e.axhline(float(spec.investment), color="#999999", linewidth=0.5, linestyle="--")
    ax_e.set_ylabel("equity")
    ax_e.set_xlabel("time (UTC)")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(out, format="png")
    return out
