"""Trailing grids: a running grid moves one rung up or down its ladder when the price leaves its range (issue 17).

The rule, after Binance's FAQ "How to Use the Trailing Up Function in Spot Grid Trading?": "If the price increases
above the upper limit price and the price difference between the grid levels ($45,000 + $4,000 = $49,000), the bot
will adjust the grid upwards. It will cancel the lowest buy order and place a new buy order at the previous upper limit
price ($45,000) ... each grid holds the same quote value, not base quantity". Trailing down is its mirror.

- Up: the price is at or above rung s+n+1 (one step over the top), that rung is within `trail_up`, and the lowest
  interval s is waiting. Its buy is cancelled; the quote it reserved (q_s x rung s) funds a new top interval s+n that
  buys q_s x rung s / rung s+n at rung s+n, below the price. Base the old buy had bought moves with it.
- Down: the price is at or below rung s-1, that rung is within `trail_down`, and the highest interval is holding. Its
  sell is cancelled; its base and cost move to a new bottom interval s-1 that sells them at rung s, above the price
  (position profit when it sells, not a round trip: that base was not bought at rung s-1), and later buys the same
  quantity at rung s-1.
Nothing is bought or sold at market; stop-loss and take-profit stay where the trader put them. A move waits for the
cancelled order's final state: if it filled meanwhile, the move is dropped (the next price re-checks). The same rule
runs in the backtest (`tgtrader/backtest/trailing.py`), and the parity tests hold the two together.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from tgtrader.core.events import GridRoundTrip
from tgtrader.core.grid.plan import ladder_level
from tgtrader.core.grid.state import Interval, IntervalState
from tgtrader.types import CancelOrder, Intent, Side

if TYPE_CHECKING:
    from tgtrader.core.grid.machine import Grid

ZERO = Decimal(0)
MAX_MARKS = 500  # chart marks kept per grid (the newest)


def trails(g: Grid) -> bool:
    return g.config.trail_up is not None or g.config.trail_down is not None


def rung(g: Grid, k: int) -> Decimal:
    """Rung k's price, computed once per grid (a rung inside 0..n costs the whole level formula: ~0.1 ms at n=200,
    and a grid outside its range asks on every tick)."""
    price = g.rungs.get(k)
    if price is None:
        price = g.rungs[k] = ladder_level(g.config, k, g.rules)
    return price


def add_mark(g: Grid, ts: int, kind: str, price: Decimal) -> None:
    g.marks.append((ts, kind, price))
    del g.marks[:-MAX_MARKS]


def trail_step(g: Grid, ts: int) -> list[Intent]:
    """Start the move the last price asks for, if any (one at a time; the next starts when it has finished)."""
    if not trails(g) or g.state != "running" or g.trail_move is not None or g.last_price is None:
        return []
    if g.start_pending or (g.chase is not None and not g.chase.done):
        return []
    price, s, n = g.last_price, g.shift, g.config.n
    if price <= g.levels[-1] and price >= g.levels[0]:
        g.trail_stalled.clear()  # back inside the range: a later stall is news again
        return []
    if g.config.trail_up is not None and price >= rung(g, s + n + 1):
        return _begin(g, "up", g.intervals[0], ts, _up_block(g, s, n))
    if g.config.trail_down is not None and price <= rung(g, s - 1):
        return _begin(g, "down", g.intervals[-1], ts, _down_block(g, s))
    return []


def _up_block(g: Grid, s: int, n: int) -> str:
    """Why the grid cannot move up now ("" if it can): the limit, the filters, or the lowest interval is busy."""
    assert g.config.trail_up is not None
    if rung(g, s + n + 1) > g.config.trail_up:
        return "limit"
    if rung(g, s + n + 1) <= g.levels[-1]:
        return "filters"  # the tick rounds the next rung onto the top one
    low = g.intervals[0]
    if low.state != IntervalState.WAITING or low.awaiting_start:
        return "busy"
    if not g._tradable(Side.BUY, _up_qty(g, low), rung(g, s + n)):
        return "filters"
    return ""


def _down_block(g: Grid, s: int) -> str:
    assert g.config.trail_down is not None
    if rung(g, s - 1) < g.config.trail_down:
        return "limit"
    if rung(g, s - 1) >= g.levels[0]:
        return "filters"  # the tick rounds the next rung onto the bottom one
    top = g.intervals[-1]
    if top.state != IntervalState.HOLDING or top.awaiting_start:
        return "busy"
    if not g._tradable(Side.SELL, g.rules.round_qty(top.base), rung(g, s)):
        return "filters"
    return ""


def _up_qty(g: Grid, low: Interval) -> Decimal:
    """The same quote value one rung up: what the lowest interval's buy reserved, at the new top interval's price."""
    return g.rules.round_qty(low.qty * low.lower / rung(g, g.shift + g.config.n))


def _begin(g: Grid, direction: str, iv: Interval, ts: int, block: str) -> list[Intent]:
    if block:
        if block == "busy" or direction in g.trail_stalled:
            return []
        g.trail_stalled.add(direction)
        limit = g.config.trail_up if direction == "up" else g.config.trail_down
        return [g._alert("grid-trail-stopped", direction=direction, reason=block, price=str(g.last_price),
                         limit=None if limit is None else str(limit))]
    g.trail_move = (direction, iv.index)
    assert g.last_price is not None
    add_mark(g, ts, f"trail-{direction}", g.last_price)
    o = g.orders.get(iv.order) if iv.order is not None else None
    if o is None or o.final:
        return finish_move(g, ts)
    o.cancel_requested = True
    return [CancelOrder(g.config.symbol, o.cid, g.owner)]


def order_ended(g: Grid, iv: Interval, completed: bool, ts: int) -> list[Intent] | None:
    """The interval's order ended while a move of it waits: finish the move, or drop it if the order completed
    (a filled buy holds base now, a filled sell waits to buy: the interval trades on and the next price re-checks).
    None when no move waits for this interval."""
    if g.trail_move is None or g.trail_move[1] != iv.index:
        return None
    if completed:
        drop_move(g)
        return None
    return finish_move(g, ts)


def drop_move(g: Grid) -> None:
    """Forget a move that waits for its cancel (its order filled, or a resume keeps the order): it did not move;
    the next price decides again."""
    if g.trail_move is None:
        return
    g.trail_move = None
    if g.marks and g.marks[-1][1].startswith("trail-"):
        g.marks.pop()


def finish_move(g: Grid, ts: int) -> list[Intent]:
    assert g.trail_move is not None
    direction, _k = g.trail_move
    g.trail_move = None
    s, n = g.shift, g.config.n
    if direction == "up":
        old = g.intervals.pop(0)
        new = Interval(s + n, rung(g, s + n), rung(g, s + n + 1), IntervalState.WAITING, qty=_up_qty(g, old))
        new.base, new.cost = old.base, old.cost  # a part-filled buy's base: the new interval buys the rest
        g.intervals.append(new)
        g.shift += 1
        g.moves_up += 1
        g.levels = g.levels[1:] + [new.upper]
    else:
        old = g.intervals.pop()
        _count_cut_round_trip(g, old, ts)
        new = Interval(s - 1, rung(g, s - 1), rung(g, s), IntervalState.HOLDING, qty=old.qty)
        new.base, new.cost = old.base, old.cost  # last_buy_price 0: its sale is position profit, not a round trip
        g.intervals.insert(0, new)
        g.shift -= 1
        g.moves_down += 1
        g.levels = [new.lower] + g.levels[:-1]
    g.trail_stalled.discard(direction)
    moves = g.moves_up if direction == "up" else g.moves_down
    out: list[Intent] = [g._alert("grid-trailed", direction=direction, lower=str(g.levels[0]),
                                  upper=str(g.levels[-1]), price=str(g.last_price), moves=moves)]
    if g.state == "running":
        p = g._place_level(new)
        if p is not None:
            out.append(p)
    return out + trail_step(g, ts)  # a jump over several rungs moves again at once


def _count_cut_round_trip(g: Grid, iv: Interval, ts: int) -> None:
    """A sell cut by the move had sold part of a grid buy: that part is a (smaller) round trip, counted now."""
    if iv.trip_qty > 0 and iv.last_buy_price > 0:
        g.ledger.round_trips += 1
        g.ledger.grid_profit += iv.trip_profit
        g.record(GridRoundTrip(g.id, g.config.symbol, iv.last_buy_price, iv.trip_quote / iv.trip_qty, iv.trip_qty,
                               iv.trip_profit, ts))
    iv.trip_profit = iv.trip_qty = iv.trip_quote = ZERO
