"""Power loss (issue 19): the database comes back without its last transactions while the exchange kept the
orders those transactions had sent. Simulated, as the issue asks, by restoring a copy of the database taken
(bot stopped) before the last reactions, with the real bot process against the loopback fake Binance.

After the restart the bot must adopt every order it finds by client order id, never send a second order for
the same intent, and never reuse a client order id for a new one (the sequences roll back with the file).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.reliability.harness import Harness


def _copy_db(h: Harness, to: Path) -> None:
    to.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        src = Path(f"{h.db_path}{suffix}")
        if src.exists():
            shutil.copy2(src, to / src.name)


def _restore_db(h: Harness, frm: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{h.db_path}{suffix}").unlink(missing_ok=True)
        src = frm / f"{h.db_path.name}{suffix}"
        if src.exists():
            shutil.copy2(src, f"{h.db_path}{suffix}")


def _our_ids_on_exchange(h: Harness) -> set[str]:
    return {o.client_order_id for o in h.orders() if o.client_order_id.startswith("tg-")}


async def test_restart_on_a_database_that_lost_its_last_transactions(harness: Harness, tmp_path: Path) -> None:
    h = harness
    await h.start_bot()
    gid = await h.create_grid("BTCUSDT", "49000", "51000", 4, "400")
    assert await h.settle(quiet_s=0.5)
    await h.command("/buy BTCUSDT 0.001", want=lambda t: "BTCUSDT" in t)  # chase 1: the `chase` sequence is 1
    assert await h.settle(quiet_s=0.5)
    assert await h.stop_bot() == 0
    _copy_db(h, tmp_path / "before")  # the state a power loss rolls back to

    await h.start_bot()
    for price in ("49400", "50100", "49400"):  # buy fills -> sell placed -> sell fills -> buy placed -> ...
        assert await h.move("BTCUSDT", price) > 0
        assert await h.settle(quiet_s=0.5)
    await h.command("/buy BTCUSDT 0.001", want=lambda t: "BTCUSDT" in t)  # chase 2: lost with the sequence row
    assert await h.create_grid("ETHUSDT", "2900", "3100", 4, "400") == 2  # grid 2: lost with its row
    assert await h.settle(quiet_s=0.5)
    lost = _our_ids_on_exchange(h) - {r[0] for r in h.db_rows("SELECT client_order_id FROM orders")}
    assert not lost  # the DB knew them all before the power loss
    await h.kill_and_wait()
    _restore_db(h, tmp_path / "before")
    forgotten = _our_ids_on_exchange(h) - {r[0] for r in h.db_rows("SELECT client_order_id FROM orders")}
    assert forgotten, "the restored database should miss the last reactions' orders"

    await h.start_bot()
    assert await h.settle(quiet_s=1.0)
    known = {r[0] for r in h.db_rows("SELECT client_order_id FROM orders")}
    resting = {o.client_order_id for o in h.resting() if o.client_order_id.startswith("tg-")}
    assert resting <= known, f"resting orders not adopted: {sorted(resting - known)}"
    assert not h.check_no_double_post()
    assert not h.check_grid_orders()
    # new intents after the restart get ids never used before (the rolled-back sequences would say chase 2 and
    # grid 2 again: grid 2's orders still rest on the exchange, adopted)
    await h.command("/buy BTCUSDT 0.001", want=lambda t: "BTCUSDT" in t)
    assert await h.create_grid("ETHUSDT", "2950", "3150", 4, "400") == 3
    for price in ("50100", "49400"):
        await h.move("BTCUSDT", price)
        assert await h.settle(quiet_s=0.5)
    assert not h.check_no_double_post()
    result = {k: v for k, v in h.check_all(include_outbox=False).items() if v}
    assert not result, result
    assert any(o.client_order_id.startswith("tg-g2-") for o in h.resting())  # the lost grid's orders: not touched
    assert gid == 1
