"""Power loss (issue 19): durable commits where money depends on them, and id sequences that never go back
behind what the exchange has seen."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pytest

from tgtrader.core.orders import TrackedOrder
from tgtrader.core.ports import Reaction
from tgtrader.store import Database
from tgtrader.store.core_store import CoreStore
from tgtrader.types import OrderStatus, OrderType, Side


async def _synchronous(db: Database) -> int:
    row = await db.fetchone("PRAGMA synchronous")
    assert row is not None
    return int(row[0])  # 1 NORMAL, 2 FULL


async def test_commits_are_full_by_default_and_relaxed_only_when_asked(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "t.db")
    try:
        assert db.journal_mode == "wal"
        assert await _synchronous(db) == 2
        seen: list[int] = []
        async with db.transaction(durable=False):
            seen.append(await _synchronous(db))
        assert seen == [1]
        assert await _synchronous(db) == 2  # back to FULL for the next (money) commit
        await db.outbox.enqueue("info", "x")
        rows = await db.outbox.due(now=2**62)
        assert await db.outbox.mark_sent(rows[0].id)
        assert await _synchronous(db) == 2
    finally:
        await db.close()
    with pytest.raises(ValueError):
        await Database.open(tmp_path / "u.db", synchronous="OFF")
    db = await Database.open(tmp_path / "n.db", synchronous="NORMAL")  # benchmarks' baseline
    try:
        assert await _synchronous(db) == 1
    finally:
        await db.close()


def _order(cid: str) -> TrackedOrder:
    return TrackedOrder(symbol="BTCUSDT", client_order_id=cid, side=Side.BUY, order_type=OrderType.LIMIT,
                        qty=D("0.001"), price=D("50000"), owner="", status=OrderStatus.NEW, created_ts=1)


async def test_ids_seen_on_the_exchange_move_the_sequences_on(tmp_path: Path) -> None:
    """A database restored from before its last reactions: the exchange's orders name owners it never numbered."""
    db = await Database.open(tmp_path / "t.db")
    store = CoreStore(db)
    try:
        assert await store.next_seq("chase") == 1
        assert await store.create_grid("BTCUSDT", {}, 1) == 1
        # reconciliation adopts orders of chase 5, grid 3, stop 2 and panic 4, and a fill of chase 7
        adopted = [_order(c) for c in ("tg-c5-2", "tg-g3-1B4", "tg-s2-1", "tg-p4-BTCUSDT", "tg-g1-0B1", "foreign1")]
        await store.save_reaction(Reaction(2, updated_orders=adopted))
        assert await store.next_seq("chase") == 6
        assert await store.next_seq("panic") == 5
        assert await store.create_grid("BTCUSDT", {}, 3) == 4
        assert await store.create_stop("BTCUSDT", "soft", D("1"), D("1"), 3) == 3
        # a fresh store object (a restart) on the same file keeps the numbers
        again = CoreStore(db)
        await again.save_reaction(Reaction(4, updated_orders=[_order("tg-c2-1")]))  # behind: nothing moves
        assert await again.next_seq("chase") == 7
    finally:
        await db.close()


async def test_a_cancelled_transaction_never_leaves_the_connection_in_a_transaction(tmp_path: Path) -> None:
    """A task cancelled while its BEGIN or COMMIT is in flight: aiosqlite's thread still runs the statement. The old
    code left the BEGIN's transaction open (every later write failed: 'cannot start a transaction within a
    transaction', which halts trading) or rolled back after the COMMIT had run ('cannot rollback')."""
    import asyncio

    db = await Database.open(tmp_path / "t.db")
    try:
        for i in range(120):
            async def writer(n: int = i) -> None:
                async with db.transaction(durable=n % 2 == 0):
                    await db.execute("INSERT OR REPLACE INTO kv(key, value) VALUES ('k', ?)", (str(n),))

            task = asyncio.create_task(writer())
            for _ in range(i % 6):  # cancel at every await point in turn
                await asyncio.sleep(0)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            await db.kv.set("after", str(i))  # the next writer is not refused
            assert not db.conn.in_transaction
            assert await _synchronous(db) == 2
    finally:
        await db.close()
