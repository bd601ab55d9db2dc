"""Position sizing (fixed fraction, Kelly) and exposure limits, as pure functions.

Sizes are rounded down with the symbol's rules and refused below minNotional / minQty, so a size
the sizer returns can be sent as is. A refusal says why in one plain line.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tgtrader.core.api import SizeResult
from tgtrader.core.rules import SymbolRules, fmt_decimal
from tgtrader.types import OrderType, Side

ZERO = Decimal(0)
ONE = Decimal(1)


def _pct(x: Decimal) -> str:
    return f"{fmt_decimal((x * 100).quantize(Decimal('0.01')))} %"


def _to_qty(
    result_kw: dict[str, Any], position: Decimal, price: Decimal | None, rules: SymbolRules | None
) -> SizeResult:
    """Round a quote position to a tradable quantity, or refuse it."""
    if price is None or rules is None:
        return SizeResult(ok=True, position_quote=position, **result_kw)
    if price <= 0:
        return SizeResult(ok=False, **{**result_kw, "reason": "the price must be positive"})
    qty = rules.round_qty(position / price)
    problems = rules.check_order(Side.BUY, OrderType.LIMIT, qty, rules.round_price(price, Side.BUY))
    problems = [p for p in problems if p.filter in ("LOT_SIZE", "NOTIONAL")]
    if qty <= 0 or problems:
        why = "; ".join(str(p) for p in problems) or f"quantity rounds to 0 at step {fmt_decimal(rules.step_size)}"
        return SizeResult(
            ok=False, position_quote=position, qty=qty, symbol=rules.symbol,
            **{**result_kw, "reason": f"size too small to trade: {why}"},
        )
    return SizeResult(ok=True, position_quote=qty * price, qty=qty, symbol=rules.symbol, **result_kw)


def fixed_fraction(
    capital: Decimal,
    risk_pct: Decimal = Decimal("0.01"),
    stop_pct: Decimal = Decimal("0.05"),
    price: Decimal | None = None,
    rules: SymbolRules | None = None,
    max_fraction: Decimal = ONE,
) -> SizeResult:
    """Position = capital x risk / stop distance, capped at `max_fraction` of capital.

    10,000 capital, 1 % risk, 5 % stop -> 2,000 position (losing 5 % of it loses 1 % of capital)."""
    kw = {"method": "fixed-fraction", "capital": capital}
    if capital <= 0:
        return SizeResult(ok=False, reason="capital must be positive", **kw)  # type: ignore[arg-type]
    if not ZERO < risk_pct < ONE:
        return SizeResult(ok=False, reason="risk per trade must be between 0 and 100 %", **kw)  # type: ignore[arg-type]
    if not ZERO < stop_pct < ONE:
        return SizeResult(ok=False, reason="stop distance must be between 0 and 100 %", **kw)  # type: ignore[arg-type]
    fraction = risk_pct / stop_pct
    capped = fraction > max_fraction
    fraction = min(fraction, max_fraction)
    position = capital * fraction
    reason = f"risk {_pct(risk_pct)} of capital with a {_pct(stop_pct)} stop -> {_pct(fraction)} of capital"
    if capped:
        reason += f" (capped at {_pct(max_fraction)})"
    return _to_qty({**kw, "fraction": fraction, "reason": reason}, position, price, rules)


def kelly_fraction(win_rate: Decimal, payoff: Decimal) -> Decimal:
    """Kelly f* = p - (1 - p) / b for win rate p and payoff ratio b (average win / average loss)."""
    return win_rate - (ONE - win_rate) / payoff


def kelly(
    capital: Decimal,
    win_rate: Decimal,
    payoff: Decimal,
    price: Decimal | None = None,
    rules: SymbolRules | None = None,
    kelly_multiplier: Decimal = Decimal("0.5"),
    cap: Decimal = Decimal("0.20"),
) -> SizeResult:
    """A fraction (default half) of Kelly, capped (default 20 % of capital). Negative Kelly: no trade."""
    kw = {"method": "kelly", "capital": capital}
    if not ZERO <= win_rate <= ONE:
        return SizeResult(ok=False, reason="win rate must be between 0 and 100 %", **kw)  # type: ignore[arg-type]
    if payoff <= 0:
        return SizeResult(ok=False, reason="payoff ratio must be positive", **kw)  # type: ignore[arg-type]
    f = kelly_fraction(win_rate, payoff)
    if f <= 0:
        return SizeResult(
            ok=False, fraction=ZERO,
            reason=(
                f"no trade: Kelly is {_pct(f)} (win rate {_pct(win_rate)}, payoff {fmt_decimal(payoff)}); "
                "this bet loses money on average"
            ),
            **kw,  # type: ignore[arg-type]
        )
    scaled = f * kelly_multiplier
    fraction = min(scaled, cap)
    reason = f"Kelly {_pct(f)} x {fmt_decimal(kelly_multiplier)} = {_pct(scaled)}"
    if scaled > cap:
        reason += f", capped at {_pct(cap)}"
    if capital <= 0:
        return SizeResult(ok=True, fraction=fraction, reason=reason, **kw)  # type: ignore[arg-type]
    return _to_qty({**kw, "fraction": fraction, "reason": reason}, capital * fraction, price, rules)


# ---------------------------------------------------------------- exposure limits


@dataclass(frozen=True, slots=True)
class ExposureLimits:
    max_per_grid: Decimal | None = None  # quote
    max_total_in_grids: Decimal | None = None  # quote
    max_open_orders: int | None = None


@dataclass(frozen=True, slots=True)
class Breach:
    limit: str  # "max_per_grid", "max_total_in_grids", "max_open_orders"
    message: str

    def __str__(self) -> str:
        return self.message


def check_exposure(
    limits: ExposureLimits,
    new_grid_capital: Decimal = ZERO,
    grid_capitals: list[Decimal] | tuple[Decimal, ...] = (),
    open_orders: int = 0,
    new_orders: int = 0,
) -> Breach | None:
    """The first limit a new grid (or new orders) would break, or None."""
    if limits.max_per_grid is not None and new_grid_capital > limits.max_per_grid:
        return Breach(
            "max_per_grid",
            f"max capital per grid is {fmt_decimal(limits.max_per_grid)}; this grid needs {fmt_decimal(new_grid_capital)}",
        )
    total = sum(grid_capitals, ZERO) + new_grid_capital
    if limits.max_total_in_grids is not None and total > limits.max_total_in_grids:
        return Breach(
            "max_total_in_grids",
            f"max total capital in grids is {fmt_decimal(limits.max_total_in_grids)}; it would be {fmt_decimal(total)}",
        )
    if limits.max_open_orders is not None and open_orders + new_orders > limits.max_open_orders:
        return Breach(
            "max_open_orders",
            f"max open orders is {limits.max_open_orders}; it would be {open_orders + new_orders}",
        )
    return None
