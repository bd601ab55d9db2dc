"""Fills, deduplicated by (symbol, trade_id): the same trade heard twice (stream + REST) counts once."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tgtrader.types import Fill, Side

if TYPE_CHECKING:
    from tgtrader.store.db import Database, Statement

_COLS = "symbol, trade_id, client_order_id, side, price, qty, fee, fee_asset, is_maker, ts_ms, exchange_order_id"
_LAST_SEEN = "last_trade_id:"


def _row(r: Any) -> Fill:
    return Fill(
        symbol=r[0],
        trade_id=int(r[1]),
        client_order_id=r[2],
        side=Side(r[3]),
        price=Decimal(r[4]),
        qty=Decimal(r[5]),
        fee=Decimal(r[6]),
        fee_asset=r[7],
        is_maker=bool(r[8]),
        ts_ms=int(r[9]),
        exchange_order_id=r[10],
    )


class FillRepo:
    def __init__(self, db: "Database"):
        self._db = db
        # per symbol, an upper bound of the stored trade ids (this repository is the only writer of fills): a trade
        # id above it is certainly new, so the engine's duplicate check needs no read for a fresh fill. Never
        # below the truth (a rolled-back insert only leaves it higher, which costs a read, not a miss).
        self._top: dict[str, int] = {}

    async def add(self, fill: Fill) -> bool:
        """Store a fill. True if it was new, False if (symbol, trade_id) was already recorded."""
        n, _ = await self._db.insert(*self.add_statement(fill))
        if n == 1:
            self.stored(fill)
        return n == 1

    @staticmethod
    def add_statement(fill: Fill) -> Statement:
        """The INSERT of `add` (a duplicate (symbol, trade_id) is ignored), for a batch (`Database.write`)."""
        return (
            f"INSERT OR IGNORE INTO fills({_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (fill.symbol, fill.trade_id, fill.client_order_id, fill.side.value, str(fill.price), str(fill.qty),
             str(fill.fee), fill.fee_asset, 1 if fill.is_maker else 0, fill.ts_ms, fill.exchange_order_id),
        )

    def stored(self, fill: Fill) -> None:
        """A batch wrote `fill`: keep the bound of stored trade ids above it."""
        top = self._top.get(fill.symbol)
        if top is not None and fill.trade_id > top:
            self._top[fill.symbol] = fill.trade_id

    async def exists(self, symbol: str, trade_id: int) -> bool:
        top = self._top.get(symbol)
        if top is None:
            stored = await self.max_trade_id(symbol)
            top = self._top[symbol] = -1 if stored is None else stored
        if trade_id > top:
            return False
        r = await self._db.fetchone("SELECT 1 FROM fills WHERE symbol = ? AND trade_id = ?", (symbol, trade_id))
        return r is not None

    async def for_order(self, client_order_id: str) -> list[Fill]:
        rows = await self._db.fetchall(
            f"SELECT {_COLS} FROM fills WHERE client_order_id = ? ORDER BY trade_id", (client_order_id,)
        )
        return [_row(r) for r in rows]

    async def list(self, symbol: str | None = None, since_ms: int = 0, limit: int = 10_000) -> list[Fill]:
        """Fills in trade order (oldest first), optionally for one symbol and from a time on."""
        sql, params = f"SELECT {_COLS} FROM fills WHERE ts_ms >= ?", [since_ms]
        if symbol is not None:
            sql += " AND symbol = ?"
            params.append(symbol)
        sql += " ORDER BY ts_ms, symbol, trade_id LIMIT ?"
        params.append(limit)
        return [_row(r) for r in await self._db.fetchall(sql, params)]

    async def max_trade_id(self, symbol: str) -> int | None:
        r = await self._db.fetchone("SELECT MAX(trade_id) FROM fills WHERE symbol = ?", (symbol,))
        return int(r[0]) if r and r[0] is not None else None

    # Reconciliation cursor: my_trades(fromId=last_seen + 1) after a restart or reconnect.

    async def last_seen_trade_id(self, symbol: str) -> int | None:
        value = await self._db.kv.get(_LAST_SEEN + symbol)
        return int(value) if value is not None else None

    async def set_last_seen_trade_id(self, symbol: str, trade_id: int) -> int:
        """Advance the cursor; it never moves backwards. Returns the stored value. One statement when it advances
        (the engine moves it with every fill it stores)."""
        async with self._db.transaction():
            moved = await self._db.execute(*self.cursor_statement(symbol, trade_id))
            if moved:
                return int(trade_id)
            current = await self.last_seen_trade_id(symbol)
            return int(trade_id) if current is None else current

    @staticmethod
    def cursor_statement(symbol: str, trade_id: int) -> Statement:
        """Advance the reconciliation cursor to `trade_id` unless it is further already."""
        return ("INSERT INTO kv(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value "
                "WHERE CAST(kv.value AS INTEGER) < CAST(excluded.value AS INTEGER)", (_LAST_SEEN + symbol, str(int(trade_id))))
