from __future__ import annotations

import json
from decimal import Decimal as D

import pytest

from tgtrader.core.events import GridRoundTrip, GridStateChanged, StopTriggered
from tgtrader.core.grid import Grid, GridConfig, compute_levels, overlap_problem, preview, profit_pct
from tgtrader.core.rules import SymbolRules
from tgtrader.types import (
    CancelOrder,
    Fill,
    OrderStatus,
    OrderType,
    OrderUpdate,
    PlaceOrder,
    RejectReason,
    Side,
)

from .sim import Sim, drive

RULES = SymbolRules("TESTUSDT", "TEST", "USDT", tick_size=D("0.01"), step_size=D("0.001"), min_qty=D("0.001"),
                    min_notional=D("10"))
FEE = D("0.001")


def cfg(**kw: object) -> GridConfig:
    base = dict(symbol="TESTUSDT", lower=D("100"), upper=D("140"), n=4, investment=D("1000"))
    base.update(kw)
    return GridConfig(**base)  # type: ignore[arg-type]


# ---------------------------------------------------------------- levels and preview


def test_levels_arithmetic_geometric_and_rounding(btc_rules: SymbolRules) -> None:
    assert compute_levels(cfg()) == [D("100"), D("110"), D("120"), D("130"), D("140")]
    geo = compute_levels(cfg(symbol="BTCUSDT", lower=D("30000"), upper=D("60000"), n=3, spacing="geometric"), btc_rules)
    assert geo[0] == D("30000") and geo[-1] == D("60000")
    assert all(btc_rules.is_on_tick(x) for x in geo)
    assert abs(geo[1] - D("37797.63")) <= D("0.01") and abs(geo[2] - D("47622.03")) <= D("0.01")


def test_preview_numbers_and_ok() -> None:
    p = preview(cfg(), RULES, D("115"), free_quote=D("2000"))
    assert p.ok, p.problems
    assert p.qty_per_order == D("2.272")  # 1000 / (100 + 110 + 2 x 115) rounded down to 0.001
    assert (p.buy_orders, p.sell_orders) == (2, 2)
    assert p.required_base == D("4.544")
    assert p.profit_pct_min == profit_pct(D("130"), D("140"), FEE)
    assert p.profit_pct_max == profit_pct(D("100"), D("110"), FEE)
    assert abs(p.profit_pct_max - D("9.79")) < D("0.001")  # (10 - 0.21) / 100


@pytest.mark.parametrize(
    "kw,price,free,needle",
    [
        (dict(n=1), D("115"), D("2000"), "out of range"),
        (dict(n=201), D("115"), D("2000"), "out of range"),
        (dict(lower=D("150")), D("115"), D("2000"), "below upper"),
        (dict(investment=D("30")), D("115"), D("2000"), "minNotional"),
        (dict(), D("115"), D("500"), "above the free balance"),
        (dict(lower=D("100"), upper=D("100.03"), n=10), D("100.01"), D("2000"), "closer than one tick"),
        (dict(stop_loss=D("120")), D("115"), D("2000"), "stop-loss"),
    ],
)
def test_preview_problems(kw: dict, price: D, free: D, needle: str) -> None:
    p = preview(cfg(**kw), RULES, price, free_quote=free)
    assert not p.ok and any(needle in x for x in p.problems), p.problems


def test_preview_max_num_orders(btc_rules: SymbolRules) -> None:
    from dataclasses import replace

    rules = replace(btc_rules, max_num_orders=5)
    p = preview(GridConfig("BTCUSDT", D("40000"), D("60000"), 6, D("10000")), rules, D("50000"), D("20000"))
    assert any("MAX_NUM_ORDERS" in x for x in p.problems)


def test_overlap_check() -> None:
    others = [(1, "TESTUSDT", D("100"), D("140")), (2, "BTCUSDT", D("1"), D("1000"))]
    assert overlap_problem(cfg(lower=D("130"), upper=D("150")), others) is not None
    assert overlap_problem(cfg(lower=D("140"), upper=D("150")), others) is None  # touching is fine
    assert overlap_problem(cfg(symbol="ETHUSDT"), others) is None


# ---------------------------------------------------------------- scripted path, exact fills


def test_scripted_path_exact_fills() -> None:
    g = Grid(1, cfg(), RULES)
    sim = Sim(RULES, D("115"), quote=D("2000"))
    first = g.start(D("115"), 0)
    kinds = [(p.side, p.order_type, p.price, p.qty) for p in first if isinstance(p, PlaceOrder)]
    assert kinds == [
        (Side.BUY, OrderType.MARKET, None, D("4.544")),
        (Side.BUY, OrderType.LIMIT, D("100"), D("2.272")),
        (Side.BUY, OrderType.LIMIT, D("110"), D("2.272")),
    ]
    drive(g, sim, first)
    # the start buy filled: the two holding sells are out
    assert sorted((o.side, o.price) for o in sim.resting.values()) == [
        (Side.BUY, D("100")), (Side.BUY, D("110")), (Side.SELL, D("130")), (Side.SELL, D("140"))]
    for px in ("131", "105", "125", "95"):
        drive(g, sim, [], sim.move(D(px)))
    got = [(f.side.value, f.price, f.qty) for f in sim.trades]
    q = D("2.272")
    assert got == [
        ("BUY", D("115"), D("4.544")),
        ("SELL", D("130"), q),  # 115 -> 131
        ("BUY", D("120"), q), ("BUY", D("110"), q),  # 131 -> 105
        ("SELL", D("120"), q),  # 105 -> 125
        ("BUY", D("110"), q), ("BUY", D("100"), q),  # 125 -> 95
    ]
    assert sim.violations == []
    st = g.stats()
    rt1 = q * D("130") * (1 - FEE) - q * D("115") * (1 + FEE)
    rt2 = q * D("120") * (1 - FEE) - q * D("110") * (1 + FEE)
    # the 130 sale sold base bought at start: realized position profit, not a grid round trip
    assert st.round_trips == 1
    assert st.grid_profit == rt2
    assert st.realized == rt1 + rt2
    assert st.fees == sim.fees
    assert st.base_held == sim.base == q * 4
    # the grid now holds every interval: four sells, no buys
    assert sorted(o.price for o in sim.resting.values()) == [D("110"), D("120"), D("130"), D("140")]
    trips = [e for e in g.drain_events() if isinstance(e, GridRoundTrip)]
    assert [(t.buy_price, t.sell_price) for t in trips] == [(D("110"), D("120"))]
    # conservation: quote + base at cost equals the start
    assert sim.quote - D("2000") == g.ledger.quote_flow


# ---------------------------------------------------------------- partial fills, odd orders


def _start(grid: Grid, sim: Sim) -> None:
    drive(grid, sim, grid.start(sim.price, 0))


def test_partial_fill_keeps_working_counter_order_on_completion() -> None:
    g = Grid(1, cfg(), RULES)
    sim = Sim(RULES, D("115"), quote=D("2000"))
    _start(g, sim)
    drive(g, sim, [], sim.move(D("109"), partial=D("0.5")))  # buy at 110 half filled
    buy110 = next(o for o in sim.resting.values() if o.price == D("110"))
    assert sim.filled[buy110.client_order_id] == D("1.136")
    assert not any(o.side is Side.SELL and o.price == D("120") for o in sim.resting.values())
    assert g.intervals[1].base == D("1.136")
    drive(g, sim, [], sim.move(D("108")))  # the rest fills
    sell = [o for o in sim.resting.values() if o.side is Side.SELL and o.price == D("120")]
    assert len(sell) == 1 and sell[0].qty == D("2.272")


def test_pause_with_partial_then_resume_buys_only_the_shortfall() -> None:
    g = Grid(1, cfg(), RULES)
    sim = Sim(RULES, D("115"), quote=D("2000"))
    _start(g, sim)
    drive(g, sim, [], sim.move(D("109"), partial=D("0.5")))
    drive(g, sim, g.pause(5))
    assert sim.resting == {} and g.state == "paused"
    assert g.intervals[1].base == D("1.136")  # the filled part is kept
    sim.price = D("112")
    drive(g, sim, g.resume(D("112"), 6))
    buy110 = [o for o in sim.resting.values() if o.price == D("110")]
    assert len(buy110) == 1 and buy110[0].qty == D("1.136")
    assert len(sim.resting) == 4


def test_filled_update_before_fills_and_duplicate_fill() -> None:
    g = Grid(1, cfg(), RULES)
    g.start(D("115"), 0)
    cid = next(c for c, o in g.orders.items() if o.price == D("110"))
    # FILLED arrives first: the grid waits for the fill quantities
    upd = OrderUpdate("TESTUSDT", cid, Side.BUY, OrderType.LIMIT, OrderStatus.FILLED, D("110"), D("2.272"), D("2.272"))
    assert g.on_order_update(upd) == []
    f = Fill("TESTUSDT", 9, cid, Side.BUY, D("110"), D("2.272"), D("0.25"), "USDT", True, 1)
    out = g.on_fill(f)
    assert [(p.side, p.price) for p in out if isinstance(p, PlaceOrder)] == [(Side.SELL, D("120"))]
    assert g.on_fill(f) == []  # duplicate
    assert g.on_order_update(upd) == []  # late duplicate update
    assert g.intervals[1].base == D("2.272")


def test_fee_in_base_shrinks_the_counter_sell() -> None:
    g = Grid(1, cfg(), RULES)
    g.start(D("115"), 0)
    cid = next(c for c, o in g.orders.items() if o.price == D("110"))
    out = g.on_fill(Fill("TESTUSDT", 9, cid, Side.BUY, D("110"), D("2.272"), D("0.002272"), "TEST", True, 1))
    [sell] = [p for p in out if isinstance(p, PlaceOrder)]
    assert sell.qty == D("2.269")  # 2.272 - 0.002272 rounded down to the step
    assert g.ledger.fees == D("0.002272") * D("110")


def test_exchange_cancel_is_replaced_rejection_alerts() -> None:
    g = Grid(1, cfg(), RULES)
    g.start(D("115"), 0)
    cid = next(c for c, o in g.orders.items() if o.price == D("110"))
    out = g.on_order_update(OrderUpdate("TESTUSDT", cid, Side.BUY, OrderType.LIMIT, OrderStatus.EXPIRED, D("110"),
                                        D("2.272"), D("0")))
    [p] = out
    assert isinstance(p, PlaceOrder) and p.price == D("110") and p.client_order_id != cid
    out = g.on_order_update(OrderUpdate("TESTUSDT", p.client_order_id, Side.BUY, OrderType.LIMIT,
                                        OrderStatus.REJECTED, D("110"), D("2.272"), D("0"),
                                        reject_reason=RejectReason.INSUFFICIENT_BALANCE, reject_text="insufficient balance"))
    assert any(getattr(a, "kind", "") == "order-rejected" for a in out)


# ---------------------------------------------------------------- stop, sl/tp, chase start


def test_stop_loss_cancels_and_sells_everything() -> None:
    g = Grid(1, cfg(stop_loss=D("90"), sell_on_stop=True), RULES)
    sim = Sim(RULES, D("115"), quote=D("2000"))
    _start(g, sim)
    drive(g, sim, [], sim.move(D("89")))
    assert g.state == "stopped" and g.stop_reason == "stop-loss"
    assert sim.resting == {}
    assert sim.base == 0 and g.base_held() == 0
    assert sim.trades[-1].side is Side.SELL and sim.trades[-1].price == D("89")
    ev = g.drain_events()
    assert any(isinstance(e, StopTriggered) and e.kind == "stop-loss" for e in ev)
    assert any(isinstance(e, GridStateChanged) and e.new == "stopped" for e in ev)
    assert any(a.kind == "stop-loss" for a in sim.alerts)
    assert sim.quote - D("2000") == g.ledger.quote_flow
    assert g.ledger.realized == g.ledger.quote_flow  # everything closed: realized = net quote


def test_paused_grid_still_stops_out_and_sells_its_base() -> None:
    g = Grid(1, cfg(stop_loss=D("90"), sell_on_stop=True), RULES)
    sim = Sim(RULES, D("115"), quote=D("2000"))
    _start(g, sim)
    drive(g, sim, g.pause(5))
    assert g.state == "paused" and sim.resting == {} and g.base_held() > 0
    drive(g, sim, [], sim.move(D("89")))
    assert g.state == "stopped" and g.stop_reason == "stop-loss"
    assert sim.base == 0 and g.base_held() == 0
    assert any(isinstance(e, StopTriggered) and e.kind == "stop-loss" for e in g.drain_events())


def test_take_profit_without_sell_keeps_base() -> None:
    g = Grid(1, cfg(take_profit=D("150")), RULES)
    sim = Sim(RULES, D("115"), quote=D("2000"))
    _start(g, sim)
    drive(g, sim, [], sim.move(D("151")))
    assert g.state == "stopped" and g.stop_reason == "take-profit" and sim.resting == {}
    assert g.base_held() == sim.base == 0  # all sells filled on the way up


def test_user_stop_without_sell() -> None:
    g = Grid(1, cfg(), RULES)
    sim = Sim(RULES, D("115"), quote=D("2000"))
    _start(g, sim)
    drive(g, sim, g.stop(False, 10))
    assert sim.resting == {} and g.base_held() == sim.base == D("4.544")
    assert g.stats().open_orders == 0


def test_chase_start_mode() -> None:
    g = Grid(2, cfg(start_mode="chase", chase_step_ms=1000), RULES)
    sim = Sim(RULES, D("115"), quote=D("2000"))
    first = g.start(D("115"), 0, bid=D("114.99"), ask=D("115.01"))
    maker = [p for p in first if isinstance(p, PlaceOrder) and p.order_type is OrderType.LIMIT_MAKER]
    assert len(maker) == 1 and maker[0].price == D("114.99") and maker[0].client_order_id == "tg-g2-cB1"  # its own namespace (issue 13 item 13)
    drive(g, sim, first)
    drive(g, sim, [], sim.move(D("114.99")))  # touched: filled as maker
    assert sorted(o.price for o in sim.resting.values() if o.side is Side.SELL) == [D("130"), D("140")]
    assert g.base_held() == D("4.544")


# ---------------------------------------------------------------- restart


def test_restart_from_state_continues_identically() -> None:
    g = Grid(1, cfg(), RULES)
    sim = Sim(RULES, D("115"), quote=D("2000"))
    _start(g, sim)
    drive(g, sim, [], sim.move(D("109"), partial=D("0.5")))
    state = json.loads(json.dumps(g.to_state()))
    g2 = Grid.from_state(state, RULES)
    assert g2.to_state() == g.to_state()
    drive(g2, sim, [], sim.move(D("108")))
    drive(g2, sim, [], sim.move(D("121")))
    assert g2.ledger.round_trips == 1
    assert g2.ledger.realized == D("2.272") * D("120") * (1 - FEE) - D("2.272") * D("110") * (1 + FEE)
    # ids continue from the persisted sequence: never reused
    cids = [p.client_order_id for p in sim.placed]
    assert len(cids) == len(set(cids))


def test_annualized_return() -> None:
    g = Grid(1, cfg(), RULES)
    sim = Sim(RULES, D("115"), quote=D("2000"))
    _start(g, sim)
    drive(g, sim, [], sim.move(D("131")))
    st = g.stats(now_ts=365 * 24 * 3600 * 1000)
    assert st.annualized_return_pct is not None
    pnl = st.realized + st.unrealized
    assert abs(st.annualized_return_pct - pnl / D("1000") * 100) < D("0.000001")


def test_start_twice_refused() -> None:
    g = Grid(1, cfg(), RULES)
    g.start(D("115"), 0)
    with pytest.raises(ValueError):
        g.start(D("115"), 0)
    assert g.pause(1) and all(isinstance(i, CancelOrder) for i in g.pause(2)) is True


def test_rejected_start_buy_pauses_and_resume_retries() -> None:
    g = Grid(1, cfg(), RULES)
    first = g.start(D("115"), 0)
    start = next(p for p in first if isinstance(p, PlaceOrder) and p.order_type is OrderType.MARKET)
    out = g.on_order_update(OrderUpdate("TESTUSDT", start.client_order_id, Side.BUY, OrderType.MARKET,
                                        OrderStatus.REJECTED, D(0), start.qty, D(0), reject_text="no price"))
    assert g.state == "paused"
    assert any(getattr(a, "kind", "") == "grid-start-failed" for a in out)
    cancels = [c for c in out if isinstance(c, CancelOrder)]
    assert len(cancels) == 2
    for c in cancels:
        o = g.orders[c.client_order_id]
        g.on_order_update(OrderUpdate("TESTUSDT", c.client_order_id, o.side, OrderType.LIMIT, OrderStatus.CANCELED,
                                      o.price, o.qty, D(0)))
    assert not any(isinstance(p, PlaceOrder) and p.side is Side.BUY and p.price and p.price > D("115") for p in out)
    sim = Sim(RULES, D("115"), quote=D("2000"))
    drive(g, sim, g.resume(D("115"), 5))
    assert g.state == "running" and g.base_held() == D("4.544")
    assert sorted((o.side, o.price) for o in sim.resting.values()) == [
        (Side.BUY, D("100")), (Side.BUY, D("110")), (Side.SELL, D("130")), (Side.SELL, D("140"))]


def test_a_grid_whose_profit_per_grid_after_fees_is_not_positive_is_refused(btc_rules: SymbolRules) -> None:
    """Issue 13 item 12: a grid whose every round trip loses to fees was accepted."""
    from tgtrader.core.grid import GridConfig, preview

    tight = GridConfig("BTCUSDT", D("49900"), D("50100"), 200, D("100000"))  # 1 USDT apart: 0.002 % < 0.2 % fees
    pv = preview(tight, btc_rules, D("50000"), D("1000000"), D("0"))
    assert any("profit per grid after fees" in p for p in pv.problems), pv.problems
    wide = GridConfig("BTCUSDT", D("40000"), D("60000"), 4, D("1000"))
    assert not any("profit per grid" in p for p in preview(wide, btc_rules, D("50000"), D("10000"), D("0")).problems)
