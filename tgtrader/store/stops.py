"""Stops: soft (watched by the bot), hard (a resting exchange order, its twin) and take-profit."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tgtrader.store.codec import dec_to_db, now_ms

if TYPE_CHECKING:
    from tgtrader.store.db import Database

STOP_KINDS = ("soft", "hard", "tp")


@dataclass(frozen=True, slots=True)
class StopRow:
    id: int
    symbol: str
    kind: str  # soft | hard | tp
    trigger_price: Decimal
    qty: Decimal
    state: str
    hard_client_order_id: str | None = None
    owner: str = ""
    created_ms: int = 0
    updated_ms: int = 0


_COLS = "id, symbol, kind, trigger_price, qty, state, hard_client_order_id, owner, created_ms, updated_ms"


def _row(r: Any) -> StopRow:
    return StopRow(
        id=int(r[0]),
        symbol=r[1],
        kind=r[2],
        trigger_price=Decimal(r[3]),
        qty=Decimal(r[4]),
        state=r[5],
        hard_client_order_id=r[6],
        owner=r[7],
        created_ms=int(r[8]),
        updated_ms=int(r[9]),
    )


class StopRepo:
    def __init__(self, db: "Database"):
        self._db = db

    async def add(
        self,
        symbol: str,
        kind: str,
        trigger_price: Decimal,
        qty: Decimal,
        state: str = "armed",
        *,
        hard_client_order_id: str | None = None,
        owner: str = "",
        ts_ms: int | None = None,
    ) -> StopRow:
        if kind not in STOP_KINDS:
            raise ValueError(f"stop kind must be one of {STOP_KINDS}, got {kind!r}")
        ts = now_ms() if ts_ms is None else ts_ms
        _, stop_id = await self._db.insert(
            "INSERT INTO stops(symbol, kind, trigger_price, qty, state, hard_client_order_id, owner, created_ms, updated_ms)"
            " VALUES (?,?,?,?,?,?,?,?,?)",
            (symbol, kind, dec_to_db(trigger_price), dec_to_db(qty), state, hard_client_order_id, owner, ts, ts),
        )
        row = await self.get(stop_id)
        assert row is not None
        return row

    async def get(self, stop_id: int) -> StopRow | None:
        r = await self._db.fetchone(f"SELECT {_COLS} FROM stops WHERE id = ?", (stop_id,))
        return _row(r) if r else None

    async def list(
        self, symbol: str | None = None, states: Iterable[str] | None = None, owner: str | None = None
    ) -> list[StopRow]:
        sql, params = f"SELECT {_COLS} FROM stops WHERE 1=1", []
        if symbol is not None:
            sql += " AND symbol = ?"
            params.append(symbol)
        if states is not None:
            states = list(states)
            sql += f" AND state IN ({','.join('?' * len(states))})"
            params += states
        if owner is not None:
            sql += " AND owner = ?"
            params.append(owner)
        return [_row(r) for r in await self._db.fetchall(sql + " ORDER BY id", params)]

    async def update(
        self,
        stop_id: int,
        *,
        state: str | None = None,
        trigger_price: Decimal | None = None,
        qty: Decimal | None = None,
        hard_client_order_id: str | None = None,
        ts_ms: int | None = None,
    ) -> bool:
        sets, params = ["updated_ms = ?"], [now_ms() if ts_ms is None else ts_ms]
        for column, value in (
            ("state", state),
            ("trigger_price", dec_to_db(trigger_price)),
            ("qty", dec_to_db(qty)),
            ("hard_client_order_id", hard_client_order_id),
        ):
            if value is not None:
                sets.append(f"{column} = ?")
                params.append(value)
        params.append(stop_id)
        return await self._db.execute(f"UPDATE stops SET {', '.join(sets)} WHERE id = ?", params) == 1

    async def delete(self, stop_id: int) -> bool:
        return await self._db.execute("DELETE FROM stops WHERE id = ?", (stop_id,)) == 1
