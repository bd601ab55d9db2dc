"""A small key-value table for cursors and flags (e.g. the last seen trade id per symbol)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tgtrader.store.db import Database


class KvRepo:
    def __init__(self, db: "Database"):
        self._db = db

    async def get(self, key: str, default: str | None = None) -> str | None:
        r = await self._db.fetchone("SELECT value FROM kv WHERE key = ?", (key,))
        return r[0] if r else default

    async def set(self, key: str, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"kv values are text; got {type(value).__name__} (convert it explicitly)")
        await self._db.execute(
            "INSERT INTO kv(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    async def delete(self, key: str) -> bool:
        return await self._db.execute("DELETE FROM kv WHERE key = ?", (key,)) == 1

    async def items(self, prefix: str = "") -> dict[str, str]:
        rows = await self._db.fetchall(
            "SELECT key, value FROM kv WHERE substr(key, 1, ?) = ? ORDER BY key", (len(prefix), prefix)
        )
        return {r[0]: r[1] for r in rows}
