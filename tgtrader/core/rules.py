"""Symbol trading rules (tick, lot, notional, price bands), and the rounding/validation every order passes.

The adapter builds them from its venue's description (Binance: `exchange/binance/rules.py`).

Nothing leaves the core unless `SymbolRules.check_order` returns no violations, and every
violation names the Binance filter and the numbers, so a trader can see what to change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_UP, Decimal, localcontext

from tgtrader.types import OrderType, Side

ZERO = Decimal(0)
# Rounding works in a wide context: in the default 28-digit one, price/tick of a value with more
# digits is itself rounded first and can land on the next integer, so "round down" went UP.
_ROUNDING_PREC = 120



def fmt_decimal(value: Decimal) -> str:
    """Plain notation without exponent or trailing zeros (Binance accepts and prints this)."""
    text = format(value.normalize(), "f")
    return text if text != "-0" else "0"


@dataclass(frozen=True, slots=True)
class FilterViolation:
    filter: str
    message: str

    def __str__(self) -> str:
        return f"{self.filter}: {self.message}"


@dataclass(frozen=True)
class SymbolRules:
    symbol: str
    base_asset: str
    quote_asset: str
    status: str = "TRADING"
    tick_size: Decimal = Decimal("0.01")
    min_price: Decimal = ZERO
    max_price: Decimal = ZERO  # 0 means no limit (Binance convention)
    step_size: Decimal = Decimal("0.00001")
    min_qty: Decimal = ZERO
    max_qty: Decimal = ZERO
    market_step_size: Decimal = ZERO
    market_min_qty: Decimal = ZERO
    market_max_qty: Decimal = ZERO
    min_notional: Decimal = ZERO
    max_notional: Decimal = ZERO
    apply_min_to_market: bool = True
    apply_max_to_market: bool = False
    bid_multiplier_up: Decimal = ZERO  # 0 means the PERCENT_PRICE_BY_SIDE filter is absent
    bid_multiplier_down: Decimal = ZERO
    ask_multiplier_up: Decimal = ZERO
    ask_multiplier_down: Decimal = ZERO
    max_num_orders: int = 200
    max_num_algo_orders: int = 0  # MAX_NUM_ALGO_ORDERS: open stop-loss / take-profit orders per symbol (0: no filter)
    max_position: Decimal = ZERO  # MAX_POSITION: base held + locked + open buy quantity (0: no limit)
    cancel_replace_allowed: bool = True  # False: a replace is a cancel, then a new order
    order_types: frozenset[str] = field(
        default_factory=lambda: frozenset(t.value for t in OrderType)
    )


    # ------------------------------------------------------------ rounding

    def round_price(self, price: Decimal, side: Side | None = None) -> Decimal:
        """Round to the tick. Buys round down and sells up (never worse than asked); None rounds to nearest."""
        if self.tick_size <= 0:
            return price
        mode = ROUND_HALF_EVEN if side is None else (ROUND_DOWN if side is Side.BUY else ROUND_UP)
        with localcontext() as ctx:
            ctx.prec = _ROUNDING_PREC
            ticks = (price / self.tick_size).to_integral_value(rounding=mode)
            return (ticks * self.tick_size).quantize(self.tick_size)

    def round_qty(self, qty: Decimal, market: bool = False) -> Decimal:
        """Round a quantity DOWN to the step: rounding never spends more than was asked."""
        step = self.market_step_size if market and self.market_step_size > 0 else self.step_size
        if step <= 0:
            return qty
        with localcontext() as ctx:
            ctx.prec = _ROUNDING_PREC
            steps = (qty / step).to_integral_value(rounding=ROUND_DOWN)
            return (steps * step).quantize(step)

    def is_on_tick(self, price: Decimal) -> bool:
        return self.tick_size <= 0 or _is_multiple(price, self.tick_size)

    # ------------------------------------------------------------ validation

    def check_order(
        self,
        side: Side,
        order_type: OrderType,
        qty: Decimal,
        price: Decimal | None = None,
        reference_price: Decimal | None = None,
        stop_price: Decimal | None = None,
    ) -> list[FilterViolation]:
        """Every filter this order breaks. `reference_price` (weighted average) feeds the percent bands and market notional."""
        problems: list[FilterViolation] = []
        if self.status != "TRADING":
            problems.append(FilterViolation("STATUS", f"{self.symbol} is {self.status}, not TRADING"))
        if order_type.value not in self.order_types:
            problems.append(FilterViolation("ORDER_TYPE", f"{order_type.value} is not allowed on {self.symbol}"))
        is_market = order_type is OrderType.MARKET
        for label, px in (("price", price), ("stop price", stop_price)):
            if px is None or is_market:
                continue
            if px <= 0:
                problems.append(FilterViolation("PRICE_FILTER", f"{label} {fmt_decimal(px)} must be positive"))
                continue
            if self.min_price > 0 and px < self.min_price:
                problems.append(
                    FilterViolation("PRICE_FILTER", f"{label} {fmt_decimal(px)} is below minPrice {fmt_decimal(self.min_price)}")
                )
            if self.max_price > 0 and px > self.max_price:
                problems.append(
                    FilterViolation("PRICE_FILTER", f"{label} {fmt_decimal(px)} is above maxPrice {fmt_decimal(self.max_price)}")
                )
            if not self.is_on_tick(px):
                problems.append(
                    FilterViolation("PRICE_FILTER", f"{label} {fmt_decimal(px)} is not a multiple of tickSize {fmt_decimal(self.tick_size)}")
                )
        if not is_market and price is None:
            problems.append(FilterViolation("PRICE_FILTER", f"{order_type.value} needs a price"))

        step, min_q, max_q, name = self.step_size, self.min_qty, self.max_qty, "LOT_SIZE"
        if is_market and (self.market_step_size > 0 or self.market_max_qty > 0):
            step = self.market_step_size if self.market_step_size > 0 else self.step_size
            min_q = max(self.market_min_qty, self.min_qty)
            max_q = self.market_max_qty if self.market_max_qty > 0 else self.max_qty
            name = "MARKET_LOT_SIZE"
        if qty <= 0:
            problems.append(FilterViolation(name, f"quantity {fmt_decimal(qty)} must be positive"))
        else:
            if min_q > 0 and qty < min_q:
                problems.append(FilterViolation(name, f"quantity {fmt_decimal(qty)} is below minQty {fmt_decimal(min_q)}"))
            if max_q > 0 and qty > max_q:
                problems.append(FilterViolation(name, f"quantity {fmt_decimal(qty)} is above maxQty {fmt_decimal(max_q)}"))
            if step > 0 and not _is_multiple(qty, step):
                problems.append(
                    FilterViolation(name, f"quantity {fmt_decimal(qty)} is not a multiple of stepSize {fmt_decimal(step)}")
                )

        notional_price = price if not is_market else reference_price
        if notional_price is not None and qty > 0:
            notional = notional_price * qty
            check_min = not is_market or self.apply_min_to_market
            check_max = not is_market or self.apply_max_to_market
            if check_min and self.min_notional > 0 and notional < self.min_notional:
                problems.append(
                    FilterViolation(
                        "NOTIONAL",
                        f"order value {fmt_decimal(notional)} {self.quote_asset} is below minNotional {fmt_decimal(self.min_notional)}",
                    )
                )
            if check_max and self.max_notional > 0 and notional > self.max_notional:
                problems.append(
                    FilterViolation(
                        "NOTIONAL",
                        f"order value {fmt_decimal(notional)} {self.quote_asset} is above maxNotional {fmt_decimal(self.max_notional)}",
                    )
                )

        if reference_price is not None and price is not None and not is_market and reference_price > 0:
            up, down = (
                (self.bid_multiplier_up, self.bid_multiplier_down)
                if side is Side.BUY
                else (self.ask_multiplier_up, self.ask_multiplier_down)
            )
            if up > 0 and price > reference_price * up:
                problems.append(
                    FilterViolation(
                        "PERCENT_PRICE_BY_SIDE",
                        f"{side.value.lower()} price {fmt_decimal(price)} is above {fmt_decimal(up)} x average price {fmt_decimal(reference_price)}",
                    )
                )
            if down > 0 and price < reference_price * down:
                problems.append(
                    FilterViolation(
                        "PERCENT_PRICE_BY_SIDE",
                        f"{side.value.lower()} price {fmt_decimal(price)} is below {fmt_decimal(down)} x average price {fmt_decimal(reference_price)}",
                    )
                )
        return problems


def _is_multiple(value: Decimal, unit: Decimal) -> bool:
    """Exact `value % unit == 0`, also for values too long for the default 28-digit context."""
    with localcontext() as ctx:
        ctx.prec = _ROUNDING_PREC
        try:
            return (value % unit) == 0
        except ArithmeticError:  # absurdly large quotient: certainly not a sensible order
            return False
