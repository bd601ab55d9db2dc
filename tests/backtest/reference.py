"""A plain-Python reference of the grid fill model: a loop over the path vertices with a resting-order book.

Written independently of the vectorized engine (no crossing arithmetic): every vertex is a "trade"; a
resting buy fills when the new price is at or below its limit, a resting sell when it is at or above;
fills of one move go in path order and their counter orders rest from the next vertex on, like the
paper exchange in candle replay. A trigger reached at a vertex ends the run there: that move's fills first,
then all base sold at the vertex's price (less the slippage), never at the trigger price itself. Commission
in quote, in base on buys (Binance's default) or in BNB (valued in quote), without symbol rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from tgtrader.core.api import GridSpec


def spec(
    lower: float,
    upper: float,
    grids: int,
    investment: float,
    spacing: str = "arithmetic",
    stop_loss: float | None = None,
    take_profit: float | None = None,
) -> GridSpec:
    """The core's GridSpec for float settings: each Decimal is the float's repr, so the backtest (which runs in
    floats) uses exactly these floats. A trigger sells all base, as the backtest's fill model does."""

    def dec(x: float | None) -> Decimal | None:
        return None if x is None else Decimal(repr(float(x)))

    return GridSpec("", Decimal(repr(float(lower))), Decimal(repr(float(upper))), grids,
                    Decimal(repr(float(investment))), spacing, dec(stop_loss), dec(take_profit), sell_on_stop=True)


@dataclass
class RefResult:
    fills: list[tuple[int, str, int, float, float]] = field(default_factory=list)
    buys: int = 0
    sells: int = 0
    round_trips: int = 0
    quote: float = 0.0
    base: float = 0.0
    fees: float = 0.0
    grid_profit: float = 0.0
    realized: float = 0.0
    bnb_fees: float = 0.0
    final_equity: float = 0.0
    max_drawdown_pct: float = 0.0
    equity: list[float] = field(default_factory=list)
    stop: str | None = None
    stop_candle: int | None = None


def reference_backtest(
    candles: list[tuple[float, float, float, float]],
    levels: list[float],
    investment: float,
    fee: float = 0.001,
    stop_loss: float | None = None,
    take_profit: float | None = None,
    qty: float | None = None,
    fee_asset: str = "quote",
    slippage_bps: float = 0.0,
) -> RefResult:
    n_int = len(levels) - 1
    path: list[float] = []
    for o, h, lo, c in candles:
        path += [o, lo, h, c] if c >= o else [o, h, lo, c]
    p0 = path[0]
    holding = [levels[i] >= p0 for i in range(n_int)]
    nh = sum(holding)
    if qty is None:
        qty = investment / (sum(levels[i] for i in range(n_int) if not holding[i]) + p0 * nh)
    q = qty
    fb = fee if fee_asset == "base" else 0.0  # share of a buy's base that pays its fee
    fq = fee if fee_asset == "quote" else 0.0  # share of a buy's notional paid in quote
    fs = 0.0 if fee_asset == "bnb" else fee  # share of a sell's proceeds paid in quote
    fc = 0.0 if fee_asset == "base" else fee  # share of a buy's notional added to its cost
    got = q * (1 - fb)
    r = RefResult()
    r.quote = investment - q * nh * p0 * (1 + fq)
    r.base = got * nh
    r.fees = q * nh * p0 * fee
    r.bnb_fees = r.fees if fee_asset == "bnb" else 0.0
    cost = [q * p0 * (1 + fc) if holding[i] else 0.0 for i in range(n_int)]
    bought = [False] * n_int  # holding because of a grid buy (its sell is a round trip)
    # orders: interval -> (side, level index)
    book = {i: ("SELL", i + 1) if holding[i] else ("BUY", i) for i in range(n_int)}
    peak = investment
    stopped = False
    for v in range(1, len(path)):
        cur = path[v]
        candle = v // 4
        trigger = None
        if not stopped and stop_loss is not None and cur <= stop_loss:
            trigger = "stop_loss"
        elif not stopped and take_profit is not None and cur >= take_profit:
            trigger = "take_profit"
        if not stopped:
            buys = sorted(
                (lv for i, (s, lv) in book.items() if s == "BUY" and cur <= levels[lv]), reverse=True
            )
            sells = sorted(lv for i, (s, lv) in book.items() if s == "SELL" and cur >= levels[lv])
            for lv in buys:
                px = levels[lv]
                r.quote -= q * px * (1 + fq)
                r.fees += q * px * fee
                r.bnb_fees += q * px * fee if fee_asset == "bnb" else 0.0
                r.base += got
                cost[lv] = q * px * (1 + fc)
                r.buys += 1
                bought[lv] = True
                book[lv] = ("SELL", lv + 1)
                r.fills.append((candle, "BUY", lv, px, q))
            for lv in sells:
                px = levels[lv]
                i = lv - 1
                r.quote += got * px * (1 - fs)
                r.fees += got * px * fee
                r.bnb_fees += got * px * fee if fee_asset == "bnb" else 0.0
                r.base -= got
                r.sells += 1
                profit = got * px * (1 - fee) - cost[i]
                r.realized += profit
                cost[i] = 0.0
                if bought[i]:
                    r.round_trips += 1
                    r.grid_profit += profit
                bought[i] = False
                book[i] = ("BUY", i)
                r.fills.append((candle, "SELL", lv, px, got))
            if trigger is not None:
                proceeds = r.base * cur * (1 - slippage_bps / 10_000)
                r.quote += proceeds * (1 - fs)
                r.fees += proceeds * fee
                r.bnb_fees += proceeds * fee if fee_asset == "bnb" else 0.0
                r.realized += proceeds * (1 - fee) - sum(cost)
                r.base = 0.0
                r.stop, r.stop_candle = trigger, candle
                stopped = True
                book = {}
        if v % 4 == 3:
            eq = r.quote + r.base * path[v] - r.bnb_fees
            r.equity.append(eq)
            peak = max(peak, eq)
            r.max_drawdown_pct = max(r.max_drawdown_pct, (peak - eq) / peak * 100)
    r.final_equity = r.quote + r.base * path[-1] - r.bnb_fees
    return r
