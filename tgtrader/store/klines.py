"""Cached candles (klines) per symbol and interval, for guided `/grid`'s suggestions (issue 17).

Why: a suggestion backtests the last days of 1m candles (up to 43,200 rows); fetching them again for every
`/grid` would cost ~44 requests and seconds of waiting. The cache keeps what was fetched; the next request
only asks Binance for the candles after the newest one stored. Market data, not money: floats are fine.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tgtrader.store.db import Database

Row = tuple[int, float, float, float, float, float]  # open time ms, open, high, low, close, volume


class KlineRepo:
    def __init__(self, db: "Database"):
        self._db = db

    async def newest(self, symbol: str, interval: str) -> int | None:
        """Open time of the newest stored candle, or None."""
        r = await self._db.fetchone("SELECT max(open_time) FROM klines WHERE symbol = ? AND interval = ?",
                                    (symbol, interval))
        return None if r is None or r[0] is None else int(r[0])

    async def add(self, symbol: str, interval: str, rows: Iterable[tuple[int, object, object, object, object, object]]) -> int:
        """Store candles (replacing same open times); returns how many were given."""
        values = [(symbol, interval, int(t), float(o), float(h), float(lo), float(c), float(v))  # type: ignore[arg-type]
                  for t, o, h, lo, c, v in rows]
        if not values:
            return 0
        async with self._db.transaction(durable=False) as conn:  # a lost cache row is fetched again
            await conn.executemany(
                "INSERT OR REPLACE INTO klines(symbol, interval, open_time, open, high, low, close, volume) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", values)
        return len(values)

    async def since(self, symbol: str, interval: str, start_ms: int) -> list[Row]:
        rows = await self._db.fetchall(
            "SELECT open_time, open, high, low, close, volume FROM klines WHERE symbol = ? AND interval = ? "
            "AND open_time >= ? ORDER BY open_time", (symbol, interval, start_ms))
        return [(int(r[0]), r[1], r[2], r[3], r[4], r[5]) for r in rows]

    async def prune(self, symbol: str, interval: str, before_ms: int) -> int:
        """Drop candles older than `before_ms` (the cache holds a window, not history)."""
        return await self._db.execute("DELETE FROM klines WHERE symbol = ? AND interval = ? AND open_time < ?",
                                      (symbol, interval, before_ms), durable=False)
