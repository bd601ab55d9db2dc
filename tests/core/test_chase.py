from __future__ import annotations

import json
from decimal import Decimal as D

from tgtrader.core.chase import Chase
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
    Tick,
)


def mk(rules: SymbolRules, side: Side = Side.BUY, qty: str = "0.01", limit: str | None = "50000.03", fallback: bool = True) -> Chase:
    return Chase("BTCUSDT", side, D(qty), rules, "tg-c1-", "chase:1", D(limit) if limit else None, step_ms=1000,
                 market_fallback=fallback)


def upd(o: PlaceOrder, status: OrderStatus, executed: str = "0", reason: RejectReason | None = None,
        text: str = "") -> OrderUpdate:
    return OrderUpdate(o.symbol, o.client_order_id, o.side, o.order_type, status, o.price or D(0), o.qty, D(executed),
                       reject_reason=reason, reject_text=text)


def fill(o: PlaceOrder, tid: int, qty: str, price: str, maker: bool = True) -> Fill:
    q, p = D(qty), D(price)
    return Fill(o.symbol, tid, o.client_order_id, o.side, p, q, q * p * D("0.001"), "USDT", maker, 0)


def test_chases_one_tick_at_a_time_up_to_limit_then_market(btc_rules: SymbolRules) -> None:
    c = mk(btc_rules)
    [p1] = c.start(0, bid=D("50000.00"), ask=D("50000.10"))
    assert isinstance(p1, PlaceOrder) and p1.order_type is OrderType.LIMIT_MAKER and p1.price == D("50000.00")
    assert p1.client_order_id == "tg-c1-1" and not btc_rules.check_order(p1.side, p1.order_type, p1.qty, p1.price)
    assert c.on_timer(500) == []  # step not elapsed
    prices = [p1.price]
    last = p1
    for t in (1000, 2000, 3000):
        [cx] = c.on_timer(t)  # cancel first; the next leg once the cancel is final (never two legs)
        assert isinstance(cx, CancelOrder) and cx.client_order_id == last.client_order_id
        [nxt] = c.on_order_update(upd(last, OrderStatus.CANCELED))
        assert isinstance(nxt, PlaceOrder)
        prices.append(nxt.price)
        last = nxt
    assert prices == [D("50000.00"), D("50000.01"), D("50000.02"), D("50000.03")]
    # at max_price: the next step cancels, and the market order waits for the cancel
    [cx] = c.on_timer(4000)
    assert isinstance(cx, CancelOrder) and cx.client_order_id == last.client_order_id
    [m] = c.on_order_update(upd(last, OrderStatus.CANCELED))
    assert isinstance(m, PlaceOrder) and m.order_type is OrderType.MARKET and m.qty == D("0.01")
    c.on_fill(fill(m, 7, "0.01", "50000.10", maker=False))
    r = c.report()
    assert r.status == "filled" and r.taker_qty == D("0.01") and r.maker_qty == 0 and r.avg_price == D("50000.10")


def test_never_crosses_the_book_or_the_limit(btc_rules: SymbolRules) -> None:
    c = mk(btc_rules, limit="60000")
    [p1] = c.start(0, bid=D("50000.00"), ask=D("50000.02"))
    c.on_timer(1000)
    [p2] = c.on_order_update(upd(p1, OrderStatus.CANCELED))
    assert p2.price == D("50000.01")
    # the spread is one tick now: no better maker price exists -> at limit -> fallback
    [cx] = c.on_timer(2000)
    assert isinstance(cx, CancelOrder)


def test_sell_side_mirrors(btc_rules: SymbolRules) -> None:
    c = mk(btc_rules, side=Side.SELL, limit="49999.99")
    [p1] = c.start(0, bid=D("49999.90"), ask=D("50000.00"))
    assert p1.price == D("50000.00")
    c.on_timer(1000)
    [p2] = c.on_order_update(upd(p1, OrderStatus.CANCELED))
    assert p2.price == D("49999.99")


def test_partial_then_replace_for_remainder_and_report(btc_rules: SymbolRules) -> None:
    c = mk(btc_rules, qty="0.01")
    [p1] = c.start(0, bid=D("50000.00"), ask=D("50000.10"))
    c.on_fill(fill(p1, 1, "0.004", "50000.00"))
    c.on_timer(1000)
    [p2] = c.on_order_update(upd(p1, OrderStatus.CANCELED, "0.004"))
    assert p2.qty == D("0.006")
    c.on_fill(fill(p2, 2, "0.006", "50000.01"))
    rep = c.report()
    assert rep.status == "filled" and rep.filled_qty == D("0.01") and rep.maker_qty == D("0.01")
    assert rep.avg_price == (D("0.004") * D("50000.00") + D("0.006") * D("50000.01")) / D("0.01")
    assert rep.fees_quote > 0


def test_would_match_rejection_reprices_at_new_book(btc_rules: SymbolRules) -> None:
    c = mk(btc_rules)
    [p1] = c.start(0, bid=D("50000.00"), ask=D("50000.10"))
    c.on_tick(Tick("BTCUSDT", D("49999.50"), D("49999.60"), None, 1))
    [p2] = c.on_order_update(upd(p1, OrderStatus.REJECTED, reason=RejectReason.WOULD_MATCH,
                                          text="any wording at all"))
    assert isinstance(p2, PlaceOrder) and p2.price == D("49999.50") and p2.client_order_id == "tg-c1-2"


def test_a_step_on_a_partly_executed_leg_sizes_the_next_leg_from_its_fills_not_before(
        btc_rules: SymbolRules) -> None:
    """Issue 13 item 4b: cancel-replace of a partly filled leg placed the new leg at the old size."""
    c = mk(btc_rules, qty="0.01", fallback=False)
    [p1] = c.start(0, bid=D("50000.00"), ask=D("50000.10"))
    [cx] = c.on_timer(1000)
    assert isinstance(cx, CancelOrder)  # no new leg before the old one's executed quantity is known
    # the old order executed 0.004 before the cancel got there; the cancel answer comes before the trade
    assert c.on_order_update(upd(p1, OrderStatus.CANCELED, "0.004")) == []
    [p2] = c.on_fill(fill(p1, 1, "0.004", "50000.00"))
    assert isinstance(p2, PlaceOrder) and p2.qty == D("0.006")


def test_a_cancel_answer_with_executed_qty_before_its_trade_never_sends_the_full_remainder_to_market(
        btc_rules: SymbolRules) -> None:
    """Issue 13 item 4a: the market leg was sized before the cancelled leg's fills arrived (overfill)."""
    c = mk(btc_rules, qty="0.01", limit="50000.00")
    [p1] = c.start(0, bid=D("50000.00"), ask=D("50000.10"))
    [cx] = c.on_timer(1000)  # at the limit: cancel, then the market leg
    assert isinstance(cx, CancelOrder)
    assert c.on_order_update(upd(p1, OrderStatus.CANCELED, "0.004")) == []  # executed 0.004, trade not seen yet
    out = c.on_fill(fill(p1, 1, "0.004", "50000.00"))
    assert not [o for o in out if isinstance(o, PlaceOrder) and o.qty > D("0.006")]


def test_full_fill_cancels_leftover_and_restart(btc_rules: SymbolRules) -> None:
    c = mk(btc_rules)
    [p1] = c.start(0, bid=D("50000.00"), ask=D("50000.10"))
    state = json.loads(json.dumps(c.to_state()))
    c2 = Chase.from_state(state, btc_rules)
    assert c2.to_state() == c.to_state()
    assert c2.on_fill(fill(p1, 1, "0.01", "50000.00")) == []
    assert c2.done and c2.report().status == "filled"


def test_user_cancel(btc_rules: SymbolRules) -> None:
    c = mk(btc_rules)
    [p1] = c.start(0, bid=D("50000.00"), ask=D("50000.10"))
    [cx] = c.cancel()
    assert cx.client_order_id == p1.client_order_id
    assert c.on_order_update(upd(p1, OrderStatus.CANCELED)) == []
    assert c.done and c.report().status == "cancelled"


def test_exchange_cancel_re_rests(btc_rules: SymbolRules) -> None:
    c = mk(btc_rules)
    [p1] = c.start(0, bid=D("50000.00"), ask=D("50000.10"))
    [p2] = c.on_order_update(upd(p1, OrderStatus.EXPIRED))
    assert isinstance(p2, PlaceOrder) and p2.order_type is OrderType.LIMIT_MAKER


def test_tick_size_from_rules(real_rules: dict[str, SymbolRules]) -> None:
    xrp = real_rules["XRPETH"]
    c = Chase("XRPETH", Side.BUY, D("100"), xrp, "tg-c2-", "chase:2", D("0.0002500"), step_ms=10)
    [p1] = c.start(0, bid=D("0.0002400"), ask=D("0.0002410"))
    c.on_timer(10)
    [p2] = c.on_order_update(upd(p1, OrderStatus.CANCELED))
    assert p2.price == D("0.0002401")


def test_would_match_without_a_newer_book_waits_instead_of_walking_one_tick_per_refusal(btc_rules: SymbolRules) -> None:
    """Found under load in the e2e suite: the book was 100 USDT below a stale bid, and each refusal re-placed one
    tick lower at once: ~4,000 refused orders (each a REST call live) and a core busy for minutes."""
    c = mk(btc_rules)
    [p1] = c.start(0, bid=D("50000.00"), ask=D("50000.10"))
    [p2] = c.on_order_update(upd(p1, OrderStatus.REJECTED, reason=RejectReason.WOULD_MATCH))
    assert p2.price == D("49999.99")  # type: ignore[union-attr]  # a first refusal: one tick behind it
    assert c.on_order_update(upd(p2, OrderStatus.REJECTED, reason=RejectReason.WOULD_MATCH)) == []  # type: ignore[arg-type]
    assert c.on_timer(500) == []  # nothing new and the step has not passed: still waiting
    [p3] = c.on_tick(Tick("BTCUSDT", None, None, D("49900.00"), 600))  # a trade far below
    assert isinstance(p3, PlaceOrder) and p3.order_type is OrderType.LIMIT_MAKER
    assert p3.price == D("49899.99")  # one tick under the last trade
    [p4] = c.on_order_update(upd(p3, OrderStatus.REJECTED, reason=RejectReason.WOULD_MATCH))
    assert c.on_order_update(upd(p4, OrderStatus.REJECTED, reason=RejectReason.WOULD_MATCH)) == []  # type: ignore[arg-type]
    [p5] = c.on_timer(600 + 1000)  # no market data for a step: one more blind step, not a storm
    assert isinstance(p5, PlaceOrder) and p5.price < p4.price  # type: ignore[operator,union-attr]
    assert list(c.legs) == [p5.client_order_id]  # refused legs that never rested are not kept
