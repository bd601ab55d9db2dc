"""A running grid's state: its lifecycle and interval states with their transition tables, its intervals and
orders, and their stored form (`to_state` / `from_state` of `Grid`).

The state values are the strings the store has always kept ("running", "holding", ...): both enums are
`StrEnum`s, so `grid.state == "running"`, f-strings and JSON see the plain string.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tgtrader.core.accounting import Ledger
from tgtrader.core.chase import Chase
from tgtrader.core.exit import SellUntilFlat
from tgtrader.core.legs import Leg
from tgtrader.core.rules import SymbolRules
from tgtrader.core.states import Transitions
from tgtrader.types import Side

if TYPE_CHECKING:
    from tgtrader.core.grid.machine import Grid

ZERO = Decimal(0)


class GridState(enum.StrEnum):
    PREVIEW = "preview"  # configured, not started
    RUNNING = "running"
    PAUSED = "paused"  # orders cancelled, base kept; resume places them again
    STOPPED = "stopped"  # final (reason: user, stop-loss, take-profit, panic)


class IntervalState(enum.StrEnum):
    WAITING = "waiting"  # buys at its lower level
    HOLDING = "holding"  # owns base, sells at its upper level


_G = GridState
GRID_TRANSITIONS = Transitions("grid", {
    _G.PREVIEW: frozenset({_G.RUNNING}),
    _G.RUNNING: frozenset({_G.PAUSED, _G.STOPPED}),
    _G.PAUSED: frozenset({_G.RUNNING, _G.STOPPED}),
    _G.STOPPED: frozenset(),
})

_I = IntervalState
INTERVAL_TRANSITIONS = Transitions("interval", {
    _I.WAITING: frozenset({_I.HOLDING}),  # its buy completed
    _I.HOLDING: frozenset({_I.WAITING}),  # its sell completed, dust, unfunded at start, or the grid stopped
})


@dataclass
class Interval:
    index: int
    lower: Decimal
    upper: Decimal
    state: IntervalState = IntervalState.WAITING  # written only by Grid._set_interval (the transition table)
    base: Decimal = ZERO  # net base this interval owns
    cost: Decimal = ZERO  # quote paid for `base`, fees included
    order: str | None = None  # client order id of its one open order
    last_buy_price: Decimal = ZERO
    awaiting_start: bool = False  # holding at start, its base comes with the start buy
    # sells of this round trip that ended part-filled (paused, expired): counted when the round trip completes
    trip_profit: Decimal = ZERO
    trip_qty: Decimal = ZERO
    trip_quote: Decimal = ZERO
    qty: Decimal = ZERO  # the base its buy buys: the grid's q, or (trailing up) the same quote value one rung up


@dataclass
class GridOrder(Leg):
    """One of the grid's orders: the order-leg primitive (core/legs.py) plus its place in the grid."""

    role: str = "level"  # level, start, exit
    interval: int | None = None
    side: Side = Side.BUY
    price: Decimal | None = None
    fee: Decimal = ZERO
    profit: Decimal = ZERO  # realized by this sell order's fills so far
    cancel_requested: bool = False


# ================================================================ stored form


def grid_to_state(g: Grid) -> dict[str, Any]:
    """Everything a grid needs to continue after a restart (JSON-able; Decimals and states as strings)."""
    s = _opt_str
    return {
        "id": g.id,
        "config": g.config.to_dict(),
        "state": g.state.value,
        "stop_reason": g.stop_reason,
        "levels": [str(x) for x in g.levels],
        "q": str(g.q),
        "intervals": [
            [iv.index, str(iv.lower), str(iv.upper), iv.state.value, str(iv.base), str(iv.cost), iv.order,
             str(iv.last_buy_price), iv.awaiting_start, str(iv.trip_profit), str(iv.trip_qty), str(iv.trip_quote),
             str(iv.qty)]
            for iv in g.intervals
        ],
        "orders": [
            {"cid": o.cid, "role": o.role, "interval": o.interval, "side": o.side.value, "price": s(o.price),
             "qty": str(o.qty), "filled": str(o.filled), "quote": str(o.quote), "fee": str(o.fee),
             "profit": str(o.profit), "final_status": o.status, "exec_reported": str(o.executed or ZERO),
             "cancel_requested": o.cancel_requested, "trade_ids": list(o.trade_ids)}
            for o in g.orders.values()
        ],
        "seq": g.seq,
        "ledger": g.ledger.to_dict(),
        "start_ts": g.start_ts,
        "stopped_ts": g.stopped_ts,
        "start_price": str(g.start_price),
        "last_price": s(g.last_price),
        "last_ts": g.last_ts,
        "pool_base": str(g.pool_base),
        "exit": g.exit.to_dict(),
        "pool_cost": str(g.pool_cost),
        "start_pending": g.start_pending,
        "chase": None if g.chase is None else g.chase.to_state(),
        "chase_trades": list(g.chase_trades),
        "shift": g.shift,
        "moves": [g.moves_up, g.moves_down],
        "trail_move": None if g.trail_move is None else list(g.trail_move),
        "trail_stalled": sorted(g.trail_stalled),
        "marks": [[ts, kind, str(price)] for ts, kind, price in g.marks],
    }


def load_grid_state(g: Grid, d: dict[str, Any], rules: SymbolRules) -> None:
    """Put a stored state (`grid_to_state`) back into a freshly built grid: restored as saved, not transitions."""
    g.state, g.stop_reason = GridState(d["state"]), d["stop_reason"]
    g.levels = [Decimal(x) for x in d["levels"]]
    g.q = Decimal(d["q"])
    g.intervals = [
        Interval(int(v[0]), Decimal(v[1]), Decimal(v[2]), IntervalState(v[3]), Decimal(v[4]), Decimal(v[5]), v[6],
                 Decimal(v[7]), bool(v[8]), *(Decimal(x) for x in v[9:13]))  # rows before issue 15 have 9 fields
        for v in d["intervals"]
    ]
    for iv in g.intervals:
        iv.qty = iv.qty or g.q  # rows before trailing grids (issue 17) have 12 fields: every interval had q
    for od in d["orders"]:
        status = od["final_status"]
        g.orders[od["cid"]] = GridOrder(
            od["cid"], Decimal(od["qty"]), Decimal(od["filled"]), Decimal(od["quote"]),
            None if status is None else Decimal(od["exec_reported"]), status, [int(t) for t in od["trade_ids"]],
            od["role"], od["interval"], Side(od["side"]), None if od["price"] is None else Decimal(od["price"]),
            Decimal(od["fee"]), Decimal(od["profit"]), bool(od["cancel_requested"]),
        )
    g.seq = int(d["seq"])
    g.ledger = Ledger.from_dict(d["ledger"])
    g.start_ts, g.start_price = int(d["start_ts"]), Decimal(d["start_price"])
    g.stopped_ts = int(d.get("stopped_ts", 0))
    g.last_price = None if d["last_price"] is None else Decimal(d["last_price"])
    g.last_ts = int(d["last_ts"])
    g.pool_base, g.pool_cost = Decimal(d["pool_base"]), Decimal(d["pool_cost"])
    g.start_pending = bool(d["start_pending"])
    g.chase = None if d["chase"] is None else Chase.from_state(d["chase"], rules)
    g.chase_trades = [int(t) for t in d.get("chase_trades", [])]
    g.exit = SellUntilFlat.from_dict(d.get("exit"))
    g.shift = int(d.get("shift", 0))
    g.moves_up, g.moves_down = (int(x) for x in d.get("moves", [0, 0]))
    move = d.get("trail_move")
    g.trail_move = None if move is None else (str(move[0]), int(move[1]))
    g.trail_stalled = set(d.get("trail_stalled", []))
    g.marks = [(int(ts), str(kind), Decimal(price)) for ts, kind, price in d.get("marks", [])]


def _opt_str(v: object) -> str | None:
    return None if v is None else str(v)
