"""The one async runner for live, paper, demo and replay: `TradingCore` implements `TradingApi`.

One task consumes exchange news (ticks, order updates, fills, balances, stream status) from a queue fed
by `exchange.set_event_sink`, applies each event to the order tracker and the owning machine (grid,
stop, chase; found by parsing the client order id), persists the reaction, and only then sends the
machine's intents to the exchange. API calls take the same lock, so machines are changed by one
coroutine at a time and replaying the same events gives the same intents.

Crash safety: for every event, in ONE database transaction, the fill (unique per symbol and trade id),
the machine's new state, the new orders (PENDING_NEW with their deterministic client order ids), the
alerts (outbox) and the last-seen trade id are written; the orders are sent after the commit. On
restart PENDING_NEW orders are looked up by client order id (found: adopted; unknown: sent now with
the SAME id), and missed fills are fetched with my_trades since the last seen trade id.

Rejections: an order the exchange refuses becomes a REJECTED update for its owner (a chase re-prices
on "would match"), an OrderRejected event, and for a grid order refused for insufficient balance the
grid is paused with that reason (resume re-places every missing order). A 418 ban stops sending and
pauses every grid.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Callable

from loguru import logger

from tgtrader.core.accounting import fee_in_quote
from tgtrader.core.api import (
    ApiError,
    BalancesView,
    ChartData,
    ChaseResult,
    GridPreviewView,
    GridSpec,
    GridSummary,
    OrderView,
    PanicPlan,
    PanicReport,
    PnlView,
    SizeResult,
    StatusView,
    StopView,
)
from tgtrader.core.chase import Chase
from tgtrader.core.events import (
    CoreEvent,
    ErrorEvent,
    EventBus,
    GridRoundTrip,
    OrderFilled,
    OrderRejected,
    StreamDown,
    StreamUp,
)
from tgtrader.core.grid import Grid, GridConfig, GridPreview, overlap_problem, preview
from tgtrader.core.history import PriceHistory
from tgtrader.core.ids import panic_order_id, parse_client_order_id
from tgtrader.core.orders import OrderTracker, TrackedOrder
from tgtrader.core.risk import ExposureLimits, check_exposure, fixed_fraction, kelly
from tgtrader.core.rules import SymbolRules, fmt_decimal
from tgtrader.core.stops import Stop
from tgtrader.errors import (
    BadSymbol,
    ExchangeError,
    InsufficientBalance,
    IpBanned,
    OrderStatusUnknown,
    RateLimited,
    UnknownOrder,
)
from tgtrader.core.ports import BalanceUpdate, Exchange, ExchangeHealth, StreamStatus
from tgtrader.store.orders import OrderRow
from tgtrader.types import (
    AlertIntent,
    Balance,
    CancelOrder,
    Fill,
    Intent,
    OrderStatus,
    OrderType,
    OrderUpdate,
    PlaceOrder,
    RejectReason,
    ReplaceOrder,
    Side,
    Tick,
)

ZERO = Decimal(0)
Machine = Grid | Stop | Chase


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class CoreConfig:
    quote_asset: str = "USDT"
    fee_rate: Decimal = Decimal("0.001")  # previews and fee estimates
    max_per_grid: Decimal | None = None
    max_total_in_grids: Decimal | None = None
    max_open_orders: int | None = None
    chase_step_ms: int = 5_000
    chase_max_slippage: Decimal = Decimal("0.005")
    soft_stop_silence_s: float = 60.0
    stop_limit_offset: Decimal = Decimal("0.005")
    start_mode: str = "market"  # or "chase"
    panic_quote_asset: str | None = None  # default: quote_asset
    risk_pct: Decimal = Decimal("0.01")
    kelly_multiplier: Decimal = Decimal("0.5")
    kelly_cap: Decimal = Decimal("0.20")
    timer_interval_s: float = 0.5  # 0 disables the timer task (replay derives timers from ticks)
    preview_ttl_s: int = 600
    panic_token_ttl_s: int = 30
    chart_points: int = 5_000


@dataclass(frozen=True, slots=True)
class _Timer:
    ts_ms: int


@dataclass(frozen=True, slots=True)
class _BanOver:
    """Queued when an IP ban (418) should be over: reconcile, then send what was refused meanwhile."""


@dataclass(frozen=True, slots=True)
class _GridPause:
    """Queued by the executor (insufficient balance): pause a grid in event order."""

    grid_id: int
    reason: str


@dataclass
class _Preview:
    view: GridPreviewView
    preview: GridPreview
    rules: SymbolRules
    created_ms: int
    used: bool = False


@dataclass
class _ChaseJob:
    chase: Chase
    future: asyncio.Future[ChaseResult] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class TradingCore:
    """See the module docstring. `await start()`, `await idle()`, `await stop()`; the rest is `TradingApi`."""

    def __init__(
        self,
        exchange: Exchange,
        db: Any,
        bus: EventBus | None = None,
        config: CoreConfig = CoreConfig(),
        mode: str = "paper",
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.exchange = exchange
        self.db = db
        self.bus = bus or EventBus()
        self.config = config
        self.mode = mode
        self.clock_ms = clock_ms
        self.tracker = OrderTracker()
        self.grids: dict[int, Grid] = {}
        self.stops: dict[int, Stop] = {}
        self.chases: dict[int, _ChaseJob] = {}
        self.rules: dict[str, SymbolRules] = {}
        self.last_prices: dict[str, Decimal] = {}
        self.books: dict[str, tuple[Decimal | None, Decimal | None]] = {}
        self.balances_cache: dict[str, Balance] = {}
        self.price_history: dict[str, PriceHistory] = {}  # symbols with a grid only: /chart draws grids
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._timer_task: asyncio.Task[None] | None = None
        self._previews: dict[str, _Preview] = {}
        self._panic_tokens: dict[str, int] = {}
        self._panic_paused: set[int] = set()
        self._banned_until = 0
        self._deferred: list[PlaceOrder] = []  # stop sells held back by an IP ban, sent when it ends
        self._down_since: dict[str, int] = {}
        self._recovering = False
        self._recovered = 0
        self._started = False
        self._halted = False

    # ================================================================ lifecycle

    async def start(self) -> None:
        """Sink -> queue, exchange.start(), load state, recover PENDING_NEW orders, reconcile, subscribe, run."""
        self.exchange.set_event_sink(self._queue.put_nowait)
        self.exchange.set_reconcile_source(self._reconcile_source)
        await self.exchange.start()
        async with self._lock:
            await self._load()
            await self._recover_pending()
            recovered = await self._reconcile()
        symbols = self._active_symbols()
        if symbols:
            await self.exchange.subscribe(symbols)
        self._task = asyncio.create_task(self._run(), name="tgtrader-core")
        if self.config.timer_interval_s > 0:
            self._timer_task = asyncio.create_task(self._timer_loop(), name="tgtrader-core-timer")
        self._started = True
        self.bus.publish(StreamUp("user", 0.0, recovered, self.clock_ms()))

    async def stop(self) -> None:
        """Stop processing; resting orders stay on the exchange (a restart resumes them)."""
        for task in (self._timer_task, self._task):
            if task is not None:
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
        self._task = self._timer_task = None
        for job in self.chases.values():
            if not job.future.done():
                job.future.cancel()

    async def idle(self) -> None:
        """Return when no event is queued and nothing is being processed (replay drivers call it)."""
        while True:
            await self._queue.join()
            async with self._lock:
                pass
            if self._queue.empty():
                return

    async def _timer_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.timer_interval_s)
            self._queue.put_nowait(_Timer(self.clock_ms()))

    async def _run(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                async with self._lock:
                    await self._handle(event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # one bad event must not stop trading
                logger.exception("core: failed to handle {}", type(event).__name__)
                self.bus.publish(ErrorEvent("core", f"{type(exc).__name__}: {exc}", self.clock_ms()))
            finally:
                self._queue.task_done()

    # ================================================================ loading and recovery

    async def _rules_for(self, symbol: str) -> SymbolRules:
        rules = self.rules.get(symbol)
        if rules is None:
            rules = await self.exchange.symbol_rules(symbol)
            self.rules[symbol] = rules
        return rules

    async def _load(self) -> None:
        for row in await self.db.grids.list():
            if not row.runtime:
                continue
            try:
                rules = await self._rules_for(row.symbol)
                grid = Grid.from_state(row.runtime, rules)
            except Exception as exc:  # noqa: BLE001
                logger.error("core: cannot load grid {}: {}", row.id, exc)
                continue
            self.grids[grid.id] = grid
            if grid.state == "paused" and grid.stop_reason == "panic":
                self._panic_paused.add(grid.id)
        for srow in await self.db.stops.list():
            raw = await self.db.kv.get(f"stop:{srow.id}")
            if raw is None:
                continue
            stop = Stop.from_state(json.loads(raw), await self._rules_for(srow.symbol))
            if stop.state in ("new", "armed", "selling"):
                stop.rearm(self.clock_ms())
            self.stops[stop.id] = stop
        for key, raw in (await self.db.kv.items("chase:")).items():
            d = json.loads(raw)
            chase = Chase.from_state(d, await self._rules_for(d["symbol"]))
            if not chase.done:
                self.chases[int(key.split(":")[1])] = _ChaseJob(chase)
        for row in await self.db.orders.open_orders():
            self.tracker.orders[row.client_order_id] = TrackedOrder(
                symbol=row.symbol, client_order_id=row.client_order_id, side=row.side, order_type=row.type,
                qty=row.qty, price=row.price, stop_price=row.stop_price, owner=row.owner, status=row.status,
                executed_qty=row.executed_qty, exchange_order_id=row.exchange_order_id,
                created_ts=row.created_ms, updated_ts=row.updated_ms,
            )
        raw = await self.db.kv.get("core:panic_paused")
        if raw:
            self._panic_paused |= {int(x) for x in json.loads(raw)}

    async def _recover_pending(self) -> None:
        """Orders saved as PENDING_NEW before a crash: adopt what the exchange has, send the rest (same id)."""
        for order in list(self.tracker.orders.values()):
            if order.status is not OrderStatus.PENDING_NEW:
                continue
            try:
                found = await self.exchange.get_order(order.symbol, order.client_order_id)
            except ExchangeError as exc:
                logger.warning("core: lookup of {} failed: {}", order.client_order_id, exc)
                continue
            if found is not None:
                await self._apply_update(found)
                continue
            intent = PlaceOrder(order.symbol, order.client_order_id, order.side, order.order_type, order.qty,
                                order.price, order.stop_price,
                                None if order.order_type in (OrderType.MARKET, OrderType.LIMIT_MAKER) else "GTC",
                                order.owner)
            await self._send_place(intent)

    def _reconcile_source(self) -> dict[str, int | None]:
        return {s: self.tracker.last_trade_id.get(s) for s in self._active_symbols()}

    async def _reconcile(self) -> int:
        from tgtrader.exchange.reconcile import reconcile

        symbols = self._active_symbols() | {o.symbol for o in self.tracker.open_orders()}
        last: dict[str, int | None] = {}
        for s in symbols:
            tid = await self.db.fills.last_seen_trade_id(s)
            if tid is None:
                tid = await self.db.fills.max_trade_id(s)
            last[s] = tid
            if tid is not None:
                self.tracker.last_trade_id[s] = tid
        expected: dict[str, set[str]] = {}
        for o in self.tracker.open_orders():
            expected.setdefault(o.symbol, set()).add(o.client_order_id)
        for s, cids in expected.items():
            self.exchange.expect_open_orders(s, cids)
        if not symbols:
            return 0
        result = await reconcile(
            self.exchange, last, expected, self.tracker.is_duplicate_key,
            our_client_ids=lambda s, c: parse_client_order_id(c) is not None,
        )
        for err in result.errors:
            self.bus.publish(ErrorEvent("reconcile", err, self.clock_ms()))
        self._recovering = True
        self._recovered = 0
        try:
            for fill in result.fills:
                await self._handle_fill(fill)
            for upd in result.orders:
                await self._apply_update(upd)
        finally:
            self._recovering = False
        return self._recovered

    def _active_symbols(self) -> set[str]:
        out = {g.config.symbol for g in self.grids.values() if g.state in ("running", "paused")}
        out |= {s.symbol for s in self.stops.values() if s.state in ("new", "armed", "selling")}
        out |= {j.chase.symbol for j in self.chases.values() if not j.chase.done}
        return out

    # ================================================================ event handling

    async def _handle(self, event: Any) -> None:
        if self._halted:
            return  # nothing is applied until a restart; reconciliation recovers what is dropped here
        if isinstance(event, Tick):
            await self._handle_tick(event)
        elif isinstance(event, Fill):
            await self._handle_fill(event)
        elif isinstance(event, OrderUpdate):
            await self._apply_update(event)
        elif isinstance(event, _Timer):
            await self._handle_timer(event.ts_ms)
        elif isinstance(event, BalanceUpdate):
            for b in event.balances:
                self.balances_cache[b.asset] = b
        elif isinstance(event, StreamStatus):
            self._handle_stream(event)
        elif isinstance(event, _BanOver):
            await self._after_ban()
        elif isinstance(event, _GridPause):
            g = self.grids.get(event.grid_id)
            if g is not None and g.state == "running":
                await self._react(g, g.pause(self.clock_ms(), event.reason))

    def _handle_stream(self, ev: StreamStatus) -> None:
        ts = ev.ts_ms or self.clock_ms()
        if not ev.up:
            self._down_since.setdefault(ev.stream, ts)
            self.bus.publish(StreamDown(ev.stream, ev.reason, ts))
        elif ev.stream in self._down_since:
            since = self._down_since.pop(ev.stream)
            self.bus.publish(StreamUp(ev.stream, max(0, ts - since) / 1000, ev.recovered_fills, ts))

    async def _handle_tick(self, tick: Tick) -> None:
        price = tick.price
        if price is None:
            return
        self.last_prices[tick.symbol] = price
        if tick.bid is not None or tick.ask is not None:
            self.books[tick.symbol] = (tick.bid, tick.ask)
        machines = self._machines_for(tick.symbol)
        if any(isinstance(m, Grid) for m in machines):
            history = self.price_history.get(tick.symbol)
            if history is None:
                history = self.price_history[tick.symbol] = PriceHistory(self.config.chart_points)
            history.add(tick.ts_ms, float(price))
        for machine in machines:
            intents = machine.on_tick(tick)
            intents += machine.on_timer(tick.ts_ms)  # replay: timers follow the replay clock
            await self._react(machine, intents)

    async def _handle_timer(self, ts: int) -> None:
        for machine in self._all_machines():
            intents = machine.on_timer(ts)
            if intents or isinstance(machine, Chase):
                await self._react(machine, intents)

    def _all_machines(self) -> list[Machine]:
        out: list[Machine] = [g for g in self.grids.values() if g.state in ("running", "paused")]
        out += [s for s in self.stops.values() if s.state in ("armed", "selling")]
        out += [j.chase for j in self.chases.values() if not j.chase.done]
        return out

    def _machines_for(self, symbol: str) -> list[Machine]:
        return [m for m in self._all_machines() if (m.config.symbol if isinstance(m, Grid) else m.symbol) == symbol]

    def _owner_machine(self, cid: str) -> Machine | None:
        p = parse_client_order_id(cid)
        if p is None:
            return None
        if p.kind == "grid":
            return self.grids.get(p.owner_id)
        if p.kind == "stop":
            return self.stops.get(p.owner_id)
        if p.kind == "chase":
            job = self.chases.get(p.owner_id)
            return job.chase if job else None
        return None

    def _fee_quote(self, fill: Fill) -> Decimal:
        rules = self.rules.get(fill.symbol)
        if rules is None:
            return fill.fee if fill.fee_asset == self.config.quote_asset else ZERO
        prices = {}
        if fill.fee_asset not in (rules.base_asset, rules.quote_asset):
            p = self.last_prices.get(fill.fee_asset + rules.quote_asset)
            if p is not None:
                prices[fill.fee_asset] = p
        return fee_in_quote(fill, rules.base_asset, rules.quote_asset, prices, self.config.fee_rate)

    async def _handle_fill(self, fill: Fill) -> None:
        if self.tracker.is_duplicate(fill) or await self.db.fills.exists(fill.symbol, fill.trade_id):
            self.tracker.seen_trades.add((fill.symbol, fill.trade_id))
            return
        if len(self.tracker.seen_trades) > 200_000:
            self.tracker.seen_trades.clear()  # bounded memory: the database's unique key still dedups
        if len(self.tracker.orders) > 20_000:
            self.tracker.prune(keep_final=5_000)  # final orders live on in the database
        self.tracker.on_fill(fill)
        machine = self._owner_machine(fill.client_order_id)
        fee = self._fee_quote(fill)
        intents = machine.on_fill(fill, fee) if machine is not None else []
        owner = parse_client_order_id(fill.client_order_id)
        if self._recovering:
            self._recovered += 1
        owner_name = "foreign" if owner is None else owner.kind if owner.kind in ("panic", "manual") else owner.owner
        ev = OrderFilled(fill.symbol, fill.side, fill.price, fill.qty, fee, fill.client_order_id,
                         owner_name, fill.trade_id, fill.ts_ms, recovered=self._recovering)
        await self._react(machine, intents, fill=fill, extra_events=[ev])

    async def _apply_update(self, upd: OrderUpdate) -> None:
        result = self.tracker.on_update(upd)
        if not result.applied:
            return
        machine = self._owner_machine(upd.client_order_id)
        intents = machine.on_order_update(upd) if machine is not None else []
        await self._react(machine, intents, updated=[result.order] if result.order else [])

    # ================================================================ persistence + execution

    def _drain(self, machine: Machine | None) -> list[CoreEvent]:
        if isinstance(machine, (Grid, Stop)):
            return machine.drain_events()
        return []

    async def _save_machine(self, machine: Machine, ts: int) -> None:
        if isinstance(machine, Grid):
            await self.db.grids.save_runtime(machine.id, machine.to_state(), state=machine.state, ts_ms=ts)
        elif isinstance(machine, Stop):
            await self.db.stops.update(machine.id, state=machine.state, hard_client_order_id=machine.order, ts_ms=ts)
            await self.db.kv.set(f"stop:{machine.id}", json.dumps(machine.to_state()))
        elif isinstance(machine, Chase):
            cid = self._chase_id(machine)
            if cid is not None:
                await self.db.kv.set(f"chase:{cid}", json.dumps(machine.to_state()))

    def _chase_id(self, chase: Chase) -> int | None:
        for k, job in self.chases.items():
            if job.chase is chase:
                return k
        return None

    async def _react(
        self,
        machine: Machine | None,
        intents: list[Intent],
        fill: Fill | None = None,
        updated: list[TrackedOrder] | None = None,
        extra_events: list[CoreEvent] | None = None,
    ) -> None:
        """Persist the reaction to one event in one transaction, publish its events, then send its intents."""
        events = list(extra_events or []) + self._drain(machine)
        ts = self.clock_ms()
        if fill is None and not updated and not intents and not events and not isinstance(machine, Chase):
            return
        places = [i for i in intents if isinstance(i, PlaceOrder)] + [
            i.place for i in intents if isinstance(i, ReplaceOrder)
        ]
        for p in places:
            self.tracker.on_place(p, ts)
        for c in intents:
            if isinstance(c, CancelOrder):
                self.tracker.on_cancel_requested(c.client_order_id, ts)
        try:
            await self._persist(machine, intents, places, fill, updated, events, ts)
        except Exception as exc:
            self._halt(exc)
            raise
        for ev in events:
            self.bus.publish(ev)
        await self._execute(intents)
        if isinstance(machine, Chase):
            self._resolve_chase(machine)

    def _halt(self, exc: BaseException) -> None:
        """A reaction could not be saved: memory and database differ, so stop trading until a restart
        (which reloads the saved state and recovers the missed fills by reconciliation)."""
        if not self._halted:
            self._halted = True
            logger.error("core: saving failed ({}); trading halted until restart", exc)
            self.bus.publish(ErrorEvent("store", f"saving failed, trading halted until restart: {exc}",
                                        self.clock_ms(), severity="error"))

    def _check_order_room(self, new_orders: int) -> None:
        breach = check_exposure(self._limits(), open_orders=len(self.tracker.open_orders()), new_orders=new_orders)
        if breach is not None:
            raise ApiError(f"{breach.limit}: {breach.message}")

    def _check_running(self) -> None:
        if self._halted:
            raise ApiError("trading is halted after a database error; restart the bot")

    async def _persist(
        self,
        machine: Machine | None,
        intents: list[Intent],
        places: list[PlaceOrder],
        fill: Fill | None,
        updated: list[TrackedOrder] | None,
        events: list[CoreEvent],
        ts: int,
    ) -> None:
        async with self.db.transaction():
            if fill is not None:
                await self.db.fills.add(fill)
                await self.db.fills.set_last_seen_trade_id(fill.symbol, fill.trade_id)
                o = self.tracker.get(fill.client_order_id)
                if o is not None:
                    await self.db.orders.update(o.client_order_id, status=o.status, executed_qty=o.executed_qty,
                                                ts_ms=ts)
            if machine is not None:
                await self._save_machine(machine, ts)
            for p in places:
                await self.db.orders.insert(
                    OrderRow(p.client_order_id, p.symbol, p.side, p.order_type, p.price, p.qty,
                             OrderStatus.PENDING_NEW, ZERO, p.owner, None, p.stop_price, ts, ts), ts_ms=ts)
            for o in updated or []:
                await self.db.orders.upsert(
                    OrderRow(o.client_order_id, o.symbol, o.side, o.order_type, o.price, o.qty, o.status,
                             o.executed_qty, o.owner, o.exchange_order_id, o.stop_price, o.created_ts or ts, ts),
                    ts_ms=ts)
            for c in intents:
                if isinstance(c, CancelOrder):
                    await self.db.orders.update(c.client_order_id, status=OrderStatus.PENDING_CANCEL, ts_ms=ts)
            for a in intents:
                if isinstance(a, AlertIntent):
                    await self.db.outbox.enqueue(a.kind, a.text, now=ts)
            for ev in events:
                if isinstance(ev, GridRoundTrip):
                    await self._add_pnl(ev)

    async def _add_pnl(self, ev: GridRoundTrip) -> None:
        day = datetime.fromtimestamp(ev.ts_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d")
        raw = await self.db.kv.get(f"pnl:{day}")
        d = json.loads(raw) if raw else {"profit": "0", "trips": 0}
        d["profit"] = str(Decimal(d["profit"]) + ev.profit)
        d["trips"] = int(d["trips"]) + 1
        await self.db.kv.set(f"pnl:{day}", json.dumps(d))

    async def _execute(self, intents: list[Intent]) -> None:
        for it in intents:
            if isinstance(it, PlaceOrder):
                await self._send_place(it)
            elif isinstance(it, ReplaceOrder):
                await self._send_replace(it)
            elif isinstance(it, CancelOrder):
                await self._send_cancel(it)

    def _reject(self, p: PlaceOrder, exc: ExchangeError) -> None:
        """Turn a refusal into a REJECTED update for the owner (queued, processed in order) and events."""
        code = exc.code
        text = f"{code} {exc}" if code is not None else str(exc)
        ts = self.clock_ms()
        self._queue.put_nowait(OrderUpdate(p.symbol, p.client_order_id, p.side, p.order_type, OrderStatus.REJECTED,
                                           p.price or ZERO, p.qty, ZERO, ts_ms=ts, reject_reason=exc.reason,
                                           reject_text=text))
        self.bus.publish(OrderRejected(p.symbol, p.client_order_id, p.owner, str(exc), code, ts))
        if exc.reason is RejectReason.INSUFFICIENT_BALANCE:
            self.bus.publish(ErrorEvent("place_order", str(exc), ts, severity="insufficient-balance",
                                        extra={"client_order_id": p.client_order_id}))
            machine = self._owner_machine(p.client_order_id)
            if isinstance(machine, Grid) and machine.state == "running":
                self._queue.put_nowait(_GridPause(machine.id, "insufficient balance"))

    async def _send_place(self, p: PlaceOrder) -> None:
        if self._banned_until > self.clock_ms():
            self._refuse_while_banned(p)
            return
        for attempt in range(2):
            try:
                upd = await self.exchange.place_order(p)
                self._queue.put_nowait(upd)
                return
            except OrderStatusUnknown:
                try:
                    found = await self.exchange.get_order(p.symbol, p.client_order_id)
                except ExchangeError as exc:
                    logger.warning("core: {} unknown and lookup failed ({}); left for reconciliation",
                                   p.client_order_id, exc)
                    return
                if found is not None:
                    self._queue.put_nowait(found)
                    return
                # the exchange never got it: send it again with the SAME client order id
            except IpBanned as exc:
                self._ban(exc)
                self._refuse_while_banned(p)
                return
            except RateLimited as exc:
                if attempt == 0 and exc.retry_after <= 5:
                    await asyncio.sleep(exc.retry_after)
                    continue
                self._reject(p, exc)
                return
            except ExchangeError as exc:
                self._reject(p, exc)
                return

    def _refuse_while_banned(self, p: PlaceOrder) -> None:
        """A triggered stop must still sell: its order waits (PENDING_NEW, same client order id) and goes out
        when the ban ends. Anything else is rejected now; grids place their refused orders again then."""
        if isinstance(self._owner_machine(p.client_order_id), Stop):
            self._deferred.append(p)
            return
        self._reject(p, ExchangeError("trading is suspended: the exchange banned this IP", None))

    async def _send_cancel(self, c: CancelOrder) -> None:
        if self._banned_until > self.clock_ms():
            self.tracker.on_cancel_failed(c.client_order_id)  # nothing can be sent while banned
            return
        try:
            upd = await self.exchange.cancel_order(c.symbol, c.client_order_id)
            self._queue.put_nowait(upd)
        except UnknownOrder:
            await self._lookup(c.symbol, c.client_order_id, gone_if_missing=True)
        except IpBanned as exc:
            self._ban(exc)
        except ExchangeError as exc:
            self.tracker.on_cancel_failed(c.client_order_id)
            await self._lookup(c.symbol, c.client_order_id)
            self.bus.publish(ErrorEvent("cancel_order", f"{c.client_order_id}: {exc}", self.clock_ms()))

    async def _send_replace(self, r: ReplaceOrder) -> None:
        try:
            upd = await self.exchange.replace_order(r)
            self._queue.put_nowait(upd)
        except UnknownOrder:
            # the old order is gone (filled or cancelled): the new one was not placed
            await self._lookup(r.cancel.symbol, r.cancel.client_order_id)
            self._reject(r.place, UnknownOrder("replace not done: the order to cancel is gone"))
        except IpBanned as exc:
            self._ban(exc)
            self._reject(r.place, exc)
        except ExchangeError as exc:
            await self._lookup(r.cancel.symbol, r.cancel.client_order_id)
            self._reject(r.place, exc)

    async def _lookup(self, symbol: str, cid: str, gone_if_missing: bool = False) -> None:
        try:
            found = await self.exchange.get_order(symbol, cid)
        except ExchangeError:
            return
        if found is not None:
            self._queue.put_nowait(found)
        elif gone_if_missing:
            o = self.tracker.get(cid)
            if o is not None and o.is_open:
                self._queue.put_nowait(OrderUpdate(symbol, cid, o.side, o.order_type, OrderStatus.CANCELED,
                                                   o.price or ZERO, o.qty, o.executed_qty, ts_ms=self.clock_ms()))

    def _ban(self, exc: IpBanned) -> None:
        """Nothing is sent until the ban ends (Binance lengthens bans for clients that keep asking). Grids keep
        their state: their resting orders still work on the exchange, and cancelling is impossible anyway.
        When the ban is over, `_after_ban` reconciles and sends what was refused."""
        ts = self.clock_ms()
        new_ban = self._banned_until <= ts
        self._banned_until = max(self._banned_until, ts + int(exc.retry_after * 1000))
        if new_ban:
            self.bus.publish(ErrorEvent("exchange", str(exc), ts, severity="ban",
                                        extra={"retry_after_s": exc.retry_after}))
        delay_s = (self._banned_until - ts) / 1000 + 0.1
        asyncio.get_running_loop().call_later(delay_s, self._queue.put_nowait, _BanOver())

    async def _after_ban(self) -> None:
        now = self.clock_ms()
        if self._banned_until == 0 or self._banned_until > now:
            return  # already handled, or the ban was extended (a later _BanOver is scheduled)
        self._banned_until = 0
        recovered = await self._reconcile()
        deferred, self._deferred = self._deferred, []
        for p in deferred:
            stop = self._owner_machine(p.client_order_id)
            if isinstance(stop, Stop) and stop.state in ("armed", "selling") and stop.order == p.client_order_id:
                await self._send_place(p)
            else:  # the stop was cancelled meanwhile: the held order never leaves
                self._reject(p, ExchangeError("not sent: the stop was cancelled during the IP ban", None))
        placed = 0
        for g in list(self.grids.values()):
            intents = g.after_outage(now)
            placed += sum(isinstance(i, PlaceOrder) for i in intents)
            await self._react(g, intents)
        self.bus.publish(ErrorEvent(
            "exchange", f"the IP ban is over; trading resumed ({recovered} fill(s) recovered, "
            f"{placed} grid order(s) placed again)", now, severity="ban-over"))

    def _resolve_chase(self, chase: Chase) -> None:
        if not chase.done:
            return
        for k, job in list(self.chases.items()):
            if job.chase is chase and not job.future.done():
                r = chase.report()
                job.future.set_result(ChaseResult(chase.symbol, chase.side, chase.qty, r.filled_qty, r.avg_price,
                                                  r.maker_qty, r.taker_qty, r.fees_quote, r.status, r.message))

    # ================================================================ API: symbols and previews

    async def known_symbols(self) -> frozenset[str]:
        return frozenset(await self.exchange.known_symbols())

    async def _rules_or_api_error(self, symbol: str) -> SymbolRules:
        try:
            return await self._rules_for(symbol.upper())
        except BadSymbol:
            raise ApiError(f"{symbol} is not a known symbol") from None
        except ExchangeError as exc:
            raise ApiError(f"exchange unavailable: {exc}") from None

    async def tick_size(self, symbol: str) -> Decimal:
        return (await self._rules_or_api_error(symbol)).tick_size

    async def _price(self, symbol: str) -> Decimal:
        p = self.last_prices.get(symbol)
        if p is not None:
            return p
        try:
            p = await self.exchange.ticker_price(symbol)
        except ExchangeError as exc:
            raise ApiError(f"no price for {symbol}: {exc}") from None
        self.last_prices[symbol] = p
        return p

    async def _balances(self) -> dict[str, Balance]:
        try:
            bal = await self.exchange.balances()
        except ExchangeError as exc:
            raise ApiError(f"cannot read balances: {exc}") from None
        self.balances_cache.update(bal)
        return bal

    def _grid_config(self, spec: GridSpec) -> GridConfig:
        return GridConfig(
            spec.symbol.upper(), spec.lower, spec.upper, spec.grids, spec.investment, spec.spacing, spec.stop_loss,
            spec.take_profit, spec.sell_on_stop, self.config.fee_rate, self.config.start_mode,
            self.config.chase_step_ms, self.config.chase_max_slippage,
        )

    def _limits(self) -> ExposureLimits:
        c = self.config
        return ExposureLimits(c.max_per_grid, c.max_total_in_grids, c.max_open_orders)

    def _extra_problems(self, config: GridConfig) -> list[str]:
        active = [g for g in self.grids.values() if g.state in ("running", "paused")]
        out = []
        ov = overlap_problem(config, [(g.id, g.config.symbol, g.config.lower, g.config.upper) for g in active])
        if ov:
            out.append(ov)
        breach = check_exposure(self._limits(), config.investment, [g.config.investment for g in active],
                                len(self.tracker.open_orders()), config.n)
        if breach:
            out.append(f"{breach.limit}: {breach.message}")
        return out

    async def preview_grid(self, spec: GridSpec) -> GridPreviewView:
        rules = await self._rules_or_api_error(spec.symbol)
        config = self._grid_config(spec)
        price = await self._price(config.symbol)
        bal = await self._balances()
        free_q = bal.get(rules.quote_asset, Balance(rules.quote_asset, ZERO, ZERO)).free
        free_b = bal.get(rules.base_asset, Balance(rules.base_asset, ZERO, ZERO)).free
        async with self._lock:
            pv = preview(config, rules, price, free_q, free_b)
            problems = tuple(pv.problems) + tuple(self._extra_problems(config))
        token = secrets.token_urlsafe(9)
        view = GridPreviewView(token, spec, price, pv.levels, pv.q, pv.profit_pct_min, pv.profit_pct_max,
                               pv.required_quote, pv.required_base, pv.buy_orders, pv.sell_orders, problems)
        now = self.clock_ms()
        self._previews = {k: v for k, v in self._previews.items()
                          if now - v.created_ms <= self.config.preview_ttl_s * 1000 and not v.used}
        self._previews[token] = _Preview(view, pv, rules, now)
        return view

    # ================================================================ API: grids

    async def start_grid(self, preview_token: str) -> GridSummary:
        self._check_running()
        pv = self._previews.get(preview_token)
        now = self.clock_ms()
        if pv is None:
            raise ApiError("that preview is unknown or expired; make a new one")
        if pv.used:
            raise ApiError("that preview was already used")
        if now - pv.created_ms > self.config.preview_ttl_s * 1000:
            raise ApiError("that preview expired; make a new one")
        if pv.view.problems:
            raise ApiError("the preview has problems: " + "; ".join(pv.view.problems))
        pv.used = True
        config = pv.preview.config
        async with self._lock:
            extra = self._extra_problems(config)
            if extra:
                raise ApiError("; ".join(extra))
            price = self.last_prices.get(config.symbol) or await self._price(config.symbol)
            row = await self.db.grids.create(config.symbol, config.to_dict(), "running", ts_ms=now)
            grid = Grid(row.id, config, pv.rules)
            bid, ask = self.books.get(config.symbol, (None, None))
            try:
                intents = grid.start(price, now, bid, ask)
            except ValueError as exc:
                await self.db.grids.set_state(row.id, "failed", ts_ms=now)
                raise ApiError(str(exc)) from None
            self.grids[grid.id] = grid
            await self._react(grid, intents)
        await self._subscribe(config.symbol)
        return self._summary(grid)

    async def _subscribe(self, symbol: str) -> None:
        try:
            await self.exchange.subscribe({symbol})
        except ExchangeError as exc:
            self.bus.publish(ErrorEvent("subscribe", f"{symbol}: {exc}", self.clock_ms()))

    def _grid_or_error(self, grid_id: int) -> Grid:
        g = self.grids.get(grid_id)
        if g is None:
            raise ApiError(f"no grid {grid_id}")
        return g

    def _summary(self, g: Grid) -> GridSummary:
        st = g.stats(self.clock_ms())
        c = g.config
        return GridSummary(
            g.id, c.symbol, g.state, g.stop_reason, c.lower, c.upper, c.n, c.spacing, c.investment, g.q,
            st.realized, st.fees, st.round_trips, st.base_held, st.avg_cost, st.unrealized, st.last_price,
            st.annualized_return_pct, st.open_orders, g.start_ts, c.stop_loss, c.take_profit, st.grid_profit,
        )

    async def list_grids(self) -> list[GridSummary]:
        return [self._summary(g) for g in sorted(self.grids.values(), key=lambda g: g.id)]

    async def grid(self, grid_id: int) -> GridSummary:
        return self._summary(self._grid_or_error(grid_id))

    async def pause_grid(self, grid_id: int, reason: str = "user") -> GridSummary:
        self._check_running()
        async with self._lock:
            g = self._grid_or_error(grid_id)
            if g.state != "running":
                raise ApiError(f"grid {grid_id} is {g.state}, not running")
            await self._react(g, g.pause(self.clock_ms(), reason))
        return self._summary(g)

    async def resume_grid(self, grid_id: int) -> GridSummary:
        self._check_running()
        async with self._lock:
            g = self._grid_or_error(grid_id)
            if g.state != "paused":
                raise ApiError(f"grid {grid_id} is {g.state}, not paused")
            price = self.last_prices.get(g.config.symbol)
            await self._react(g, g.resume(price, self.clock_ms()))
            self._panic_paused.discard(grid_id)
        return self._summary(g)

    async def stop_grid(self, grid_id: int, sell: bool = False) -> GridSummary:
        self._check_running()
        async with self._lock:
            g = self._grid_or_error(grid_id)
            if g.state == "stopped":
                raise ApiError(f"grid {grid_id} is already stopped")
            await self._react(g, g.stop(sell, self.clock_ms(), "user"))
        return self._summary(g)

    # ================================================================ API: status

    async def status(self) -> StatusView:
        grids = tuple(await self.list_grids())
        today = datetime.fromtimestamp(self.clock_ms() / 1000, tz=timezone.utc).strftime("%Y-%m-%d")
        raw = await self.db.kv.get(f"pnl:{today}")
        realized_today = Decimal(json.loads(raw)["profit"]) if raw else ZERO
        return StatusView(
            self.mode, grids, len(self.tracker.open_orders()), realized_today,
            sum((g.realized_profit for g in grids), ZERO), sum((g.unrealized_pnl for g in grids), ZERO),
            self._health(), self.config.quote_asset, bool(self._panic_paused),
        )

    def _health(self) -> ExchangeHealth:
        try:
            return self.exchange.health()
        except Exception:  # noqa: BLE001
            return ExchangeHealth(None, None, 0, 0, 0)

    async def balances(self) -> BalancesView:
        bal = await self._balances()
        quote = self.config.quote_asset
        equity = ZERO
        for asset, b in bal.items():
            if b.total <= 0:
                continue
            if asset == quote:
                equity += b.total
                continue
            price = self.last_prices.get(asset + quote)
            if price is None:
                try:
                    price = await self.exchange.ticker_price(asset + quote)
                except ExchangeError:
                    continue
            equity += b.total * price
        shown = tuple(sorted((b for b in bal.values() if b.total > 0), key=lambda b: b.asset))
        return BalancesView(shown, quote, equity)

    async def open_orders(self, symbol: str | None = None) -> list[OrderView]:
        return [
            OrderView(o.symbol, o.side, o.order_type.value, o.price, o.qty, o.executed_qty, o.status.value, o.owner,
                      o.client_order_id)
            for o in sorted(self.tracker.open_orders(symbol), key=lambda o: (o.symbol, o.created_ts, o.client_order_id))
        ]

    async def pnl(self, days: int = 7) -> PnlView:
        now = self.clock_ms()
        out = []
        total = ZERO
        for k in range(days - 1, -1, -1):
            day = datetime.fromtimestamp(now / 1000 - k * 86400, tz=timezone.utc).strftime("%Y-%m-%d")
            raw = await self.db.kv.get(f"pnl:{day}")
            d = json.loads(raw) if raw else {"profit": "0", "trips": 0}
            out.append((day, Decimal(d["profit"]), int(d["trips"])))
            total += Decimal(d["profit"])
        return PnlView(tuple(out), total, self.config.quote_asset)

    # ================================================================ API: sizing

    async def _capital(self) -> Decimal:
        bal = await self._balances()
        b = bal.get(self.config.quote_asset)
        return b.free if b else ZERO

    async def size_fixed(self, symbol: str, entry: Decimal, stop: Decimal, risk_pct: Decimal | None = None) -> SizeResult:
        rules = await self._rules_or_api_error(symbol)
        if entry <= 0 or stop <= 0 or stop == entry:
            return SizeResult(False, "fixed-fraction", "entry and stop must be positive and different")
        stop_pct = abs(entry - stop) / entry
        return fixed_fraction(await self._capital(), risk_pct or self.config.risk_pct, stop_pct, entry, rules)

    async def size_kelly(self, win_rate: Decimal, payoff: Decimal) -> SizeResult:
        return kelly(await self._capital(), win_rate, payoff, kelly_multiplier=self.config.kelly_multiplier,
                     cap=self.config.kelly_cap)

    # ================================================================ API: chase

    async def _next_seq(self, name: str) -> int:
        raw = await self.db.kv.get(f"seq:{name}")
        n = int(raw) + 1 if raw else 1
        await self.db.kv.set(f"seq:{name}", str(n))
        return n

    async def chase(self, symbol: str, side: Side, qty: Decimal, limit_price: Decimal | None = None) -> ChaseResult:
        self._check_running()
        self._check_order_room(1)
        rules = await self._rules_or_api_error(symbol)
        symbol = rules.symbol
        qty = rules.round_qty(qty)
        price = await self._price(symbol)
        await self._subscribe(symbol)
        async with self._lock:
            cid_n = await self._next_seq("chase")
            chase = Chase(symbol, side, qty, rules, f"tg-c{cid_n}-", f"chase:{cid_n}",
                          limit_price, self.config.chase_step_ms, True, 0, self.config.fee_rate)
            job = _ChaseJob(chase)
            self.chases[cid_n] = job
            bid, ask = self.books.get(symbol, (None, None))
            if bid is None and ask is None:
                tick = rules.tick_size
                bid, ask = (price, price + tick) if side is Side.BUY else (price - tick, price)
            intents = chase.start(self.clock_ms(), bid, ask)
            await self._react(chase, intents)
        if chase.done and not job.future.done():
            self._resolve_chase(chase)
        return await job.future

    # ================================================================ API: stops

    def _stop_view(self, s: Stop) -> StopView:
        state = s.state
        if s.hard_fallback and state == "armed":
            state = "fallback-hard"
        return StopView(s.id, s.symbol, s.kind, s.purpose, s.trigger, s.qty, state)

    async def add_stop(self, symbol: str, price: Decimal, kind: str = "soft") -> StopView:
        self._check_running()
        self._check_order_room(1 if kind == "hard" else 0)
        if kind not in ("soft", "hard"):
            raise ApiError("stop kind must be soft or hard")
        rules = await self._rules_or_api_error(symbol)
        last = await self._price(rules.symbol)
        bal = await self._balances()
        base = bal.get(rules.base_asset)
        qty = rules.round_qty(base.free if base else ZERO)
        if qty <= 0:
            raise ApiError(f"no free {rules.base_asset} to protect")
        if price == last:
            raise ApiError(f"the stop price equals the current price {fmt_decimal(last)}")
        purpose = "stop-loss" if price < last else "take-profit"
        if rules.check_order(Side.SELL, OrderType.MARKET, rules.round_qty(qty, market=True), None,
                             reference_price=price):
            raise ApiError(f"{fmt_decimal(qty)} {rules.base_asset} at {fmt_decimal(price)} is below the symbol filters")
        async with self._lock:
            now = self.clock_ms()
            row = await self.db.stops.add(rules.symbol, kind if purpose == "stop-loss" else "tp", price, qty,
                                          "armed", ts_ms=now)
            stop = Stop(row.id, rules.symbol, purpose, kind, qty, price, rules, None, self.config.stop_limit_offset,
                        int(self.config.soft_stop_silence_s * 1000), self.config.fee_rate)
            self.stops[stop.id] = stop
            await self._react(stop, stop.arm(now))
        await self._subscribe(rules.symbol)
        return self._stop_view(stop)

    async def list_stops(self) -> list[StopView]:
        return [self._stop_view(s) for s in sorted(self.stops.values(), key=lambda s: s.id)]

    async def cancel_stop(self, stop_id: int) -> StopView:
        self._check_running()
        async with self._lock:
            s = self.stops.get(stop_id)
            if s is None:
                raise ApiError(f"no stop {stop_id}")
            if s.state not in ("new", "armed"):
                raise ApiError(f"stop {stop_id} is {s.state}")
            await self._react(s, s.cancel())
        return self._stop_view(s)

    # ================================================================ API: panic

    async def panic_plan(self) -> PanicPlan:
        try:
            orders = await self.exchange.open_orders()
        except ExchangeError as exc:
            raise ApiError(f"cannot read open orders: {exc}") from None
        assets = await self._sellable_assets()
        token = secrets.token_urlsafe(9)
        self._panic_tokens[token] = self.clock_ms()
        running = sum(1 for g in self.grids.values() if g.state == "running")
        return PanicPlan(running, len(orders), tuple((a, q) for a, q, _ in assets), token,
                         self.config.panic_token_ttl_s)

    async def _sellable_assets(self) -> list[tuple[str, Decimal, SymbolRules]]:
        quote = self.config.panic_quote_asset or self.config.quote_asset
        out = []
        for asset, b in sorted((await self._balances()).items()):
            if asset == quote or b.total <= 0:
                continue
            try:
                rules = await self._rules_for(asset + quote)
                price = await self.exchange.ticker_price(asset + quote)
            except ExchangeError:
                continue
            qty = rules.round_qty(b.total, market=True)
            if qty > 0 and qty * price >= rules.min_notional:
                out.append((asset, qty, rules))
        return out

    async def panic(self, token: str) -> PanicReport:
        issued = self._panic_tokens.pop(token, None)
        now = self.clock_ms()
        if issued is None or now - issued > self.config.panic_token_ttl_s * 1000:
            raise ApiError("panic needs a fresh confirmation (the token is unknown, used or older than 30 s)")
        t0 = time.monotonic()
        ok: list[str] = []
        failed: list[str] = []
        async with self._lock:
            for g in self.grids.values():
                if g.state == "running":
                    g.pause(now, "panic")  # the exchange-wide cancel below removes its orders
                    self._panic_paused.add(g.id)
                    await self._save_machine(g, now)
                    for e in g.drain_events():
                        self.bus.publish(e)
            for s in self.stops.values():
                if s.state in ("new", "armed"):
                    s.cancel()
                    await self._save_machine(s, now)
            await self.db.kv.set("core:panic_paused", json.dumps(sorted(self._panic_paused)))
            if self._panic_paused:
                ok.append(f"paused {len(self._panic_paused)} grid(s)")
        try:
            orders = await self.exchange.open_orders()
        except ExchangeError as exc:
            orders = []
            failed.append(f"list open orders: {exc}")
        symbols = sorted({o.symbol for o in orders} | {o.symbol for o in self.tracker.open_orders()})

        async def cancel_symbol(sym: str) -> tuple[str, str | None, int]:
            try:
                res = await self.exchange.cancel_all(sym)
                for u in res:
                    self._queue.put_nowait(u)
                return sym, None, len(res)
            except UnknownOrder:
                return sym, None, 0
            except ExchangeError as exc:
                return sym, str(exc), 0

        for sym, err, n in await asyncio.gather(*(cancel_symbol(s) for s in symbols)):
            if err is None:
                ok.append(f"cancelled {n} order(s) on {sym}")
            else:
                failed.append(f"cancel {sym}: {err}")
        n_panic = await self._next_seq("panic")
        for asset, qty, rules in await self._sellable_assets():
            cid = panic_order_id(n_panic, rules.symbol)
            p = PlaceOrder(rules.symbol, cid, Side.SELL, OrderType.MARKET, qty, None, None, None, "panic")
            try:
                async with self._lock:
                    self.tracker.on_place(p, now)
                    await self.db.orders.insert(OrderRow(cid, p.symbol, p.side, p.order_type, None, qty,
                                                         OrderStatus.PENDING_NEW, ZERO, "panic", None, None, now, now))
                upd = await self.exchange.place_order(p)
                self._queue.put_nowait(upd)
                ok.append(f"sold {fmt_decimal(qty)} {asset} at market")
            except ExchangeError as exc:
                failed.append(f"sell {fmt_decimal(qty)} {asset}: {exc}")
        return PanicReport(tuple(ok), tuple(failed), time.monotonic() - t0)

    async def resume_all(self) -> list[GridSummary]:
        out = []
        for gid in sorted(self._panic_paused):
            g = self.grids.get(gid)
            if g is not None and g.state == "paused":
                out.append(await self.resume_grid(gid))
        self._panic_paused.clear()
        await self.db.kv.set("core:panic_paused", "[]")
        return out

    # ================================================================ API: charts

    async def chart_data(self, grid_id: int) -> ChartData:
        g = self._grid_or_error(grid_id)
        history = self.price_history.get(g.config.symbol)
        times, prices = history.points() if history is not None else ((), ())
        fills = await self.db.fills.list(symbol=g.config.symbol)
        own = [f for f in fills if (p := parse_client_order_id(f.client_order_id)) and p.owner == g.owner]
        return ChartData(
            g.id, g.config.symbol, times, prices, tuple(g.levels),
            tuple((f.ts_ms, f.side.value, f.price) for f in own),
        )
