"""A tiny touch-fill venue for core tests: resting limits fill AT THEIR LIMIT when the price path
touches them (PLAN.md fill model), market orders fill at the current price, fee in quote (or, with
`buy_fee_in_base`, a buy's fee in base as Binance charges by default).

Not a Binance simulator (that is tgtrader/exchange/paper.py); it exists so the pure core can be
driven through whole price paths without any I/O, and it checks every order against real filters.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal

from tgtrader.core.rules import SymbolRules
from tgtrader.types import (
    AlertIntent,
    CancelOrder,
    Fill,
    Intent,
    OrderStatus,
    OrderType,
    OrderUpdate,
    PlaceOrder,
    RejectReason,
    ReplaceOrder,
    Side,
    Tick,
)

ZERO = Decimal(0)
Event = Tick | OrderUpdate | Fill


@dataclass
class Sim:
    rules: SymbolRules
    price: Decimal
    fee_rate: Decimal = Decimal("0.001")
    buy_fee_in_base: bool = False
    quote: Decimal = ZERO
    base: Decimal = ZERO
    fees: Decimal = ZERO
    ts: int = 0
    resting: dict[str, PlaceOrder] = field(default_factory=dict)
    filled: dict[str, Decimal] = field(default_factory=dict)
    trades: list[Fill] = field(default_factory=list)
    placed: list[PlaceOrder] = field(default_factory=list)
    alerts: list[AlertIntent] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    next_trade: int = 1

    def _fill(self, o: PlaceOrder, qty: Decimal, price: Decimal, maker: bool) -> list[Event]:
        fee, fee_asset = qty * price * self.fee_rate, self.rules.quote_asset
        if o.side is Side.BUY and self.buy_fee_in_base:  # Binance's default: a buy's commission in the base asset
            fee, fee_asset = qty * self.fee_rate, self.rules.base_asset
            self.fees += fee * price
            self.base += qty - fee
            self.quote -= qty * price
        elif o.side is Side.BUY:
            self.fees += fee
            self.base += qty
            self.quote -= qty * price + fee
        else:
            self.fees += fee
            self.base -= qty
            self.quote += qty * price - fee
        f = Fill(o.symbol, self.next_trade, o.client_order_id, o.side, price, qty, fee, fee_asset, maker, self.ts)
        self.next_trade += 1
        self.trades.append(f)
        self.filled[o.client_order_id] = self.filled.get(o.client_order_id, ZERO) + qty
        done = self.filled[o.client_order_id] >= o.qty
        st = OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED
        return [f, OrderUpdate(o.symbol, o.client_order_id, o.side, o.order_type, st, o.price or price, o.qty,
                               self.filled[o.client_order_id], ts_ms=self.ts)]

    def execute(self, intents: list[Intent]) -> list[Event]:
        out: list[Event] = []
        for it in intents:
            if isinstance(it, AlertIntent):
                self.alerts.append(it)
            elif isinstance(it, ReplaceOrder):
                out += self._cancel(it.cancel)
                out += self._place(it.place)
            elif isinstance(it, CancelOrder):
                out += self._cancel(it)
            elif isinstance(it, PlaceOrder):
                out += self._place(it)
        return out

    def _cancel(self, c: CancelOrder) -> list[Event]:
        o = self.resting.pop(c.client_order_id, None)
        if o is None:
            return []
        return [OrderUpdate(o.symbol, o.client_order_id, o.side, o.order_type, OrderStatus.CANCELED, o.price or ZERO,
                            o.qty, self.filled.get(o.client_order_id, ZERO), ts_ms=self.ts)]

    def _place(self, o: PlaceOrder) -> list[Event]:
        self.placed.append(o)
        problems = self.rules.check_order(o.side, o.order_type, o.qty, o.price, reference_price=self.price,
                                          stop_price=o.stop_price)
        if problems:
            self.violations.append(f"{o.client_order_id}: {problems}")
        if o.order_type is OrderType.MARKET:
            return self._fill(o, o.qty, self.price, False)
        marketable = (o.side is Side.BUY and o.price >= self.price) or (o.side is Side.SELL and o.price <= self.price)  # type: ignore[operator]
        if marketable:
            if o.order_type is OrderType.LIMIT_MAKER:
                return [OrderUpdate(o.symbol, o.client_order_id, o.side, o.order_type, OrderStatus.REJECTED,
                                    o.price or ZERO, o.qty, ZERO, ts_ms=self.ts,
                                    reject_reason=RejectReason.WOULD_MATCH,
                                    reject_text="Order would immediately match and take.")]
            return self._fill(o, o.qty, o.price, False)  # type: ignore[arg-type]
        self.resting[o.client_order_id] = o
        return [OrderUpdate(o.symbol, o.client_order_id, o.side, o.order_type, OrderStatus.NEW, o.price or ZERO, o.qty,
                            ZERO, ts_ms=self.ts)]

    def move(self, new_price: Decimal, partial: Decimal | None = None) -> list[Event]:
        """Move the price; fill every touched resting order at its limit, in path order.

        `partial` fills only that fraction of each touched order (the rest keeps resting)."""
        old, self.price = self.price, new_price
        self.ts += 1000
        if new_price < old:
            touched = sorted((o for o in self.resting.values() if o.side is Side.BUY and o.price >= new_price),  # type: ignore[operator]
                             key=lambda o: -o.price)  # type: ignore[operator]
        else:
            touched = sorted((o for o in self.resting.values() if o.side is Side.SELL and o.price <= new_price),  # type: ignore[operator]
                             key=lambda o: o.price)  # type: ignore[arg-type, return-value]
        out: list[Event] = []
        for o in touched:
            left = o.qty - self.filled.get(o.client_order_id, ZERO)
            qty = left
            if partial is not None:
                qty = self.rules.round_qty(left * partial)
                if qty <= 0 or qty >= left:
                    qty = left
            out += self._fill(o, qty, o.price, True)  # type: ignore[arg-type]
            if self.filled[o.client_order_id] >= o.qty:
                del self.resting[o.client_order_id]
        out.append(Tick(self.rules.symbol, new_price, new_price, new_price, self.ts))
        return out


def drive(machine: object, sim: Sim, first: list[Intent], events: list[Event] | None = None) -> None:
    """Run intents through the sim and feed the resulting events back until quiet."""
    queue: deque[Event] = deque(sim.execute(first))
    if events:
        queue.extend(events)
    while queue:
        ev = queue.popleft()
        if isinstance(ev, Fill):
            intents = machine.on_fill(ev)  # type: ignore[attr-defined]
        elif isinstance(ev, OrderUpdate):
            intents = machine.on_order_update(ev)  # type: ignore[attr-defined]
        else:
            intents = machine.on_tick(ev)  # type: ignore[attr-defined]
        queue.extend(sim.execute(intents))
