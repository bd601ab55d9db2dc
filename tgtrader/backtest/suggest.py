"""Grid suggestions backed by a backtest of recent candles (guided `/grid`, issue 17).

Why: a trader should not have to guess a range and a grid count, and should see why a setup is suggested.
Candidates come from the candles themselves, every candidate is backtested over the same candles with the
batched sweep, and the best few are shown with what they would have done.

- Ranges: around the last price, half-widths of m x sigma x sqrt(days) in log terms (sigma = daily volatility
  from the 1m log returns of the closes; m in RANGE_MULTIPLES), centred or shifted a quarter up or down; plus
  the period's 5-95 % close range when it holds the price. Widths are kept within 1 %..60 %.
- Grid counts: at least FEWEST_GRIDS, and only counts whose smallest profit per grid after both fees is at least MIN_NET_PCT and at
  least the round trip's fees (2 x fee): "clearly positive", not a grid that trades for nothing.
- Score = return % / max drawdown % (the drawdown floored at 1 %): what was earned per unit of pain.
  Ties are impossible to tell apart by eye, so one suggestion per range is shown (the best count of each).
- The numbers shown are the reference backtest's (`vector.run_backtest`) with the symbol's rounding when
  rules are given; the sweep only ranks. Past results do not predict the future: the chat says so.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from tgtrader.backtest.batch import run_batch
from tgtrader.backtest.candles import Candles
from tgtrader.backtest.vector import BacktestInputError, run_backtest
from tgtrader.core.api import GridSpec
from tgtrader.core.grid.plan import MAX_GRIDS, GridConfig, preview
from tgtrader.core.rules import SymbolRules
from tgtrader.fees import DEFAULT_FEE_ASSET, FeeAsset

RANGE_MULTIPLES = (0.5, 0.75, 1.0, 1.5, 2.0)
SHIFTS = (-0.25, 0.0, 0.25)
MIN_WIDTH, MAX_WIDTH = 0.01, 0.60
MIN_NET_PCT = 0.1  # smallest acceptable profit per grid after fees, percent
GRID_CHOICES = 12  # grid counts tried per range and spacing
FEWEST_GRIDS = 5  # fewer intervals is mostly one position, not a grid
DD_FLOOR_PCT = 1.0


@dataclass(frozen=True)
class Suggestion:
    spec: GridSpec
    score: float  # return % / max(max drawdown %, 1)
    round_trips: int
    grid_profit: float  # quote, after fees
    total_pnl: float  # quote: final equity - investment
    return_pct: float
    max_drawdown_pct: float
    time_in_range_pct: float
    profit_per_grid_pct: tuple[float, float]  # smallest, largest, after both fees


@dataclass(frozen=True)
class Suggestions:
    symbol: str
    price: float
    days: float
    candles: int
    volatility_pct: float  # daily, from 1m closes
    fee: float
    tried: int  # settings backtested
    elapsed_s: float
    items: tuple[Suggestion, ...]


def daily_volatility(close: np.ndarray) -> float:
    """Standard deviation of 1m log returns scaled to a day (1,440 minutes)."""
    if close.shape[0] < 3:
        return 0.0
    r = np.diff(np.log(close))
    return float(np.std(r) * math.sqrt(1440.0))


def profit_per_grid_pct(lower: float, upper: float, grids: int, spacing: str, fee: float) -> tuple[float, float]:
    """(smallest, largest) profit of one round trip after both fees, percent of the buy value."""
    if spacing == "geometric":
        r = (upper / lower) ** (1.0 / grids)
        p = ((r - 1.0) - fee * (1.0 + r)) * 100.0
        return p, p
    step = (upper - lower) / grids

    def at(a: float) -> float:
        return (step - fee * (2 * a + step)) / a * 100.0

    return at(upper - step), at(lower)


def candidate_ranges(close: np.ndarray, price: float) -> list[tuple[float, float]]:
    days = max(close.shape[0] / 1440.0, 1.0 / 24)
    sigma = daily_volatility(close) * math.sqrt(days)
    out: list[tuple[float, float]] = []
    for m in RANGE_MULTIPLES:
        w = min(max(m * sigma, MIN_WIDTH), MAX_WIDTH)
        for s in SHIFTS:
            out.append((price * math.exp(-w * (1 - s)), price * math.exp(w * (1 + s))))
    lo, hi = (float(x) for x in np.quantile(close, [0.05, 0.95]))
    if lo < price * 0.995 and hi > price * 1.005:
        out.append((lo, hi))
    return out


def grid_counts(lower: float, upper: float, spacing: str, fee: float, max_grids: int) -> list[int]:
    """Up to GRID_CHOICES counts, FEWEST_GRIDS..max, each with a clearly positive profit per grid after fees."""
    floor = max(MIN_NET_PCT, 2 * fee * 100.0)
    ok = [n for n in range(FEWEST_GRIDS, max_grids + 1) if profit_per_grid_pct(lower, upper, n, spacing, fee)[0] >= floor]
    if len(ok) <= GRID_CHOICES:
        return ok
    picks = np.unique(np.round(np.geomspace(ok[0], ok[-1], GRID_CHOICES)).astype(int))
    return [int(n) for n in picks]


def _price_text(x: float, rules: SymbolRules | None) -> Decimal:
    if rules is not None:
        return rules.round_price(Decimal(repr(x)))
    digits = 6 - int(math.floor(math.log10(abs(x)))) - 1
    return Decimal(repr(round(x, max(digits, 0))))


def suggest(
    candles: Candles,
    symbol: str,
    investment: Decimal,
    *,
    fee: float = 0.001,
    fee_asset: FeeAsset = DEFAULT_FEE_ASSET,
    rules: SymbolRules | None = None,
    price: float | None = None,
    count: int = 3,
    workers: int = 1,
) -> Suggestions:
    """The `count` best setups for `symbol` over `candles`, best first (fewer when few settings qualify)."""
    if len(candles) < 60:
        raise BacktestInputError(f"only {len(candles)} candles of {symbol}: need at least an hour to suggest a grid")
    if investment <= 0:
        raise BacktestInputError("investment must be positive")
    t0 = time.perf_counter()
    close = candles.close
    last = float(price if price is not None else close[-1])
    max_grids = min(MAX_GRIDS, rules.max_num_orders if rules is not None else MAX_GRIDS)
    specs: list[GridSpec] = []
    seen: set[tuple[Decimal, Decimal, int, str]] = set()
    for lo, hi in candidate_ranges(close, last):
        lower, upper = _price_text(lo, rules), _price_text(hi, rules)
        if not (0 < lower < upper):
            continue
        for spacing in ("arithmetic", "geometric"):
            for n in grid_counts(float(lower), float(upper), spacing, fee, max_grids):
                key = (lower, upper, n, spacing)
                if key not in seen:
                    seen.add(key)
                    specs.append(GridSpec(symbol, lower, upper, n, investment, spacing))
    if not specs:
        return Suggestions(symbol, last, len(candles) / 1440.0, len(candles), daily_volatility(close) * 100, fee,
                           0, time.perf_counter() - t0, ())
    batch = run_batch(candles, specs, fee, fee_asset, workers=workers)
    score = batch.return_pct / np.maximum(batch.max_drawdown_pct, DD_FLOOR_PCT)
    items: list[Suggestion] = []
    ranges_used: set[tuple[Decimal, Decimal]] = set()
    for i in np.argsort(-score, kind="stable").tolist():
        spec = specs[i]
        if (spec.lower, spec.upper) in ranges_used:
            continue
        item = _confirm(candles, spec, fee, fee_asset, rules, last)
        if item is None:
            continue
        ranges_used.add((spec.lower, spec.upper))
        items.append(item)
        if len(items) >= count:
            break
    return Suggestions(symbol, last, len(candles) / 1440.0, len(candles), daily_volatility(close) * 100, fee,
                       len(specs), time.perf_counter() - t0, tuple(items))


def _confirm(candles: Candles, spec: GridSpec, fee: float, fee_asset: FeeAsset, rules: SymbolRules | None,
             price: float) -> Suggestion | None:
    """The reference backtest's numbers for a winner (with the symbol's rounding); None when the live preview
    would refuse it (tick collapse, minimum notional) or the rounded run is impossible."""
    if rules is not None:
        config = GridConfig(spec.symbol, spec.lower, spec.upper, spec.grids, spec.investment, spec.spacing,
                            fee_rate=Decimal(repr(fee)))
        if preview(config, rules, Decimal(repr(price)), spec.investment).problems:
            return None
    try:
        r = run_backtest(candles, spec, rules, fee=fee, fee_asset=fee_asset)
    except BacktestInputError:
        return None
    lower, upper = float(spec.lower), float(spec.upper)
    inside = float(np.mean((candles.close >= lower) & (candles.close <= upper)) * 100.0)
    return Suggestion(
        spec=spec, score=r.return_pct / max(r.max_drawdown_pct, DD_FLOOR_PCT), round_trips=r.round_trips,
        grid_profit=r.grid_profit, total_pnl=r.final_equity - float(spec.investment), return_pct=r.return_pct,
        max_drawdown_pct=r.max_drawdown_pct, time_in_range_pct=inside,
        profit_per_grid_pct=profit_per_grid_pct(lower, upper, spec.grids, spec.spacing, fee),
    )
