"""Binance's checks of a new order, in Binance's order, with Binance's error codes.

`check_placement` runs before the engine looks at its own orders (duplicates, MAX_NUM_ORDERS);
`check_stop_trigger` after them, for a STOP_LOSS_LIMIT only.
"""

from __future__ import annotations

from decimal import Decimal

from tgtrader.errors import ExchangeError, FilterRejected, WouldTrigger
from tgtrader.exchange.matching.book import _Book
from tgtrader.exchange.matching.orders import MSG_NO_PRICE, MSG_STOP_IMMEDIATE
from tgtrader.types import OrderType, Side


def check_placement(
    book: _Book,
    side: Side,
    order_type: OrderType,
    qty: Decimal,
    price: Decimal | None,
    stop_price: Decimal | None,
    time_in_force: str | None,
) -> tuple[Decimal | None, Decimal | None, str, Decimal | None]:
    """Validate the parameters and the symbol filters; returns (price, stop_price, tif, reference price) as used.

    A MARKET order drops its price and anything but a STOP_LOSS_LIMIT drops its stop price; the reference
    is what a MARKET order takes at (ask/bid, else last), else the stand-in for Binance's average price.
    """
    rules = book.rules
    tif = (time_in_force or "GTC").upper()
    if order_type is OrderType.LIMIT_MAKER:
        tif = "GTC"
    if order_type is not OrderType.MARKET and price is None:
        raise ExchangeError("Mandatory parameter 'price' was not sent, was empty/null, or malformed.", -1102)
    if order_type is OrderType.STOP_LOSS_LIMIT and stop_price is None:
        raise ExchangeError("Mandatory parameter 'stopPrice' was not sent, was empty/null, or malformed.", -1102)
    if order_type is OrderType.MARKET:
        price = None
    if order_type is not OrderType.STOP_LOSS_LIMIT:
        stop_price = None
    if tif not in ("GTC", "IOC", "FOK"):
        raise ExchangeError("Invalid timeInForce.", -1115)
    ref = book.reference()
    if order_type is OrderType.MARKET:
        ref = book.ref_buy() if side is Side.BUY else book.ref_sell()
        if ref is None:
            raise ExchangeError(MSG_NO_PRICE, -2010)
    problems = rules.check_order(side, order_type, qty, price, ref, stop_price)
    if problems:
        first = problems[0]
        if first.filter == "STATUS":
            raise ExchangeError("Market is closed.", -1013)
        if first.filter == "ORDER_TYPE":
            raise ExchangeError("Order type not supported for this symbol.", -1116)
        raise FilterRejected(f"Filter failure: {first.filter}", -1013)
    return price, stop_price, tif, ref


def check_stop_trigger(book: _Book, side: Side, stop_price: Decimal) -> None:
    """Refuse a stop that would trigger at once (-2010), as Binance does."""
    # what on_trade / on_book would trigger on: last trade, else the touch side of the book
    now = book.last if book.last is not None else (book.bid if side is Side.SELL else book.ask)
    if now is not None and (
        (side is Side.SELL and now <= stop_price) or (side is Side.BUY and now >= stop_price)
    ):
        raise WouldTrigger(MSG_STOP_IMMEDIATE, -2010)
