"""CoreStore: the core's Store port on SQLite, and the migration that moved machine state out of kv JSON."""

from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path

from tests.kit import old_database
from tgtrader.core.orders import TrackedOrder
from tgtrader.core.ports import MachineSnapshot, Reaction, Store
from tgtrader.store import Database
from tgtrader.store.core_store import CoreStore
from tgtrader.types import AlertIntent, OrderStatus, OrderType, Side


def _old_database(path: Path) -> None:
    """A database as schema version 2 left it: stop and chase state, daily results, sequences in kv."""
    con = old_database(path, 2)
    con.execute("INSERT INTO grids(id, symbol, config, state, runtime, created_ms, updated_ms) "
                "VALUES (3, 'BTCUSDT', '{}', 'paused', '{\"id\": 3}', 0, 0)")
    con.execute("INSERT INTO stops(id, symbol, kind, trigger_price, qty, state, created_ms, updated_ms) "
                "VALUES (7, 'BTCUSDT', 'soft', '45000', '0.1', 'armed', 0, 0)")
    kv = {
        "stop:7": json.dumps({"id": 7, "state": "armed"}),
        "chase:4": json.dumps({"symbol": "ETHUSDT", "state": "working"}),
        "pnl:2026-11-30": json.dumps({"profit": "12.5", "trips": 3}),
        "seq:chase": "4",
        "core:panic_paused": "[3]",
        "last_seen:BTCUSDT": "99",
    }
    con.executemany("INSERT INTO kv(key, value) VALUES (?, ?)", kv.items())
    con.commit()
    con.close()


async def test_migration_moves_machine_state_out_of_kv(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    _old_database(path)
    db = await Database.open(path)
    try:
        store = CoreStore(db)
        assert isinstance(store, Store)
        state = await store.load_state()
        by_kind = {(m.kind, m.id): m for m in state.machines}
        assert by_kind[("stop", 7)].runtime == {"id": 7, "state": "armed"}
        assert by_kind[("chase", 4)].symbol == "ETHUSDT"
        assert by_kind[("grid", 3)].panic_paused
        (day,) = await store.day_results(["2026-11-30"])
        assert (day.profit, day.round_trips) == (D("12.5"), 3)
        assert await store.next_seq("chase") == 5
        left = await db.kv.items("")
        assert set(left) == {"last_seen:BTCUSDT"}  # nothing of the machines' state is left in kv
    finally:
        await db.close()


async def test_one_reaction_is_one_transaction(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "t.sqlite")
    try:
        store = CoreStore(db)
        order = TrackedOrder("BTCUSDT", "tg-s1-1", Side.SELL, OrderType.MARKET, D("0.1"), None, owner="stop:1")
        stop_id = await store.create_stop("BTCUSDT", "soft", D("45000"), D("0.1"), 1)
        bad = MachineSnapshot("robot", 1, "BTCUSDT", "x", {})  # no table: the whole reaction must roll back
        try:
            await store.save_reaction(Reaction(1, machine=bad, new_orders=[order],
                                               alerts=[AlertIntent("k", {"n": 1})], realized=[(1, D("2"))]))
        except ValueError:
            pass
        assert await db.orders.get("tg-s1-1") is None and await db.outbox.pending_count() == 0
        snap = MachineSnapshot("stop", stop_id, "BTCUSDT", "selling", {"id": stop_id}, "tg-s1-1")
        alert = AlertIntent("stop-failed", {"stop_id": stop_id, "symbol": "BTCUSDT", "reject_text": "no"})
        await store.save_reaction(Reaction(2, machine=snap, new_orders=[order], alerts=[alert],
                                           realized=[(2, D("2")), (3, D("0.5"))], round_trips=[3, 4]))
        [queued] = await db.outbox.due(2)  # the alert as facts, for every chat, worded at delivery
        assert (queued.kind, queued.payload, queued.text, queued.chat_id) == (alert.kind, alert.payload, "", None)
        row = await db.orders.get("tg-s1-1")
        assert row is not None and row.status is OrderStatus.PENDING_NEW
        assert (await db.stops.get(stop_id)).state == "selling"  # type: ignore[union-attr]
        (day,) = await store.day_results(["1970-01-01"])
        assert (day.profit, day.round_trips) == (D("2.5"), 2)  # every sale's realized; the round trips counted
        assert await store.realized_total() == D("2.5")
    finally:
        await db.close()


async def test_a_grid_that_failed_to_start_is_not_rebuilt_at_restart(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "t.sqlite")
    try:
        store = CoreStore(db)
        gid = await store.create_grid("BTCUSDT", {"symbol": "BTCUSDT"}, 1)
        await store.save_machine(MachineSnapshot("grid", gid, "BTCUSDT", "failed", {}), 2)
        assert (await store.load_state()).machines == ()
        assert (await db.grids.get(gid)).state == "failed"  # type: ignore[union-attr]
    finally:
        await db.close()
