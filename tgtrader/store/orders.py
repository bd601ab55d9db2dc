"""Orders we sent or are about to send, keyed by our deterministic client order id.

An order is recorded BEFORE it is sent (status PENDING_NEW), so a crash between sending and
hearing back leaves a row to look up by client order id instead of a blind resend.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tgtrader.store.codec import dec_from_db, dec_to_db, now_ms
from tgtrader.types import OrderStatus, OrderType, Side

if TYPE_CHECKING:
    from tgtrader.store.db import Database, Statement

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class OrderRow:
    client_order_id: str
    symbol: str
    side: Side
    type: OrderType
    price: Decimal | None
    qty: Decimal
    status: OrderStatus
    executed_qty: Decimal = ZERO
    owner: str = ""
    exchange_order_id: int | None = None
    stop_price: Decimal | None = None
    created_ms: int = 0
    updated_ms: int = 0


_COLS = (
    "client_order_id, symbol, side, type, price, qty, status, executed_qty, owner, "
    "exchange_order_id, stop_price, created_ms, updated_ms"
)
_OPEN = tuple(s.value for s in OrderStatus if s.is_open)


def _row(r: Any) -> OrderRow:
    return OrderRow(
        client_order_id=r[0],
        symbol=r[1],
        side=Side(r[2]),
        type=OrderType(r[3]),
        price=dec_from_db(r[4]),
        qty=Decimal(r[5]),
        status=OrderStatus(r[6]),
        executed_qty=Decimal(r[7]),
        owner=r[8],
        exchange_order_id=r[9],
        stop_price=dec_from_db(r[10]),
        created_ms=int(r[11]),
        updated_ms=int(r[12]),
    )


_VALUES = "(?,?,?,?,?,?,?,?,?,?,?,?,?)"


def _values(order: OrderRow, ts: int) -> tuple[object, ...]:
    return (
        order.client_order_id,
        order.symbol,
        order.side.value,
        order.type.value,
        dec_to_db(order.price),
        dec_to_db(order.qty),
        order.status.value,
        dec_to_db(order.executed_qty),
        order.owner,
        order.exchange_order_id,
        dec_to_db(order.stop_price),
        order.created_ms or ts,
        order.updated_ms or ts,
    )


class OrderRepo:
    def __init__(self, db: "Database"):
        self._db = db

    async def insert(self, order: OrderRow, *, ts_ms: int | None = None) -> bool:
        """Record a new order. Returns False (and changes nothing) if the client id already exists."""
        n, _ = await self._db.insert(*self.insert_statement(order, now_ms() if ts_ms is None else ts_ms))
        return n == 1

    @staticmethod
    def insert_statement(order: OrderRow, ts_ms: int) -> Statement:
        return f"INSERT OR IGNORE INTO orders({_COLS}) VALUES {_VALUES}", _values(order, ts_ms)

    async def upsert(self, order: OrderRow, *, ts_ms: int | None = None) -> None:
        """Insert, or refresh status / executed qty / exchange id of an existing row (reconciliation). One statement:
        the engine upserts on every order update it persists, before the order's counter order may leave."""
        await self._db.execute(*self.upsert_statement(order, now_ms() if ts_ms is None else ts_ms))

    @staticmethod
    def upsert_statement(order: OrderRow, ts_ms: int) -> Statement:
        return (
            f"INSERT INTO orders({_COLS}) VALUES {_VALUES} ON CONFLICT(client_order_id) DO UPDATE SET "
            "status = excluded.status, executed_qty = excluded.executed_qty, "
            "exchange_order_id = COALESCE(excluded.exchange_order_id, orders.exchange_order_id), updated_ms = ?",
            (*_values(order, ts_ms), ts_ms),
        )

    async def get(self, client_order_id: str) -> OrderRow | None:
        r = await self._db.fetchone(f"SELECT {_COLS} FROM orders WHERE client_order_id = ?", (client_order_id,))
        return _row(r) if r else None

    async def update(
        self,
        client_order_id: str,
        *,
        status: OrderStatus | None = None,
        executed_qty: Decimal | None = None,
        exchange_order_id: int | None = None,
        ts_ms: int | None = None,
    ) -> bool:
        """Change the given fields only. Returns False if there is no such order."""
        n = await self._db.execute(*self.update_statement(
            client_order_id, status=status, executed_qty=executed_qty, exchange_order_id=exchange_order_id,
            ts_ms=now_ms() if ts_ms is None else ts_ms))
        return n == 1

    @staticmethod
    def update_statement(client_order_id: str, *, status: OrderStatus | None = None,
                         executed_qty: Decimal | None = None, exchange_order_id: int | None = None,
                         ts_ms: int) -> Statement:
        sets, params = ["updated_ms = ?"], [ts_ms]
        if status is not None:
            sets.append("status = ?")
            params.append(status.value)
        if executed_qty is not None:
            sets.append("executed_qty = ?")
            params.append(dec_to_db(executed_qty))
        if exchange_order_id is not None:
            sets.append("exchange_order_id = ?")
            params.append(exchange_order_id)
        params.append(client_order_id)
        return f"UPDATE orders SET {', '.join(sets)} WHERE client_order_id = ?", tuple(params)

    async def open_orders(self, symbol: str | None = None, owner: str | None = None) -> list[OrderRow]:
        """Orders whose status is open (PENDING_NEW, NEW, PARTIALLY_FILLED, PENDING_CANCEL)."""
        sql = f"SELECT {_COLS} FROM orders WHERE status IN ({','.join('?' * len(_OPEN))})"
        params: list[Any] = list(_OPEN)
        if symbol is not None:
            sql += " AND symbol = ?"
            params.append(symbol)
        if owner is not None:
            sql += " AND owner = ?"
            params.append(owner)
        return [_row(r) for r in await self._db.fetchall(sql + " ORDER BY created_ms, client_order_id", params)]

    async def by_owner(self, owner: str) -> list[OrderRow]:
        rows = await self._db.fetchall(
            f"SELECT {_COLS} FROM orders WHERE owner = ? ORDER BY created_ms, client_order_id", (owner,)
        )
        return [_row(r) for r in rows]

    async def list(self, symbol: str | None = None, limit: int = 1000) -> list[OrderRow]:
        sql, params = f"SELECT {_COLS} FROM orders", []
        if symbol is not None:
            sql += " WHERE symbol = ?"
            params.append(symbol)
        sql += " ORDER BY created_ms DESC, client_order_id LIMIT ?"
        params.append(limit)
        return [_row(r) for r in await self._db.fetchall(sql, params)]

    async def delete(self, client_order_id: str) -> bool:
        return await self._db.execute("DELETE FROM orders WHERE client_order_id = ?", (client_order_id,)) == 1
