"""The kernel through the test kit: machines registered by kind, state saved with each reaction, restart."""

from __future__ import annotations

from pathlib import Path

from tests.kit import CoreOnPaper
from tgtrader.core.ids import grid_order_id
from tgtrader.core.ports import Exchange, Store
from tgtrader.types import Side


async def test_core_on_paper_runs_a_grid_and_a_restart_rebuilds_it_from_the_store(tmp_path: Path) -> None:
    kit = await CoreOnPaper.open(tmp_path)
    assert isinstance(kit.paper, Exchange) and isinstance(kit.core.store, Store)
    gid = await kit.running_grid()
    await kit.trade("49000", "56000")  # the 50000 buy fills, then its counter sell at 55000
    before = await kit.core.grid(gid)
    assert before.round_trips >= 1
    assert kit.core.machines.owner_of(grid_order_id(gid, 1, Side.BUY, 1)) is kit.core.machines.grids[gid]
    await kit.core.stop()
    core2 = type(kit.core)(kit.paper, kit.core.store, config=kit.core.config, clock_ms=kit.clock)
    await core2.start()
    try:
        after = await core2.grid(gid)
        assert (after.state, after.round_trips, after.realized_profit) == (
            before.state, before.round_trips, before.realized_profit)
        assert set(core2.machines.grids) == {gid}
    finally:
        await core2.stop()
        await kit.db.close()
