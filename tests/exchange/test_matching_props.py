"""Property tests: random order/tick sequences never make a balance negative and conserve money minus fees,
whichever asset pays the commission (base on buys as Binance by default, quote, or BNB while it lasts)."""

from __future__ import annotations

import time
from decimal import ROUND_HALF_UP
from decimal import Decimal as D

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tgtrader.core.rules import SymbolRules
from tgtrader.errors import ExchangeError
from tgtrader.exchange.matching import MatchingEngine
from tgtrader.fees import FEE_ASSETS, FeeAsset
from tgtrader.types import Fill, OrderType, Side

A = "acct"
RULES = SymbolRules(
    symbol="BTCUSDT", base_asset="BTC", quote_asset="USDT", tick_size=D("0.5"), min_price=D("0.5"),
    step_size=D("0.01"), min_qty=D("0.01"), min_notional=D("1"),
)
START_Q, START_B, START_BNB = D(5000), D(20), D("0.004")  # BNB runs out after a few fills: the fallback is hit
BNB_PRICE = D(300)

prices = st.integers(min_value=160, max_value=240).map(lambda i: D(i) / 2)  # 80..120 on the tick
qtys = st.integers(min_value=1, max_value=300).map(lambda i: D(i) / 100)
ops = st.one_of(
    st.tuples(st.just("tick"), prices),
    st.tuples(st.just("tick_qty"), prices, qtys),
    st.tuples(st.just("book"), prices, st.integers(0, 4)),
    st.tuples(st.just("limit"), st.sampled_from([Side.BUY, Side.SELL]), prices, qtys),
    st.tuples(st.just("maker"), st.sampled_from([Side.BUY, Side.SELL]), prices, qtys),
    st.tuples(st.just("market"), st.sampled_from([Side.BUY, Side.SELL]), qtys),
    st.tuples(st.just("stop"), st.sampled_from([Side.BUY, Side.SELL]), prices, prices, qtys),
    st.tuples(st.just("cancel"), st.integers(0, 40)),
    st.tuples(st.just("replace"), st.integers(0, 40), prices, qtys),
    st.tuples(st.just("cancel_all")),
)


def fee_of(fills: list[Fill], asset: str) -> D:
    return sum((f.fee for f in fills if f.fee_asset == asset), D(0))


def check_invariants(e: MatchingEngine, fills: list[Fill], mode: FeeAsset = "quote") -> None:
    bals = e.balances(A)
    for b in bals.values():
        assert b.free >= 0 and b.locked >= 0, b
    q_expected = START_Q - sum((f.notional if f.side is Side.BUY else -f.notional) for f in fills) - fee_of(fills, "USDT")
    b_expected = START_B + sum(f.qty if f.side is Side.BUY else -f.qty for f in fills) - fee_of(fills, "BTC")
    assert bals["USDT"].total == q_expected
    assert bals["BTC"].total == b_expected
    assert bals["BNB"].total == START_BNB - fee_of(fills, "BNB")
    for f in fills:  # who paid: Binance's rule for the mode (BNB only while the balance covered it)
        rate = D("0.001") if f.is_maker else e.taker_fee
        if f.fee_asset == "BNB":
            assert mode == "bnb" and f.fee == (f.notional * rate / BNB_PRICE).quantize(D("1e-8"), ROUND_HALF_UP)
        elif f.side is Side.BUY and mode != "quote":
            assert (f.fee_asset, f.fee) == ("BTC", f.qty * rate)
        else:
            assert (f.fee_asset, f.fee) == ("USDT", f.notional * rate)
    open_recs = e.open_order_records(A)
    assert sum(o.locked for o in open_recs if o.locked_asset == "USDT") == bals["USDT"].locked
    assert sum(o.locked for o in open_recs if o.locked_asset == "BTC") == bals["BTC"].locked
    assert [f.trade_id for f in e.my_trades(A, "BTCUSDT")] == list(range(1, len(fills) + 1))
    for o in e.all_orders(A):
        assert 0 <= o.executed_qty <= o.orig_qty
        assert (o.executed_qty == o.orig_qty) == (o.status.value == "FILLED")
        if not o.status.is_open:
            assert o.locked == 0


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ops, min_size=20, max_size=80), st.sampled_from([D("0.001"), D("0.00075"), D(0)]),
       st.sampled_from(FEE_ASSETS))
def test_random_sequences_conserve_balances(seq: list[tuple], taker: D, mode: FeeAsset) -> None:
    e = MatchingEngine([RULES], maker_fee=D("0.001"), taker_fee=taker, fee_asset=mode, bnb_prices={"USDT": BNB_PRICE})
    e.set_balance(A, "USDT", START_Q)
    e.set_balance(A, "BTC", START_B)
    e.set_balance(A, "BNB", START_BNB)
    e.on_trade("BTCUSDT", D(100), 0)
    fills: list[Fill] = []
    n = 0
    for ts, op in enumerate(seq, start=1):
        kind = op[0]
        try:
            if kind == "tick":
                e.on_trade("BTCUSDT", op[1], ts)
            elif kind == "tick_qty":
                e.on_trade("BTCUSDT", op[1], ts, qty=op[2])
            elif kind == "book":
                e.on_book("BTCUSDT", op[1], op[1] + D(op[2]) / 2, ts)
            elif kind in ("limit", "maker"):
                t = OrderType.LIMIT if kind == "limit" else OrderType.LIMIT_MAKER
                e.place_order(A, "BTCUSDT", f"o{n}", op[1], t, op[3], op[2], ts_ms=ts)
            elif kind == "market":
                e.place_order(A, "BTCUSDT", f"o{n}", op[1], OrderType.MARKET, op[2], ts_ms=ts)
            elif kind == "stop":
                e.place_order(A, "BTCUSDT", f"o{n}", op[1], OrderType.STOP_LOSS_LIMIT, op[4], op[2],
                              stop_price=op[3], ts_ms=ts)
            elif kind == "cancel":
                e.cancel_order(A, "BTCUSDT", f"o{op[1]}", ts_ms=ts)
            elif kind == "replace":
                e.cancel_replace(A, "BTCUSDT", f"o{op[1]}", f"o{n}", Side.BUY, OrderType.LIMIT, op[3], op[2],
                                 ts_ms=ts)
            elif kind == "cancel_all":
                e.cancel_all(A, "BTCUSDT", ts_ms=ts)
        except ExchangeError:
            pass
        n += 1
        for ev in e.drain():
            if isinstance(ev.event, Fill):
                fills.append(ev.event)
        check_invariants(e, fills, mode)
    # every resting buy is strictly below the market and every resting sell above it (nothing left crossed),
    # unless a volume-capped tick left part of the touched orders resting
    if any(op[0] == "tick_qty" for op in seq):
        return
    last = e.last_price("BTCUSDT")
    bid, ask = e.book_top("BTCUSDT")
    for o in e.open_order_records(A):
        if o.working and o.order_type is not OrderType.MARKET:
            if o.side is Side.BUY:
                assert o.price < (ask if ask is not None else last) or o.price < last
            else:
                assert o.price > (bid if bid is not None else last) or o.price > last


def test_grid_of_200_orders_and_many_ticks_is_fast() -> None:
    """200 resting orders, 200k ticks mostly inside the spread: well under a few seconds."""
    rules = SymbolRules(symbol="X", base_asset="B", quote_asset="Q", tick_size=D("0.01"), step_size=D("1"))
    e = MatchingEngine([rules])
    e.set_balance(A, "Q", D(10**9))
    e.set_balance(A, "B", D(10**9))
    e.on_trade("X", D(100), 0)
    for i in range(100):
        e.place_order(A, "X", f"b{i}", Side.BUY, OrderType.LIMIT, D(1), D(90) - D(i) / 10)
        e.place_order(A, "X", f"s{i}", Side.SELL, OrderType.LIMIT, D(1), D(110) + D(i) / 10)
    e.drain()
    ticks = [D(100) + D((i * 7919) % 1000 - 500) / 100 for i in range(200_000)]
    t0 = time.perf_counter()
    for ts, p in enumerate(ticks, 1):
        e.on_trade("X", p, ts)
    elapsed = time.perf_counter() - t0
    assert len(e.open_order_records(A)) == 200
    assert elapsed < 3.0, elapsed
