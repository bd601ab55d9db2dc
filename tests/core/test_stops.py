from __future__ import annotations

import json
from decimal import Decimal as D

from tgtrader.core.events import SaleRealized, StopTriggered
from tgtrader.core.rules import SymbolRules
from tgtrader.core.stops import Stop
from tgtrader.types import AlertIntent, Fill, OrderStatus, OrderType, OrderUpdate, PlaceOrder, Side, Tick


def tick(price: str, ts: int) -> Tick:
    return Tick("BTCUSDT", None, None, D(price), ts)


def upd(o: PlaceOrder, status: OrderStatus, executed: str = "0") -> OrderUpdate:
    return OrderUpdate(o.symbol, o.client_order_id, o.side, o.order_type, status, o.price or D(0), o.qty, D(executed))


def fill(o: PlaceOrder, tid: int, qty: str, price: str) -> Fill:
    return Fill(o.symbol, tid, o.client_order_id, Side.SELL, D(price), D(qty), D(qty) * D(price) * D("0.001"), "USDT",
                False, 9)


def soft(rules: SymbolRules, purpose: str = "stop-loss", trigger: str = "45000") -> Stop:
    return Stop(1, "BTCUSDT", purpose, "soft", D("0.01"), D(trigger), rules, entry_price=D("50000"), silence_ms=30_000)


def test_soft_stop_loss_triggers_market_sell_and_reports(btc_rules: SymbolRules) -> None:
    s = soft(btc_rules)
    assert s.arm(0) == []
    assert s.on_tick(tick("45000.01", 1)) == []
    out = s.on_tick(tick("44990", 2))
    [o] = [x for x in out if isinstance(x, PlaceOrder)]
    assert o.order_type is OrderType.MARKET and o.qty == D("0.01") and o.client_order_id == "tg-s1-1"
    assert any(isinstance(a, AlertIntent) and "triggered" in a.kind for a in out)
    assert s.on_tick(tick("44000", 3)) == []  # no second sell
    out = s.on_fill(fill(o, 5, "0.01", "44980"))
    [alert] = out
    realized = D("0.01") * D("44980") * (1 - D("0.001")) - D("500")
    assert alert.payload["realized"] == str(realized) and alert.payload["qty"] == "0.01"  # type: ignore[union-attr]
    sale, ev = s.drain_events()
    assert isinstance(sale, SaleRealized) and sale.realized == realized  # booked to the day (issue 15)
    assert isinstance(ev, StopTriggered) and ev.kind == "stop-loss" and ev.realized == realized and ev.price == D("44980")
    assert s.state == "done"


def test_soft_take_profit(btc_rules: SymbolRules) -> None:
    s = soft(btc_rules, "take-profit", "55000")
    s.arm(0)
    assert s.on_tick(tick("54999", 1)) == []
    assert any(isinstance(x, PlaceOrder) for x in s.on_tick(tick("55000", 2)))


def test_silence_falls_back_to_hard_twin_with_alert(btc_rules: SymbolRules) -> None:
    s = soft(btc_rules)
    s.arm(0)
    s.on_tick(tick("48000", 1000))
    assert s.on_timer(31_000) == []
    out = s.on_timer(31_001)
    [o] = [x for x in out if isinstance(x, PlaceOrder)]
    assert o.order_type is OrderType.STOP_LOSS_LIMIT and o.stop_price == D("45000") and o.price == D("44775")
    assert not btc_rules.check_order(o.side, o.order_type, o.qty, o.price, stop_price=o.stop_price)
    [a] = [x for x in out if isinstance(x, AlertIntent)]
    assert a.kind == "stop-hard-fallback" and a.payload["silent_s"] == 30
    assert s.kind == "hard"
    assert s.on_tick(tick("44000", 40_000)) == []  # the exchange order sells, not a second market order
    assert any(isinstance(e, StopTriggered) and e.kind == "hard-fallback" for e in s.drain_events())


def test_hard_stop_replaced_when_exchange_cancels_not_when_we_do(btc_rules: SymbolRules) -> None:
    s = Stop(2, "BTCUSDT", "stop-loss", "hard", D("0.01"), D("45000"), btc_rules)
    [o1] = s.arm(0)
    out = s.on_order_update(upd(o1, OrderStatus.EXPIRED))
    [o2] = [x for x in out if isinstance(x, PlaceOrder)]
    assert o2.client_order_id == "tg-s2-2" and o2.order_type is OrderType.STOP_LOSS_LIMIT
    assert any(isinstance(x, AlertIntent) and x.kind == "stop-replaced" for x in out)
    [c] = s.cancel()
    assert c.client_order_id == o2.client_order_id
    assert s.on_order_update(upd(o2, OrderStatus.CANCELED)) == []
    assert s.state == "cancelled"


def test_hard_stop_fill_after_filled_update(btc_rules: SymbolRules) -> None:
    s = Stop(3, "BTCUSDT", "stop-loss", "hard", D("0.01"), D("45000"), btc_rules, entry_price=D("50000"))
    [o] = s.arm(0)
    assert s.on_order_update(upd(o, OrderStatus.FILLED, "0.01")) == []
    out = s.on_fill(fill(o, 1, "0.004", "44800"))
    assert out == []
    out = s.on_fill(fill(o, 2, "0.006", "44790"))
    assert len(out) == 1 and s.state == "done" and s.filled == D("0.01")
    assert s.on_fill(fill(o, 2, "0.006", "44790")) == []  # duplicate


def test_hard_take_profit_is_a_limit_sell(btc_rules: SymbolRules) -> None:
    s = Stop(4, "BTCUSDT", "take-profit", "hard", D("0.01"), D("55000.005"), btc_rules)
    [o] = s.arm(0)
    assert o.order_type is OrderType.LIMIT and o.price == D("55000.01")


def test_partial_then_exchange_cancel_replaces_remainder(btc_rules: SymbolRules) -> None:
    s = Stop(5, "BTCUSDT", "stop-loss", "hard", D("0.01"), D("45000"), btc_rules)
    [o] = s.arm(0)
    s.on_fill(fill(o, 1, "0.004", "44800"))
    out = s.on_order_update(upd(o, OrderStatus.EXPIRED, "0.004"))
    [o2] = [x for x in out if isinstance(x, PlaceOrder)]
    assert o2.qty == D("0.006")


def test_restart_keeps_soft_stop(btc_rules: SymbolRules) -> None:
    s = soft(btc_rules)
    s.arm(0)
    s2 = Stop.from_state(json.loads(json.dumps(s.to_state())), btc_rules)
    assert s2.to_state() == s.to_state()
    s2.rearm(100_000)
    assert s2.on_timer(100_500) == []  # fresh silence clock after restart
    assert any(isinstance(x, PlaceOrder) for x in s2.on_tick(tick("44000", 100_600)))
