"""Issue 13, the money path on the real core and the paper venue: fills found per order, exits that finish flat,
/panic that touches only what the bot owns."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path
from typing import Any

from tests.kit import CoreOnPaper, grid_spec
from tests.waiting import wait_for
from tgtrader.core.config import CoreConfig
from tgtrader.types import Fill, Side


def drop_fills(kit: CoreOnPaper, n: int, side: Side | None = None) -> list[Fill]:
    """The next `n` fills (of `side`) never reach the core, as in a user-stream gap."""
    dropped: list[Fill] = []
    sink = kit.paper._sink
    assert sink is not None

    def filtered(event: Any) -> None:
        if isinstance(event, Fill) and len(dropped) < n and (side is None or event.side is side):
            dropped.append(event)
            return
        sink(event)

    kit.paper.set_event_sink(filtered)
    return dropped


async def test_a_fill_missed_in_a_gap_is_recovered_by_order_after_a_later_trade_moved_the_watermark(
        tmp_path: Path) -> None:
    """Issue 13 item 7: the level waited forever once a later trade id of the symbol had been seen."""
    kit = await CoreOnPaper.open(tmp_path)
    gid = await kit.running_grid(grid_spec(lower="40000", upper="60000", n=4))
    g = kit.core.machines.grids[gid]
    dropped = drop_fills(kit, 1, Side.BUY)
    await kit.trade("49000")  # the 50000 buy fills; its fill event is lost
    await kit.trade("44000")  # the 45000 buy fills and streams in: the watermark moves past the lost trade
    assert len(dropped) == 1
    await kit.core.recovery.reconcile()
    await kit.core.idle()
    seen = {f.trade_id for f in await kit.core.store.fills("BTCUSDT")}
    assert dropped[0].trade_id in seen
    assert g.base_held() == sum((f.qty for f in await kit.paper.my_trades("BTCUSDT") if f.side is Side.BUY), D(0))
    await kit.close()


async def test_an_order_that_ended_short_of_its_fills_gets_its_trades_fetched_without_a_reconcile(
        tmp_path: Path) -> None:
    """Issue 13 item 7, live path: the FILLED update arrives, the fill never does; after a short grace the
    order's trades are fetched by order id."""
    kit = await CoreOnPaper.open(tmp_path, config=CoreConfig(timer_interval_s=0, fill_grace_s=0.05))
    gid = await kit.running_grid(grid_spec(lower="40000", upper="60000", n=4))
    g = kit.core.machines.grids[gid]
    dropped = drop_fills(kit, 1, Side.BUY)
    await kit.trade("49000")
    assert len(dropped) == 1
    before = g.base_held()

    async def recovered() -> bool:
        return dropped[0].trade_id in {f.trade_id for f in await kit.core.store.fills("BTCUSDT")}

    await wait_for(recovered, timeout=5, what="the lost fill fetched by order id")
    await kit.core.idle()
    assert g.base_held() > before
    await kit.close()
