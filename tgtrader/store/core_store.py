"""The core's `Store` port on the SQLite database: domain values in, rows and SQL kept here.

Every mapping between the core's values (TrackedOrder, machine snapshots, round-trip results) and table
rows lives in this module, so the core never sees a column name, a key format or a JSON blob layout.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from tgtrader.core.ids import parse_client_order_id
from tgtrader.core.orders import TrackedOrder
from tgtrader.core.ports import DayResult, MachineSnapshot, Reaction, SavedMachine, SavedState
from tgtrader.store.codec import json_from_db, json_to_db
from tgtrader.store.db import Database
from tgtrader.store.orders import OrderRow
from tgtrader.types import Fill, OrderStatus

ZERO = Decimal(0)
# Where each kind of client order id gets its owner number: a `sequences` row or a table's AUTOINCREMENT.
ID_SEQUENCES = {"chase": "chase", "panic": "panic", "exit": "exit"}
ID_TABLES = {"grid": "grids", "stop": "stops"}


def day_of(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def order_row(o: TrackedOrder, ts_ms: int) -> OrderRow:
    return OrderRow(o.client_order_id, o.symbol, o.side, o.order_type, o.price, o.qty, o.status, o.executed_qty,
                    o.owner, o.exchange_order_id, o.stop_price, o.created_ts or ts_ms, ts_ms)


def tracked_order(row: OrderRow) -> TrackedOrder:
    return TrackedOrder(
        symbol=row.symbol, client_order_id=row.client_order_id, side=row.side, order_type=row.type,
        qty=row.qty, price=row.price, stop_price=row.stop_price, owner=row.owner, status=row.status,
        executed_qty=row.executed_qty, exchange_order_id=row.exchange_order_id,
        created_ts=row.created_ms, updated_ts=row.updated_ms,
    )


class CoreStore:
    """`tgtrader.core.ports.Store` on a `Database` (which stays usable for the front ends' own tables)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._used: dict[str, int] = {}  # per id kind: the highest owner number known to be taken
        self._days: dict[str, DayResult] = {}  # day_results rows written by this store (its only writer)

    def transaction(self) -> AbstractAsyncContextManager[Any]:
        return self.db.transaction()

    # ------------------------------------------------------------ loading

    async def load_state(self) -> SavedState:
        machines: list[SavedMachine] = []
        for g in await self.db.fetchall("SELECT id, symbol, runtime, panic_paused FROM grids "
                                        "WHERE runtime IS NOT NULL ORDER BY id"):
            machines.append(SavedMachine("grid", g[0], g[1], json_from_db(g[2]), bool(g[3])))
        for s in await self.db.fetchall("SELECT id, symbol, runtime FROM stops WHERE runtime IS NOT NULL ORDER BY id"):
            machines.append(SavedMachine("stop", s[0], s[1], json_from_db(s[2])))
        for c in await self.db.fetchall("SELECT id, symbol, runtime FROM chases ORDER BY id"):
            machines.append(SavedMachine("chase", c[0], c[1], json_from_db(c[2])))
        for e in await self.db.fetchall("SELECT id, symbol, runtime FROM exits WHERE state = 'selling' ORDER BY id"):
            machines.append(SavedMachine("exit", e[0], e[1], json_from_db(e[2])))
        orders = tuple(tracked_order(r) for r in await self.db.orders.open_orders())
        return SavedState(tuple(machines), orders)

    # ------------------------------------------------------------ one reaction, one transaction

    async def save_reaction(self, r: Reaction) -> None:
        ts = r.ts_ms
        days: dict[str, tuple[Decimal, int]] = {}  # this reaction's sales and round trips, per UTC day
        for when, profit in r.realized:
            p, n = days.get(day_of(when), (ZERO, 0))
            days[day_of(when)] = (p + profit, n)
        for when in r.round_trips:
            p, n = days.get(day_of(when), (ZERO, 0))
            days[day_of(when)] = (p, n + 1)
        written: dict[str, DayResult] = {}
        async with self.db.transaction():
            if r.fill is not None:
                await self.db.fills.add(r.fill)
                await self.db.fills.set_last_seen_trade_id(r.fill.symbol, r.fill.trade_id)
                o = r.fill_order
                if o is not None:
                    await self.db.orders.update(o.client_order_id, status=o.status, executed_qty=o.executed_qty,
                                                ts_ms=ts)
            if r.machine is not None:
                await self.save_machine(r.machine, ts)
            for o in r.new_orders:
                await self.db.orders.insert(order_row(o, ts), ts_ms=ts)
            for o in r.updated_orders:
                await self.db.orders.upsert(order_row(o, ts), ts_ms=ts)
            for cid in r.cancel_requested:
                await self.db.orders.update(cid, status=OrderStatus.PENDING_CANCEL, ts_ms=ts)
            await self._taken([*(o.client_order_id for o in r.updated_orders),
                               *((r.fill.client_order_id,) if r.fill is not None else ())])
            for a in r.alerts:
                await self.db.outbox.enqueue(a.kind, payload=a.payload, now=ts)
            for day, (profit, trips) in days.items():
                written[day] = await self._add_day_result(day, profit, trips)
        self._days.update(written)  # only once committed: a failed reaction leaves the cache as the database

    async def _taken(self, client_order_ids: list[str]) -> None:
        """Move the id sequences past every owner number seen on the exchange (issue 19).

        A database that lost its last transactions (power loss, a restored backup) also lost the sequence
        increments that named their orders, while the exchange kept those orders. Reconciliation brings them
        back here (adopted orders, recovered fills); an owner number beyond its sequence moves the sequence
        on, so the next grid, stop, chase or panic never reuses a client order id. Checked in memory: no
        statement on the hot path unless a number is new."""
        for cid in client_order_ids:
            parsed = parse_client_order_id(cid)
            if parsed is None or (parsed.kind not in ID_SEQUENCES and parsed.kind not in ID_TABLES):
                continue
            used = self._used.get(parsed.kind)
            if used is None:
                used = self._used[parsed.kind] = await self._sequence_value(parsed.kind)
            if parsed.owner_id <= used:
                continue
            self._used[parsed.kind] = parsed.owner_id
            if parsed.kind in ID_SEQUENCES:
                await self.db.execute("INSERT INTO sequences(name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE "
                                      "SET value = max(value, excluded.value)", (ID_SEQUENCES[parsed.kind], parsed.owner_id))
            else:
                table = ID_TABLES[parsed.kind]
                if not await self.db.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = ?",
                                             (parsed.owner_id, table)):
                    await self.db.execute("INSERT INTO sqlite_sequence(name, seq) VALUES (?, ?)", (table, parsed.owner_id))

    async def _sequence_value(self, kind: str) -> int:
        if kind in ID_SEQUENCES:
            row = await self.db.fetchone("SELECT value FROM sequences WHERE name = ?", (ID_SEQUENCES[kind],))
        else:
            row = await self.db.fetchone("SELECT seq FROM sqlite_sequence WHERE name = ?", (ID_TABLES[kind],))
        return int(row[0]) if row and row[0] is not None else 0

    async def _add_day_result(self, day: str, profit: Decimal, round_trips: int) -> DayResult:
        """Decimal sums in Python: the column is TEXT (SQLite arithmetic would go through float). `profit` is the
        realized result of every sale that day (issue 15; rows before it summed round trips only). The day's row
        is read once and then kept in memory (this store is its only writer): one statement per sale, not two."""
        old = self._days.get(day)
        if old is None:
            (old,) = await self.day_results([day])
        new = DayResult(day, old.profit + profit, old.round_trips + round_trips)
        await self.db.execute("INSERT OR REPLACE INTO day_results(day, profit, round_trips) VALUES (?, ?, ?)",
                              (day, str(new.profit), new.round_trips))
        return new

    async def realized_total(self) -> Decimal:
        """Every day's realized result, summed in Decimal."""
        rows = await self.db.fetchall("SELECT profit FROM day_results")
        return sum((Decimal(r[0]) for r in rows), ZERO)

    async def save_machine(self, m: MachineSnapshot, ts_ms: int) -> None:
        runtime = json_to_db(m.runtime)
        if m.kind == "grid":
            if m.runtime:
                await self.db.grids.save_runtime(m.id, m.runtime, state=m.state, ts_ms=ts_ms)
            else:  # a grid that never started (its start was refused): a state, nothing to rebuild at restart
                await self.db.grids.set_state(m.id, m.state, ts_ms=ts_ms)
        elif m.kind == "stop":
            await self.db.execute(
                "UPDATE stops SET state = ?, hard_client_order_id = coalesce(?, hard_client_order_id), runtime = ?, "
                "updated_ms = ? WHERE id = ?", (m.state, m.order, runtime, ts_ms, m.id))
        elif m.kind in ("chase", "exit"):
            table = "chases" if m.kind == "chase" else "exits"
            await self.db.execute(
                f"INSERT INTO {table}(id, symbol, state, runtime, updated_ms) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET state = excluded.state, runtime = excluded.runtime, "
                "updated_ms = excluded.updated_ms", (m.id, m.symbol, m.state, runtime, ts_ms))
        else:
            raise ValueError(f"no table for machine kind {m.kind!r}")

    # ------------------------------------------------------------ creating things

    async def create_grid(self, symbol: str, config: dict[str, Any], ts_ms: int) -> int:
        return (await self.db.grids.create(symbol, config, "running", ts_ms=ts_ms)).id

    async def create_stop(self, symbol: str, kind: str, trigger: Decimal, qty: Decimal, ts_ms: int) -> int:
        return (await self.db.stops.add(symbol, kind, trigger, qty, "armed", ts_ms=ts_ms)).id

    async def set_panic_paused(self, grid_ids: set[int], ts_ms: int) -> None:
        async with self.db.transaction():
            await self.db.execute("UPDATE grids SET panic_paused = 0 WHERE panic_paused = 1")
            for gid in sorted(grid_ids):
                await self.db.execute("UPDATE grids SET panic_paused = 1 WHERE id = ?", (gid,))

    async def next_seq(self, name: str) -> int:
        async with self.db.transaction():  # durable (synchronous=FULL): a number handed out is never handed out again
            await self.db.execute("INSERT INTO sequences(name, value) VALUES (?, 1) "
                                  "ON CONFLICT(name) DO UPDATE SET value = value + 1", (name,))
            row = await self.db.fetchone("SELECT value FROM sequences WHERE name = ?", (name,))
        assert row is not None
        return int(row[0])

    # ------------------------------------------------------------ reading

    async def fill_seen(self, symbol: str, trade_id: int) -> bool:
        return await self.db.fills.exists(symbol, trade_id)

    async def trade_watermark(self, symbol: str) -> int | None:
        tid = await self.db.fills.last_seen_trade_id(symbol)
        return tid if tid is not None else await self.db.fills.max_trade_id(symbol)

    async def fills(self, symbol: str) -> list[Fill]:
        return await self.db.fills.list(symbol=symbol)

    async def day_results(self, days: list[str]) -> list[DayResult]:
        """One row per asked day, in order; a day without round trips is zero (one query for all days)."""
        rows = await self.db.fetchall(
            f"SELECT day, profit, round_trips FROM day_results WHERE day IN ({','.join('?' * len(days))})", days)
        found = {r[0]: (Decimal(r[1]), int(r[2])) for r in rows}
        return [DayResult(d, *found.get(d, (ZERO, 0))) for d in days]
