"""Typed events the core publishes, and the in-process bus the front ends subscribe to.

The bus is synchronous fan-out: publishing never awaits, so a slow subscriber (Telegram) can't stall
trading. Subscribers that do I/O put the event on their own queue (the alert outbox does).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import msgspec
from loguru import logger

from tgtrader.types import Side


@dataclass(frozen=True, slots=True)
class OrderFilled:
    symbol: str
    side: Side
    price: Decimal
    qty: Decimal
    fee_quote: Decimal
    client_order_id: str
    owner: str  # "grid:3", "stop:2", "chase:5", "manual", "panic"
    trade_id: int
    ts_ms: int
    recovered: bool = False  # found by reconciliation, not seen live


@dataclass(frozen=True, slots=True)
class GridRoundTrip:
    grid_id: int
    symbol: str
    buy_price: Decimal
    sell_price: Decimal
    qty: Decimal
    profit: Decimal  # quote, after both fees
    ts_ms: int


@dataclass(frozen=True, slots=True)
class SaleRealized:
    """One sale's realized result against what the sold base cost, fees included once (core/pnl.py's
    definition). Owners that know the cost emit it: grids on every sale (round trips, start base, exits, panic),
    stops that know their entry price, panic's exits of base the bot bought. The kernel books it to the day;
    it is not an alert."""

    owner: str
    symbol: str
    qty: Decimal
    realized: Decimal
    ts_ms: int


@dataclass(frozen=True, slots=True)
class StopTriggered:
    stop_id: str  # "stop:7" or "grid:3:sl" / "grid:3:tp"
    symbol: str
    kind: str  # "stop-loss", "take-profit", "hard-fallback"
    trigger_price: Decimal
    price: Decimal
    qty: Decimal
    realized: Decimal
    ts_ms: int


@dataclass(frozen=True, slots=True)
class GridStateChanged:
    grid_id: int
    symbol: str
    old: str
    new: str
    reason: str
    ts_ms: int


@dataclass(frozen=True, slots=True)
class StreamDown:
    stream: str
    reason: str
    ts_ms: int


@dataclass(frozen=True, slots=True)
class StreamUp:
    stream: str
    down_for_s: float
    recovered_fills: int
    ts_ms: int


@dataclass(frozen=True, slots=True)
class OrderRejected:
    symbol: str
    client_order_id: str
    owner: str
    reason: str
    code: int | None
    ts_ms: int


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    where: str
    message: str
    ts_ms: int
    severity: str = "error"  # "error", "ban" (418), "ban-over", "insufficient-balance"
    extra: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AlertRaised:
    """A machine's alert (its kind and facts), published once its reaction committed. The outbox row written in that
    transaction is the durable copy a chat front end delivers; this is for front ends that show alerts as they
    happen (the console)."""

    kind: str
    payload: dict[str, Any]
    ts_ms: int


CoreEvent = (
    OrderFilled | GridRoundTrip | StopTriggered | GridStateChanged | StreamDown | StreamUp | OrderRejected | ErrorEvent
    | SaleRealized | AlertRaised
)
Subscriber = Callable[[CoreEvent], None]


class EventBus:
    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add a subscriber; returns a function that removes it."""
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    def publish(self, event: CoreEvent) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:  # a broken front end must never break trading
                logger.exception("event subscriber {} failed on {}", subscriber, type(event).__name__)


EVENTS_ALERT = "events"  # the outbox kind of a reaction's alertable events (worded at delivery by the front end)
ALERTED_BY_CORE = (OrderFilled, GridRoundTrip, GridStateChanged)  # written with their reaction: never lost


def plain(value: object) -> Any:
    """A dataclass (or anything) as JSON values: Decimals as strings, enums as their values."""
    return msgspec.to_builtins(value, enc_hook=str)


def events_payload(events: Iterable[CoreEvent]) -> dict[str, object]:
    """Events as an outbox payload (kind EVENTS_ALERT): {"events": [{"type": class name, **fields}, ...]}."""
    return {"events": [{"type": type(event).__name__, **plain(event)} for event in events]}
