"""Grid trading as a pure state machine: config and preview, then events in, intents out.

Capital model (identical in backtest, paper and live; see PLAN.md): at start price P0 an interval
[L_i, L_i+1] is *holding* if L_i >= P0 (owns q base, sells at L_i+1), else *waiting* (buys q at L_i).
q = investment / (sum of waiting L_i + P0 x holding count), rounded down to the step. The holding
base is bought at start (MARKET, or a maker-first chase), then the holding sells go out.

Partial fills (the documented choice): an order's remaining quantity keeps working, and the counter
order goes out only when the order has *completed* (fully filled), sized by what it bought (net of
a fee taken in base). A partially filled order that ends early (our pause/stop, or the exchange
cancels/expires it) keeps its filled part in the interval's `base`: a waiting interval later buys
only the shortfall `q - base`, a holding interval sells all its base. If that remainder is below the
filters, a waiting interval buys a full q instead (the dust rides along and is sold with it).

A REJECTED order leaves its interval without an order (and an alert): no retry loop against a
refusing exchange; `resume()` re-places every missing order.

Invariant: never more than one open order per interval. States: preview -> running <-> paused ->
stopped (reason: user, stop-loss, take-profit, panic). Fills must be de-duplicated upstream (the
order tracker); the grid also ignores a trade id it has already applied to the same order.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tgtrader.core.accounting import (
    Ledger,
    Position,
    base_received,
    buy_cost,
    fee_in_quote,
)
from tgtrader.core.chase import Chase
from tgtrader.core.events import CoreEvent, GridRoundTrip, GridStateChanged, SaleRealized, StopTriggered
from tgtrader.core.exit import SellUntilFlat
from tgtrader.core.grid.books import GridStats, grid_stats
from tgtrader.core.grid.exiting import exit_alert, exit_step
from tgtrader.core.grid.plan import GridConfig, compute_levels, quantity_per_order
from tgtrader.core.grid.starting import after_chase, after_start, allocate_start, start_market, start_shortfall
from tgtrader.core.grid.state import (
    GRID_TRANSITIONS,
    INTERVAL_TRANSITIONS,
    GridOrder,
    GridState,
    Interval,
    IntervalState,
    grid_to_state,
    load_grid_state,
)
from tgtrader.core.grid.trailing import add_mark, drop_move, order_ended, trail_step
from tgtrader.core.ids import grid_chase_prefix, grid_order_id
from tgtrader.core.ports import MachineSnapshot
from tgtrader.core.rules import SymbolRules
from tgtrader.types import (
    AlertIntent,
    CancelOrder,
    Fill,
    Intent,
    OrderStatus,
    OrderType,
    OrderUpdate,
    PlaceOrder,
    RejectReason,
    Side,
    Tick,
)

ZERO = Decimal(0)
RUNNING, PAUSED, STOPPED, PREVIEW = GridState.RUNNING, GridState.PAUSED, GridState.STOPPED, GridState.PREVIEW
WAITING, HOLDING = IntervalState.WAITING, IntervalState.HOLDING


class Grid:
    """One grid's lifecycle. Methods take events and return intents; `drain_events()` gives core events."""

    machine_kind = "grid"

    def __init__(self, grid_id: int, config: GridConfig, rules: SymbolRules) -> None:
        self.id = grid_id
        self.config = config
        self.rules = rules
        self.state: GridState = PREVIEW  # written only by _set_state (the transition table) and from_state
        self.stop_reason = ""
        self.levels: list[Decimal] = []
        self.q = ZERO
        self.intervals: list[Interval] = []
        self.orders: dict[str, GridOrder] = {}
        self.seq = 0
        self.ledger = Ledger()
        self.start_ts = 0
        self.stopped_ts = 0
        self.start_price = ZERO
        self.last_price: Decimal | None = None
        self.last_ts = 0
        self.pool_base = ZERO  # base not assigned to an interval (start buy in flight, exit, residue)
        self.pool_cost = ZERO
        self.start_pending = False  # start buy not yet complete: holding sells wait for it
        self.chase: Chase | None = None
        self.chase_trades: list[int] = []
        self.exit = SellUntilFlat()  # sell until flat after a stop with sell (SL/TP, /grid stop ID sell, panic)
        self._events: list[CoreEvent] = []
        # trailing (grid/trailing.py): intervals are rungs shift .. shift+n-1 of the ladder
        self.shift = 0
        self.moves_up = self.moves_down = 0
        self.trail_move: tuple[str, int] | None = None  # (direction, rung of the interval whose order is cancelled)
        self.trail_stalled: set[str] = set()  # directions whose stall was reported (once per stall)
        self.marks: list[tuple[int, str, Decimal]] = []  # (ts, kind, price): trailing moves and stop triggers
        self.rungs: dict[int, Decimal] = {}  # ladder prices computed so far (trailing.rung); derived, not stored

    # ------------------------------------------------------------ small helpers

    @property
    def symbol(self) -> str:
        return self.config.symbol

    @property
    def active(self) -> bool:
        """Takes ticks, timers, fills and order updates (a paused grid still watches its stops; a stopped grid
        that is selling its base until flat still needs prices and timers)."""
        return self.state in (RUNNING, PAUSED) or self.exit.working

    @property
    def watching(self) -> bool:
        return self.active

    def snapshot(self) -> MachineSnapshot:
        return MachineSnapshot("grid", self.id, self.config.symbol, self.state.value, self.to_state())

    @property
    def owner(self) -> str:
        return f"grid:{self.id}"

    def record(self, event: CoreEvent) -> None:
        self._events.append(event)

    def _iv(self, k: int | None) -> Interval | None:
        """The interval on rung k (None for an order of no interval, or of one a trailing move removed)."""
        i = -1 if k is None else k - self.shift
        return self.intervals[i] if 0 <= i < len(self.intervals) else None

    def drain_events(self) -> list[CoreEvent]:
        out, self._events = self._events, []
        return out

    def _set_state(self, new: GridState, reason: str, ts: int) -> bool:
        """Move to `new` if GRID_TRANSITIONS allows it; an illegal move is logged and not applied (False)."""
        old = self.state
        self.state = GRID_TRANSITIONS.move(self.owner, old, new)
        if self.state != old:
            self._events.append(GridStateChanged(self.id, self.config.symbol, old.value, new.value, reason, ts))
        return self.state == new

    def _set_interval(self, iv: Interval, new: IntervalState) -> None:
        """The only writer of an interval's state: a move INTERVAL_TRANSITIONS refuses is logged, not applied."""
        iv.state = INTERVAL_TRANSITIONS.move(f"{self.owner}:{iv.index}", iv.state, new)

    def _cid(self, level: int | str, side: Side) -> str:
        self.seq += 1
        return grid_order_id(self.id, level, side, self.seq)

    def _tradable(self, side: Side, qty: Decimal, price: Decimal | None, market: bool = False) -> bool:
        if qty <= 0:
            return False
        otype = OrderType.MARKET if market else OrderType.LIMIT
        return not self.rules.check_order(side, otype, qty, None if market else price, reference_price=price)

    def open_order_ids(self) -> list[str]:
        return [cid for cid, o in self.orders.items() if not o.final]

    def _alert(self, kind: str, **payload: object) -> AlertIntent:
        return AlertIntent(kind, {"grid_id": self.id, "symbol": self.config.symbol, **payload})

    def _fee_quote(self, fill: Fill) -> Decimal:
        return fee_in_quote(fill, self.rules.base_asset, self.rules.quote_asset, fee_rate=self.config.fee_rate)

    # ------------------------------------------------------------ placing

    def _place_level(self, iv: Interval) -> PlaceOrder | None:
        """The one order an interval should have now (None if it already has one or nothing is tradable)."""
        if iv.order is not None:
            return None
        if iv.state == HOLDING:
            qty = self.rules.round_qty(iv.base)
            if self._tradable(Side.SELL, qty, iv.upper):
                return self._new_order(iv, Side.SELL, iv.upper, qty)
            self._set_interval(iv, WAITING)  # dust: buy a full step first
        need = self.rules.round_qty(iv.qty - iv.base) if iv.base < iv.qty else ZERO
        if need > 0 and self._tradable(Side.BUY, need, iv.lower):
            return self._new_order(iv, Side.BUY, iv.lower, need)
        held = self.rules.round_qty(iv.base)
        if held > 0 and self._tradable(Side.SELL, held, iv.upper):
            # a partly filled buy whose remainder is below the filters: sell what it holds (a smaller round trip)
            # rather than buying a full quantity on top (twice the planned capital on this level)
            self._set_interval(iv, HOLDING)
            return self._new_order(iv, Side.SELL, iv.upper, held)
        if self._tradable(Side.BUY, iv.qty, iv.lower):
            return self._new_order(iv, Side.BUY, iv.lower, iv.qty)  # only dust held: it rides along
        return None

    def _new_order(self, iv: Interval, side: Side, price: Decimal, qty: Decimal) -> PlaceOrder:
        cid = self._cid(iv.index, side)
        self.orders[cid] = GridOrder(cid, qty, role="level", interval=iv.index, side=side, price=price)
        iv.order = cid
        return PlaceOrder(self.config.symbol, cid, side, OrderType.LIMIT, qty, price, None, "GTC", self.owner)

    def _place_all(self) -> list[Intent]:
        out: list[Intent] = []
        for iv in self.intervals:
            if iv.awaiting_start:
                continue
            p = self._place_level(iv)
            if p is not None:
                out.append(p)
        return out

    def after_outage(self, ts: int) -> list[Intent]:
        """The exchange takes requests again (an IP ban ended): send again the cancels it refused, and, if
        running, place the level orders it refused (each interval that has no order gets its one order)."""
        self.last_ts = max(self.last_ts, ts)
        out: list[Intent] = [CancelOrder(self.config.symbol, cid, self.owner)
                             for cid in self.open_order_ids() if self.orders[cid].cancel_requested]
        if self.state == RUNNING:
            out += self._place_all()
        return out

    def _cancel_all(self) -> list[Intent]:
        out: list[Intent] = []
        for cid in self.open_order_ids():
            o = self.orders[cid]
            if not o.cancel_requested:
                o.cancel_requested = True
                out.append(CancelOrder(self.config.symbol, cid, self.owner))
        if self.chase is not None and not self.chase.done:
            out += self.chase.cancel()
        return out

    # ------------------------------------------------------------ lifecycle

    def start(self, p0: Decimal, ts: int, bid: Decimal | None = None, ask: Decimal | None = None) -> list[Intent]:
        if self.state != PREVIEW:
            raise ValueError(f"grid {self.id} is {self.state}, not a preview")
        self.levels = compute_levels(self.config, self.rules)
        self.q = quantity_per_order(self.levels, p0, self.config.investment, self.rules)
        if self.q <= 0:
            raise ValueError("quantity per order rounds to zero")
        self.start_ts, self.start_price, self.last_price, self.last_ts = ts, p0, p0, ts
        self.intervals = [
            Interval(i, lo, hi, HOLDING if lo >= p0 else WAITING, qty=self.q)
            for i, (lo, hi) in enumerate(zip(self.levels, self.levels[1:]))
        ]
        self._set_state(RUNNING, "user", ts)
        h = sum(1 for iv in self.intervals if iv.state == HOLDING)
        out: list[Intent] = []
        for iv in self.intervals:
            iv.awaiting_start = iv.state == HOLDING
        if h:
            qty = self.q * h
            self.start_pending = True
            if self.config.start_mode == "chase":
                limit = self.rules.round_price(p0 * (1 + self.config.chase_max_slippage), Side.BUY)
                self.chase = Chase(
                    self.config.symbol, Side.BUY, qty, self.rules, grid_chase_prefix(self.id), self.owner, limit,
                    self.config.chase_step_ms, True, 0, self.config.fee_rate,
                )
                out += self.chase.start(ts, bid if bid is not None else p0, ask)
                if self.chase.done:  # could not rest a maker order: buy at market
                    self.chase = None
                    out.append(self._start_market(qty))
            else:
                out.append(self._start_market(qty))
        out += self._place_all()
        return out

    def pause(self, ts: int, reason: str = "user") -> list[Intent]:
        if self.state != RUNNING:
            return []
        self._set_state(PAUSED, reason, ts)
        self.stop_reason = reason  # why it is not running (shown in summaries)
        return self._cancel_all()

    def resume(self, price: Decimal | None, ts: int) -> list[Intent]:
        if self.state != PAUSED:
            return []
        if price is not None:
            self.last_price = price
        self._set_state(RUNNING, "user", ts)
        self.stop_reason = ""
        for o in self.orders.values():  # still resting (the cancel was refused or is in flight): keep it; a
            o.cancel_requested = False   # cancel that still lands ends the order and its interval is refilled
        drop_move(self)  # a trailing move waiting for its cancel: the order stays, the next price decides again
        start_busy = any(o.role == "start" for o in self.orders.values()) or (
            self.chase is not None and not self.chase.done
        )
        out: list[Intent] = []
        if self.start_pending and not start_busy:
            short = start_shortfall(self)
            if self._tradable(Side.BUY, short, self.last_price, market=True):
                out.append(self._start_market(short))  # the start buy failed or was cut short: retry the rest
            else:
                allocate_start(self, ts)
        return out + self._place_all()

    def stop(self, sell: bool, ts: int, reason: str = "user") -> list[Intent]:
        if self.state in (STOPPED, PREVIEW):
            return []
        self._set_state(STOPPED, reason, ts)
        self.stop_reason = reason
        self.stopped_ts = ts
        self.trail_move = None
        out = self._cancel_all()
        self._pool_all()
        if sell:
            self.exit.begin(ts, reason)
            out += self._exit_step(ts)
        return out

    def _pool_all(self) -> None:
        for iv in self.intervals:
            self.pool_base += iv.base
            self.pool_cost += iv.cost
            iv.base = iv.cost = ZERO
            self._set_interval(iv, WAITING)

    def _exit_step(self, ts: int) -> list[Intent]:
        return exit_step(self, ts)  # grid/exiting.py

    def _exit_alert(self) -> AlertIntent:
        return exit_alert(self)

    def on_balance(self, asset: str, free: Decimal, ts: int) -> list[Intent]:
        if asset != self.rules.base_asset or not self.exit.working:
            return []
        self.exit.on_balance(free)
        return self._exit_step(ts)

    # ------------------------------------------------------------ market events

    def on_tick(self, tick: Tick) -> list[Intent]:
        if tick.symbol != self.config.symbol:
            return []
        price = tick.price
        if price is None:
            return []
        self.last_price, self.last_ts = price, max(self.last_ts, tick.ts_ms)
        out: list[Intent] = []
        if self.chase is not None and not self.chase.done:
            out += self.chase.on_tick(tick)
        # a paused grid still holds base, so its stops keep watching; after a panic the base was sold already
        if self.state not in (RUNNING, PAUSED) or self.stop_reason == "panic":
            return out + self._exit_step(tick.ts_ms)
        cfg = self.config
        kind = None
        if cfg.stop_loss is not None and price <= cfg.stop_loss:
            kind, trigger = "stop-loss", cfg.stop_loss
        elif cfg.take_profit is not None and price >= cfg.take_profit:
            kind, trigger = "take-profit", cfg.take_profit
        if kind is None:
            return out + trail_step(self, tick.ts_ms)
        add_mark(self, tick.ts_ms, kind, price)
        out += self.stop(cfg.sell_on_stop, tick.ts_ms, kind)
        qty = self.pool_base
        unreal = Position(self.pool_base, self.pool_cost, price).unrealized
        self._events.append(
            StopTriggered(f"grid:{self.id}:{'sl' if kind == 'stop-loss' else 'tp'}", cfg.symbol, kind, trigger, price,
                          qty, self.ledger.realized + unreal, tick.ts_ms)
        )
        out.append(
            self._alert(
                kind,
                price=str(price), qty=str(qty), realized=str(self.ledger.realized), trigger=str(trigger),
                sell_on_stop=cfg.sell_on_stop, base_asset=self.rules.base_asset, quote_asset=self.rules.quote_asset,
            )
        )
        return out

    def on_timer(self, ts: int) -> list[Intent]:
        self.last_ts = max(self.last_ts, ts)
        if self.chase is not None and not self.chase.done:
            out = self.chase.on_timer(ts)
            if self.chase.done:
                out += self._after_chase(ts)
            return out
        return self._exit_step(ts)

    # ------------------------------------------------------------ order events

    def owns(self, cid: str) -> bool:
        return cid in self.orders or (self.chase is not None and cid in self.chase.legs)

    def on_order_update(self, upd: OrderUpdate) -> list[Intent]:
        self.last_ts = max(self.last_ts, upd.ts_ms)
        if self.chase is not None and upd.client_order_id in self.chase.legs:
            was_done = self.chase.done
            out = self.chase.on_order_update(upd)
            if self.chase.done and not was_done:
                out += self._after_chase(upd.ts_ms)
            return out
        o = self.orders.get(upd.client_order_id)
        if o is None or not upd.status.is_final or not o.end(upd.status, upd.executed_qty):
            return []
        out = []
        if o.role == "exit":
            if self.exit.leg_ended(o.cid, upd.status, upd.reject_reason, self.pool_base, upd.executed_qty,
                                   upd.ts_ms):
                out.append(self._exit_alert())
        elif upd.status is OrderStatus.REJECTED:
            out.append(self._alert("order-rejected", client_order_id=o.cid, reject_text=upd.reject_text))
        elif upd.reject_reason is RejectReason.SELF_TRADE and o.role == "level":
            # expired by self-trade prevention: it would have traded with another of our own orders. Placed again at
            # once it would expire again and again; like a refusal, the interval waits for /grid resume.
            o.status = OrderStatus.REJECTED.value
            out.append(self._alert("order-rejected", client_order_id=o.cid, reject_text=upd.reject_text,
                                   reason=RejectReason.SELF_TRADE.value))
        return out + self._maybe_complete(o, upd.ts_ms) + self._exit_step(upd.ts_ms) + trail_step(self, upd.ts_ms)

    def on_fill(self, fill: Fill, fee_quote: Decimal | None = None) -> list[Intent]:
        self.last_ts = max(self.last_ts, fill.ts_ms)
        fee = fee_quote if fee_quote is not None else self._fee_quote(fill)
        recv = base_received(fill, self.rules.base_asset)
        if self.chase is not None and fill.client_order_id in self.chase.legs:
            if fill.trade_id in self.chase_trades:
                return []
            self.chase_trades.append(fill.trade_id)
            was_done = self.chase.done
            out = self.chase.on_fill(fill, fee)
            self.ledger.record(Side.BUY, fill.qty, fill.price, fee)
            self.pool_base += recv
            self.pool_cost += buy_cost(fill, fee, self.rules.base_asset)
            if self.chase.done and not was_done:
                out += self._after_chase(fill.ts_ms)
            return out
        o = self.orders.get(fill.client_order_id)
        if o is None or not o.add_fill(fill):
            return []
        o.fee += fee
        self.ledger.record(fill.side, fill.qty, fill.price, fee)
        iv = self._iv(o.interval)
        if fill.side is Side.BUY:
            if iv is not None and self.state != STOPPED:
                iv.base += recv
                iv.cost += buy_cost(fill, fee, self.rules.base_asset)
                iv.last_buy_price = fill.price
            else:
                self.pool_base += recv
                self.pool_cost += buy_cost(fill, fee, self.rules.base_asset)
        else:
            holder_base, holder_cost = (iv.base, iv.cost) if iv is not None and self.state != STOPPED else (
                self.pool_base, self.pool_cost)
            part = holder_cost * fill.qty / holder_base if holder_base > 0 else ZERO
            part = min(part, holder_cost)
            o.profit += fill.notional - fee - part
            self.ledger.realized += fill.notional - fee - part  # realized per fill; the round trip counts on completion
            self._events.append(SaleRealized(self.owner, self.config.symbol, fill.qty, fill.notional - fee - part,
                                             fill.ts_ms))
            if iv is not None and self.state != STOPPED:
                iv.base -= fill.qty
                iv.cost -= part
            else:
                self.pool_base -= fill.qty
                self.pool_cost -= part
        return self._maybe_complete(o, fill.ts_ms) + self._exit_step(fill.ts_ms) + trail_step(self, fill.ts_ms)

    def _maybe_complete(self, o: GridOrder, ts: int) -> list[Intent]:
        full = o.filled >= o.qty
        ended = o.final and o.done
        if not (full or ended):
            return []
        if not o.final:
            o.end(OrderStatus.FILLED, o.filled)
        del self.orders[o.cid]
        out: list[Intent] = []
        if o.role == "start":
            if o.filled < o.qty and self.state == RUNNING:
                # the start buy was refused or cut short: pause with the reason; resume retries the rest
                why = o.status or "ended"
                out.append(self._alert("grid-start-failed", status=why, filled=str(o.filled), qty=str(o.qty)))
                return out + self.pause(ts, "start buy failed")
            return out + self._after_start(ts)
        if o.role == "exit":
            return out
        iv = self._iv(o.interval)
        if iv is None:
            return out
        if iv.order == o.cid:
            iv.order = None
        if self.state == STOPPED:
            # late fills after a stop: move them to the pool, nothing new is placed
            self.pool_base += iv.base
            self.pool_cost += iv.cost
            iv.base = iv.cost = ZERO
            return out
        if full:
            if o.side is Side.BUY:
                self._set_interval(iv, HOLDING)
            else:
                self._set_interval(iv, WAITING)
                # Only a grid buy followed by its sell is a round trip (grid profit), as in the backtest and
                # Binance's grid bot; selling base bought at start realizes position profit, not grid profit.
                # A round trip whose sell ended part-filled and was placed again counts every part (issue 15).
                profit, qty, quote = o.profit + iv.trip_profit, o.filled + iv.trip_qty, o.quote + iv.trip_quote
                iv.trip_profit = iv.trip_qty = iv.trip_quote = ZERO
                if iv.last_buy_price > 0:
                    self.ledger.round_trips += 1
                    self.ledger.grid_profit += profit
                    self._events.append(GridRoundTrip(
                        self.id, self.config.symbol, iv.last_buy_price, quote / qty, qty, profit, ts))
        elif o.side is Side.SELL and o.filled > 0:  # ended part-filled: its part belongs to this round trip
            iv.trip_profit += o.profit
            iv.trip_qty += o.filled
            iv.trip_quote += o.quote
        moved = order_ended(self, iv, full, ts)  # a trailing move waited for this order (grid/trailing.py)
        if moved is not None:
            return out + moved
        if o.status == OrderStatus.REJECTED.value and not full:
            # a refused order leaves the interval without one (no retry loop); resume re-places it
            return out
        if self.state == RUNNING and not iv.awaiting_start:
            p = self._place_level(iv)
            if p is not None:
                out.append(p)
        return out

    # ------------------------------------------------------------ start buy (grid/starting.py)

    def _start_market(self, qty: Decimal) -> PlaceOrder:
        return start_market(self, qty)

    def _after_chase(self, ts: int) -> list[Intent]:
        return after_chase(self, ts)

    def _after_start(self, ts: int) -> list[Intent]:
        return after_start(self, ts)

    # ------------------------------------------------------------ accounting

    def base_held(self) -> Decimal:
        return self.pool_base + sum((iv.base for iv in self.intervals), ZERO)

    def position(self) -> Position:
        cost = self.pool_cost + sum((iv.cost for iv in self.intervals), ZERO)
        return Position(self.base_held(), cost, self.last_price)

    def stats(self, now_ts: int | None = None) -> GridStats:
        return grid_stats(self, now_ts)  # grid/books.py

    def open_orders_per_interval(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for o in self.orders.values():
            if not o.final and o.interval is not None:
                counts[o.interval] = counts.get(o.interval, 0) + 1
        return counts

    # ------------------------------------------------------------ persistence (the stored form: state.py)

    def to_state(self) -> dict[str, Any]:
        return grid_to_state(self)

    @classmethod
    def from_state(cls, d: dict[str, Any], rules: SymbolRules) -> "Grid":
        g = cls(int(d["id"]), GridConfig.from_dict(d["config"]), rules)
        load_grid_state(g, d, rules)
        return g
