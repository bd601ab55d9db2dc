"""MatchingEngine semantics: touch fills at the limit price in path order, Binance rejections, stops, replace."""

from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path

import pytest

from tgtrader.core.ports import BalanceUpdate
from tgtrader.core.rules import SymbolRules
from tgtrader.errors import BadSymbol, ExchangeError, FilterRejected, InsufficientBalance, UnknownOrder, WouldMatch
from tgtrader.exchange.binance.rules import rules_from_exchange_info
from tgtrader.exchange.matching import EngineEvent, MatchingEngine
from tgtrader.types import Fill, OrderStatus, OrderType, OrderUpdate, Side

SUBSET = Path(__file__).resolve().parents[1] / "data" / "exchangeInfo_spot_subset_2021-10-12.json"
BUNDLED = Path(__file__).resolve().parents[2] / "tgtrader" / "data" / "exchange_info.json"
A = "acct"
B, S = Side.BUY, Side.SELL
LIM, LM, MKT, STOP = OrderType.LIMIT, OrderType.LIMIT_MAKER, OrderType.MARKET, OrderType.STOP_LOSS_LIMIT


def real_rules() -> dict[str, SymbolRules]:
    path = BUNDLED if BUNDLED.exists() else SUBSET
    return rules_from_exchange_info(json.loads(path.read_text()))


def simple_rules() -> SymbolRules:
    """A clean symbol for arithmetic: tick 0.01, step 0.001, min notional 1 quote."""
    return SymbolRules(
        symbol="BTCUSDT", base_asset="BTC", quote_asset="USDT", tick_size=D("0.01"), min_price=D("0.01"),
        step_size=D("0.001"), min_qty=D("0.001"), min_notional=D("1"),
    )


@pytest.fixture
def eng() -> MatchingEngine:
    # these cases pin the matching and the quote-fee arithmetic; the fee assets are tested in test_matching_fees.py
    e = MatchingEngine([simple_rules()], fee_asset="quote")
    e.set_balance(A, "USDT", D(100000))
    e.set_balance(A, "BTC", D(10))
    e.on_trade("BTCUSDT", D(100), 1)
    e.drain()
    return e


def fills(events: list[EngineEvent]) -> list[Fill]:
    return [e.event for e in events if isinstance(e.event, Fill)]


def place(e: MatchingEngine, cid: str, side: Side, price: str | None, qty: str = "1", t: OrderType = LIM, **kw):
    return e.place_order(A, "BTCUSDT", cid, side, t, D(qty), None if price is None else D(price), **kw)


# ---------------------------------------------------------------- touch fills and path order


def test_falling_tick_fills_buys_at_their_limit_highest_first(eng: MatchingEngine) -> None:
    place(eng, "b95", B, "95")
    place(eng, "b99", B, "99")
    place(eng, "b90", B, "90")
    place(eng, "s101", S, "101")
    eng.drain()
    assert eng.on_trade("BTCUSDT", D("94.5"), 2) == 2
    fs = fills(eng.drain())
    assert [(f.client_order_id, f.price, f.is_maker) for f in fs] == [("b99", D(99), True), ("b95", D(95), True)]
    assert [f.trade_id for f in fs] == [1, 2]
    assert fs[0].fee == D("0.099") and fs[0].fee_asset == "USDT"
    assert [o.client_order_id for o in eng.open_orders(A)] == ["b90", "s101"]


def test_touch_exactly_at_limit_fills(eng: MatchingEngine) -> None:
    place(eng, "b", B, "95")
    place(eng, "s", S, "105")
    assert eng.on_trade("BTCUSDT", D("95.01"), 2) == 0
    assert eng.on_trade("BTCUSDT", D(95), 3) == 1
    assert eng.on_trade("BTCUSDT", D(105), 4) == 1
    assert eng.open_orders(A) == []


def test_rising_tick_fills_sells_lowest_first_and_events_order(eng: MatchingEngine) -> None:
    place(eng, "s110", S, "110")
    place(eng, "s102", S, "102")
    eng.drain()
    eng.on_trade("BTCUSDT", D(120), 5)
    ev = [e.event for e in eng.drain()]
    kinds = [type(x).__name__ for x in ev]
    assert kinds == ["Fill", "OrderUpdate", "BalanceUpdate"] * 2
    assert [x.client_order_id for x in ev if isinstance(x, Fill)] == ["s102", "s110"]
    upd = ev[1]
    assert isinstance(upd, OrderUpdate) and upd.status is OrderStatus.FILLED and upd.cum_quote == D(102)
    bal = eng.balance(A, "USDT")
    assert bal.free == D(100000) + D(102) + D(110) - D("0.212")
    assert eng.balance(A, "BTC") == eng.balances(A)["BTC"] and eng.balance(A, "BTC").total == D(8)


def test_fifo_within_a_level_and_trade_ids_increase(eng: MatchingEngine) -> None:
    for i in range(3):
        place(eng, f"b{i}", B, "90")
    eng.on_trade("BTCUSDT", D(80), 2)
    fs = fills(eng.drain())
    assert [f.client_order_id for f in fs] == ["b0", "b1", "b2"]
    assert [f.trade_id for f in eng.my_trades(A, "BTCUSDT", from_id=2)] == [2, 3]


def test_crossing_limit_fills_as_taker_at_the_better_current_price(eng: MatchingEngine) -> None:
    u = place(eng, "b", B, "105")  # last is 100
    assert u.status is OrderStatus.FILLED
    f = fills(eng.drain())[0]
    assert (f.price, f.is_maker) == (D(100), False)
    u = place(eng, "s", S, "90")
    f = fills(eng.drain())[0]
    assert (f.price, f.is_maker, u.status) == (D(100), False, OrderStatus.FILLED)


def test_crossing_uses_book_when_present(eng: MatchingEngine) -> None:
    eng.on_book("BTCUSDT", D("99.5"), D("100.5"), 2)
    assert place(eng, "b", B, "100.2").status is OrderStatus.NEW  # below the ask: rests
    u = place(eng, "m", B, None, t=MKT)
    assert fills(eng.drain())[-1].price == D("100.5") and u.status is OrderStatus.FILLED
    place(eng, "ms", S, None, t=MKT)
    assert fills(eng.drain())[-1].price == D("99.5")
    assert eng.on_book("BTCUSDT", D("99.9"), D("100.1"), 3) == 1  # ask fell to the resting buy
    f = fills(eng.drain())[0]
    assert (f.client_order_id, f.price, f.is_maker) == ("b", D("100.2"), True)


def test_market_order_fills_at_last_with_taker_fee(eng: MatchingEngine) -> None:
    eng.maker_fee, eng.taker_fee = D("0.0005"), D("0.002")
    place(eng, "m", B, None, "2", t=MKT)
    f = fills(eng.drain())[0]
    assert (f.price, f.qty, f.fee, f.is_maker) == (D(100), D(2), D("0.4"), False)
    assert eng.balance(A, "USDT") .free == D(100000) - D(200) - D("0.4")
    assert eng.balance(A, "USDT").locked == 0


def test_ioc_that_cannot_fill_expires(eng: MatchingEngine) -> None:
    u = place(eng, "i", B, "90", time_in_force="IOC")
    assert u.status is OrderStatus.EXPIRED
    assert eng.balance(A, "USDT").locked == 0
    assert eng.open_orders(A) == []


# ---------------------------------------------------------------- rejections (codes and messages)


@pytest.mark.parametrize(
    "side,price,qty,msg",
    [
        (B, "50", "0.001", "Filter failure: NOTIONAL"),
        (B, "50", "0.0015", "Filter failure: LOT_SIZE"),
        (B, "50.001", "1", "Filter failure: PRICE_FILTER"),
    ],
)
def test_filter_rejections(eng: MatchingEngine, side: Side, price: str, qty: str, msg: str) -> None:
    with pytest.raises(FilterRejected) as ei:
        place(eng, "x", side, price, qty)
    assert (ei.value.code, str(ei.value)) == (-1013, msg)
    assert eng.drain() == [] and eng.open_orders(A) == []


def test_percent_price_by_side_on_real_rules() -> None:
    rules = real_rules()
    e = MatchingEngine(rules.values())
    e.set_balance(A, "ETH", D(100))
    e.on_trade("XRPETH", D("0.0007500"), 1)
    with pytest.raises(FilterRejected) as ei:  # bid multiplier down 0.2
        e.place_order(A, "XRPETH", "x", B, LIM, D(100000), D("0.0001000"))
    assert (ei.value.code, str(ei.value)) == (-1013, "Filter failure: PERCENT_PRICE_BY_SIDE")
    with pytest.raises(FilterRejected, match="^Filter failure: NOTIONAL$"):  # min notional 0.005 ETH
        e.place_order(A, "XRPETH", "x", B, LIM, D(5), D("0.0007000"))
    with pytest.raises(FilterRejected, match="^Filter failure: LOT_SIZE$"):  # step 1 XRP
        e.place_order(A, "XRPETH", "x", B, LIM, D("10.5"), D("0.0007000"))
    with pytest.raises(FilterRejected, match="^Filter failure: PRICE_FILTER$"):  # tick 1e-7
        e.place_order(A, "XRPETH", "x", B, LIM, D(100), D("0.00070001"))
    assert e.place_order(A, "XRPETH", "ok", B, LIM, D(100), D("0.0007000")).status is OrderStatus.NEW


def test_insufficient_balance(eng: MatchingEngine) -> None:
    with pytest.raises(InsufficientBalance) as ei:
        place(eng, "x", B, "99", "1010")  # 99,990 + fee lock > 100,000
    assert (ei.value.code, str(ei.value)) == (-2010, "Account has insufficient balance for requested action.")
    with pytest.raises(InsufficientBalance):
        place(eng, "y", S, "101", "10.001")
    with pytest.raises(InsufficientBalance):
        place(eng, "z", S, None, "11", t=MKT)
    assert eng.balance(A, "USDT").locked == 0 and eng.balance(A, "BTC").locked == 0


def test_unknown_order_and_bad_symbol(eng: MatchingEngine) -> None:
    with pytest.raises(UnknownOrder) as ei:
        eng.cancel_order(A, "BTCUSDT", "nope")
    assert (ei.value.code, str(ei.value)) == (-2011, "Unknown order sent.")
    with pytest.raises(BadSymbol) as eb:
        eng.place_order(A, "FOOBAR", "x", B, LIM, D(1), D(1))
    assert (eb.value.code, str(eb.value)) == (-1121, "Invalid symbol.")
    with pytest.raises(BadSymbol):
        eng.on_trade("FOOBAR", D(1), 1)
    place(eng, "f", S, None, t=MKT)
    with pytest.raises(UnknownOrder):  # filled orders cannot be cancelled
        eng.cancel_order(A, "BTCUSDT", "f")
    assert eng.get_order(A, "BTCUSDT", "nope") is None


def test_duplicate_client_order_id_of_open_order(eng: MatchingEngine) -> None:
    place(eng, "dup", B, "90")
    with pytest.raises(ExchangeError) as ei:
        place(eng, "dup", B, "91")
    assert (ei.value.code, str(ei.value)) == (-2010, "Duplicate order sent.")
    eng.cancel_order(A, "BTCUSDT", "dup")
    assert place(eng, "dup", B, "91").status is OrderStatus.NEW  # reuse of a closed id is allowed


def test_limit_maker_that_would_cross_is_rejected(eng: MatchingEngine) -> None:
    with pytest.raises(WouldMatch) as ei:
        place(eng, "lm", B, "100", t=LM)
    assert (ei.value.code, str(ei.value)) == (-2010, "Order would immediately match and take.")
    with pytest.raises(WouldMatch):
        place(eng, "lm", S, "99.99", t=LM)
    assert eng.balance(A, "USDT").locked == 0 and eng.get_order(A, "BTCUSDT", "lm") is None
    assert place(eng, "lm", B, "99.99", t=LM).status is OrderStatus.NEW


def test_missing_price_and_no_market_price() -> None:
    e = MatchingEngine([simple_rules()])
    e.set_balance(A, "USDT", D(1000))
    with pytest.raises(ExchangeError) as ei:
        e.place_order(A, "BTCUSDT", "x", B, LIM, D(1), None)
    assert ei.value.code == -1102
    with pytest.raises(ExchangeError, match="no price"):
        e.place_order(A, "BTCUSDT", "x", B, MKT, D(1))
    # a limit with no market price at all simply rests
    assert e.place_order(A, "BTCUSDT", "x", B, LIM, D(1), D(10)).status is OrderStatus.NEW


# ---------------------------------------------------------------- stops


def test_stop_loss_limit_triggers_and_fills_in_path_order(eng: MatchingEngine) -> None:
    place(eng, "b97", B, "97")
    place(eng, "stop", S, "94", "2", t=STOP, stop_price=D(95))
    place(eng, "b93", B, "93")
    assert eng.balance(A, "BTC").locked == 2  # stops lock their funds like Binance
    eng.drain()
    assert eng.on_trade("BTCUSDT", D("96"), 2) == 1
    eng.on_trade("BTCUSDT", D("90"), 3)
    fs = fills(eng.drain())
    assert [(f.client_order_id, f.price, f.is_maker) for f in fs] == [
        ("b97", D(97), True),
        ("stop", D(95), False),  # triggered at 95, its limit 94 crosses there: taker at 95
        ("b93", D(93), True),
    ]
    assert eng.get_order(A, "BTCUSDT", "stop").status is OrderStatus.FILLED


def test_stop_with_limit_above_trigger_rests_after_trigger(eng: MatchingEngine) -> None:
    place(eng, "stop", S, "96", t=STOP, stop_price=D(95))
    eng.on_trade("BTCUSDT", D(94), 2)
    assert eng.get_order(A, "BTCUSDT", "stop").status is OrderStatus.NEW
    assert eng.on_trade("BTCUSDT", D(96), 3) == 1
    assert fills(eng.drain())[0].price == D(96)


def test_buy_stop_triggers_rising_and_cancel_of_waiting_stop(eng: MatchingEngine) -> None:
    place(eng, "bs", B, "106", t=STOP, stop_price=D(105))
    place(eng, "bs2", B, "111", t=STOP, stop_price=D(110))
    eng.cancel_order(A, "BTCUSDT", "bs2")
    eng.on_trade("BTCUSDT", D(108), 2)
    fs = fills(eng.drain())
    assert [(f.client_order_id, f.price) for f in fs] == [("bs", D(105))]
    assert eng.balance(A, "USDT").locked == 0


def test_stop_that_would_trigger_immediately_is_rejected(eng: MatchingEngine) -> None:
    with pytest.raises(ExchangeError) as ei:
        place(eng, "s", S, "99", t=STOP, stop_price=D(101))
    assert (ei.value.code, str(ei.value)) == (-2010, "Stop price would trigger immediately.")


def test_stop_triggers_on_book(eng: MatchingEngine) -> None:
    place(eng, "stop", S, "94", t=STOP, stop_price=D(95))
    eng.on_book("BTCUSDT", D("94.5"), D("94.7"), 2)
    f = fills(eng.drain())[0]
    assert (f.price, f.is_maker) == (D("94.5"), False)


# ---------------------------------------------------------------- cancel, cancel-all, cancel-replace


def test_cancel_releases_lock_and_emits(eng: MatchingEngine) -> None:
    place(eng, "b", B, "90", "2")
    assert eng.balance(A, "USDT").locked == D("180.18")
    eng.drain()
    u = eng.cancel_order(A, "BTCUSDT", "b")
    assert u.status is OrderStatus.CANCELED
    ev = [e.event for e in eng.drain()]
    assert isinstance(ev[0], OrderUpdate) and isinstance(ev[1], BalanceUpdate)
    assert eng.balance(A, "USDT") .free == D(100000) and eng.balance(A, "USDT").locked == 0
    assert eng.on_trade("BTCUSDT", D(80), 2) == 0


def test_cancel_all_and_by_order_id(eng: MatchingEngine) -> None:
    for i in range(3):
        place(eng, f"b{i}", B, str(90 + i))
    place(eng, "s", S, "110")
    oid = eng.get_order(A, "BTCUSDT", "s").exchange_order_id
    assert eng.cancel_order(A, "BTCUSDT", order_id=oid).client_order_id == "s"
    out = eng.cancel_all(A, "BTCUSDT")
    assert [u.client_order_id for u in out] == ["b0", "b1", "b2"]
    assert eng.cancel_all(A, "BTCUSDT") == []
    assert eng.balance(A, "USDT").locked == 0


def test_cancel_replace(eng: MatchingEngine) -> None:
    place(eng, "old", B, "90")
    c, n = eng.cancel_replace(A, "BTCUSDT", "old", "new", B, LIM, D(1), D(91))
    assert c.status is OrderStatus.CANCELED and n.status is OrderStatus.NEW and n.price == D(91)
    with pytest.raises(UnknownOrder):  # cancel fails: nothing placed
        eng.cancel_replace(A, "BTCUSDT", "old", "new2", B, LIM, D(1), D(92))
    assert eng.get_order(A, "BTCUSDT", "new2") is None
    with pytest.raises(FilterRejected) as ei:  # new order fails: the cancel stands
        eng.cancel_replace(A, "BTCUSDT", "new", "new3", B, LIM, D(1), D("92.001"))
    assert ei.value.cancel_update.status is OrderStatus.CANCELED  # type: ignore[attr-defined]
    assert eng.open_orders(A) == []


def test_accounts_are_separate() -> None:
    e = MatchingEngine([simple_rules()])
    e.set_balance("x", "USDT", D(1000))
    e.on_trade("BTCUSDT", D(100), 1)
    e.place_order("x", "BTCUSDT", "same", B, LIM, D(1), D(90))
    with pytest.raises(InsufficientBalance):
        e.place_order("y", "BTCUSDT", "same", B, LIM, D(1), D(90))
    e.on_trade("BTCUSDT", D(80), 2)
    assert {ev.account for ev in e.drain() if isinstance(ev.event, Fill)} == {"x"}
    assert e.my_trades("y", "BTCUSDT") == [] and len(e.my_trades("x", "BTCUSDT")) == 1


def test_snapshot_restore_roundtrip(eng: MatchingEngine) -> None:
    place(eng, "b", B, "90")
    place(eng, "st", S, "94", t=STOP, stop_price=D(95))
    place(eng, "s", S, "110")
    eng.on_trade("BTCUSDT", D(111), 2)
    snap = json.loads(json.dumps(eng.snapshot()))
    e2 = MatchingEngine([simple_rules()])
    e2.restore(snap)
    assert e2.balances(A) == eng.balances(A)
    assert e2.open_orders(A) == eng.open_orders(A)
    assert e2.my_trades(A, "BTCUSDT") == eng.my_trades(A, "BTCUSDT")
    e2.on_trade("BTCUSDT", D(85), 3)
    fs = fills(e2.drain())
    assert [(f.client_order_id, f.trade_id) for f in fs] == [("st", 2), ("b", 3)]
    assert e2.place_order(A, "BTCUSDT", "n", B, LIM, D(1), D(80)).exchange_order_id == eng.next_order_id


def test_max_num_orders_filter() -> None:
    from dataclasses import replace

    e = MatchingEngine([replace(simple_rules(), max_num_orders=3)])
    e.set_balance(A, "USDT", D(10000))
    e.on_trade("BTCUSDT", D(100), 1)
    for i in range(3):
        e.place_order(A, "BTCUSDT", f"b{i}", B, LIM, D(1), D(90 - i))
    assert e.open_count(A, "BTCUSDT") == 3
    with pytest.raises(FilterRejected, match="^Filter failure: MAX_NUM_ORDERS$"):
        e.place_order(A, "BTCUSDT", "b3", B, LIM, D(1), D(80))
    e.set_balance("other", "USDT", D(1000))
    e.place_order("other", "BTCUSDT", "o", B, LIM, D(1), D(80))  # the limit is per account
    e.on_trade("BTCUSDT", D(89), 2)
    assert e.place_order(A, "BTCUSDT", "b3", B, LIM, D(1), D(80)).status is OrderStatus.NEW


def test_stop_immediate_trigger_checked_against_book_without_trades() -> None:
    e = MatchingEngine([simple_rules()])
    e.set_balance(A, "BTC", D(1))
    e.on_book("BTCUSDT", D(100), D(101), 1)
    with pytest.raises(ExchangeError, match="^Stop price would trigger immediately.$"):
        e.place_order(A, "BTCUSDT", "s", S, STOP, D(1), D(99), stop_price=D(100))
    assert e.place_order(A, "BTCUSDT", "s", S, STOP, D(1), D(98), stop_price=D("99.5")).status is OrderStatus.NEW


# ---------------------------------------------------------------- quantity-limited (partial) fills


def test_trade_volume_caps_fills_in_path_order_and_fifo(eng: MatchingEngine) -> None:
    place(eng, "b99a", B, "99", "2")
    place(eng, "b99b", B, "99", "1")
    place(eng, "b95", B, "95", "1")
    eng.drain()
    assert eng.on_trade("BTCUSDT", D(94), 2, qty=D("2.5")) == 2
    fs = fills(eng.drain())
    assert [(f.client_order_id, f.qty, f.price) for f in fs] == [("b99a", D(2), D(99)), ("b99b", D("0.5"), D(99))]
    part = eng.get_order(A, "BTCUSDT", "b99b")
    assert part.status is OrderStatus.PARTIALLY_FILLED and part.executed_qty == D("0.5")
    assert part.cum_quote == D("49.5")
    # the partly filled order keeps its place ahead of b95
    eng.on_trade("BTCUSDT", D(93), 3, qty=D("0.6"))
    fs = fills(eng.drain())
    assert [(f.client_order_id, f.qty) for f in fs] == [("b99b", D("0.5")), ("b95", D("0.1"))]
    assert eng.get_order(A, "BTCUSDT", "b99b").status is OrderStatus.FILLED
    # lock left on b95 is exactly its unfilled part
    assert eng.balance(A, "USDT").locked == D("0.9") * 95 * D("1.001")
    u = eng.cancel_order(A, "BTCUSDT", "b95")
    assert u.status is OrderStatus.CANCELED and u.executed_qty == D("0.1")
    assert eng.balance(A, "USDT").locked == 0
    spent = D(2) * 99 + D(1) * 99 + D("0.1") * 95
    assert eng.balance(A, "USDT").free == D(100000) - spent * D("1.001")
    assert eng.balance(A, "BTC").free == D(10) + D("3.1")


def test_volume_limited_sells_and_stops(eng: MatchingEngine) -> None:
    place(eng, "s", S, "101", "2")
    place(eng, "st", S, "94", "1", t=STOP, stop_price=D(95))
    eng.on_trade("BTCUSDT", D(102), 2, qty=D("0.5"))
    eng.on_trade("BTCUSDT", D(90), 3, qty=D("0.25"))  # stop triggers, fills 0.25 at 95, rests at 94
    st = eng.get_order(A, "BTCUSDT", "st")
    assert st.status is OrderStatus.PARTIALLY_FILLED and st.executed_qty == D("0.25")
    eng.on_trade("BTCUSDT", D(94), 4, qty=D(5))  # rising back to its limit fills the rest as maker
    fs = fills(eng.drain())
    assert [(f.client_order_id, f.qty, f.price, f.is_maker) for f in fs] == [
        ("s", D("0.5"), D(101), True),
        ("st", D("0.25"), D(95), False),
        ("st", D("0.75"), D(94), True),
    ]
    assert eng.balance(A, "BTC").locked == D("1.5")  # what is left of "s"
