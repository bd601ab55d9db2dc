"""A grid's start buy: the base its holding intervals need, bought at market or by a maker-first chase, then shared.

Kept apart from machine.py so the running grid and its start read separately; `Grid` calls these."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from tgtrader.core.grid.state import GridOrder, GridState, IntervalState
from tgtrader.types import Intent, OrderType, PlaceOrder, Side

if TYPE_CHECKING:
    from tgtrader.core.grid.machine import Grid

ZERO = Decimal(0)


def start_market(g: Grid, qty: Decimal) -> PlaceOrder:
    qty = g.rules.round_qty(qty, market=True)
    cid = g._cid("x", Side.BUY)
    g.orders[cid] = GridOrder(cid, qty, role="start", side=Side.BUY)
    return PlaceOrder(g.config.symbol, cid, Side.BUY, OrderType.MARKET, qty, None, None, None, g.owner)


def start_shortfall(g: Grid) -> Decimal:
    need = g.q * sum(1 for iv in g.intervals if iv.awaiting_start) - g.pool_base
    return g.rules.round_qty(max(need, ZERO), market=True)


def after_chase(g: Grid, ts: int) -> list[Intent]:
    assert g.chase is not None
    rep = g.chase.report()
    short = g.rules.round_qty(g.chase.qty - rep.filled_qty, market=True)
    if rep.status in ("cancelled", "partial", "rejected") and g.state == GridState.RUNNING and g._tradable(
        Side.BUY, short, g.last_price, market=True
    ):
        # the chase could not finish: buy the rest at market so the grid is whole
        return [start_market(g, short)]
    return after_start(g, ts)


def after_start(g: Grid, ts: int) -> list[Intent]:
    if any(o.role == "start" for o in g.orders.values()):
        return []
    if g.state == GridState.PAUSED:
        return []  # allocated on resume
    allocate_start(g, ts)
    return g._place_all() if g.state == GridState.RUNNING else []


def allocate_start(g: Grid, ts: int) -> None:
    """Share the start base among the holding intervals (equal when whole, else lowest first)."""
    if not g.start_pending:
        return
    g.start_pending = False
    holding = [iv for iv in g.intervals if iv.awaiting_start]
    for iv in holding:
        iv.awaiting_start = False
    if not holding or g.pool_base <= 0:
        for iv in holding:
            g._set_interval(iv, IntervalState.WAITING)
        return
    pool, cost = g.pool_base, g.pool_cost
    whole = pool >= g.q * len(holding) * (1 - 2 * g.config.fee_rate)
    shares: list[Decimal] = []
    left = pool
    for k, _iv in enumerate(holding):
        if k == len(holding) - 1:
            share = left
        elif whole:
            share = g.rules.round_qty(pool / len(holding))
        else:
            share = min(g.q, left)
        shares.append(share)
        left -= share
    for iv, share in zip(holding, shares):
        iv.base = share
        iv.cost = cost * share / pool
        iv.last_buy_price = ZERO  # base from the start buy: its sale is position profit, not a round trip
        if share <= 0:
            g._set_interval(iv, IntervalState.WAITING)  # unfunded: its buy at L_i (>= P0) completes the start when it can
    g.pool_base = ZERO
    g.pool_cost = ZERO
