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

from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any, Iterable

import numpy as np

from tgtrader.core.accounting import Ledger, Position, annualized_return_pct, base_received, fee_in_quote
from tgtrader.core.chase import Chase
from tgtrader.core.events import CoreEvent, GridRoundTrip, GridStateChanged, StopTriggered
from tgtrader.core.ids import grid_order_id
from tgtrader.core.rules import SymbolRules, fmt_decimal
from tgtrader.types import (
    AlertIntent,
    CancelOrder,
    Fill,
    Intent,
    OrderStatus,
    OrderType,
    OrderUpdate,
    PlaceOrder,
    Side,
    Tick,
)

ZERO = Decimal(0)
MIN_GRIDS, MAX_GRIDS = 2, 200


# ================================================================ configuration and preview


@dataclass(frozen=True, slots=True)
class GridConfig:
    symbol: str
    lower: Decimal
    upper: Decimal
    n: int  # intervals; n + 1 levels
    investment: Decimal  # quote
    spacing: str = "arithmetic"  # or "geometric"
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    sell_on_stop: bool = False
    fee_rate: Decimal = Decimal("0.001")  # for previews and fee estimates only
    start_mode: str = "market"  # "market" or "chase" (maker-first, market fallback)
    chase_step_ms: int = 5_000
    chase_max_slippage: Decimal = Decimal("0.005")  # chase never pays more than P0 x (1 + this)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = str(v) if isinstance(v, Decimal) else v
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GridConfig":
        kw: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in d:
                continue
            v = d[f.name]
            if f.name in ("lower", "upper", "investment", "fee_rate", "chase_max_slippage"):
                v = Decimal(v)
            elif f.name in ("stop_loss", "take_profit"):
                v = None if v is None else Decimal(v)
            kw[f.name] = v
        return cls(**kw)


def compute_levels(config: GridConfig, rules: SymbolRules | None = None) -> list[Decimal]:
    """n + 1 levels from lower to upper (numpy), each rounded to the tick (nearest); last exactly upper."""
    lo, hi, n = float(config.lower), float(config.upper), config.n
    if n < 1 or lo <= 0 or hi <= lo:
        return [config.lower, config.upper]
    raw = np.geomspace(lo, hi, n + 1) if config.spacing == "geometric" else np.linspace(lo, hi, n + 1)
    levels = [Decimal(repr(float(x))) for x in raw]
    levels[0], levels[-1] = config.lower, config.upper
    if rules is not None:
        levels = [rules.round_price(x) for x in levels[:-1]] + [config.upper]
    return levels


def holding_count(levels: list[Decimal], p0: Decimal) -> int:
    return sum(1 for lv in levels[:-1] if lv >= p0)


def quantity_per_order(levels: list[Decimal], p0: Decimal, investment: Decimal, rules: SymbolRules | None) -> Decimal:
    h = holding_count(levels, p0)
    denom = sum((lv for lv in levels[:-1] if lv < p0), ZERO) + p0 * h
    if denom <= 0:
        return ZERO
    q = investment / denom
    return rules.round_qty(q) if rules is not None else q


@dataclass(frozen=True, slots=True)
class GridPreview:
    config: GridConfig
    price: Decimal
    levels: tuple[Decimal, ...]
    q: Decimal
    profit_pct_min: Decimal
    profit_pct_max: Decimal
    required_quote: Decimal
    required_base: Decimal
    buy_orders: int
    sell_orders: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def profit_pct(lower: Decimal, upper: Decimal, fee_rate: Decimal) -> Decimal:
    """One round trip's profit, after both fees, as percent of the buy value."""
    return ((upper - lower) - fee_rate * (upper + lower)) / lower * 100


def preview(
    config: GridConfig, rules: SymbolRules, price: Decimal, free_quote: Decimal, free_base: Decimal = ZERO
) -> GridPreview:
    """Everything a trader must see before starting, and every reason it cannot start."""
    problems: list[str] = []
    if config.symbol != rules.symbol:
        problems.append(f"rules are for {rules.symbol}, not {config.symbol}")
    if not MIN_GRIDS <= config.n <= MAX_GRIDS:
        problems.append(f"number of grids {config.n} is out of range {MIN_GRIDS}..{MAX_GRIDS}")
    if config.lower <= 0 or config.lower >= config.upper:
        problems.append(f"lower {fmt_decimal(config.lower)} must be positive and below upper {fmt_decimal(config.upper)}")
    if config.spacing not in ("arithmetic", "geometric"):
        problems.append(f"spacing {config.spacing!r} must be arithmetic or geometric")
    if config.investment <= 0:
        problems.append("investment must be positive")
    if price <= 0:
        problems.append("no current price")
    if problems:
        return GridPreview(config, price, (), ZERO, ZERO, ZERO, ZERO, ZERO, 0, 0, tuple(problems))

    levels = compute_levels(config, rules)
    if any(b <= a for a, b in zip(levels, levels[1:])):
        problems.append(
            f"levels are closer than one tick ({fmt_decimal(rules.tick_size)}): widen the range or use fewer grids"
        )
    if config.n > rules.max_num_orders:
        problems.append(f"{config.n} orders exceed MAX_NUM_ORDERS {rules.max_num_orders} for {rules.symbol}")
    if config.stop_loss is not None and config.stop_loss >= price:
        problems.append(f"stop-loss {fmt_decimal(config.stop_loss)} is not below the price {fmt_decimal(price)}")
    if config.take_profit is not None and config.take_profit <= price:
        problems.append(f"take-profit {fmt_decimal(config.take_profit)} is not above the price {fmt_decimal(price)}")
    q = quantity_per_order(levels, price, config.investment, rules)
    h = holding_count(levels, price)
    waiting = config.n - h
    seen: set[str] = set()
    if q <= 0:
        problems.append(f"investment {fmt_decimal(config.investment)} gives a quantity below one step {fmt_decimal(rules.step_size)}")
    else:
        orders = [(Side.BUY, lv) for lv in levels[:-1]] + [(Side.SELL, lv) for lv in levels[1:]]
        for side, lv in orders:
            for v in rules.check_order(side, OrderType.LIMIT, q, lv, reference_price=price):
                key = v.filter
                if key in seen:
                    continue
                seen.add(key)
                if v.filter == "NOTIONAL" and "below" in v.message:
                    problems.append(
                        f"NOTIONAL: {fmt_decimal(q)} x {fmt_decimal(lv)} = {fmt_decimal(q * lv)} {rules.quote_asset} "
                        f"is below minNotional {fmt_decimal(rules.min_notional)}: invest more or use fewer grids"
                    )
                else:
                    problems.append(str(v))
    pcts = [profit_pct(a, b, config.fee_rate) for a, b in zip(levels, levels[1:]) if a > 0]
    required_base = q * h
    required_quote = q * sum((lv for lv in levels[:-1] if lv < price), ZERO) + required_base * price * (1 + config.fee_rate)
    if config.investment > free_quote:
        problems.append(
            f"investment {fmt_decimal(config.investment)} {rules.quote_asset} is above the free balance "
            f"{fmt_decimal(free_quote)} {rules.quote_asset}"
        )
    elif required_quote > free_quote:
        problems.append(
            f"needs {fmt_decimal(required_quote.quantize(Decimal('0.01')))} {rules.quote_asset} with the start fee, "
            f"free is {fmt_decimal(free_quote)}"
        )
    return GridPreview(
        config, price, tuple(levels), q, min(pcts, default=ZERO), max(pcts, default=ZERO),
        required_quote, required_base, waiting, h, tuple(problems),
    )


def overlap_problem(config: GridConfig, others: Iterable[tuple[int, str, Decimal, Decimal]]) -> str | None:
    """Refuse a second grid on a symbol whose range overlaps an active one; `others` = (id, symbol, lower, upper)."""
    for gid, symbol, lower, upper in others:
        if symbol == config.symbol and config.lower < upper and lower < config.upper:
            return (
                f"grid {gid} on {symbol} already covers {fmt_decimal(lower)}-{fmt_decimal(upper)}, "
                f"which overlaps {fmt_decimal(config.lower)}-{fmt_decimal(config.upper)}"
            )
    return None


# ================================================================ the running grid


@dataclass
class Interval:
    index: int
    lower: Decimal
    upper: Decimal
    state: str = "waiting"  # waiting (buy at lower) or holding (sell at upper)
    base: Decimal = ZERO  # net base this interval owns
    cost: Decimal = ZERO  # quote paid for `base`, fees included
    order: str | None = None  # client order id of its one open order
    last_buy_price: Decimal = ZERO
    awaiting_start: bool = False  # holding at start, its base comes with the start buy


@dataclass
class GridOrder:
    cid: str
    role: str  # level, start, exit
    interval: int | None
    side: Side
    price: Decimal | None
    qty: Decimal
    filled: Decimal = ZERO
    quote: Decimal = ZERO
    fee: Decimal = ZERO
    profit: Decimal = ZERO  # realized by this sell order's fills so far
    final_status: str | None = None
    exec_reported: Decimal = ZERO
    cancel_requested: bool = False
    trade_ids: list[int] = field(default_factory=list)


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


class Grid:
    """One grid's lifecycle. Methods take events and return intents; `drain_events()` gives core events."""

    def __init__(self, grid_id: int, config: GridConfig, rules: SymbolRules) -> None:
        self.id = grid_id
        self.config = config
        self.rules = rules
        self.state = "preview"
        self.stop_reason = ""
        self.levels: list[Decimal] = []
        self.q = ZERO
        self.intervals: list[Interval] = []
        self.orders: dict[str, GridOrder] = {}
        self.seq = 0
        self.ledger = Ledger()
        self.start_ts = 0
        self.start_price = ZERO
        self.last_price: Decimal | None = None
        self.last_ts = 0
        self.pool_base = ZERO  # base not assigned to an interval (start buy in flight, exit, residue)
        self.pool_cost = ZERO
        self.start_pending = False  # start buy not yet complete: holding sells wait for it
        self.chase: Chase | None = None
        self.chase_trades: list[int] = []
        self._events: list[CoreEvent] = []

    # ------------------------------------------------------------ small helpers

    @property
    def owner(self) -> str:
        return f"grid:{self.id}"

    def drain_events(self) -> list[CoreEvent]:
        out, self._events = self._events, []
        return out

    def _set_state(self, new: str, reason: str, ts: int) -> None:
        old, self.state = self.state, new
        if old != new:
            self._events.append(GridStateChanged(self.id, self.config.symbol, old, new, reason, ts))

    def _cid(self, level: int | str, side: Side) -> str:
        self.seq += 1
        return grid_order_id(self.id, level, side, self.seq)

    def _tradable(self, side: Side, qty: Decimal, price: Decimal | None, market: bool = False) -> bool:
        if qty <= 0:
            return False
        otype = OrderType.MARKET if market else OrderType.LIMIT
        return not self.rules.check_order(side, otype, qty, None if market else price, reference_price=price)

    def open_order_ids(self) -> list[str]:
        return [cid for cid, o in self.orders.items() if o.final_status is None]

    def _alert(self, kind: str, text: str, **data: object) -> AlertIntent:
        return AlertIntent(kind, text, {"grid_id": self.id, "symbol": self.config.symbol, **data})

    def _fee_quote(self, fill: Fill) -> Decimal:
        return fee_in_quote(fill, self.rules.base_asset, self.rules.quote_asset, fee_rate=self.config.fee_rate)

    # ------------------------------------------------------------ placing

    def _place_level(self, iv: Interval) -> PlaceOrder | None:
        """The one order an interval should have now (None if it already has one or nothing is tradable)."""
        if iv.order is not None:
            return None
        if iv.state == "holding":
            qty = self.rules.round_qty(iv.base)
            if self._tradable(Side.SELL, qty, iv.upper):
                return self._new_order(iv, Side.SELL, iv.upper, qty)
            iv.state = "waiting"  # dust: buy a full step first
        need = self.rules.round_qty(self.q - iv.base) if iv.base < self.q else ZERO
        if need > 0 and self._tradable(Side.BUY, need, iv.lower):
            return self._new_order(iv, Side.BUY, iv.lower, need)
        if self._tradable(Side.BUY, self.q, iv.lower):
            return self._new_order(iv, Side.BUY, iv.lower, self.q)
        return None

    def _new_order(self, iv: Interval, side: Side, price: Decimal, qty: Decimal) -> PlaceOrder:
        cid = self._cid(iv.index, side)
        self.orders[cid] = GridOrder(cid, "level", iv.index, side, price, qty)
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
        if self.state == "running":
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
        if self.state != "preview":
            raise ValueError(f"grid {self.id} is {self.state}, not a preview")
        self.levels = compute_levels(self.config, self.rules)
        self.q = quantity_per_order(self.levels, p0, self.config.investment, self.rules)
        if self.q <= 0:
            raise ValueError("quantity per order rounds to zero")
        self.start_ts, self.start_price, self.last_price, self.last_ts = ts, p0, p0, ts
        self.intervals = [
            Interval(i, lo, hi, "holding" if lo >= p0 else "waiting")
            for i, (lo, hi) in enumerate(zip(self.levels, self.levels[1:]))
        ]
        self._set_state("running", "user", ts)
        h = sum(1 for iv in self.intervals if iv.state == "holding")
        out: list[Intent] = []
        for iv in self.intervals:
            iv.awaiting_start = iv.state == "holding"
        if h:
            qty = self.q * h
            self.start_pending = True
            if self.config.start_mode == "chase":
                limit = self.rules.round_price(p0 * (1 + self.config.chase_max_slippage), Side.BUY)
                self.chase = Chase(
                    self.config.symbol, Side.BUY, qty, self.rules, f"tg-g{self.id}-xB", self.owner, limit,
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

    def _start_market(self, qty: Decimal) -> PlaceOrder:
        qty = self.rules.round_qty(qty, market=True)
        cid = self._cid("x", Side.BUY)
        self.orders[cid] = GridOrder(cid, "start", None, Side.BUY, None, qty)
        return PlaceOrder(self.config.symbol, cid, Side.BUY, OrderType.MARKET, qty, None, None, None, self.owner)

    def pause(self, ts: int, reason: str = "user") -> list[Intent]:
        if self.state != "running":
            return []
        self._set_state("paused", reason, ts)
        self.stop_reason = reason  # why it is not running (shown in summaries)
        return self._cancel_all()

    def resume(self, price: Decimal | None, ts: int) -> list[Intent]:
        if self.state != "paused":
            return []
        if price is not None:
            self.last_price = price
        self._set_state("running", "user", ts)
        self.stop_reason = ""
        for o in self.orders.values():  # still resting (the cancel was refused or is in flight): keep it; a
            o.cancel_requested = False   # cancel that still lands ends the order and its interval is refilled
        start_busy = any(o.role == "start" for o in self.orders.values()) or (
            self.chase is not None and not self.chase.done
        )
        out: list[Intent] = []
        if self.start_pending and not start_busy:
            short = self._start_shortfall()
            if self._tradable(Side.BUY, short, self.last_price, market=True):
                out.append(self._start_market(short))  # the start buy failed or was cut short: retry the rest
            else:
                self._allocate_start(ts)
        return out + self._place_all()

    def _start_shortfall(self) -> Decimal:
        need = self.q * sum(1 for iv in self.intervals if iv.awaiting_start) - self.pool_base
        return self.rules.round_qty(max(need, ZERO), market=True)

    def stop(self, sell: bool, ts: int, reason: str = "user") -> list[Intent]:
        if self.state in ("stopped", "preview"):
            return []
        self._set_state("stopped", reason, ts)
        self.stop_reason = reason
        out = self._cancel_all()
        self._pool_all()
        if sell:
            out += self._exit_sell(ts)
        return out

    def _pool_all(self) -> None:
        for iv in self.intervals:
            self.pool_base += iv.base
            self.pool_cost += iv.cost
            iv.base = iv.cost = ZERO
            iv.state = "waiting"

    def _exit_sell(self, ts: int) -> list[Intent]:
        qty = self.rules.round_qty(self.pool_base, market=True)
        ref = self.last_price
        if not self._tradable(Side.SELL, qty, ref, market=True):
            return [
                self._alert(
                    "grid-residue",
                    f"grid {self.id}: {fmt_decimal(self.pool_base)} {self.rules.base_asset} is below the symbol "
                    f"filters and was not sold",
                )
            ]
        cid = self._cid("z", Side.SELL)
        self.orders[cid] = GridOrder(cid, "exit", None, Side.SELL, None, qty)
        return [PlaceOrder(self.config.symbol, cid, Side.SELL, OrderType.MARKET, qty, None, None, None, self.owner)]

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
        if self.state not in ("running", "paused") or self.stop_reason == "panic":
            return out
        cfg = self.config
        kind = None
        if cfg.stop_loss is not None and price <= cfg.stop_loss:
            kind, trigger = "stop-loss", cfg.stop_loss
        elif cfg.take_profit is not None and price >= cfg.take_profit:
            kind, trigger = "take-profit", cfg.take_profit
        if kind is None:
            return out
        out += self.stop(cfg.sell_on_stop, tick.ts_ms, kind)
        qty = self.pool_base
        unreal = Position(self.pool_base, self.pool_cost, price).unrealized
        self._events.append(
            StopTriggered(f"grid:{self.id}:{'sl' if kind == 'stop-loss' else 'tp'}", cfg.symbol, kind, trigger, price,
                          qty, self.ledger.realized + unreal, tick.ts_ms)
        )
        action = "selling" if cfg.sell_on_stop else "keeping"
        out.append(
            self._alert(
                kind,
                f"grid {self.id} {cfg.symbol}: {kind} at {fmt_decimal(price)} (trigger {fmt_decimal(trigger)}); "
                f"orders cancelled, {action} {fmt_decimal(qty)} {self.rules.base_asset}; "
                f"realized {fmt_decimal(self.ledger.realized.quantize(Decimal('0.0001')))} {self.rules.quote_asset}",
                price=str(price), qty=str(qty), realized=str(self.ledger.realized), trigger=str(trigger),
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
        return []

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
        if o is None or o.final_status is not None or not upd.status.is_final:
            return []
        o.final_status = upd.status.value
        o.exec_reported = upd.executed_qty
        out: list[Intent] = []
        if upd.status is OrderStatus.REJECTED:
            out.append(self._alert("order-rejected", f"grid {self.id}: order {o.cid} rejected: {upd.reject_text}"))
        return out + self._maybe_complete(o, upd.ts_ms)

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
            self.pool_cost += fill.notional + fee
            if self.chase.done and not was_done:
                out += self._after_chase(fill.ts_ms)
            return out
        o = self.orders.get(fill.client_order_id)
        if o is None or fill.trade_id in o.trade_ids:
            return []
        o.trade_ids.append(fill.trade_id)
        o.filled += fill.qty
        o.quote += fill.notional
        o.fee += fee
        self.ledger.record(fill.side, fill.qty, fill.price, fee)
        iv = self.intervals[o.interval] if o.interval is not None else None
        if fill.side is Side.BUY:
            if iv is not None and self.state != "stopped":
                iv.base += recv
                iv.cost += fill.notional + fee
                iv.last_buy_price = fill.price
            else:
                self.pool_base += recv
                self.pool_cost += fill.notional + fee
        else:
            holder_base, holder_cost = (iv.base, iv.cost) if iv is not None and self.state != "stopped" else (
                self.pool_base, self.pool_cost)
            part = holder_cost * fill.qty / holder_base if holder_base > 0 else ZERO
            part = min(part, holder_cost)
            o.profit += fill.notional - fee - part
            self.ledger.realized += fill.notional - fee - part  # realized per fill; the round trip counts on completion
            if iv is not None and self.state != "stopped":
                iv.base -= fill.qty
                iv.cost -= part
            else:
                self.pool_base -= fill.qty
                self.pool_cost -= part
        return self._maybe_complete(o, fill.ts_ms)

    def _maybe_complete(self, o: GridOrder, ts: int) -> list[Intent]:
        full = o.filled >= o.qty
        ended = o.final_status is not None and o.filled >= o.exec_reported
        if not (full or ended):
            return []
        if o.final_status is None:
            o.final_status = OrderStatus.FILLED.value
        del self.orders[o.cid]
        out: list[Intent] = []
        if o.role == "start":
            if o.filled < o.qty and self.state == "running":
                # the start buy was refused or cut short: pause with the reason; resume retries the rest
                why = o.final_status or "ended"
                out.append(self._alert("grid-start-failed",
                                       f"grid {self.id} {self.config.symbol}: the start buy {why.lower()} "
                                       f"({fmt_decimal(o.filled)} of {fmt_decimal(o.qty)} filled); grid paused"))
                return out + self.pause(ts, "start buy failed")
            return out + self._after_start(ts)
        if o.role == "exit":
            return out
        iv = self.intervals[o.interval] if o.interval is not None else None
        if iv is None:
            return out
        if iv.order == o.cid:
            iv.order = None
        if self.state == "stopped":
            # late fills after a stop: move them to the pool, nothing new is placed
            self.pool_base += iv.base
            self.pool_cost += iv.cost
            iv.base = iv.cost = ZERO
            return out
        if full:
            if o.side is Side.BUY:
                iv.state = "holding"
            else:
                iv.state = "waiting"
                # Only a grid buy followed by its sell is a round trip (grid profit), as in the backtest and
                # Binance's grid bot; selling base bought at start realizes position profit, not grid profit.
                if iv.last_buy_price > 0:
                    self.ledger.round_trips += 1
                    self.ledger.grid_profit += o.profit
                    self._events.append(GridRoundTrip(
                        self.id, self.config.symbol, iv.last_buy_price, o.quote / o.filled, o.filled, o.profit, ts))
        if o.final_status == OrderStatus.REJECTED.value and not full:
            # a refused order leaves the interval without one (no retry loop); resume re-places it
            return out
        if self.state == "running" and not iv.awaiting_start:
            p = self._place_level(iv)
            if p is not None:
                out.append(p)
        return out

    # ------------------------------------------------------------ start buy

    def _after_chase(self, ts: int) -> list[Intent]:
        assert self.chase is not None
        rep = self.chase.report()
        short = self.rules.round_qty(self.chase.qty - rep.filled_qty, market=True)
        if rep.status in ("cancelled", "partial", "rejected") and self.state == "running" and self._tradable(
            Side.BUY, short, self.last_price, market=True
        ):
            # the chase could not finish: buy the rest at market so the grid is whole
            return [self._start_market(short)]
        return self._after_start(ts)

    def _after_start(self, ts: int) -> list[Intent]:
        if any(o.role == "start" for o in self.orders.values()):
            return []
        if self.state == "paused":
            return []  # allocated on resume
        self._allocate_start(ts)
        return self._place_all() if self.state == "running" else []

    def _allocate_start(self, ts: int) -> None:
        """Share the start base among the holding intervals (equal when whole, else lowest first)."""
        if not self.start_pending:
            return
        self.start_pending = False
        holding = [iv for iv in self.intervals if iv.awaiting_start]
        for iv in holding:
            iv.awaiting_start = False
        if not holding or self.pool_base <= 0:
            for iv in holding:
                iv.state = "waiting"
            return
        pool, cost = self.pool_base, self.pool_cost
        whole = pool >= self.q * len(holding) * (1 - 2 * self.config.fee_rate)
        shares: list[Decimal] = []
        left = pool
        for k, iv in enumerate(holding):
            if k == len(holding) - 1:
                share = left
            elif whole:
                share = self.rules.round_qty(pool / len(holding))
            else:
                share = min(self.q, left)
            shares.append(share)
            left -= share
        for iv, share in zip(holding, shares):
            iv.base = share
            iv.cost = cost * share / pool
            iv.last_buy_price = ZERO  # base from the start buy: its sale is position profit, not a round trip
            if share <= 0:
                iv.state = "waiting"  # unfunded: its buy at L_i (>= P0) completes the start when it can
        self.pool_base = ZERO
        self.pool_cost = ZERO

    # ------------------------------------------------------------ accounting

    def base_held(self) -> Decimal:
        return self.pool_base + sum((iv.base for iv in self.intervals), ZERO)

    def position(self) -> Position:
        cost = self.pool_cost + sum((iv.cost for iv in self.intervals), ZERO)
        return Position(self.base_held(), cost, self.last_price)

    def stats(self, now_ts: int | None = None) -> GridStats:
        pos = self.position()
        now = self.last_ts if now_ts is None else now_ts
        pnl = self.ledger.realized + pos.unrealized
        return GridStats(
            self.ledger.realized, self.ledger.fees, self.ledger.round_trips, pos.base, pos.avg_cost,
            pos.unrealized, self.last_price, annualized_return_pct(pnl, self.config.investment, self.start_ts, now),
            len(self.open_order_ids()) + (len(self.chase._live()) if self.chase and not self.chase.done else 0),
            self.ledger.grid_profit,
        )

    def open_orders_per_interval(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for o in self.orders.values():
            if o.final_status is None and o.interval is not None:
                counts[o.interval] = counts.get(o.interval, 0) + 1
        return counts

    # ------------------------------------------------------------ persistence

    def to_state(self) -> dict[str, Any]:
        s = lambda v: None if v is None else str(v)  # noqa: E731
        return {
            "id": self.id,
            "config": self.config.to_dict(),
            "state": self.state,
            "stop_reason": self.stop_reason,
            "levels": [str(x) for x in self.levels],
            "q": str(self.q),
            "intervals": [
                [iv.index, str(iv.lower), str(iv.upper), iv.state, str(iv.base), str(iv.cost), iv.order,
                 str(iv.last_buy_price), iv.awaiting_start]
                for iv in self.intervals
            ],
            "orders": [
                {"cid": o.cid, "role": o.role, "interval": o.interval, "side": o.side.value, "price": s(o.price),
                 "qty": str(o.qty), "filled": str(o.filled), "quote": str(o.quote), "fee": str(o.fee),
                 "profit": str(o.profit), "final_status": o.final_status, "exec_reported": str(o.exec_reported),
                 "cancel_requested": o.cancel_requested, "trade_ids": list(o.trade_ids)}
                for o in self.orders.values()
            ],
            "seq": self.seq,
            "ledger": self.ledger.to_dict(),
            "start_ts": self.start_ts,
            "start_price": str(self.start_price),
            "last_price": s(self.last_price),
            "last_ts": self.last_ts,
            "pool_base": str(self.pool_base),
            "pool_cost": str(self.pool_cost),
            "start_pending": self.start_pending,
            "chase": None if self.chase is None else self.chase.to_state(),
            "chase_trades": list(self.chase_trades),
        }

    @classmethod
    def from_state(cls, d: dict[str, Any], rules: SymbolRules) -> "Grid":
        g = cls(int(d["id"]), GridConfig.from_dict(d["config"]), rules)
        g.state, g.stop_reason = d["state"], d["stop_reason"]
        g.levels = [Decimal(x) for x in d["levels"]]
        g.q = Decimal(d["q"])
        g.intervals = [
            Interval(int(i), Decimal(lo), Decimal(hi), st, Decimal(b), Decimal(c), order, Decimal(lb), bool(aw))
            for i, lo, hi, st, b, c, order, lb, aw in d["intervals"]
        ]
        for od in d["orders"]:
            g.orders[od["cid"]] = GridOrder(
                od["cid"], od["role"], od["interval"], Side(od["side"]),
                None if od["price"] is None else Decimal(od["price"]), Decimal(od["qty"]), Decimal(od["filled"]),
                Decimal(od["quote"]), Decimal(od["fee"]), Decimal(od["profit"]), od["final_status"],
                Decimal(od["exec_reported"]), bool(od["cancel_requested"]), [int(t) for t in od["trade_ids"]],
            )
        g.seq = int(d["seq"])
        g.ledger = Ledger.from_dict(d["ledger"])
        g.start_ts, g.start_price = int(d["start_ts"]), Decimal(d["start_price"])
        g.last_price = None if d["last_price"] is None else Decimal(d["last_price"])
        g.last_ts = int(d["last_ts"])
        g.pool_base, g.pool_cost = Decimal(d["pool_base"]), Decimal(d["pool_cost"])
        g.start_pending = bool(d["start_pending"])
        g.chase = None if d["chase"] is None else Chase.from_state(d["chase"], rules)
        g.chase_trades = [int(t) for t in d.get("chase_trades", [])]
        return g
