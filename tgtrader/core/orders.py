"""Order tracker: every order's state, with an explicit transition table, and fill de-duplication.

Orders are tracked from the moment an intent is emitted (PENDING_NEW), before the exchange has
answered, so a lost answer can be resolved by looking the client order id up. Exchange news can
arrive late, twice, or out of order: an update whose status transition is not in the table (NEW
after FILLED) or that would lower the executed quantity is ignored, not applied. Fills are kept
once per (symbol, trade_id). The tracker is the part of the core the engine persists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tgtrader.core.ids import owner_of
from tgtrader.core.states import Transitions
from tgtrader.types import Fill, OrderStatus, OrderType, OrderUpdate, PlaceOrder, Side, dec_or_none

ZERO = Decimal(0)
S = OrderStatus

# from-status -> statuses an update may move it to (a same-status update may only add executed qty)
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.PENDING_NEW: frozenset({S.NEW, S.PARTIALLY_FILLED, S.FILLED, S.PENDING_CANCEL, S.CANCELED, S.REJECTED, S.EXPIRED}),
    S.NEW: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.PENDING_CANCEL, S.CANCELED, S.EXPIRED}),
    S.PARTIALLY_FILLED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.PENDING_CANCEL, S.CANCELED, S.EXPIRED}),
    # a cancel request can fail (order filled meanwhile, or unknown): the order goes on living
    S.PENDING_CANCEL: frozenset({S.NEW, S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.EXPIRED}),
    S.FILLED: frozenset(),
    S.CANCELED: frozenset(),
    S.REJECTED: frozenset(),
    S.EXPIRED: frozenset(),
}


ORDER_TRANSITIONS = Transitions("order", TRANSITIONS)


def can_transition(old: OrderStatus, new: OrderStatus) -> bool:
    return new in TRANSITIONS[old]


def _set_status(order: "TrackedOrder", new: OrderStatus) -> None:
    """The only writer of a tracked order's status (after creation): the table refuses illegal moves."""
    order.status = ORDER_TRANSITIONS.move(order.client_order_id, order.status, new)


@dataclass(slots=True)
class TrackedOrder:
    symbol: str
    client_order_id: str
    side: Side
    order_type: OrderType
    qty: Decimal
    price: Decimal | None
    stop_price: Decimal | None = None
    owner: str = ""
    status: OrderStatus = OrderStatus.PENDING_NEW
    executed_qty: Decimal = ZERO
    cum_quote: Decimal = ZERO
    exchange_order_id: int | None = None
    created_ts: int = 0
    updated_ts: int = 0
    reject_text: str = ""
    cancel_requested: bool = False  # we asked for the cancel (an exchange-side cancel is news)
    fill_qty: Decimal = ZERO  # sum of distinct fills seen
    fill_quote: Decimal = ZERO

    @property
    def is_open(self) -> bool:
        return self.status.is_open

    @property
    def remaining(self) -> Decimal:
        return max(self.qty - self.executed_qty, ZERO)

    def to_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "client_order_id": self.client_order_id,
            "side": self.side.value,
            "order_type": self.order_type.value,
            "qty": str(self.qty),
            "price": None if self.price is None else str(self.price),
            "stop_price": None if self.stop_price is None else str(self.stop_price),
            "owner": self.owner,
            "status": self.status.value,
            "executed_qty": str(self.executed_qty),
            "cum_quote": str(self.cum_quote),
            "exchange_order_id": self.exchange_order_id,
            "created_ts": self.created_ts,
            "updated_ts": self.updated_ts,
            "reject_text": self.reject_text,
            "cancel_requested": self.cancel_requested,
            "fill_qty": str(self.fill_qty),
            "fill_quote": str(self.fill_quote),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrackedOrder":
        opt = dec_or_none
        return cls(
            symbol=d["symbol"],
            client_order_id=d["client_order_id"],
            side=Side(d["side"]),
            order_type=OrderType(d["order_type"]),
            qty=Decimal(d["qty"]),
            price=opt(d.get("price")),
            stop_price=opt(d.get("stop_price")),
            owner=d.get("owner", ""),
            status=OrderStatus(d["status"]),
            executed_qty=Decimal(d.get("executed_qty", "0")),
            cum_quote=Decimal(d.get("cum_quote", "0")),
            exchange_order_id=d.get("exchange_order_id"),
            created_ts=int(d.get("created_ts", 0)),
            updated_ts=int(d.get("updated_ts", 0)),
            reject_text=d.get("reject_text", d.get("reject_reason", "")),
            cancel_requested=bool(d.get("cancel_requested", False)),
            fill_qty=Decimal(d.get("fill_qty", "0")),
            fill_quote=Decimal(d.get("fill_quote", "0")),
        )


@dataclass(frozen=True, slots=True)
class UpdateResult:
    """What an exchange update did to the tracked order."""

    applied: bool
    order: TrackedOrder | None
    old_status: OrderStatus | None = None
    reason: str = ""  # why it was ignored

    @property
    def became_final(self) -> bool:
        return self.applied and self.order is not None and self.order.status.is_final and (
            self.old_status is None or not self.old_status.is_final
        )


@dataclass
class OrderTracker:
    orders: dict[str, TrackedOrder] = field(default_factory=dict)
    seen_trades: set[tuple[str, int]] = field(default_factory=set)
    last_trade_id: dict[str, int] = field(default_factory=dict)  # per symbol, for reconciliation

    # ------------------------------------------------------------ intents

    def on_place(self, intent: PlaceOrder, ts_ms: int = 0) -> TrackedOrder:
        """Track an order before it is sent. Tracking the same id twice keeps the first."""
        existing = self.orders.get(intent.client_order_id)
        if existing is not None:
            return existing
        order = TrackedOrder(
            symbol=intent.symbol,
            client_order_id=intent.client_order_id,
            side=intent.side,
            order_type=intent.order_type,
            qty=intent.qty,
            price=intent.price,
            stop_price=intent.stop_price,
            owner=intent.owner,
            created_ts=ts_ms,
            updated_ts=ts_ms,
        )
        self.orders[order.client_order_id] = order
        return order

    def on_cancel_requested(self, client_order_id: str, ts_ms: int = 0) -> TrackedOrder | None:
        order = self.orders.get(client_order_id)
        if order is None or not order.is_open:
            return order
        order.cancel_requested = True
        if order.status is not OrderStatus.PENDING_NEW:
            _set_status(order, OrderStatus.PENDING_CANCEL)
        order.updated_ts = max(order.updated_ts, ts_ms)
        return order

    def on_cancel_failed(self, client_order_id: str) -> None:
        """The cancel request was refused (already filled/unknown): the order status is as last reported."""
        order = self.orders.get(client_order_id)
        if order is not None and order.status is OrderStatus.PENDING_CANCEL:
            _set_status(order, OrderStatus.PARTIALLY_FILLED if order.executed_qty > 0 else OrderStatus.NEW)

    # ------------------------------------------------------------ exchange news

    def on_update(self, upd: OrderUpdate) -> UpdateResult:
        order = self.orders.get(upd.client_order_id)
        if order is None:
            # an order we did not emit (placed elsewhere, or before a lost state): adopt it
            order = TrackedOrder(
                symbol=upd.symbol,
                client_order_id=upd.client_order_id,
                side=upd.side,
                order_type=upd.order_type,
                qty=upd.orig_qty,
                price=upd.price,
                owner="",
                status=upd.status,
                executed_qty=upd.executed_qty,
                cum_quote=upd.cum_quote,
                exchange_order_id=upd.exchange_order_id,
                created_ts=upd.ts_ms,
                updated_ts=upd.ts_ms,
                reject_text=upd.reject_text,
            )
            order.owner = owner_of(upd.client_order_id)
            self.orders[order.client_order_id] = order
            return UpdateResult(True, order, None)
        old = order.status
        if upd.executed_qty < order.executed_qty:
            return UpdateResult(False, order, old, "executed quantity would decrease (stale update)")
        if upd.status == old:
            if upd.executed_qty == order.executed_qty and upd.status is not OrderStatus.PARTIALLY_FILLED:
                if upd.exchange_order_id is not None and order.exchange_order_id is None:
                    order.exchange_order_id = upd.exchange_order_id
                return UpdateResult(False, order, old, "duplicate update")
            if old.is_final:
                return UpdateResult(False, order, old, f"order already {old.value}")
        elif not can_transition(old, upd.status):
            # a PENDING_CANCEL we set ourselves may meet an in-flight PARTIALLY_FILLED: keep the fill info
            return UpdateResult(False, order, old, f"illegal transition {old.value} -> {upd.status.value}")
        if old is OrderStatus.PENDING_CANCEL and upd.status in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED):
            # an update that was in flight while we asked to cancel: keep waiting for the cancel answer
            order.executed_qty = upd.executed_qty
            order.cum_quote = max(order.cum_quote, upd.cum_quote)
            order.updated_ts = max(order.updated_ts, upd.ts_ms)
            return UpdateResult(True, order, old)
        _set_status(order, upd.status)
        order.executed_qty = upd.executed_qty
        order.cum_quote = max(order.cum_quote, upd.cum_quote)
        if upd.exchange_order_id is not None:
            order.exchange_order_id = upd.exchange_order_id
        if upd.reject_text:
            order.reject_text = upd.reject_text
        order.updated_ts = max(order.updated_ts, upd.ts_ms)
        return UpdateResult(True, order, old)

    def on_fill(self, fill: Fill) -> bool:
        """Record a fill; False for a duplicate (same symbol and trade id) which must not be applied again."""
        key = (fill.symbol, fill.trade_id)
        if key in self.seen_trades:
            return False
        self.seen_trades.add(key)
        if fill.trade_id > self.last_trade_id.get(fill.symbol, -1):
            self.last_trade_id[fill.symbol] = fill.trade_id
        order = self.orders.get(fill.client_order_id)
        if order is not None:
            order.fill_qty += fill.qty
            order.fill_quote += fill.notional
            if order.fill_qty > order.executed_qty:
                order.executed_qty = order.fill_qty
                order.cum_quote = max(order.cum_quote, order.fill_quote)
            if order.status in (OrderStatus.PENDING_NEW, OrderStatus.NEW) or (
                order.status is OrderStatus.PARTIALLY_FILLED
            ):
                _set_status(order, OrderStatus.FILLED if order.executed_qty >= order.qty
                            else OrderStatus.PARTIALLY_FILLED)
            elif order.status is OrderStatus.PENDING_CANCEL and order.executed_qty >= order.qty:
                _set_status(order, OrderStatus.FILLED)
            order.updated_ts = max(order.updated_ts, fill.ts_ms)
        return True

    def is_duplicate(self, fill: Fill) -> bool:
        return (fill.symbol, fill.trade_id) in self.seen_trades

    def is_duplicate_key(self, symbol: str, trade_id: int) -> bool:
        return (symbol, trade_id) in self.seen_trades

    # ------------------------------------------------------------ queries

    def get(self, client_order_id: str) -> TrackedOrder | None:
        return self.orders.get(client_order_id)

    def open_orders(self, symbol: str | None = None, owner: str | None = None) -> list[TrackedOrder]:
        return [
            o
            for o in self.orders.values()
            if o.is_open and (symbol is None or o.symbol == symbol) and (owner is None or o.owner == owner)
        ]

    def prune(self, keep_final: int = 1000) -> None:
        """Forget the oldest final orders beyond `keep_final` (the store keeps history)."""
        final = sorted((o for o in self.orders.values() if o.status.is_final), key=lambda o: o.updated_ts)
        for order in final[: max(0, len(final) - keep_final)]:
            del self.orders[order.client_order_id]

    # ------------------------------------------------------------ persistence

    def to_state(self) -> dict[str, Any]:
        return {
            "orders": [o.to_dict() for o in self.orders.values()],
            "seen_trades": sorted([s, t] for s, t in self.seen_trades),
            "last_trade_id": dict(self.last_trade_id),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "OrderTracker":
        tracker = cls()
        for d in state.get("orders", []):
            order = TrackedOrder.from_dict(d)
            tracker.orders[order.client_order_id] = order
        tracker.seen_trades = {(s, int(t)) for s, t in state.get("seen_trades", [])}
        tracker.last_trade_id = {k: int(v) for k, v in state.get("last_trade_id", {}).items()}
        return tracker
