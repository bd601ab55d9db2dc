"""The parameters of a new order (rest-api.md, "New order (TRADE)"), checked the way the API checks a request
before the matching engine sees it: 11xx codes of errors.md."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from tests.fakes.binance import errors as E
from tests.fakes.binance.orders import OrderType, Side


@dataclass(frozen=True)
class NewOrder:
    symbol: str
    side: Side
    type: OrderType
    qty: Decimal
    price: Decimal | None
    stop: Decimal | None
    tif: str | None
    stp: str | None


def _dec(p: dict[str, str], name: str, required: bool) -> Decimal | None:
    raw = p.get(name)
    if raw is None or raw == "":
        if required:
            raise E.VenueError(E.MANDATORY_PARAM_EMPTY_OR_MALFORMED, E.mandatory(name))
        return None
    try:
        d = Decimal(raw)
    except (InvalidOperation, ValueError):
        raise E.VenueError(E.MANDATORY_PARAM_EMPTY_OR_MALFORMED, E.mandatory(name)) from None
    if not d.is_finite():
        raise E.VenueError(E.MANDATORY_PARAM_EMPTY_OR_MALFORMED, E.mandatory(name))
    return d


def parse_new_order(p: dict[str, str]) -> NewOrder:
    """rest-api.md "New order": quantity always; price for LIMIT-like types; stopPrice for stop / take-profit
    types; timeInForce for LIMIT, STOP_LOSS_LIMIT, TAKE_PROFIT_LIMIT (errors.md -1102, -1115, -1116, -1117, -1106,
    -1114 "TimeInForce parameter sent when not required.")."""
    sym = p.get("symbol") or ""
    if not sym:
        raise E.VenueError(E.MANDATORY_PARAM_EMPTY_OR_MALFORMED, E.mandatory("symbol"))
    try:
        side = Side(p.get("side", ""))
    except ValueError:
        raise E.VenueError(E.INVALID_SIDE, E.MSG_INVALID_SIDE) from None
    try:
        otype = OrderType(p.get("type", ""))
    except ValueError:
        raise E.VenueError(E.INVALID_ORDER_TYPE, E.MSG_INVALID_ORDER_TYPE) from None
    qty = _dec(p, "quantity", True)
    assert qty is not None
    needs_price = otype not in (OrderType.MARKET, OrderType.STOP_LOSS, OrderType.TAKE_PROFIT)
    price = _dec(p, "price", needs_price)
    if not needs_price and price is not None:
        raise E.VenueError(E.PARAM_NOT_REQUIRED, E.not_required("price"))
    stop = _dec(p, "stopPrice", otype.is_algo)
    tif = p.get("timeInForce") or None
    if otype in (OrderType.LIMIT, OrderType.STOP_LOSS_LIMIT, OrderType.TAKE_PROFIT_LIMIT):
        if not tif:
            raise E.VenueError(E.MANDATORY_PARAM_EMPTY_OR_MALFORMED, E.mandatory("timeInForce"))
        if tif not in ("GTC", "IOC", "FOK"):
            raise E.VenueError(E.INVALID_TIF, E.MSG_INVALID_TIF)
    elif tif:
        raise E.VenueError(-1114, "TimeInForce parameter sent when not required.")
    return NewOrder(sym, side, otype, qty, price, stop, tif, p.get("selfTradePreventionMode") or None)
