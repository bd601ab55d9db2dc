"""Grids: the user's configuration plus the engine's runtime blob, both JSON."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tgtrader.store.codec import json_from_db, json_to_db, now_ms

if TYPE_CHECKING:
    from tgtrader.store.db import Database, Statement


@dataclass(frozen=True, slots=True)
class GridRow:
    id: int
    symbol: str
    config: dict[str, Any]  # Decimals come back as strings; the owner converts
    state: str
    runtime: Any | None
    created_ms: int
    updated_ms: int


_COLS = "id, symbol, config, state, runtime, created_ms, updated_ms"


def _row(r: Any) -> GridRow:
    return GridRow(
        id=int(r[0]),
        symbol=r[1],
        config=json_from_db(r[2]),
        state=r[3],
        runtime=json_from_db(r[4]),
        created_ms=int(r[5]),
        updated_ms=int(r[6]),
    )


class GridRepo:
    def __init__(self, db: "Database"):
        self._db = db

    async def create(
        self, symbol: str, config: dict[str, Any], state: str = "created", *, ts_ms: int | None = None
    ) -> GridRow:
        ts = now_ms() if ts_ms is None else ts_ms
        _, grid_id = await self._db.insert(
            "INSERT INTO grids(symbol, config, state, runtime, created_ms, updated_ms) VALUES (?, ?, ?, NULL, ?, ?)",
            (symbol, json_to_db(config), state, ts, ts),
        )
        row = await self.get(grid_id)
        assert row is not None
        return row

    async def get(self, grid_id: int) -> GridRow | None:
        r = await self._db.fetchone(f"SELECT {_COLS} FROM grids WHERE id = ?", (grid_id,))
        return _row(r) if r else None

    async def list(self, states: Iterable[str] | None = None, symbol: str | None = None) -> list[GridRow]:
        sql, params = f"SELECT {_COLS} FROM grids WHERE 1=1", []
        if states is not None:
            states = list(states)
            sql += f" AND state IN ({','.join('?' * len(states))})"
            params += states
        if symbol is not None:
            sql += " AND symbol = ?"
            params.append(symbol)
        return [_row(r) for r in await self._db.fetchall(sql + " ORDER BY id", params)]

    async def set_state(self, grid_id: int, state: str, *, ts_ms: int | None = None) -> bool:
        n = await self._db.execute(*self.state_statement(grid_id, state, now_ms() if ts_ms is None else ts_ms))
        return n == 1

    @staticmethod
    def state_statement(grid_id: int, state: str, ts_ms: int) -> Statement:
        return "UPDATE grids SET state = ?, updated_ms = ? WHERE id = ?", (state, ts_ms, grid_id)

    async def set_config(self, grid_id: int, config: dict[str, Any], *, ts_ms: int | None = None) -> bool:
        n = await self._db.execute(
            "UPDATE grids SET config = ?, updated_ms = ? WHERE id = ?",
            (json_to_db(config), now_ms() if ts_ms is None else ts_ms, grid_id),
        )
        return n == 1

    async def save_runtime(
        self, grid_id: int, runtime: Any, *, state: str | None = None, ts_ms: int | None = None
    ) -> bool:
        """Persist the engine's runtime blob (optionally with a new state) in one statement."""
        n = await self._db.execute(*self.runtime_statement(grid_id, runtime, state, now_ms() if ts_ms is None else ts_ms))
        return n == 1

    @staticmethod
    def runtime_statement(grid_id: int, runtime: Any, state: str | None, ts_ms: int) -> Statement:
        if state is None:
            return "UPDATE grids SET runtime = ?, updated_ms = ? WHERE id = ?", (json_to_db(runtime), ts_ms, grid_id)
        return ("UPDATE grids SET runtime = ?, state = ?, updated_ms = ? WHERE id = ?",
                (json_to_db(runtime), state, ts_ms, grid_id))

    async def delete(self, grid_id: int) -> bool:
        return await self._db.execute("DELETE FROM grids WHERE id = ?", (grid_id,)) == 1
