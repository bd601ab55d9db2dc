from __future__ import annotations

import json
from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from tgtrader.core.orders import OrderTracker, can_transition
from tgtrader.types import Fill, OrderStatus, OrderType, OrderUpdate, PlaceOrder, Side

S = OrderStatus
CID = "tg-g1-0B1"


def place(tr: OrderTracker, qty: str = "1") -> None:
    tr.on_place(PlaceOrder("BTCUSDT", CID, Side.BUY, OrderType.LIMIT, D(qty), D("100"), owner="grid:1"), ts_ms=1)


def upd(status: OrderStatus, executed: str = "0", ts: int = 2) -> OrderUpdate:
    return OrderUpdate("BTCUSDT", CID, Side.BUY, OrderType.LIMIT, status, D("100"), D("1"), D(executed), ts_ms=ts)


def fill(tid: int, qty: str) -> Fill:
    return Fill("BTCUSDT", tid, CID, Side.BUY, D("100"), D(qty), D("0.01"), "USDT", True, 5)


def test_lifecycle_and_stale_updates_ignored() -> None:
    tr = OrderTracker()
    place(tr)
    assert tr.get(CID).status is S.PENDING_NEW  # type: ignore[union-attr]
    assert tr.on_update(upd(S.NEW)).applied
    assert tr.on_update(upd(S.PARTIALLY_FILLED, "0.4")).applied
    r = tr.on_update(upd(S.NEW, "0"))  # late NEW
    assert not r.applied and tr.get(CID).status is S.PARTIALLY_FILLED  # type: ignore[union-attr]
    r = tr.on_update(upd(S.FILLED, "1"))
    assert r.applied and r.became_final
    for late in (upd(S.NEW), upd(S.PARTIALLY_FILLED, "0.4"), upd(S.CANCELED, "1")):
        assert not tr.on_update(late).applied
    o = tr.get(CID)
    assert o is not None and o.status is S.FILLED and o.executed_qty == D("1")


def test_executed_never_decreases() -> None:
    tr = OrderTracker()
    place(tr)
    tr.on_update(upd(S.PARTIALLY_FILLED, "0.5"))
    assert not tr.on_update(upd(S.PARTIALLY_FILLED, "0.3")).applied
    assert tr.get(CID).executed_qty == D("0.5")  # type: ignore[union-attr]


def test_duplicate_fills_dropped_and_fill_drives_status() -> None:
    tr = OrderTracker()
    place(tr)
    assert tr.on_fill(fill(10, "0.6"))
    assert not tr.on_fill(fill(10, "0.6"))
    o = tr.get(CID)
    assert o is not None and o.executed_qty == D("0.6") and o.status is S.PARTIALLY_FILLED
    assert tr.on_fill(fill(11, "0.4"))
    assert o.status is S.FILLED and tr.last_trade_id["BTCUSDT"] == 11
    # the FILLED update arriving after the fills changes nothing
    assert not tr.on_update(upd(S.FILLED, "1")).applied


def test_cancel_request_then_inflight_partial_then_cancel() -> None:
    tr = OrderTracker()
    place(tr)
    tr.on_update(upd(S.NEW))
    tr.on_cancel_requested(CID)
    assert tr.get(CID).status is S.PENDING_CANCEL  # type: ignore[union-attr]
    r = tr.on_update(upd(S.PARTIALLY_FILLED, "0.2"))
    assert r.applied and tr.get(CID).status is S.PENDING_CANCEL  # type: ignore[union-attr]
    r = tr.on_update(upd(S.CANCELED, "0.2"))
    assert r.became_final and tr.get(CID).executed_qty == D("0.2")  # type: ignore[union-attr]
    assert tr.open_orders() == []


def test_unknown_order_is_adopted_with_owner_from_id() -> None:
    tr = OrderTracker()
    r = tr.on_update(upd(S.NEW))
    assert r.applied and r.order is not None and r.order.owner == "grid:1"


def test_restart_from_state() -> None:
    tr = OrderTracker()
    place(tr)
    tr.on_update(upd(S.NEW))
    tr.on_fill(fill(10, "0.6"))
    state = json.loads(json.dumps(tr.to_state()))
    tr2 = OrderTracker.from_state(state)
    assert tr2.to_state() == tr.to_state()
    assert not tr2.on_fill(fill(10, "0.6"))
    assert tr2.open_orders(symbol="BTCUSDT", owner="grid:1")[0].executed_qty == D("0.6")


def test_final_states_have_no_exit() -> None:
    for final in (S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED):
        assert not any(can_transition(final, s) for s in S)


@settings(max_examples=200)
@given(st.lists(st.tuples(st.sampled_from([s for s in S if s is not S.PENDING_NEW]), st.integers(0, 10)), max_size=12))
def test_random_update_orders_keep_invariants(seq: list[tuple[OrderStatus, int]]) -> None:
    tr = OrderTracker()
    place(tr, "10")
    prev_exec = D(0)
    final_seen: OrderStatus | None = None
    for status, executed in seq:
        tr.on_update(
            OrderUpdate("BTCUSDT", CID, Side.BUY, OrderType.LIMIT, status, D("100"), D("10"), D(executed))
        )
        o = tr.get(CID)
        assert o is not None and o.executed_qty >= prev_exec
        prev_exec = o.executed_qty
        if final_seen is not None:
            assert o.status is final_seen
        if o.status.is_final:
            final_seen = o.status
