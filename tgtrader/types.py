"""Frozen domain values shared by every layer: market ticks, orders, fills, intents.

Money is always `Decimal`. These types carry no behaviour beyond tiny derived
properties, so the core, the exchanges, the store and the front ends can all
speak them without importing each other.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from decimal import Decimal

ZERO = Decimal(0)


class Side(str, enum.Enum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def opposite(self) -> "Side":
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(str, enum.Enum):
    LIMIT = "LIMIT"
    LIMIT_MAKER = "LIMIT_MAKER"
    MARKET = "MARKET"
    STOP_LOSS_LIMIT = "STOP_LOSS_LIMIT"


class RejectReason(str, enum.Enum):
    """Why a venue refused an order or request, as the core needs to know it.

    Each adapter maps its own codes and texts to these; the core branches on nothing else (a reworded
    message once sent live maker-first chases to market while paper re-priced).
    """

    WOULD_MATCH = "would-match"  # a maker-only order would have traded at once
    WOULD_TRIGGER = "would-trigger"  # a stop order whose stop price the market already crossed: the stop is hit
    INSUFFICIENT_BALANCE = "insufficient-balance"
    FILTER = "filter"  # price/quantity/notional outside the symbol's rules
    UNKNOWN_ORDER = "unknown-order"
    RATE_LIMITED = "rate-limited"
    BANNED = "banned"
    UNAVAILABLE = "unavailable"  # no answer, 5xx, network
    # the venue expired the order instead of letting it trade with the account's own order (Binance self-trade
    # prevention: EXPIRED_IN_MATCH); set on EXPIRED updates, with `prevented_qty`
    SELF_TRADE = "self-trade"
    OTHER = "other"


class OrderStatus(str, enum.Enum):
    PENDING_NEW = "PENDING_NEW"  # intent emitted, no exchange answer yet
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    PENDING_CANCEL = "PENDING_CANCEL"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"

    @property
    def is_open(self) -> bool:
        return self in _OPEN_STATUSES

    @property
    def is_final(self) -> bool:
        return self in _FINAL_STATUSES


_OPEN_STATUSES = frozenset(
    {OrderStatus.PENDING_NEW, OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.PENDING_CANCEL}
)
_FINAL_STATUSES = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED}
)


# ---------------------------------------------------------------- market data


@dataclass(frozen=True, slots=True)
class Tick:
    """Best bid/ask and/or last trade for one symbol. `last` may be None for bookTicker."""

    symbol: str
    bid: Decimal | None
    ask: Decimal | None
    last: Decimal | None
    ts_ms: int

    @property
    def price(self) -> Decimal:
        """One reference price: last trade, else mid of the book."""
        if self.last is not None:
            return self.last
        if self.bid is not None and self.ask is not None:
            return (self.bid + self.ask) / 2
        return self.bid if self.bid is not None else self.ask  # type: ignore[return-value]


# ---------------------------------------------------------------- exchange news


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """The exchange's view of one order (from executionReport, REST answer or query)."""

    symbol: str
    client_order_id: str
    side: Side
    order_type: OrderType
    status: OrderStatus
    price: Decimal
    orig_qty: Decimal
    executed_qty: Decimal
    cum_quote: Decimal = ZERO
    exchange_order_id: int | None = None
    ts_ms: int = 0
    reject_reason: RejectReason | None = None  # set on REJECTED updates (and SELF_TRADE on EXPIRED ones)
    reject_text: str = ""  # the venue's words, for people
    prevented_qty: Decimal = ZERO  # quantity the venue expired to prevent a self-trade (never executed)


@dataclass(frozen=True, slots=True)
class Fill:
    """One trade against one of our orders. `trade_id` is unique per symbol on the exchange."""

    symbol: str
    trade_id: int
    client_order_id: str
    side: Side
    price: Decimal
    qty: Decimal
    fee: Decimal
    fee_asset: str
    is_maker: bool
    ts_ms: int
    exchange_order_id: int | None = None

    @property
    def notional(self) -> Decimal:
        return self.price * self.qty


@dataclass(frozen=True, slots=True)
class Balance:
    asset: str
    free: Decimal
    locked: Decimal

    @property
    def total(self) -> Decimal:
        return self.free + self.locked


# ---------------------------------------------------------------- intents (core -> drivers)


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    symbol: str
    client_order_id: str
    side: Side
    order_type: OrderType
    qty: Decimal
    price: Decimal | None = None
    stop_price: Decimal | None = None
    time_in_force: str | None = "GTC"
    owner: str = ""  # e.g. "grid:3", "stop:7", "chase:12", "manual"


@dataclass(frozen=True, slots=True)
class CancelOrder:
    symbol: str
    client_order_id: str
    owner: str = ""


@dataclass(frozen=True, slots=True)
class ReplaceOrder:
    """Cancel one order and place another (Binance cancelReplace, STOP_ON_FAILURE)."""

    cancel: CancelOrder
    place: PlaceOrder


@dataclass(frozen=True, slots=True)
class AlertIntent:
    """Something a human should hear about, as facts: `kind` names it and `payload` holds the plain JSON
    values it is about (ids, symbol, prices and quantities as Decimal strings, reasons). No text: the front
    end words it when the alert is delivered (`tgtrader.chat.alerts.render_alert`)."""

    kind: str
    payload: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReadBalance:
    """Ask the venue for `asset`'s free balance; the answer goes back to `owner` (its `on_balance`). An exit
    refused for insufficient balance sells what is free instead of giving up."""

    asset: str
    owner: str = ""


Intent = PlaceOrder | CancelOrder | ReplaceOrder | AlertIntent | ReadBalance


def str_or_none(value: object) -> str | None:
    """For saving an optional Decimal (machine state is JSON with Decimals as strings)."""
    return None if value is None else str(value)


def dec_or_none(value: str | int | Decimal | None) -> Decimal | None:
    """The inverse of `str_or_none` for Decimals."""
    return None if value is None else Decimal(value)
