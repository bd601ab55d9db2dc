"""Issue 13: a hypothesis property over interleavings of place answers, cancel answers, trade events and order
updates. An adversarial venue holds every event of the chase's legs and delivers them in the order hypothesis
picks (a cancel answer carrying executedQty before its trades, trades long after their order ended, timers in
between). Whatever the order: the venue never executes more than was asked (no overfill), the chase counts every
fill once, never has two legs resting, and ends with every leg accounted for."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from tgtrader.core.chase import Chase
from tgtrader.core.liquidation import Liquidation
from tgtrader.types import (
    CancelOrder,
    Fill,
    Intent,
    OrderStatus,
    OrderType,
    OrderUpdate,
    PlaceOrder,
    ReadBalance,
    RejectReason,
    ReplaceOrder,
    Side,
)

from .conftest import REAL_RULES

RULES = REAL_RULES["BTCUSDT"]
QTY = D("0.01000")


@dataclass
class VenueLeg:
    order: PlaceOrder
    executed: D = D(0)
    open: bool = True


@dataclass
class Venue:
    legs: dict[str, VenueLeg] = field(default_factory=dict)
    pending: list[Fill | OrderUpdate] = field(default_factory=list)
    trade_id: int = 0
    ts: int = 0

    @property
    def executed(self) -> D:
        return sum((leg.executed for leg in self.legs.values()), D(0))

    def resting(self) -> list[VenueLeg]:
        return [leg for leg in self.legs.values() if leg.open]

    def _fill(self, leg: VenueLeg, qty: D) -> None:
        self.trade_id += 1
        leg.executed += qty
        o = leg.order
        price = o.price if o.price is not None else D("50000")
        self.pending.append(Fill(o.symbol, self.trade_id, o.client_order_id, o.side, price, qty, D(0), "USDT",
                                 o.order_type is not OrderType.MARKET, self.ts))

    def _final(self, leg: VenueLeg, status: OrderStatus) -> None:
        leg.open = False
        o = leg.order
        self.pending.append(OrderUpdate(o.symbol, o.client_order_id, o.side, o.order_type, status,
                                        o.price or D(0), o.qty, leg.executed, ts_ms=self.ts))

    def apply(self, intents: list[Intent]) -> None:
        for it in intents:
            if isinstance(it, ReplaceOrder):
                self.apply([it.cancel, it.place])
            elif isinstance(it, PlaceOrder):
                assert it.client_order_id not in self.legs, "a client order id reused"
                leg = self.legs[it.client_order_id] = VenueLeg(it)
                if it.order_type is OrderType.MARKET:
                    self._fill(leg, it.qty)
                    self._final(leg, OrderStatus.FILLED)
            elif isinstance(it, CancelOrder):
                leg = self.legs.get(it.client_order_id)
                if leg is not None and leg.open:
                    self._final(leg, OrderStatus.CANCELED)

    def trade(self, fraction: int) -> None:
        """The market trades through our resting leg: `fraction` tenths of what is left of it."""
        for leg in self.resting():
            left = leg.order.qty - leg.executed
            qty = RULES.round_qty(left * fraction / 10) if fraction < 10 else left
            if qty > 0:
                self._fill(leg, qty)
                if leg.executed >= leg.order.qty:
                    self._final(leg, OrderStatus.FILLED)


def deliver(c: Chase, event: Fill | OrderUpdate) -> list[Intent]:
    return c.on_fill(event) if isinstance(event, Fill) else c.on_order_update(event)


OPS = st.one_of(
    st.tuples(st.just("trade"), st.integers(1, 10)),
    st.tuples(st.just("timer"), st.just(0)),
    st.tuples(st.just("deliver"), st.integers(0, 50)),
    st.tuples(st.just("cancel"), st.just(0)),
)


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(OPS, max_size=40), fallback=st.booleans(), side=st.sampled_from(list(Side)))
def test_any_interleaving_never_overfills_and_accounts_every_fill_once(
        ops: list[tuple[str, int]], fallback: bool, side: Side) -> None:
    limit = D("50000.05") if side is Side.BUY else D("49999.95")
    c = Chase("BTCUSDT", side, QTY, RULES, "tg-c1-", "chase:1", limit, step_ms=1000, market_fallback=fallback)
    v = Venue()
    v.apply(c.start(0, bid=D("49999.99"), ask=D("50000.01")))
    delivered: list[Fill] = []
    for op, arg in ops:
        v.ts += 600
        if op == "trade":
            v.trade(arg)
        elif op == "timer":
            v.apply(c.on_timer(v.ts))
        elif op == "deliver" and v.pending:
            event = v.pending.pop(arg % len(v.pending))
            if isinstance(event, Fill):
                delivered.append(event)
            v.apply(deliver(c, event))
        elif op == "cancel":
            v.apply(c.cancel())
        assert v.executed <= QTY, f"overfill: the venue executed {v.executed} of {QTY}"
        assert len(v.resting()) <= 1, "two legs resting at once"
        assert c.filled == sum((f.qty for f in delivered), D(0))
    for _ in range(200):  # the venue finally delivers everything, in order; time passes
        if v.pending:
            event = v.pending.pop(0)
            if isinstance(event, Fill):
                delivered.append(event)
            v.apply(deliver(c, event))
        else:
            v.ts += 1000
            v.apply(c.on_timer(v.ts))
        assert v.executed <= QTY
        if c.done and not v.pending:
            break
    assert c.filled == v.executed == sum((f.qty for f in delivered), D(0))  # every fill counted, once
    if c.done:
        assert not v.resting()


@settings(max_examples=200, deadline=None)
@given(owed_steps=st.integers(1, 500), free_steps=st.integers(0, 600),
       fills=st.lists(st.integers(0, 10), min_size=1, max_size=12), late_first=st.booleans())
def test_an_exit_sells_until_flat_never_more_than_owned_whatever_the_market_leaves(
        owed_steps: int, free_steps: int, fills: list[int], late_first: bool) -> None:
    """The one exit on thin books: each MARKET leg fills a fraction and EXPIRES the rest (or is refused for balance
    when it asks for more than is free); its update may come before its trades. It sells until flat, never more
    than it owes nor more than is free, and reports exactly what is left."""
    step = RULES.step_size
    owed, free = step * owed_steps * 100, step * free_steps * 100
    liq = Liquidation(1, "BTCUSDT", RULES, owed)
    sold = D(0)
    pending: list[Fill | OrderUpdate] = []
    intents = liq.start(0, D("50000"))
    ts, trade_id, n = 0, 0, 0
    for _ in range(2000):  # a leg that sells a tenth each time needs many legs: each one is progress
        for it in intents:
            if isinstance(it, ReadBalance):
                pending.append(BalanceAnswer(free - sold))  # type: ignore[arg-type]
            elif isinstance(it, PlaceOrder):
                assert it.order_type is OrderType.MARKET and it.side is Side.SELL
                ts += 1
                if it.qty > free - sold:
                    pending.append(OrderUpdate(it.symbol, it.client_order_id, it.side, it.order_type,
                                               OrderStatus.REJECTED, D(0), it.qty, D(0), ts_ms=ts,
                                               reject_reason=RejectReason.INSUFFICIENT_BALANCE))
                    continue
                frac = fills[n % len(fills)]
                n += 1
                qty = it.qty if frac == 10 else RULES.round_qty(it.qty * frac / 10)
                evs: list[Fill | OrderUpdate] = []
                if qty > 0:
                    trade_id += 1
                    sold += qty
                    evs.append(Fill(it.symbol, trade_id, it.client_order_id, it.side, D("50000"), qty, D(0), "USDT",
                                    False, ts))
                status = OrderStatus.FILLED if qty == it.qty else OrderStatus.EXPIRED
                evs.append(OrderUpdate(it.symbol, it.client_order_id, it.side, it.order_type, status, D(0), it.qty,
                                       qty, ts_ms=ts))
                pending += list(reversed(evs)) if late_first else evs
        assert sold <= owed and sold <= free, "sold more than owned or free"
        if not pending:
            break
        event = pending.pop(0)
        if isinstance(event, BalanceAnswer):
            intents = liq.on_balance("BTC", event.free, ts)
        elif isinstance(event, Fill):
            intents = liq.on_fill(event)
        else:
            intents = liq.on_order_update(event)
    assert not liq.active
    assert liq.sold == sold and liq.owed == owed - sold
    if liq.exit.state.value == "flat":
        left = min(owed, free) - sold  # what could still have been sold
        assert RULES.round_qty(left, market=True) == 0 or RULES.check_order(
            Side.SELL, OrderType.MARKET, RULES.round_qty(left, market=True), None, reference_price=D("50000"))


@dataclass(frozen=True)
class BalanceAnswer:
    free: D
