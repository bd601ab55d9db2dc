"""The doc-written venue on its own: each case is a sentence of Binance's documents (quoted) and what the venue
does with it. No tgtrader import here either: these pin the fake, not the adapter."""

from __future__ import annotations

import copy
from decimal import Decimal as D
from typing import Any

import pytest

from tests.fakes.binance import Status, Venue, VenueError
from tests.fakes.binance import errors as E

ACC = "a"
NOW = [1_700_000_000_000]

BTCUSDT: dict[str, Any] = {
    "symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT",
    "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
    "cancelReplaceAllowed": True,
    "filters": [
        {"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "1000000", "tickSize": "0.01"},
        {"filterType": "LOT_SIZE", "minQty": "0.00001", "maxQty": "9000", "stepSize": "0.00001"},
        {"filterType": "MARKET_LOT_SIZE", "minQty": "0", "maxQty": "100", "stepSize": "0"},
        {"filterType": "PERCENT_PRICE_BY_SIDE", "bidMultiplierUp": "5", "bidMultiplierDown": "0.2",
         "askMultiplierUp": "5", "askMultiplierDown": "0.2", "avgPriceMins": 5},
        {"filterType": "NOTIONAL", "minNotional": "5", "applyMinToMarket": True, "maxNotional": "9000000",
         "applyMaxToMarket": False, "avgPriceMins": 5},
        {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 4},
        {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 2},
        {"filterType": "MAX_POSITION", "maxPosition": "3"},
    ],
    "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
    "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
}


def venue(**changes: Any) -> Venue:
    info = copy.deepcopy(BTCUSDT)
    info.update(changes)
    v = Venue([info], lambda: NOW[0])
    v.set_balance(ACC, "USDT", D("100000"))
    v.set_balance(ACC, "BTC", D("1"))
    v.on_trade("BTCUSDT", D("50000"))
    v.drain()
    return v


def order(side: str, qty: str, price: str | None = None, type_: str = "LIMIT", **extra: str) -> dict[str, str]:
    p = {"symbol": "BTCUSDT", "side": side, "type": type_, "quantity": qty}
    if price is not None:
        p["price"] = price
    if type_ in ("LIMIT", "STOP_LOSS_LIMIT") and "timeInForce" not in extra:
        p["timeInForce"] = "GTC"
    p.update(extra)
    return p


def refused(v: Venue, p: dict[str, str], cid: str = "x") -> tuple[int, str]:
    with pytest.raises(VenueError) as ei:
        v.place(ACC, p, cid)
    return ei.value.code, ei.value.msg


# ---------------------------------------------------------------- filters.md


@pytest.mark.parametrize(("p", "name"), [
    (order("BUY", "0.001", "49000.005"), "PRICE_FILTER"),
    (order("BUY", "0.0010005", "49000"), "LOT_SIZE"),
    (order("BUY", "0.0001", "49000"), "NOTIONAL"),
    (order("BUY", "0.00009", type_="MARKET"), "NOTIONAL"),  # applyMinToMarket, at the average price
    (order("BUY", "101", type_="MARKET"), "MARKET_LOT_SIZE"),
    (order("BUY", "0.001", "9999"), "PERCENT_PRICE_BY_SIDE"),  # below 0.2 x average
    (order("SELL", "0.001", "250001"), "PERCENT_PRICE_BY_SIDE"),  # above 5 x average
    (order("BUY", "3", "40000"), "MAX_POSITION"),  # 1 BTC held + 3 > maxPosition 3
])
def test_filter_failures_use_errors_md_text(p: dict[str, str], name: str) -> None:
    assert refused(venue(), p) == (-1013, f"Filter failure: {name}")


def test_percent_price_by_side_uses_the_average_price_not_the_order_price() -> None:
    """filters.md: the band is around "the volume weighted average price over the preceding avgPriceMins minutes"."""
    v = venue()
    NOW[0] += 6 * 60_000  # the 50000 trade leaves the 5-minute window ...
    v.on_trade("BTCUSDT", D("20000"))  # ... and the market moves: the average is now 20000
    assert v.avg_price("BTCUSDT") == D("20000")
    assert refused(v, order("SELL", "0.001", "100001")) == (-1013, "Filter failure: PERCENT_PRICE_BY_SIDE")
    v.place(ACC, order("SELL", "0.001", "99999"), "ok")
    v.set_avg_price("BTCUSDT", "50000")
    v.place(ACC, order("SELL", "0.001", "249999"), "ok2")


def test_max_num_orders_and_algo_orders_count_open_orders_only() -> None:
    """filters.md MAX_NUM_ORDERS: "both "algo" orders and normal orders are counted"; MAX_NUM_ALGO_ORDERS:
    STOP_LOSS, STOP_LOSS_LIMIT, TAKE_PROFIT, TAKE_PROFIT_LIMIT."""
    v = venue()
    for i in range(2):
        v.place(ACC, order("SELL", "0.001", "40000", "STOP_LOSS_LIMIT", stopPrice="40100"), f"s{i}")
    assert refused(v, order("SELL", "0.001", "40000", "STOP_LOSS_LIMIT", stopPrice="40100")) == (
        -1013, "Filter failure: MAX_NUM_ALGO_ORDERS")
    v.place(ACC, order("BUY", "0.001", "49000"), "b1")
    v.place(ACC, order("BUY", "0.001", "49000"), "b2")
    assert refused(v, order("BUY", "0.001", "49000")) == (-1013, "Filter failure: MAX_NUM_ORDERS")
    v.cancel(ACC, "BTCUSDT", "c", client_order_id="b1")
    v.place(ACC, order("BUY", "0.001", "49000"), "b3")


# ---------------------------------------------------------------- errors.md, matching engine messages


def test_matching_engine_refusals_are_errors_md_texts() -> None:
    v = venue()
    assert refused(v, order("BUY", "0.001", "50000", "LIMIT_MAKER")) == (-2010, "Order would immediately match and take.")
    assert refused(v, order("SELL", "0.001", "49000", "STOP_LOSS_LIMIT", stopPrice="50001")) == (
        -2010, "Order would trigger immediately.")
    assert refused(v, order("SELL", "2", "51000")) == (-2010, "Account has insufficient balance for requested action.")
    assert refused(venue(status="BREAK"), order("BUY", "0.001", "49000")) == (-2010, "Market is closed.")
    assert refused(venue(orderTypes=["LIMIT"]), order("BUY", "0.001", type_="MARKET")) == (
        -2010, "Market orders are not supported for this symbol.")
    with pytest.raises(VenueError) as ei:
        v.cancel(ACC, "BTCUSDT", "c", client_order_id="nope")
    assert (ei.value.code, ei.value.msg) == (-2011, "Unknown order sent.")
    assert refused(v, {**order("BUY", "0.001", "49000"), "symbol": "NOPE"}) == (-1121, "Invalid symbol.")
    assert refused(v, order("BUY", "0.001", "49000", timeInForce="GTX")) == (-1115, "Invalid timeInForce.")
    assert refused(v, order("BUY", "0.001", "49000", selfTradePreventionMode="DECREMENT")) == (
        -1013, "This symbol does not allow the specified self-trade prevention mode.")


def test_client_order_id_is_unique_among_open_orders_only() -> None:
    """errors.md "Duplicate order sent." - "The clOrdId is already in use."; a finished order frees it."""
    v = venue()
    v.place(ACC, order("BUY", "0.001", "49000"), "dup")
    assert refused(v, order("BUY", "0.001", "49000"), "dup") == (-2010, "Duplicate order sent.")
    v.place(ACC, order("BUY", "0.001", type_="MARKET"), "mkt")
    v.place(ACC, order("BUY", "0.001", type_="MARKET"), "mkt")  # the first one is FILLED: the id is free
    assert len([o for o in v.all_orders(ACC) if o.client_order_id == "mkt"]) == 2


def test_cancel_replace_not_allowed() -> None:
    v = venue(cancelReplaceAllowed=False)
    v.place(ACC, order("BUY", "0.001", "49000"), "a")
    with pytest.raises(VenueError) as ei:
        v.cancel_replace(ACC, {**order("BUY", "0.001", "48000"), "cancelOrigClientOrderId": "a"}, "b", "c")
    assert (ei.value.code, ei.value.msg) == (-2010, E.MSG_CANCEL_REPLACE_NOT_SUPPORTED)
    assert v.find(ACC, "BTCUSDT", "a").status is Status.NEW  # type: ignore[union-attr]


# ---------------------------------------------------------------- depth, market orders


def test_market_order_fills_to_the_available_liquidity_and_expires_the_rest() -> None:
    """faqs/market_orders_faq.md: "partially filled to the extent of available liquidity, and the remaining quantity
    will expire" with status EXPIRED and execution type EXPIRED."""
    v = venue()
    v.set_liquidity("BTCUSDT", asks=[("50000", "0.001"), ("50010", "0.002")])
    o, fills = v.place(ACC, order("BUY", "0.005", type_="MARKET"), "m")
    assert (o.status, o.executed_qty, [f.qty for f in fills]) == (Status.EXPIRED, D("0.003"), [D("0.001"), D("0.002")])
    reports = [e for _, e in v.drain() if e["e"] == "executionReport"]
    assert [(r["x"], r["X"]) for r in reports][-1] == ("EXPIRED", "EXPIRED")
    assert v.balances(ACC)["USDT"].locked == 0


def test_ioc_expires_fok_kills() -> None:
    v = venue()
    v.set_liquidity("BTCUSDT", asks=[("50000", "0.001")])
    ioc, _ = v.place(ACC, order("BUY", "0.002", "50000", timeInForce="IOC"), "ioc")
    assert (ioc.status, ioc.executed_qty) == (Status.EXPIRED, D("0.001"))
    v.set_liquidity("BTCUSDT", asks=[("50000", "0.001")])
    fok, fills = v.place(ACC, order("BUY", "0.002", "50000", timeInForce="FOK"), "fok")
    assert (fok.status, fok.executed_qty, fills) == (Status.EXPIRED, 0, [])


# ---------------------------------------------------------------- faqs/stp_faq.md


@pytest.mark.parametrize(("mode", "taker_status", "maker_status"), [
    ("EXPIRE_TAKER", Status.EXPIRED_IN_MATCH, Status.NEW),
    ("EXPIRE_MAKER", Status.EXPIRED, Status.EXPIRED_IN_MATCH),  # maker expired, then no liquidity: EXPIRED
    ("EXPIRE_BOTH", Status.EXPIRED_IN_MATCH, Status.EXPIRED_IN_MATCH),
])
def test_self_trade_prevention_modes(mode: str, taker_status: Status, maker_status: Status) -> None:
    v = venue()
    v.place(ACC, order("SELL", "0.002", "50100"), "maker")
    v.set_liquidity("BTCUSDT", asks=[])
    taker, fills = v.place(ACC, order("BUY", "0.002", type_="MARKET", selfTradePreventionMode=mode), "taker")
    maker = v.find(ACC, "BTCUSDT", "maker")
    assert maker is not None and fills == [] and v.my_trades(ACC, "BTCUSDT") == []
    assert (taker.status, maker.status) == (taker_status, maker_status)
    expired = [o for o in (taker, maker) if o.status is Status.EXPIRED_IN_MATCH]
    assert all(o.prevented_qty == D("0.002") and o.prevented_match_id is not None for o in expired)
    assert all("preventedQuantity" in o.rest() for o in expired)
    assert taker.ack([], 0)["preventedMatches"][0]["makerOrderId"] == maker.order_id
    reports = [e for _, e in v.drain() if e["e"] == "executionReport" and e["x"] == "TRADE_PREVENTION"]
    assert reports and all(r["X"] == "EXPIRED_IN_MATCH" and "v" in r for r in reports)


def test_symbol_default_stp_mode_applies_when_none_is_sent() -> None:
    v = venue()  # defaultSelfTradePreventionMode EXPIRE_MAKER
    v.place(ACC, order("SELL", "0.002", "50100"), "maker")
    v.set_liquidity("BTCUSDT", asks=[])
    taker, _ = v.place(ACC, order("BUY", "0.002", type_="MARKET"), "taker")
    assert taker.stp_mode.value == "EXPIRE_MAKER"
    assert v.find(ACC, "BTCUSDT", "maker").status is Status.EXPIRED_IN_MATCH  # type: ignore[union-attr]


# ---------------------------------------------------------------- faqs/commission_faq.md


@pytest.mark.parametrize(("commission", "bnb", "buy_fee", "sell_fee"), [
    ("received", False, (D("0.00001"), "BTC"), (D("0.5"), "USDT")),  # buy pays in what it receives: base
    ("quote", False, (D("0.5"), "USDT"), (D("0.5"), "USDT")),
    ("received", True, (D("0.00075"), "BNB"), (D("0.00075"), "BNB")),  # 0.5 USDT x 0.75 / 500 USDT per BNB
])
def test_commission_assets(commission: str, bnb: bool, buy_fee: tuple[D, str], sell_fee: tuple[D, str]) -> None:
    v = venue()
    v.commission, v.bnb_fees, v.bnb_price["USDT"] = commission, bnb, D("500")
    v.set_balance(ACC, "BNB", D("1"))
    _, buys = v.place(ACC, order("BUY", "0.01", type_="MARKET"), "b")
    _, sells = v.place(ACC, order("SELL", "0.01", type_="MARKET"), "s")
    assert [(t.commission, t.commission_asset) for t in buys] == [buy_fee]
    assert [(t.commission, t.commission_asset) for t in sells] == [sell_fee]
    bal = v.balances(ACC)
    fee_in = {a: sum((t.commission for t in buys + sells if t.commission_asset == a), D(0)) for a in ("BTC", "USDT", "BNB")}
    assert bal["BTC"].free == D("1") - fee_in["BTC"]
    assert bal["USDT"].free == D("100000") - fee_in["USDT"]
    assert bal["BNB"].free == D("1") - fee_in["BNB"]


def test_the_venue_imports_nothing_from_tgtrader() -> None:
    """Written from Binance's documents only: if it imported the adapter's rules or matching, the two would agree
    by construction (issue 14)."""
    import ast
    from pathlib import Path

    for path in Path(__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n == "tgtrader" or n.startswith("tgtrader.") for n in names), (path.name, names)
