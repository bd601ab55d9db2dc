"""The ports the core defines and the adapters implement: the exchange and the store.

Exchange: news (ticks, order updates, fills, balance changes, stream health) is pushed into one sink
callable set by the core, in the order it arrived, so one core task can apply it serially. The Binance
adapter and the paper exchange implement it; nothing is optional, so the core never probes an adapter.

Store: domain-level persistence. The core hands over one `Reaction` per event and the store writes it in
ONE transaction (fill, machine state, new and changed orders, alerts, daily result); the core never
sees rows, keys or SQL. `tgtrader.store.core_store.CoreStore` implements it on SQLite.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from tgtrader.core.orders import TrackedOrder
from tgtrader.core.rules import SymbolRules
from tgtrader.types import AlertIntent, Balance, Fill, OrderUpdate, PlaceOrder, ReplaceOrder, Tick


@dataclass(frozen=True, slots=True)
class BalanceUpdate:
    balances: tuple[Balance, ...]
    ts_ms: int = 0


@dataclass(frozen=True, slots=True)
class StreamStatus:
    """A stream went down or came back. `recovered_fills` counts fills found by reconciliation."""

    stream: str  # "market" or "user"
    up: bool
    reason: str = ""
    recovered_fills: int = 0
    ts_ms: int = 0


ExchangeEvent = Tick | OrderUpdate | Fill | BalanceUpdate | StreamStatus
EventSink = Callable[[ExchangeEvent], None]


@dataclass(frozen=True, slots=True)
class ExchangeHealth:
    market_last_msg_age_s: float | None
    user_last_msg_age_s: float | None
    reconnects_last_hour: int
    clock_offset_ms: int
    used_weight_1m: int
    banned_until_ms: int = 0


@runtime_checkable
class Exchange(Protocol):
    name: str  # "binance", "binance-testnet", "paper"
    # seconds after which an order request sent now can no longer be executed by the venue (absent then = never
    # existed); 0 for a venue that answers in-process
    order_settle_s: float

    def set_event_sink(self, sink: EventSink) -> None: ...

    def set_reconcile_source(self, source: Callable[[], Mapping[str, int | None]]) -> None:
        """The core's view for reconciliation after a stream gap: {symbol: last processed trade id or None}."""

    def expect_open_orders(self, symbol: str, client_order_ids: set[str]) -> None:
        """Orders the core believes open (after a restart), so a reconciliation reports how each ended."""

    async def start(self) -> None:
        """Connect, load symbol rules, open the user stream."""

    async def close(self) -> None: ...

    async def symbol_rules(self, symbol: str) -> SymbolRules:
        """Raises BadSymbol for an unknown symbol."""

    async def known_symbols(self) -> frozenset[str]:
        """Every symbol that can be traded (front ends reject others before the core sees them)."""

    async def place_order(self, order: PlaceOrder) -> OrderUpdate:
        """Place one order. Raises an ExchangeError subclass; OrderStatusUnknown when the answer was lost."""

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderUpdate: ...

    async def cancel_all(self, symbol: str) -> list[OrderUpdate]: ...

    async def replace_order(self, replace: ReplaceOrder) -> OrderUpdate: ...

    async def get_order(self, symbol: str, client_order_id: str) -> OrderUpdate | None:
        """None when the exchange does not know the client order id."""

    async def open_orders(self, symbol: str | None = None) -> list[OrderUpdate]: ...

    async def my_trades(self, symbol: str, from_trade_id: int | None = None) -> list[Fill]:
        """Our trades on `symbol` with trade id >= from_trade_id, oldest first."""

    async def order_trades(self, symbol: str, client_order_id: str, order_id: int) -> list[Fill]:
        """The trades of one order, oldest first (reconciliation looks for fills a stream gap hid)."""

    async def balances(self) -> dict[str, Balance]: ...

    async def commission_rate(self) -> Decimal | None:
        """The account's taker commission rate (previews and fee estimates use it); None if the venue won't say."""

    async def ticker_price(self, symbol: str) -> Decimal: ...

    async def avg_price(self, symbol: str) -> Decimal | None:
        """The venue's average price that its percent-price filters are checked against (None: not published)."""

    async def subscribe(self, symbols: set[str]) -> None:
        """Add market streams at run time without dropping the connection."""

    async def unsubscribe(self, symbols: set[str]) -> None: ...

    def health(self) -> ExchangeHealth: ...


# ---------------------------------------------------------------- store


@dataclass(frozen=True, slots=True)
class MachineSnapshot:
    """What the store keeps of one machine: enough to rebuild it with `from_state` after a restart."""

    kind: str  # "grid", "stop", "chase" (the client order id kind)
    id: int
    symbol: str
    state: str
    runtime: dict[str, Any]
    order: str | None = None  # a stop's resting (hard) order, shown in its table


@dataclass(frozen=True, slots=True)
class SavedMachine:
    kind: str
    id: int
    symbol: str
    runtime: dict[str, Any]
    panic_paused: bool = False


@dataclass(frozen=True, slots=True)
class SavedState:
    """Everything the core loads at start-up."""

    machines: tuple[SavedMachine, ...]
    open_orders: tuple[TrackedOrder, ...]


@dataclass(slots=True)
class Reaction:
    """The core's reaction to one event, written by the store in one transaction before any order leaves."""

    ts_ms: int
    fill: Fill | None = None
    fill_order: TrackedOrder | None = None  # the fill's order, as tracked after it
    machine: MachineSnapshot | None = None
    new_orders: list[TrackedOrder] = field(default_factory=list)  # saved PENDING_NEW before they are sent
    updated_orders: list[TrackedOrder] = field(default_factory=list)
    cancel_requested: list[str] = field(default_factory=list)  # client order ids: PENDING_CANCEL
    alerts: list[AlertIntent] = field(default_factory=list)
    realized: list[tuple[int, Decimal]] = field(default_factory=list)  # (ts_ms, realized) of every sale
    round_trips: list[int] = field(default_factory=list)  # ts_ms of each completed grid round trip


@dataclass(frozen=True, slots=True)
class DayResult:
    day: str  # YYYY-MM-DD, UTC
    profit: Decimal
    round_trips: int


@runtime_checkable
class Store(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[Any]:
        """Group several calls into one transaction (nested calls join it)."""

    async def load_state(self) -> SavedState: ...

    async def save_reaction(self, reaction: Reaction) -> None:
        """Write the whole reaction atomically (joins an open transaction)."""

    async def save_machine(self, snapshot: MachineSnapshot, ts_ms: int) -> None: ...

    async def create_grid(self, symbol: str, config: dict[str, Any], ts_ms: int) -> int:
        """A new grid row (state running); returns its id."""

    async def create_stop(self, symbol: str, kind: str, trigger: Decimal, qty: Decimal, ts_ms: int) -> int: ...

    async def set_panic_paused(self, grid_ids: set[int], ts_ms: int) -> None:
        """The grids a panic paused (resume_all resumes exactly these)."""

    async def next_seq(self, name: str) -> int:
        """1, 2, 3... per name, durable (client order ids are built from it)."""

    async def fill_seen(self, symbol: str, trade_id: int) -> bool: ...

    async def trade_watermark(self, symbol: str) -> int | None:
        """The highest trade id processed on `symbol` (None: never traded)."""

    async def fills(self, symbol: str) -> list[Fill]: ...

    async def day_results(self, days: list[str]) -> list[DayResult]: ...

    async def realized_total(self) -> Decimal:
        """The realized result of every sale ever booked (the sum of all days)."""
