"""Binance error answers -> typed errors, by code and errors.md message family (issue 14 item 8).

Every (code, msg) pair below is copied from errors.md; the core acts on `reason` only."""

from __future__ import annotations

import json

import pytest
from binance.exceptions import BinanceAPIException

from tgtrader.errors import ExchangeUnavailable, IpBanned, RateLimited
from tgtrader.exchange.binance.errmap import DuplicateOrder, map_api_error
from tgtrader.types import RejectReason

WOULD_TRIGGER = getattr(RejectReason, "WOULD_TRIGGER", RejectReason.FILTER)  # the core may type it finer

CASES = [
    (-1013, "Filter failure: PRICE_FILTER", RejectReason.FILTER),
    (-1013, "Filter failure: PERCENT_PRICE_BY_SIDE", RejectReason.FILTER),
    (-1013, "Filter failure: MAX_NUM_ALGO_ORDERS", RejectReason.FILTER),
    (-1013, "Filter failure: MAX_POSITION", RejectReason.FILTER),
    (-1013, "This symbol does not allow the specified self-trade prevention mode.", RejectReason.FILTER),
    (-2010, "Order would immediately match and take.", RejectReason.WOULD_MATCH),
    (-2010, "Account has insufficient balance for requested action.", RejectReason.INSUFFICIENT_BALANCE),
    (-2010, "Order would trigger immediately.", WOULD_TRIGGER),
    (-2010, "Market is closed.", RejectReason.FILTER),
    (-2010, "Market orders are not supported for this symbol.", RejectReason.FILTER),
    (-2010, "Stop loss limit orders are not supported for this symbol.", RejectReason.FILTER),
    (-2010, "Order cancel-replace is not supported for this symbol.", RejectReason.FILTER),
    (-2010, "Price * QTY is zero or less.", RejectReason.FILTER),
    (-2010, "This account may not place or cancel orders.", RejectReason.OTHER),
    (-2011, "Unknown order sent.", RejectReason.UNKNOWN_ORDER),
    (-2011, "Order was not canceled due to cancel restrictions.", RejectReason.OTHER),
    (-2013, "Order does not exist.", RejectReason.UNKNOWN_ORDER),
    (-1121, "Invalid symbol.", RejectReason.FILTER),
]


def api_error(status: int, code: int, msg: str) -> BinanceAPIException:
    return BinanceAPIException(None, status, json.dumps({"code": code, "msg": msg}))


@pytest.mark.parametrize(("code", "msg", "reason"), CASES, ids=[f"{c}:{m[:30]}" for c, m, _ in CASES])
def test_code_and_message_family_decide_the_reason(code: int, msg: str, reason: RejectReason) -> None:
    err = map_api_error(api_error(400, code, msg), "place an order")
    assert err.reason is reason
    assert err.code == code or code == -1121


def test_duplicate_order_is_its_own_type() -> None:
    """errors.md: "Duplicate order sent." - "The clOrdId is already in use." The adapter adopts the live order."""
    assert isinstance(map_api_error(api_error(400, -2010, "Duplicate order sent."), "place"), DuplicateOrder)


def test_http_status_first() -> None:
    assert isinstance(map_api_error(api_error(418, -1003, "Way too much request weight used; IP banned until 1."), "x"),
                      IpBanned)
    assert isinstance(map_api_error(api_error(429, -1003, "Too much request weight used"), "x"), RateLimited)
    assert isinstance(map_api_error(api_error(503, -1001, "Internal error; unable to process your request. "
                                                          "Please try again."), "x"), ExchangeUnavailable)
