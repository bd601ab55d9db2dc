"""The exchange interface the engine needs. The Binance adapter and the paper exchange both implement it.

News from the exchange (ticks, order updates, fills, balance changes, stream health) is pushed into
one sink callable set by the engine, in the order it arrived, so one engine task can apply it serially.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Callable, Mapping, Protocol, runtime_checkable

from tgtrader.core.rules import SymbolRules
from tgtrader.types import Balance, Fill, OrderUpdate, PlaceOrder, ReplaceOrder, Tick


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

    async def balances(self) -> dict[str, Balance]: ...

    async def ticker_price(self, symbol: str) -> Decimal: ...

    async def subscribe(self, symbols: set[str]) -> None:
        """Add market streams at run time without dropping the connection."""

    async def unsubscribe(self, symbols: set[str]) -> None: ...

    def health(self) -> ExchangeHealth: ...
