"""The pure part of a grid: its configuration, its levels, the preview a trader sees before starting.

Stateless and exchange-free: the live core, the Telegram parser and the backtest all take their levels and
grid-count limits from here, so every path computes the same grid.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any

import numpy as np

from tgtrader.core.rules import SymbolRules, fmt_decimal
from tgtrader.types import OrderType, Side

ZERO = Decimal(0)
MIN_GRIDS, MAX_GRIDS = 2, 200  # the number of intervals a grid may have (the only place these limits live)
SPACINGS = ("arithmetic", "geometric")
# ================================================================ configuration and preview


@dataclass(frozen=True, slots=True)
class GridConfig:
    symbol: str
    lower: Decimal
    upper: Decimal
    n: int  # intervals; n + 1 levels
    investment: Decimal  # quote
    spacing: str = "arithmetic"  # or "geometric"
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    sell_on_stop: bool = False
    fee_rate: Decimal = Decimal("0.001")  # for previews and fee estimates only
    start_mode: str = "market"  # "market" or "chase" (maker-first, market fallback)
    chase_step_ms: int = 5_000
    chase_max_slippage: Decimal = Decimal("0.005")  # chase never pays more than P0 x (1 + this)
    accept_loss: bool = False  # the trader's explicit override: start although a grid loses to fees per round trip
    trail_up: Decimal | None = None  # trailing up: the grid moves up while its new top level stays at or below this
    trail_down: Decimal | None = None  # trailing down: ... moves down while its new bottom level stays at or above this

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = str(v) if isinstance(v, Decimal) else v
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GridConfig":
        kw: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in d:
                continue
            v = d[f.name]
            if f.name in ("lower", "upper", "investment", "fee_rate", "chase_max_slippage"):
                v = Decimal(v)
            elif f.name in ("stop_loss", "take_profit", "trail_up", "trail_down"):
                v = None if v is None else Decimal(v)
            kw[f.name] = v
        return cls(**kw)


def level_prices(lower: Decimal, upper: Decimal, n: int, spacing: str = "arithmetic") -> list[Decimal]:
    """n + 1 levels from lower to upper (numpy), first exactly lower and last exactly upper; not rounded.

    The one level formula: the backtest converts these to floats (each Decimal is the repr of a float, so
    the conversion is exact) and the live grid rounds them to the tick (`compute_levels`).
    """
    if _no_range(lower, upper, n):
        return [lower, upper]
    lo, hi = float(lower), float(upper)
    raw = np.geomspace(lo, hi, n + 1) if spacing == "geometric" else np.linspace(lo, hi, n + 1)
    levels = [Decimal(repr(float(x))) for x in raw]
    levels[0], levels[-1] = lower, upper
    return levels


def compute_levels(config: GridConfig, rules: SymbolRules | None = None) -> list[Decimal]:
    """n + 1 levels from lower to upper (numpy), each rounded to the tick (nearest); last exactly upper."""
    if _no_range(config.lower, config.upper, config.n):
        return [config.lower, config.upper]
    levels = level_prices(config.lower, config.upper, config.n, config.spacing)
    if rules is not None:
        levels = [rules.round_price(x) for x in levels[:-1]] + [config.upper]
    return levels


def ladder_price(lower: Decimal, upper: Decimal, n: int, spacing: str, k: int) -> Decimal:
    """Level k of the grid's ladder, not rounded: k in 0..n are `level_prices`' levels; below 0 and above n the
    ladder goes on with the same step (arithmetic) or ratio (geometric). A trailing grid moves along it (issue 17):
    its intervals are always n consecutive rungs. The backtest converts these exactly, as `level_prices`'."""
    if 0 <= k <= n or _no_range(lower, upper, n):
        return level_prices(lower, upper, n, spacing)[min(max(k, 0), n)]
    lo, hi = float(lower), float(upper)
    x = lo * (hi / lo) ** (k / n) if spacing == "geometric" else lo + (hi - lo) * k / n
    return Decimal(repr(float(x)))


def ladder_level(config: GridConfig, k: int, rules: SymbolRules | None = None) -> Decimal:
    """Rung k as the live grid trades it: rounded to the tick (nearest) like `compute_levels`; rung n is `upper`."""
    x = ladder_price(config.lower, config.upper, config.n, config.spacing, k)
    return x if rules is None or k == config.n else rules.round_price(x)


def _no_range(lower: Decimal, upper: Decimal, n: int) -> bool:
    """No interval to split (then the levels are just lower and upper, unrounded)."""
    lo, hi = float(lower), float(upper)
    return n < 1 or lo <= 0 or hi <= lo


def holding_count(levels: list[Decimal], p0: Decimal) -> int:
    return sum(1 for lv in levels[:-1] if lv >= p0)


def quantity_per_order(levels: list[Decimal], p0: Decimal, investment: Decimal, rules: SymbolRules | None) -> Decimal:
    h = holding_count(levels, p0)
    denom = sum((lv for lv in levels[:-1] if lv < p0), ZERO) + p0 * h
    if denom <= 0:
        return ZERO
    q = investment / denom
    return rules.round_qty(q) if rules is not None else q


@dataclass(frozen=True, slots=True)
class GridPreview:
    config: GridConfig
    price: Decimal
    levels: tuple[Decimal, ...]
    qty_per_order: Decimal
    profit_pct_min: Decimal  # per grid, after fees
    profit_pct_max: Decimal
    required_quote: Decimal
    required_base: Decimal
    buy_orders: int
    sell_orders: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def setting_problems(
    lower: Decimal, upper: Decimal, n: int, investment: Decimal, spacing: str, *,
    stop_loss: Decimal | None = None, take_profit: Decimal | None = None,
    trail_up: Decimal | None = None, trail_down: Decimal | None = None,
) -> list[str]:
    """What is wrong with a grid's own settings, before any price, filter or balance is known.

    The one copy of these rules: the live preview and the backtest (which raises them) both check with it.
    """
    problems: list[str] = []
    if not MIN_GRIDS <= n <= MAX_GRIDS:
        problems.append(f"number of grids {n} is out of range {MIN_GRIDS}..{MAX_GRIDS}")
    if lower <= 0 or lower >= upper:
        problems.append(f"lower {fmt_decimal(lower)} must be positive and below upper {fmt_decimal(upper)}")
    if spacing not in SPACINGS:
        problems.append(f"spacing {spacing!r} must be arithmetic or geometric")
    if investment <= 0:
        problems.append("investment must be positive")
    if trail_up is not None:
        if trail_up <= upper:
            problems.append(f"the trailing-up limit {fmt_decimal(trail_up)} must be above upper {fmt_decimal(upper)}")
        elif take_profit is not None and trail_up > take_profit:
            problems.append(f"the trailing-up limit {fmt_decimal(trail_up)} must not be above the take-profit "
                            f"{fmt_decimal(take_profit)} (the grid would trail past its own exit)")
    if trail_down is not None:
        if not 0 < trail_down < lower:
            problems.append(f"the trailing-down limit {fmt_decimal(trail_down)} must be positive and below lower "
                            f"{fmt_decimal(lower)}")
        elif stop_loss is not None and trail_down < stop_loss:
            problems.append(f"the trailing-down limit {fmt_decimal(trail_down)} must not be below the stop-loss "
                            f"{fmt_decimal(stop_loss)} (the grid would trail past its own exit)")
    return problems


def profit_pct(lower: Decimal, upper: Decimal, fee_rate: Decimal) -> Decimal:
    """One round trip's profit, after both fees, as percent of the buy value."""
    return ((upper - lower) - fee_rate * (upper + lower)) / lower * 100


def preview(
    config: GridConfig, rules: SymbolRules, price: Decimal, free_quote: Decimal, free_base: Decimal = ZERO,
    avg_price: Decimal | None = None,
) -> GridPreview:
    """Everything a trader must see before starting, and every reason it cannot start. `avg_price`: the venue's
    average price (Binance checks PERCENT_PRICE_BY_SIDE against it, over avgPriceMins); the last price if unknown."""
    problems: list[str] = []
    if config.symbol != rules.symbol:
        problems.append(f"rules are for {rules.symbol}, not {config.symbol}")
    problems += setting_problems(
        config.lower, config.upper, config.n, config.investment, config.spacing, stop_loss=config.stop_loss,
        take_profit=config.take_profit, trail_up=config.trail_up, trail_down=config.trail_down)
    if price <= 0:
        problems.append("no current price")
    if problems:
        return GridPreview(config, price, (), ZERO, ZERO, ZERO, ZERO, ZERO, 0, 0, tuple(problems))

    levels = compute_levels(config, rules)
    if any(b <= a for a, b in zip(levels, levels[1:])):
        problems.append(
            f"levels are closer than one tick ({fmt_decimal(rules.tick_size)}): widen the range or use fewer grids"
        )
    if config.n > rules.max_num_orders:
        problems.append(f"{config.n} orders exceed MAX_NUM_ORDERS {rules.max_num_orders} for {rules.symbol}")
    if config.stop_loss is not None and config.stop_loss >= price:
        problems.append(f"stop-loss {fmt_decimal(config.stop_loss)} is not below the price {fmt_decimal(price)}")
    if config.take_profit is not None and config.take_profit <= price:
        problems.append(f"take-profit {fmt_decimal(config.take_profit)} is not above the price {fmt_decimal(price)}")
    q = quantity_per_order(levels, price, config.investment, rules)
    h = holding_count(levels, price)
    waiting = config.n - h
    seen: set[str] = set()
    if q <= 0:
        problems.append(f"investment {fmt_decimal(config.investment)} gives a quantity below one step {fmt_decimal(rules.step_size)}")
    else:
        orders = [(Side.BUY, lv) for lv in levels[:-1]] + [(Side.SELL, lv) for lv in levels[1:]]
        for side, lv in orders:
            for v in rules.check_order(side, OrderType.LIMIT, q, lv, reference_price=avg_price or price):
                key = v.filter
                if key in seen:
                    continue
                seen.add(key)
                if v.filter == "NOTIONAL" and "below" in v.message:
                    problems.append(
                        f"NOTIONAL: {fmt_decimal(q)} x {fmt_decimal(lv)} = {fmt_decimal(q * lv)} {rules.quote_asset} "
                        f"is below minNotional {fmt_decimal(rules.min_notional)}: invest more or use fewer grids"
                    )
                else:
                    problems.append(str(v))
    pcts = [profit_pct(a, b, config.fee_rate) for a, b in zip(levels, levels[1:]) if a > 0]
    if pcts and min(pcts) <= 0 and not config.accept_loss:
        # every round trip between the closest levels would lose money to fees: a grid that trades at a loss
        problems.append(
            f"the profit per grid after fees is {fmt_decimal(min(pcts).quantize(Decimal('0.001')))} % (fee "
            f"{fmt_decimal(config.fee_rate * 100)} % per side): use fewer grids or a wider range (or add"
            " accept_loss to start it anyway)"
        )
    required_base = q * h
    required_quote = q * sum((lv for lv in levels[:-1] if lv < price), ZERO) + required_base * price * (1 + config.fee_rate)
    if config.investment > free_quote:
        problems.append(
            f"investment {fmt_decimal(config.investment)} {rules.quote_asset} is above the free balance "
            f"{fmt_decimal(free_quote)} {rules.quote_asset}"
        )
    elif required_quote > free_quote:
        problems.append(
            f"needs {fmt_decimal(required_quote.quantize(Decimal('0.01')))} {rules.quote_asset} with the start fee, "
            f"free is {fmt_decimal(free_quote)}"
        )
    return GridPreview(
        config, price, tuple(levels), q, min(pcts, default=ZERO), max(pcts, default=ZERO),
        required_quote, required_base, waiting, h, tuple(problems),
    )


def reach(config: GridConfig) -> tuple[Decimal, Decimal]:
    """The prices a grid may ever trade between: its range, widened to its trailing limits."""
    return (config.trail_down or config.lower, config.trail_up or config.upper)


def overlap_problem(config: GridConfig, others: Iterable[tuple[int, str, Decimal, Decimal]]) -> str | None:
    """Refuse a second grid on a symbol whose reach overlaps an active one's; `others` = (id, symbol, low, high),
    each grid's `reach` (a trailing grid may move over its trailing limits' whole range)."""
    lo, hi = reach(config)
    for gid, symbol, lower, upper in others:
        if symbol == config.symbol and lo < upper and lower < hi:
            return (
                f"grid {gid} on {symbol} already covers {fmt_decimal(lower)}-{fmt_decimal(upper)}, "
                f"which overlaps {fmt_decimal(lo)}-{fmt_decimal(hi)}"
            )
    return None
