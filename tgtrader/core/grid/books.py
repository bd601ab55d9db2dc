"""A grid's figures for the front ends (core/pnl definitions: realized, unrealized, grid profit, fees, APR)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from tgtrader.core.accounting import annualized_return_pct
from tgtrader.core.grid.state import GridState

if TYPE_CHECKING:
    from tgtrader.core.grid.machine import Grid

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class GridStats:
    realized: Decimal
    fees: Decimal
    round_trips: int
    base_held: Decimal
    avg_cost: Decimal
    unrealized: Decimal
    last_price: Decimal | None
    annualized_return_pct: Decimal | None
    open_orders: int
    grid_profit: Decimal = ZERO


def grid_stats(g: Grid, now_ts: int | None = None) -> GridStats:
    pos = g.position()
    now = g.last_ts if now_ts is None else now_ts
    if g.state == GridState.STOPPED and g.stopped_ts:
        now = g.stopped_ts  # a stopped grid's return is frozen at its stop, not diluted by the wall clock
    pnl = g.ledger.realized + pos.unrealized
    return GridStats(
        g.ledger.realized, g.ledger.fees, g.ledger.round_trips, pos.base, pos.avg_cost,
        pos.unrealized, g.last_price, annualized_return_pct(pnl, g.config.investment, g.start_ts, now),
        len(g.open_order_ids()) + (len(g.chase._live()) if g.chase and not g.chase.done else 0),
        g.ledger.grid_profit,
    )
