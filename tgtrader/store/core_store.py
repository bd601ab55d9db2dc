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
from tgtrader.store.db import Database, Statement
from tgtrader.store.fills import FillRepo
from tgtrader.store.grids import GridRepo
from tgtrader.store.orders import OrderRepo, OrderRow
from tgtrader.store.outbox import OutboxRepo
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
        """The reaction's writes as one transaction in one trip to the database thread (`Database.write`): what the
        statements depend on (a day's row, an id sequence) is read first, the caches move only once committed."""
        ts = r.ts_ms
        days: dict[str, tuple[Decimal, int]] = {}  # this reaction's sales and round trips, per UTC day
        for when, profit in r.realized:
            p, n = days.get(day_of(when), (ZERO, 0))
            days[day_of(when)] = (p + profit, n)
        for when in r.round_trips:
            p, n = days.get(day_of(when), (ZERO, 0))
            days[day_of(when)] = (p, n + 1)
        written = {day: await self._day_after(day, profit, trips) for day, (profit, trips) in days.items()}
        taken = await self._taken([*(o.client_order_id for o in r.updated_orders),
                                   *((r.fill.client_order_id,) if r.fill is not None else ())])
        statements: list[Statement] = []
        if r.fill is not None:
            statements += [FillRepo.add_statement(r.fill), FillRepo.cursor_statement(r.fill.symbol, r.fill.trade_id)]
            o = r.fill_order
            if o is not None:
                statements.append(OrderRepo.update_statement(o.client_order_id, status=o.status,
                                                             executed_qty=o.executed_qty, ts_ms=ts))
        if r.machine is not None:
            statements.append(self._machine_statement(r.machine, ts))
        statements += [OrderRepo.insert_statement(order_row(o, ts), ts) for o in r.new_orders]
        statements += [OrderRepo.upsert_statement(order_row(o, ts), ts) for o in r.updated_orders]
        statements += [OrderRepo.update_statement(cid, status=OrderStatus.PENDING_CANCEL, ts_ms=ts)
                       for cid in r.cancel_requested]
        for kind, owner_id in taken.items():
            statements += _sequence_statements(kind, owner_id)
        statements += [OutboxRepo.enqueue_statement(a.kind, payload=a.payload, now=ts) for a in r.alerts]
        statements += [("INSERT OR REPLACE INTO day_results(day, profit, round_trips) VALUES (?, ?, ?)",
                        (d.day, str(d.profit), d.round_trips)) for d in written.values()]
        await self.db.write(statements)
        # only once committed: a failed reaction leaves the caches as the database
        if r.fill is not None:
            self.db.fills.stored(r.fill)
        self._days.update(written)
        self._used.update(taken)

    async def _taken(self, client_order_ids: list[str]) -> dict[str, int]:
        """The id sequences to move past owner numbers seen on the exchange (issue 19): {kind: owner number}.

        A database that lost its last transactions (power loss, a restored backup) also lost the sequence
        increments that named their orders, while the exchange kept those orders. Reconciliation brings them
        back here (adopted orders, recovered fills); an owner number beyond its sequence moves the sequence
        on, so the next grid, stop, chase or panic never reuses a client order id. Checked in memory: no
        statement on the hot path unless a number is new."""
        out: dict[str, int] = {}
        for cid in client_order_ids:
            parsed = parse_client_order_id(cid)
            if parsed is None or (parsed.kind not in ID_SEQUENCES and parsed.kind not in ID_TABLES):
                continue
            used = self._used.get(parsed.kind)
            if used is None:
                used = self._used[parsed.kind] = await self._sequence_value(parsed.kind)
            if parsed.owner_id > max(used, out.get(parsed.kind, 0)):
                out[parsed.kind] = parsed.owner_id
        return out

    async def _sequence_value(self, kind: str) -> int:
        if kind in ID_SEQUENCES:
            row = await self.db.fetchone("SELECT value FROM sequences WHERE name = ?", (ID_SEQUENCES[kind],))
        else:
            row = await self.db.fetchone("SELECT seq FROM sqlite_sequence WHERE name = ?", (ID_TABLES[kind],))
        return int(row[0]) if row and row[0] is not None else 0

    async def _day_after(self, day: str, profit: Decimal, round_trips: int) -> DayResult:
        """A day's row after adding a reaction's results. Decimal sums in Python: the column is TEXT (SQLite
        arithmetic would go through float). `profit` is the realized result of every sale that day (issue 15; rows
        before it summed round trips only). The row is read once and then kept in memory (this store is its only
        writer)."""
        old = self._days.get(day)
        if old is None:
            (old,) = await self.day_results([day])
        return DayResult(day, old.profit + profit, old.round_trips + round_trips)

    async def realized_total(self) -> Decimal:
        """Every day's realized result, summed in Decimal."""
        rows = await self.db.fetchall("SELECT profit FROM day_results")
        return sum((Decimal(r[0]) for r in rows), ZERO)

    async def save_machine(self, m: MachineSnapshot, ts_ms: int) -> None:
        await self.db.execute(*self._machine_statement(m, ts_ms))

    def _machine_statement(self, m: MachineSnapshot, ts_ms: int) -> Statement:
        runtime = json_to_db(m.runtime)
        if m.kind == "grid":
            if m.runtime:
                return GridRepo.runtime_statement(m.id, m.runtime, m.state, ts_ms)
            # a grid that never started (its start was refused): a state, nothing to rebuild at restart
            return GridRepo.state_statement(m.id, m.state, ts_ms)
        if m.kind == "stop":
            return ("UPDATE stops SET state = ?, hard_client_order_id = coalesce(?, hard_client_order_id), runtime = ?, "
                    "updated_ms = ? WHERE id = ?", (m.state, m.order, runtime, ts_ms, m.id))
        if m.kind in ("chase", "exit"):
            table = "chases" if m.kind == "chase" else "exits"
            return (f"INSERT INTO {table}(id, symbol, state, runtime, updated_ms) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT(id) DO UPDATE SET state = excluded.state, runtime = excluded.runtime, "
                    "updated_ms = excluded.updated_ms", (m.id, m.symbol, m.state, runtime, ts_ms))
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


def _sequence_statements(kind: str, owner_id: int) -> list[Statement]:
    """Move an id sequence on to at least `owner_id` (never back)."""
    if kind in ID_SEQUENCES:
        return [("INSERT INTO sequences(name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE "
                 "SET value = max(value, excluded.value)", (ID_SEQUENCES[kind], owner_id))]
    table = ID_TABLES[kind]
    return [("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = ?", (owner_id, table)),
            ("INSERT INTO sqlite_sequence(name, seq) SELECT ?, ? WHERE NOT EXISTS "
             "(SELECT 1 FROM sqlite_sequence WHERE name = ?)", (table, owner_id, table))]
