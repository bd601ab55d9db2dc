"""A stopped grid's exit: sell its pool until flat with the one exit primitive (core/exit.py).

Kept apart from machine.py so the grid's life cycle and its exit read separately; `Grid` calls these."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from tgtrader.core.exit import Step, market_sell_qty
from tgtrader.core.grid.state import GridOrder
from tgtrader.types import AlertIntent, Intent, OrderType, PlaceOrder, ReadBalance, Side

if TYPE_CHECKING:
    from tgtrader.core.grid.machine import Grid

ZERO = Decimal(0)


def sellable(g: Grid, qty: Decimal) -> Decimal:
    return market_sell_qty(g.rules, qty, g.last_price)


def exit_step(g: Grid, ts: int) -> list[Intent]:
    """One step of the exit (core/exit.py): wait for the grid's own orders to end and their fills to arrive,
    then sell the pool at market, leg after leg, until what is left no longer passes the filters."""
    if not g.exit.working:
        return []
    busy = any(o.role != "exit" for o in g.orders.values()) or (
        g.chase is not None and not g.chase.done)
    leg_working = any(o.role == "exit" for o in g.orders.values())
    act = g.exit.step(g.pool_base, busy, leg_working, ts, lambda q: sellable(g, q))
    if act.step is Step.SELL:
        cid = g._cid("z", Side.SELL)
        g.orders[cid] = GridOrder(cid, act.qty, role="exit", side=Side.SELL)
        g.exit.placed(cid)
        return [PlaceOrder(g.config.symbol, cid, Side.SELL, OrderType.MARKET, act.qty, None, None, None,
                           g.owner)]
    if act.step is Step.NEED_BALANCE:
        return [ReadBalance(g.rules.base_asset, g.owner)]
    if act.step is Step.DONE:
        return [exit_alert(g)]
    return []

def exit_alert(g: Grid) -> AlertIntent:
    ex = g.exit
    return g._alert("exit-finished", reason=ex.reason, legs=ex.legs, state=ex.state.value,
                    base_asset=g.rules.base_asset, realized=str(g.ledger.realized),
                    quote_asset=g.rules.quote_asset, **ex.left())
