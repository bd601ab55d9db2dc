"""Symbol rules read from an exchangeInfo entry, and the filter checks of filters.md, one function per filter.

Every check quotes the section of filters.md (binance-spot-api-docs) it implements; a failure raises the
errors.md text "Filter failure: <NAME>" with code -1013 INVALID_MESSAGE ("The request is rejected by the API.
(i.e. The request didn't reach the Matching Engine.)"). Only stdlib: nothing from tgtrader.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import Any

from tests.fakes.binance import errors as E
from tests.fakes.binance.orders import OrderType, Side, StpMode

ZERO = Decimal(0)


def _d(v: Any) -> Decimal:
    return Decimal(str(v)) if v is not None else ZERO


def _multiple(value: Decimal, unit: Decimal) -> bool:
    with localcontext() as ctx:
        ctx.prec = 100
        return value % unit == 0


@dataclass
class SymbolSpec:
    """One symbol of GET /api/v3/exchangeInfo, as the venue applies it (filters by filterType)."""

    symbol: str
    base: str
    quote: str
    status: str
    order_types: frozenset[str]
    cancel_replace_allowed: bool
    default_stp: StpMode
    allowed_stp: frozenset[StpMode]
    filters: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> "SymbolSpec":
        return cls(
            symbol=info["symbol"], base=info["baseAsset"], quote=info["quoteAsset"],
            status=info.get("status", "TRADING"),
            order_types=frozenset(info["orderTypes"]) if "orderTypes" in info else frozenset(t.value for t in OrderType),
            cancel_replace_allowed=bool(info.get("cancelReplaceAllowed", False)),
            default_stp=StpMode(info.get("defaultSelfTradePreventionMode", "NONE")),
            allowed_stp=frozenset(StpMode(m) for m in info.get("allowedSelfTradePreventionModes", [])),
            filters={f["filterType"]: f for f in info.get("filters", [])},
        )

    def f(self, name: str) -> dict[str, Any] | None:
        return self.filters.get(name)

    @property
    def tick(self) -> Decimal:
        pf = self.f("PRICE_FILTER")
        return _d(pf["tickSize"]) if pf else ZERO

    # the names tests and benches read (tgtrader's SymbolRules spells them so)
    @property
    def tick_size(self) -> Decimal:
        return self.tick

    @property
    def step_size(self) -> Decimal:
        lot = self.f("LOT_SIZE")
        return _d(lot["stepSize"]) if lot else ZERO

    @property
    def min_notional(self) -> Decimal:
        flt = self.f("NOTIONAL") or self.f("MIN_NOTIONAL")
        return _d(flt.get("minNotional")) if flt else ZERO

    @property
    def base_asset(self) -> str:
        return self.base

    @property
    def quote_asset(self) -> str:
        return self.quote

    def avg_price_mins(self) -> int:
        """The window of the "average of previous trade prices" (PERCENT_PRICE_BY_SIDE / NOTIONAL avgPriceMins)."""
        for name in ("PERCENT_PRICE_BY_SIDE", "PERCENT_PRICE", "NOTIONAL", "MIN_NOTIONAL"):
            flt = self.f(name)
            if flt and "avgPriceMins" in flt:
                return int(flt["avgPriceMins"])
        return 5


def _fail(name: str) -> E.VenueError:
    return E.VenueError(E.INVALID_MESSAGE, E.filter_failure(name))


def price_filter(spec: SymbolSpec, px: Decimal) -> None:
    """filters.md, PRICE_FILTER: "In order to pass the price filter, the following must be true for
    price/stopPrice of the enabled rules: price >= minPrice; price <= maxPrice; price % tickSize == 0"
    ("Any of the above variables can be set to 0, which disables that rule")."""
    flt = spec.f("PRICE_FILTER")
    if flt is None:
        return
    lo, hi, tick = _d(flt.get("minPrice")), _d(flt.get("maxPrice")), _d(flt.get("tickSize"))
    if (lo > 0 and px < lo) or (hi > 0 and px > hi) or (tick > 0 and not _multiple(px, tick)):
        raise _fail("PRICE_FILTER")


def percent_price_by_side(spec: SymbolSpec, side: Side, px: Decimal, avg: Decimal | None) -> None:
    """filters.md, PERCENT_PRICE_BY_SIDE: "A BUY order will pass this filter evaluation if: price <= average of
    previous trade prices * bidMultiplierUp; price >= average of previous trade prices * bidMultiplierDown"
    (SELL: askMultiplierUp / askMultiplierDown). The average is "the volume weighted average price over the
    preceding avgPriceMins minutes" ("If avgPriceMins is 0, then the last price is used"); the caller passes it.
    The pre-2023 PERCENT_PRICE has one band (multiplierUp / multiplierDown) for both sides."""
    if avg is None or avg <= 0:
        return
    flt = spec.f("PERCENT_PRICE_BY_SIDE")
    if flt is not None:
        up = _d(flt["bidMultiplierUp"] if side is Side.BUY else flt["askMultiplierUp"])
        down = _d(flt["bidMultiplierDown"] if side is Side.BUY else flt["askMultiplierDown"])
        if px > avg * up or px < avg * down:
            raise _fail("PERCENT_PRICE_BY_SIDE")
    old = spec.f("PERCENT_PRICE")
    if old is not None and (px > avg * _d(old["multiplierUp"]) or px < avg * _d(old["multiplierDown"])):
        raise _fail("PERCENT_PRICE")


def lot_size(spec: SymbolSpec, qty: Decimal, market: bool) -> None:
    """filters.md, LOT_SIZE: "quantity >= minQty; quantity <= maxQty; quantity % stepSize == 0".
    MARKET_LOT_SIZE: the same three rules "for MARKET orders on a symbol" (both filters apply to a MARKET order;
    a zero field of MARKET_LOT_SIZE, as in the live BTCUSDT entry, disables that rule)."""
    names = ("LOT_SIZE", "MARKET_LOT_SIZE") if market else ("LOT_SIZE",)
    for name in names:
        flt = spec.f(name)
        if flt is None:
            continue
        lo, hi, step = _d(flt.get("minQty")), _d(flt.get("maxQty")), _d(flt.get("stepSize"))
        if (lo > 0 and qty < lo) or (hi > 0 and qty > hi) or (step > 0 and not _multiple(qty, step)):
            raise _fail(name)


def notional(spec: SymbolSpec, qty: Decimal, price: Decimal | None, avg: Decimal | None) -> None:
    """filters.md, NOTIONAL: "price * quantity <= maxNotional; price * quantity >= minNotional";
    "applyMinToMarket determines whether minNotional will be applied to MARKET orders", likewise
    applyMaxToMarket; "Since MARKET orders have no price, an average of previous trade prices is used instead."
    MIN_NOTIONAL (pre-2023): "price * quantity >= minNotional", "applyToMarket" for MARKET orders.
    `price` None means a MARKET order; `avg` is the average price."""
    market = price is None
    px = avg if market else price
    if px is None:
        return
    value = px * qty
    flt = spec.f("NOTIONAL")
    if flt is not None:
        lo, hi = _d(flt.get("minNotional")), _d(flt.get("maxNotional"))
        if (not market or flt.get("applyMinToMarket", True)) and lo > 0 and value < lo:
            raise _fail("NOTIONAL")
        if (not market or flt.get("applyMaxToMarket", False)) and hi > 0 and value > hi:
            raise _fail("NOTIONAL")
    old = spec.f("MIN_NOTIONAL")
    if old is not None and (not market or old.get("applyToMarket", True)) and value < _d(old.get("minNotional")):
        raise _fail("MIN_NOTIONAL")


def max_num_orders(spec: SymbolSpec, open_orders: int, open_algo: int, order_type: OrderType) -> None:
    """filters.md, MAX_NUM_ORDERS: "the maximum number of orders an account is allowed to have open on a symbol.
    Note that both "algo" orders and normal orders are counted for this filter."
    MAX_NUM_ALGO_ORDERS: "the maximum number of "algo" orders an account is allowed to have open on a symbol.
    "Algo" orders are STOP_LOSS, STOP_LOSS_LIMIT, TAKE_PROFIT, and TAKE_PROFIT_LIMIT orders." """
    flt = spec.f("MAX_NUM_ORDERS")
    if flt is not None and open_orders + 1 > int(flt["maxNumOrders"]):
        raise _fail("MAX_NUM_ORDERS")
    algo = spec.f("MAX_NUM_ALGO_ORDERS")
    if algo is not None and order_type.is_algo and open_algo + 1 > int(algo["maxNumAlgoOrders"]):
        raise _fail("MAX_NUM_ALGO_ORDERS")


def max_position(spec: SymbolSpec, side: Side, qty: Decimal, position: Decimal) -> None:
    """filters.md, MAX_POSITION: "An account's position defined as the sum of the account's: free balance of the
    base asset, locked balance of the base asset, sum of the qty of all open BUY orders. BUY orders will be
    rejected if the account's position is greater than the maximum position allowed. If an order's quantity
    can cause the position to overflow, this will also fail the MAX_POSITION filter." """
    flt = spec.f("MAX_POSITION")
    if flt is not None and side is Side.BUY and position + qty > _d(flt["maxPosition"]):
        raise _fail("MAX_POSITION")


def exchange_max_num_orders(exchange_filters: list[dict[str, Any]], open_total: int, open_algo_total: int,
                            order_type: OrderType) -> None:
    """filters.md, "Exchange Filters": EXCHANGE_MAX_NUM_ORDERS "the maximum number of orders an account is
    allowed to have open on the exchange"; EXCHANGE_MAX_NUM_ALGO_ORDERS likewise for "algo" orders."""
    for flt in exchange_filters:
        kind = flt.get("filterType")
        if kind == "EXCHANGE_MAX_NUM_ORDERS" and open_total + 1 > int(flt["maxNumOrders"]):
            raise _fail("EXCHANGE_MAX_NUM_ORDERS")
        if kind == "EXCHANGE_MAX_NUM_ALGO_ORDERS" and order_type.is_algo and \
                open_algo_total + 1 > int(flt["maxNumAlgoOrders"]):
            raise _fail("EXCHANGE_MAX_NUM_ALGO_ORDERS")


def order_type_allowed(spec: SymbolSpec, order_type: OrderType) -> None:
    """exchangeInfo "orderTypes" lists what a symbol accepts; errors.md gives the -2010 texts, e.g. "Market orders
    are not supported for this symbol." (MARKET) and "Stop loss limit orders are not supported for this symbol."."""
    if order_type.value in spec.order_types:
        return
    text = {
        OrderType.MARKET: E.MSG_MARKET_NOT_SUPPORTED,
        OrderType.STOP_LOSS_LIMIT: E.MSG_STOP_LIMIT_NOT_SUPPORTED,
        OrderType.STOP_LOSS: "Stop loss orders are not supported for this symbol.",
        OrderType.TAKE_PROFIT: "Take profit orders are not supported for this symbol.",
        OrderType.TAKE_PROFIT_LIMIT: "Take profit limit orders are not supported for this symbol.",
    }.get(order_type, E.MSG_UNSUPPORTED_COMBINATION)
    raise E.VenueError(E.NEW_ORDER_REJECTED, text)


def stp_mode(spec: SymbolSpec, requested: str | None) -> StpMode:
    """faqs/stp_faq.md: "defaultSelfTradePreventionMode - Orders will use this STP mode if the user does not
    provide one on order placement. allowedSelfTradePreventionModes - Defines the allowed set of STP modes";
    another mode answers {"code": -1013, "msg": "This symbol does not allow the specified self-trade prevention
    mode."}."""
    if requested is None or requested == "":
        return spec.default_stp
    try:
        mode = StpMode(requested)
    except ValueError:
        raise E.VenueError(E.INVALID_PARAMETER, "Invalid data sent for a parameter.") from None
    if mode is not spec.default_stp and mode not in spec.allowed_stp:
        raise E.VenueError(E.INVALID_MESSAGE, E.MSG_STP_MODE_NOT_ALLOWED)
    return mode
