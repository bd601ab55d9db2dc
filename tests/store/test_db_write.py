"""`Database.write`: a reaction's statements as one transaction in one trip to aiosqlite's thread."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from tgtrader.core.orders import TrackedOrder
from tgtrader.core.ports import DayResult, MachineSnapshot, Reaction
from tgtrader.errors import StoreError
from tgtrader.store import Database
from tgtrader.store.core_store import CoreStore, day_of
from tgtrader.types import AlertIntent, Fill, OrderStatus, OrderType, Side

INSERT = "INSERT INTO kv(key, value) VALUES (?, ?)"


def test_the_aiosqlite_internals_it_uses_are_there() -> None:
    # store/db.py `_in_thread`: aiosqlite 0.22 queues a callable to its worker with `_execute`; `_conn` is the sqlite3
    # connection on that thread. A new aiosqlite without them must fail here, not in production.
    assert callable(getattr(aiosqlite.Connection, "_execute", None))
    assert isinstance(getattr(aiosqlite.Connection, "_conn", None), property)


async def test_all_or_nothing_and_no_transaction_left_open(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "w.db")
    await db.write([(INSERT, ("a", "1")), (INSERT, ("b", "2"))])
    with pytest.raises(Exception):
        await db.write([(INSERT, ("c", "3")), (INSERT, ("a", "again"))])  # the key exists: the batch fails
    assert await db.kv.get("c") is None and await db.kv.get("a") == "1"
    await db.write([(INSERT, ("d", "4"))])  # no transaction was left open
    async with db.transaction():
        await db.kv.set("e", "5")
    assert [await db.kv.get(k) for k in "bde"] == ["2", "4", "5"]
    await db.close()


async def test_inside_a_transaction_it_is_a_savepoint(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "w.db")
    async with db.transaction():
        await db.kv.set("outer", "1")
        with pytest.raises(Exception):
            await db.write([(INSERT, ("inner", "x")), (INSERT, ("outer", "dup"))])
        await db.write([(INSERT, ("kept", "y"))])
    assert (await db.kv.get("outer"), await db.kv.get("inner"), await db.kv.get("kept")) == ("1", None, "y")
    await db.close()


async def test_a_cancelled_caller_still_gets_a_whole_transaction(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "w.db")
    rows = [(INSERT, (f"k{i}", str(i))) for i in range(2000)]
    task = asyncio.ensure_future(db.write(rows))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await db.write([(INSERT, ("after", "1"))])  # the thread finished the batch (commit or rollback) first
    n = (await db.fetchone("SELECT COUNT(*) FROM kv WHERE key LIKE 'k%'"))[0]  # type: ignore[index]
    assert n in (0, 2000) and await db.kv.get("after") == "1"
    await db.close()


async def test_a_busy_database_is_a_store_error(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "w.db", busy_timeout_ms=50)
    other = await aiosqlite.connect(str(tmp_path / "w.db"), isolation_level=None)
    await other.execute("BEGIN IMMEDIATE")
    with pytest.raises(StoreError):
        await db.write([(INSERT, ("x", "1"))])
    await other.execute("ROLLBACK")
    await other.close()
    await db.write([(INSERT, ("x", "1"))])
    await db.close()


async def test_a_fill_reaction_is_one_trip_to_the_database_thread(tmp_path: Path, monkeypatch: Any) -> None:
    db = await Database.open(tmp_path / "w.db")
    store = CoreStore(db)
    gid = await store.create_grid("BTCUSDT", {}, 1)
    order = TrackedOrder("BTCUSDT", "tg-g1-0B1", Side.BUY, OrderType.LIMIT, D("0.001"), D("50000"), owner="grid:1")
    fill = Fill("BTCUSDT", 7, order.client_order_id, Side.BUY, D("50000"), D("0.001"), D("0"), "BTC", True, 2)
    counter = TrackedOrder("BTCUSDT", "tg-g1-0S2", Side.SELL, OrderType.LIMIT, D("0.001"), D("51000"), owner="grid:1")
    # the order is placed: the day's row and the grid ids' sequence are read once here, then kept in memory
    await store.save_reaction(Reaction(1, None, None, None, [order], [order], [], [], [(1, D("0"))], []))
    trips = 0
    real = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kw: Any) -> Any:
        nonlocal trips
        trips += 1
        return await real(self, fn, *args, **kw)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    snapshot = MachineSnapshot("grid", gid, "BTCUSDT", "running", {"id": gid})
    await store.save_reaction(Reaction(2, fill, order, snapshot, [counter], [], [], [AlertIntent("events", {"n": 1})],
                                       [(2, D("1.5"))], [2]))
    assert trips == 1
    monkeypatch.undo()
    assert await db.fills.exists("BTCUSDT", 7)
    assert (await db.orders.get(counter.client_order_id)) is not None
    assert (await store.day_results([day_of(2)]))[0] == DayResult(day_of(2), D("1.5"), 1)
    assert await db.fills.last_seen_trade_id("BTCUSDT") == 7
    assert (await db.orders.get(order.client_order_id)).status is OrderStatus.PENDING_NEW  # type: ignore[union-attr]
    await db.close()
