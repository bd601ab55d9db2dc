"""The SQLite store: migrations, refusal of files it must not touch, repositories, Decimal exactness."""

from __future__ import annotations

import asyncio
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tgtrader.errors import StoreError
from tgtrader.store import Database, OrderRow
from tgtrader.store.migrations import latest_version
from tgtrader.types import Fill, OrderStatus, OrderType, Side


def _fill(trade_id: int, symbol: str = "BTCUSDT", cid: str = "c1") -> Fill:
    return Fill(
        symbol=symbol,
        trade_id=trade_id,
        client_order_id=cid,
        side=Side.BUY,
        price=Decimal("27000.10"),
        qty=Decimal("0.00100000"),
        fee=Decimal("0.027"),
        fee_asset="USDT",
        is_maker=True,
        ts_ms=1_700_000_000_000 + trade_id,
        exchange_order_id=42,
    )


# ------------------------------------------------------------------ opening and migrations


async def test_migrates_empty_file_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "t.db"  # parent directories are created
    db = await Database.open(path)
    try:
        assert await db.schema_version() == latest_version()
        assert db.journal_mode == "wal"
        tables = {r[0] for r in await db.fetchall("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"schema_version", "grids", "orders", "fills", "stops", "outbox", "kv"} <= tables
        row = await db.fetchone("PRAGMA busy_timeout")
        assert row is not None and int(row[0]) > 0
    finally:
        await db.close()


async def test_zero_byte_file_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    async with await Database.open(path) as db:
        assert await db.schema_version() == latest_version()


async def test_reopening_is_a_noop(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    async with await Database.open(path) as db:
        await db.kv.set("k", "v")
        applied = await db.fetchall("SELECT version, applied_ms FROM schema_version ORDER BY version")
    async with await Database.open(path) as db:
        assert await db.fetchall("SELECT version, applied_ms FROM schema_version ORDER BY version") == applied
        assert await db.kv.get("k") == "v"


async def test_newer_schema_is_refused_and_file_untouched(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    async with await Database.open(path) as db:
        await db.execute(
            "INSERT INTO schema_version(version, name, applied_ms) VALUES (?, 'from the future', 0)",
            (latest_version() + 1,),
        )
    before = path.read_bytes()
    with pytest.raises(StoreError) as err:
        await Database.open(path)
    message = str(err.value)
    assert "newer" in message and "\n" not in message
    assert path.read_bytes() == before


async def test_corrupt_file_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    garbage = b"this is certainly not sqlite\n" * 100
    path.write_bytes(garbage)
    with pytest.raises(StoreError) as err:
        await Database.open(path)
    assert "not a database" in str(err.value) and "\n" not in str(err.value)
    assert path.read_bytes() == garbage


async def test_corrupt_body_with_valid_header_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    data = b"SQLite format 3\x00" + bytes(range(256)) * 16
    path.write_bytes(data)
    with pytest.raises(StoreError):
        await Database.open(path)
    assert path.read_bytes() == data


async def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE something(x)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="not a tgtrader"):
        await Database.open(path)
    assert path.read_bytes() == before


async def test_unwritable_location_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError) as err:
        await Database.open(blocker / "sub" / "t.db")  # parent is a regular file
    assert "\n" not in str(err.value)
    with pytest.raises(StoreError, match="directory"):
        await Database.open(tmp_path)


# ------------------------------------------------------------------ transactions


async def test_transaction_rolls_back_on_error(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.transaction():
            await db.kv.set("a", "1")
            raise RuntimeError("boom")
    assert await db.kv.get("a") is None


async def test_nested_transaction_is_a_savepoint(db: Database) -> None:
    async with db.transaction():
        await db.kv.set("outer", "1")
        with pytest.raises(ValueError):
            async with db.transaction():
                await db.kv.set("inner", "1")
                raise ValueError
    assert await db.kv.get("outer") == "1"
    assert await db.kv.get("inner") is None


async def test_concurrent_writers_are_serialised(db: Database) -> None:
    async def bump(i: int) -> None:
        async with db.transaction():
            value = int(await db.kv.get("n", "0") or "0")
            await asyncio.sleep(0)
            await db.kv.set("n", str(value + 1))

    await asyncio.gather(*(bump(i) for i in range(20)))
    assert await db.kv.get("n") == "20"


# ------------------------------------------------------------------ repositories


async def test_fill_dedup_by_symbol_and_trade_id(db: Database) -> None:
    assert await db.fills.add(_fill(1)) is True
    assert await db.fills.add(_fill(1)) is False
    assert await db.fills.add(_fill(1, symbol="ETHUSDT")) is True  # same id, other symbol
    assert await db.fills.add(_fill(2)) is True
    fills = await db.fills.for_order("c1")
    assert [f.trade_id for f in fills if f.symbol == "BTCUSDT"] == [1, 2]
    assert fills[0] == _fill(1)
    assert await db.fills.max_trade_id("BTCUSDT") == 2
    assert await db.fills.exists("ETHUSDT", 1)


async def test_fill_exists_is_exact_with_the_in_memory_bound(db: Database) -> None:
    """exists() skips the read for trade ids above the stored ones; it must never call a stored fill new."""
    assert not await db.fills.exists("BTCUSDT", 0)  # bound loaded: nothing stored
    assert await db.fills.add(_fill(0))
    assert await db.fills.exists("BTCUSDT", 0)  # trade id 0 is a trade id
    assert await db.fills.add(_fill(7)) and await db.fills.exists("BTCUSDT", 7)
    assert await db.fills.add(_fill(3))  # an older trade stored late (reconciliation)
    assert await db.fills.exists("BTCUSDT", 3) and not await db.fills.exists("BTCUSDT", 5)
    with pytest.raises(RuntimeError):
        async with db.transaction():
            await db.fills.add(_fill(9))
            raise RuntimeError("the reaction failed")
    assert not await db.fills.exists("BTCUSDT", 9)  # rolled back: not stored, whatever the bound says
    assert await db.fills.add(_fill(9)) and await db.fills.exists("BTCUSDT", 9)


async def test_upsert_is_one_statement_and_keeps_a_known_exchange_id(db: Database) -> None:
    row = OrderRow("u1", "BTCUSDT", Side.SELL, OrderType.LIMIT, Decimal("30000"), Decimal("0.001"), OrderStatus.NEW,
                   exchange_order_id=77)
    await db.orders.upsert(row, ts_ms=1_000)
    await db.orders.upsert(OrderRow("u1", "BTCUSDT", Side.SELL, OrderType.LIMIT, Decimal("30000"), Decimal("0.001"),
                                    OrderStatus.PARTIALLY_FILLED, executed_qty=Decimal("0.0004")), ts_ms=2_000)
    got = await db.orders.get("u1")
    assert got is not None
    assert (got.status, got.executed_qty, got.exchange_order_id, got.created_ms, got.updated_ms) == (
        OrderStatus.PARTIALLY_FILLED, Decimal("0.0004"), 77, 1_000, 2_000)


async def test_last_seen_trade_id_never_moves_back(db: Database) -> None:
    assert await db.fills.last_seen_trade_id("BTCUSDT") is None
    assert await db.fills.set_last_seen_trade_id("BTCUSDT", 10) == 10
    assert await db.fills.set_last_seen_trade_id("BTCUSDT", 5) == 10
    assert await db.fills.last_seen_trade_id("BTCUSDT") == 10
    assert await db.fills.last_seen_trade_id("ETHUSDT") is None


async def test_outbox_lifecycle(db: Database) -> None:
    a = await db.outbox.enqueue("fill", "bought 0.001 BTC", chat_id=None, now=1000)
    b = await db.outbox.enqueue("error", "stream down", chat_id=777, now=1001)
    assert [r.id for r in await db.outbox.due(1001)] == [a, b]
    assert await db.outbox.due(999) == []
    assert await db.outbox.reschedule(a, 5000, error="timed out")
    assert [r.id for r in await db.outbox.due(2000)] == [b]
    assert await db.outbox.mark_sent(b, 2000)
    assert not await db.outbox.mark_sent(b, 2001)  # already sent
    assert await db.outbox.due(4999) == []
    row = (await db.outbox.due(5000))[0]
    assert (row.id, row.attempts, row.last_error, row.chat_id) == (a, 1, "timed out", None)
    assert await db.outbox.pending_count() == 1
    await db.outbox.mark_sent(a, 6000)
    assert await db.outbox.pending_count() == 0
    sent = await db.outbox.get(a)
    assert sent is not None and sent.sent_ms == 6000 and sent.attempts == 2
    assert await db.outbox.purge_sent(older_than_ms=10_000) == 2


async def test_outbox_typed_rows_keep_their_payload_per_channel(db: Database) -> None:
    a = await db.outbox.enqueue("grid-residue", payload={"grid_id": 1, "qty": "0.5", "ok": True}, now=1)
    b = await db.outbox.enqueue("events", chat_id=5, payload={"events": []}, channel="web", now=1)
    [row] = await db.outbox.due(2)
    assert (row.id, row.kind, row.text, row.payload, row.channel) == (
        a, "grid-residue", "", {"grid_id": 1, "qty": "0.5", "ok": True}, "telegram")
    [web] = await db.outbox.due(2, channel="web")
    assert (web.id, web.chat_id, web.payload, web.channel) == (b, 5, {"events": []}, "web")
    assert await db.outbox.pending_count() == 2


async def test_outbox_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    async with await Database.open(path) as db:
        await db.outbox.enqueue("info", "hello", now=1)
    async with await Database.open(path) as db:
        assert [r.text for r in await db.outbox.due(2)] == ["hello"]


async def test_orders_lifecycle(db: Database) -> None:
    order = OrderRow(
        client_order_id="g1-b-3",
        symbol="BTCUSDT",
        side=Side.BUY,
        type=OrderType.LIMIT,
        price=Decimal("26999.99"),
        qty=Decimal("0.00037"),
        status=OrderStatus.PENDING_NEW,
        owner="grid:1",
    )
    assert await db.orders.insert(order, ts_ms=5)
    assert not await db.orders.insert(order)  # same client id: nothing changes
    assert await db.orders.update("g1-b-3", status=OrderStatus.NEW, exchange_order_id=991, ts_ms=6)
    assert await db.orders.update("g1-b-3", status=OrderStatus.PARTIALLY_FILLED, executed_qty=Decimal("0.0001"))
    got = await db.orders.get("g1-b-3")
    assert got is not None
    assert (got.status, got.executed_qty, got.exchange_order_id, got.created_ms) == (
        OrderStatus.PARTIALLY_FILLED,
        Decimal("0.0001"),
        991,
        5,
    )
    assert [o.client_order_id for o in await db.orders.open_orders("BTCUSDT")] == ["g1-b-3"]
    assert [o.client_order_id for o in await db.orders.by_owner("grid:1")] == ["g1-b-3"]
    await db.orders.upsert(
        OrderRow("g1-b-3", "BTCUSDT", Side.BUY, OrderType.LIMIT, Decimal("26999.99"), Decimal("0.00037"),
                 OrderStatus.FILLED, executed_qty=Decimal("0.00037"), exchange_order_id=991)
    )
    assert await db.orders.open_orders() == []
    assert not await db.orders.update("nope", status=OrderStatus.CANCELED)


async def test_grids_config_and_runtime(db: Database) -> None:
    grid = await db.grids.create("BTCUSDT", {"lower": Decimal("25000"), "upper": Decimal("30000"), "n": 10})
    assert grid.config == {"lower": "25000", "upper": "30000", "n": 10}
    assert grid.state == "created" and grid.runtime is None
    assert await db.grids.save_runtime(grid.id, {"holding": [1, 2]}, state="running", ts_ms=grid.created_ms + 1)
    again = await db.grids.get(grid.id)
    assert again is not None and again.runtime == {"holding": [1, 2]} and again.state == "running"
    second = await db.grids.create("ETHUSDT", {}, state="stopped")
    assert second.id > grid.id
    assert [g.id for g in await db.grids.list(states=["running"])] == [grid.id]
    assert [g.id for g in await db.grids.list(symbol="ETHUSDT")] == [second.id]
    assert await db.grids.set_state(second.id, "archived")
    assert await db.grids.delete(second.id) and await db.grids.get(second.id) is None


async def test_stops(db: Database) -> None:
    stop = await db.stops.add("BTCUSDT", "hard", Decimal("24000.00"), Decimal("0.01"), owner="grid:1")
    assert stop.state == "armed" and stop.hard_client_order_id is None
    assert await db.stops.update(stop.id, hard_client_order_id="s1-hard", state="placed")
    got = await db.stops.get(stop.id)
    assert got is not None and got.hard_client_order_id == "s1-hard" and got.trigger_price == Decimal("24000.00")
    assert [s.id for s in await db.stops.list(symbol="BTCUSDT", states=["placed"])] == [stop.id]
    with pytest.raises(ValueError):
        await db.stops.add("BTCUSDT", "sideways", Decimal(1), Decimal(1))


async def test_kv(db: Database) -> None:
    await db.kv.set("a:1", "x")
    await db.kv.set("a:2", "y")
    await db.kv.set("a:1", "z")
    await db.kv.set("b", "w")
    assert await db.kv.items("a:") == {"a:1": "z", "a:2": "y"}
    assert await db.kv.delete("b") and await db.kv.get("b", "default") == "default"
    with pytest.raises(TypeError):
        await db.kv.set("n", 1)  # type: ignore[arg-type]


_decimals = st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(lambda d: d.is_finite()) | st.sampled_from(
    [Decimal("0.00000001"), Decimal("1E-8"), Decimal("27000.10"), Decimal("0.100"), Decimal("-0"), Decimal("1e30")]
)


@settings(max_examples=60, deadline=None)
@given(price=_decimals, qty=_decimals)
def test_decimal_round_trip_is_exact(price: Decimal, qty: Decimal) -> None:
    async def scenario() -> tuple[Decimal | None, Decimal]:
        async with await Database.open(":memory:") as db:
            await db.orders.insert(
                OrderRow("c", "BTCUSDT", Side.SELL, OrderType.LIMIT, price, qty, OrderStatus.NEW)
            )
            row = await db.orders.get("c")
            assert row is not None
            return row.price, row.qty

    got_price, got_qty = asyncio.run(scenario())
    assert str(got_price) == str(price) and str(got_qty) == str(qty)  # same digits AND exponent


def test_a_database_left_open_does_not_hang_the_interpreter_at_exit(tmp_path: Path) -> None:
    """aiosqlite's worker thread is non-daemon: one connection not closed (a crash path, a test) used to keep
    the process alive forever at exit (CI hung after '... passed')."""
    import subprocess
    import sys

    code = (
        "import asyncio\n"
        "from tgtrader.store import Database\n"
        "async def main():\n"
        f"    global db\n    db = await Database.open({str(tmp_path / 'open.db')!r})\n"
        "asyncio.run(main())\n"
        "print('done')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "done" in out.stdout, out.stderr[-2000:]
