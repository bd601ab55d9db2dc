"""The engine's order record, its events, and the constants (fees, Binance's error messages) it answers with."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tgtrader.core.ports import BalanceUpdate
from tgtrader.types import Fill, OrderStatus, OrderType, OrderUpdate, Side

ZERO = Decimal(0)
DEFAULT_FEE = Decimal("0.001")

MSG_INSUFFICIENT = "Account has insufficient balance for requested action."
MSG_UNKNOWN_ORDER = "Unknown order sent."
MSG_BAD_SYMBOL = "Invalid symbol."
MSG_DUPLICATE = "Duplicate order sent."
MSG_WOULD_MATCH = "Order would immediately match and take."
MSG_STOP_IMMEDIATE = "Stop price would trigger immediately."
MSG_NO_PRICE = "Market has no price yet."


@dataclass(frozen=True, slots=True)
class EngineEvent:
    """One piece of exchange news for one account (the fake routes by account, paper has one)."""

    account: str
    event: OrderUpdate | Fill | BalanceUpdate


@dataclass(slots=True)
class EngineOrder:
    """The engine's mutable record of one order. `locked` is what this order still holds of `locked_asset`."""

    account: str
    symbol: str
    client_order_id: str
    order_id: int
    side: Side
    order_type: OrderType
    orig_qty: Decimal
    price: Decimal  # limit price (0 for MARKET, as Binance reports it)
    stop_price: Decimal | None
    time_in_force: str
    status: OrderStatus
    locked_asset: str
    locked: Decimal
    created_ms: int
    updated_ms: int
    seq: int
    working: bool = True  # False while a stop order waits for its trigger
    executed_qty: Decimal = ZERO
    cum_quote: Decimal = ZERO

    def to_update(self) -> OrderUpdate:
        return OrderUpdate(
            symbol=self.symbol,
            client_order_id=self.client_order_id,
            side=self.side,
            order_type=self.order_type,
            status=self.status,
            price=self.price,
            orig_qty=self.orig_qty,
            executed_qty=self.executed_qty,
            cum_quote=self.cum_quote,
            exchange_order_id=self.order_id,
            ts_ms=self.updated_ms,
        )

    def to_row(self) -> dict[str, Any]:
        """JSON-able form (Decimals as strings) for persistence."""
        return {
            "account": self.account,
            "symbol": self.symbol,
            "client_order_id": self.client_order_id,
            "order_id": self.order_id,
            "side": self.side.value,
            "order_type": self.order_type.value,
            "orig_qty": str(self.orig_qty),
            "price": str(self.price),
            "stop_price": None if self.stop_price is None else str(self.stop_price),
            "time_in_force": self.time_in_force,
            "status": self.status.value,
            "locked_asset": self.locked_asset,
            "locked": str(self.locked),
            "created_ms": self.created_ms,
            "updated_ms": self.updated_ms,
            "seq": self.seq,
            "working": self.working,
            "executed_qty": str(self.executed_qty),
            "cum_quote": str(self.cum_quote),
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "EngineOrder":
        return cls(
            account=row["account"],
            symbol=row["symbol"],
            client_order_id=row["client_order_id"],
            order_id=int(row["order_id"]),
            side=Side(row["side"]),
            order_type=OrderType(row["order_type"]),
            orig_qty=Decimal(row["orig_qty"]),
            price=Decimal(row["price"]),
            stop_price=None if row.get("stop_price") is None else Decimal(row["stop_price"]),
            time_in_force=row["time_in_force"],
            status=OrderStatus(row["status"]),
            locked_asset=row["locked_asset"],
            locked=Decimal(row["locked"]),
            created_ms=int(row["created_ms"]),
            updated_ms=int(row["updated_ms"]),
            seq=int(row["seq"]),
            working=bool(row["working"]),
            executed_qty=Decimal(row["executed_qty"]),
            cum_quote=Decimal(row["cum_quote"]),
        )

