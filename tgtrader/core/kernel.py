"""The kernel: one queue of exchange news, one lock, one reaction per event, saved before anything is sent.

One task consumes exchange news (ticks, order updates, fills, balances, stream status) from a queue fed by
`exchange.set_event_sink`, applies each event to the order tracker and the owning machine (found by
parsing the client order id), persists the reaction, and only then hands the machine's intents to the
order gateway. API calls take the same lock, so machines are changed by one coroutine at a time and
replaying the same events gives the same intents.

Crash safety: for every event, in ONE store transaction, the fill (unique per symbol and trade id), the
machine's new state, the new orders (PENDING_NEW with their deterministic client order ids), the alerts
and the last-seen trade id are written; the orders are sent after the commit. Recovery (recovery.py)
picks up from there after a restart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from loguru import logger

from tgtrader.core.accounting import fee_in_quote
from tgtrader.core.config import CoreConfig
from tgtrader.core.events import (
    ALERTED_BY_CORE,
    EVENTS_ALERT,
    AlertRaised,
    CoreEvent,
    ErrorEvent,
    EventBus,
    GridRoundTrip,
    OrderFilled,
    SaleRealized,
    StreamDown,
    StreamUp,
    events_payload,
)
from tgtrader.core.gateway import BanOver, OrderGateway
from tgtrader.core.grid import Grid
from tgtrader.core.history import PriceHistory
from tgtrader.core.ids import parse_client_order_id
from tgtrader.core.machines import Machine, Machines
from tgtrader.core.orders import OrderTracker, TrackedOrder
from tgtrader.core.ports import BalanceUpdate, Exchange, Reaction, Store, StreamStatus
from tgtrader.core.recovery import Recovery
from tgtrader.core.rules import SymbolRules
from tgtrader.core.stops import Stop
from tgtrader.errors import ExchangeError
from tgtrader.types import (
    AlertIntent,
    Balance,
    CancelOrder,
    Fill,
    Intent,
    OrderUpdate,
    PlaceOrder,
    ReadBalance,
    RejectReason,
    ReplaceOrder,
    Tick,
)

ZERO = Decimal(0)


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Timer:
    ts_ms: int


@dataclass(frozen=True, slots=True)
class BalanceRead:
    """The answer to a machine's ReadBalance intent, handled in event order."""

    owner: str
    asset: str
    free: Decimal


@dataclass(frozen=True, slots=True)
class ShortCheck:
    """Queued `fill_grace_s` after an order ended with fewer fills seen than it executed: fetch its trades."""

    client_order_id: str


@dataclass(frozen=True, slots=True)
class GridPause:
    """Queued when a grid order was refused for insufficient balance: pause the grid in event order."""

    grid_id: int
    reason: str


class Kernel:
    """Lifecycle and event handling; the use cases live in service.py (TradingCore)."""

    def __init__(
        self,
        exchange: Exchange,
        store: Store,
        bus: EventBus | None = None,
        config: CoreConfig = CoreConfig(),
        mode: str = "paper",
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.exchange = exchange
        self.store = store
        self.bus = bus or EventBus()
        self.config = config
        self.mode = mode
        self.clock_ms = clock_ms
        self.tracker = OrderTracker()
        self.machines = Machines()
        self.rules: dict[str, SymbolRules] = {}
        self.last_prices: dict[str, Decimal] = {}
        self.books: dict[str, tuple[Decimal | None, Decimal | None]] = {}
        self.balances_cache: dict[str, Balance] = {}
        self._fee_prices: dict[str, tuple[Decimal, int]] = {}  # fee assets' prices read from the venue, with time
        self.price_history: dict[str, PriceHistory] = {}  # symbols with a grid only: /chart draws grids
        self.panic_paused: set[int] = set()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._timer_task: asyncio.Task[None] | None = None
        self._down_since: dict[str, int] = {}
        self._started = False
        self._halted = False
        self._short_checks: dict[str, asyncio.Task[None]] = {}
        self._side_tasks: set[asyncio.Task[None]] = set()  # balance reads (idle() waits for them)
        self.gateway = OrderGateway(exchange, self.tracker, self.post, self.bus.publish, clock_ms,
                                    self._on_refused, self._holds_during_ban, self._urgent)
        self.recovery = Recovery(self)

    # ================================================================ lifecycle

    async def start(self) -> None:
        """Sink -> queue, exchange.start(), load state, recover PENDING_NEW orders, reconcile, subscribe, run."""
        self.exchange.set_event_sink(self._queue.put_nowait)
        self.exchange.set_reconcile_source(self.recovery.watermarks)
        await self.exchange.start()
        await self._use_account_commission()
        async with self._lock:
            await self.recovery.load()
            await self.recovery.recover_pending()
            recovered = await self.recovery.reconcile()
        symbols = self.machines.watched_symbols()
        if symbols:
            await self.exchange.subscribe(symbols)
        self._task = asyncio.create_task(self._run(), name="tgtrader-core")
        if self.config.timer_interval_s > 0:
            self._timer_task = asyncio.create_task(self._timer_loop(), name="tgtrader-core-timer")
        self._started = True
        self.bus.publish(StreamUp("user", 0.0, recovered, self.clock_ms()))

    async def _use_account_commission(self) -> None:
        """Previews and fee estimates use the account's own commission rate (live: Binance's account endpoint),
        not a setting meant for paper trading."""
        try:
            rate = await self.exchange.commission_rate()
        except ExchangeError as exc:
            logger.warning("core: commission rate not read ({}); using {}", exc, self.config.fee_rate)
            return
        if rate is not None and rate != self.config.fee_rate:
            logger.info("core: the account's commission rate is {} (setting: {})", rate, self.config.fee_rate)
            self.config = replace(self.config, fee_rate=rate)

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
        for check in list(self._short_checks.values()):
            check.cancel()
        self._short_checks.clear()
        await self.gateway.close()
        self._stopped()

    def _stopped(self) -> None:
        """Hook for the service: release callers waiting on results."""

    def post(self, event: object) -> None:
        """Queue news for the kernel (handled in order, by the one core task)."""
        self._queue.put_nowait(event)

    async def idle(self) -> None:
        """Return when no event is queued, nothing is being processed and no lost answer is being looked up
        (replay drivers and tests call it)."""
        while True:
            await self._queue.join()
            async with self._lock:
                pass
            if self.gateway.sending:
                await asyncio.wait(self.gateway.sending)
                continue
            if self.gateway.unsettled:
                await asyncio.wait(list(self.gateway.unsettled.values()))
                continue
            if self._side_tasks:
                await asyncio.wait(list(self._side_tasks))
                continue
            if self._queue.empty():
                return

    async def _timer_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.timer_interval_s)
            self._queue.put_nowait(Timer(self.clock_ms()))

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

    async def rules_for(self, symbol: str) -> SymbolRules:
        rules = self.rules.get(symbol)
        if rules is None:
            rules = await self.exchange.symbol_rules(symbol)
            self.rules[symbol] = rules
        return rules

    # ================================================================ event handling

    async def _handle(self, event: Any) -> None:
        if self._halted:
            return  # nothing is applied until a restart; reconciliation recovers what is dropped here
        if isinstance(event, Tick):
            await self._handle_tick(event)
        elif isinstance(event, Fill):
            await self.handle_fill(event)
        elif isinstance(event, OrderUpdate):
            await self.apply_update(event)
        elif isinstance(event, Timer):
            await self._handle_timer(event.ts_ms)
        elif isinstance(event, BalanceUpdate):
            for b in event.balances:
                self.balances_cache[b.asset] = b
        elif isinstance(event, StreamStatus):
            self._handle_stream(event)
        elif isinstance(event, BanOver):
            await self._after_ban()
        elif isinstance(event, BalanceRead):
            machine = self.machines.by_owner(event.owner)
            if machine is not None:
                await self.react(machine, machine.on_balance(event.asset, event.free, self.clock_ms()))
        elif isinstance(event, ShortCheck):
            self._short_checks.pop(event.client_order_id, None)
            order = self.tracker.get(event.client_order_id)
            if order is not None:
                await self.recovery.fetch_short_orders([order])
        elif isinstance(event, GridPause):
            g = self.machines.grids.get(event.grid_id)
            if g is not None and g.state == "running":
                await self.react(g, g.pause(self.clock_ms(), event.reason))

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
        machines = self.machines.for_symbol(tick.symbol)
        if any(m.machine_kind == "grid" for m in machines):
            history = self.price_history.get(tick.symbol)
            if history is None:
                history = self.price_history[tick.symbol] = PriceHistory(self.config.chart_points)
            history.add(tick.ts_ms, float(price))
        for machine in machines:
            intents = machine.on_tick(tick)
            intents += machine.on_timer(tick.ts_ms)  # replay: timers follow the replay clock
            await self.react(machine, intents)

    async def _handle_timer(self, ts: int) -> None:
        for machine in self.machines.active():
            intents = machine.on_timer(ts)
            if intents or machine.machine_kind == "chase":
                await self.react(machine, intents)

    def _fee_quote(self, fill: Fill) -> Decimal:
        rules = self.rules.get(fill.symbol)
        if rules is None:
            return fill.fee if fill.fee_asset == self.config.quote_asset else ZERO
        prices = {}
        if fill.fee_asset not in (rules.base_asset, rules.quote_asset):
            sym = fill.fee_asset + rules.quote_asset
            p = self.last_prices.get(sym) or (self._fee_prices.get(sym) or (None, 0))[0]
            if p is not None:
                prices[fill.fee_asset] = p
        return fee_in_quote(fill, rules.base_asset, rules.quote_asset, prices, self.config.fee_rate)

    async def handle_fill(self, fill: Fill) -> None:
        if self.tracker.is_duplicate(fill) or await self.store.fill_seen(fill.symbol, fill.trade_id):
            self.tracker.seen_trades.add((fill.symbol, fill.trade_id))
            return
        if len(self.tracker.seen_trades) > 200_000:
            self.tracker.seen_trades.clear()  # bounded memory: the database's unique key still dedups
        if len(self.tracker.orders) > 20_000:
            self.tracker.prune(keep_final=5_000)  # final orders live on in the database
        self.tracker.on_fill(fill)
        machine = self.machines.owner_of(fill.client_order_id)
        await self._price_fee_asset(fill)
        fee = self._fee_quote(fill)
        intents = machine.on_fill(fill, fee) if machine is not None else []
        owner = parse_client_order_id(fill.client_order_id)
        recovering = self.recovery.recovering
        if recovering:
            self.recovery.recovered += 1
        owner_name = "foreign" if owner is None else owner.kind if owner.kind in ("panic", "manual") else owner.owner
        ev = OrderFilled(fill.symbol, fill.side, fill.price, fill.qty, fee, fill.client_order_id,
                         owner_name, fill.trade_id, fill.ts_ms, recovered=recovering)
        await self.react(machine, intents, fill=fill, extra_events=[ev])

    async def _price_fee_asset(self, fill: Fill) -> None:
        """A fee paid in a third asset (BNB) is valued at that asset's price: streamed if it is, else read from the
        venue (cached a minute), never estimated from the configured fee rate while a price can be had."""
        rules = self.rules.get(fill.symbol)
        if rules is None or fill.fee <= 0 or fill.fee_asset in (rules.base_asset, rules.quote_asset):
            return
        sym = fill.fee_asset + rules.quote_asset
        now = self.clock_ms()
        cached = self._fee_prices.get(sym)
        if sym in self.last_prices or (cached is not None and now - cached[1] < 60_000):
            return
        try:
            self._fee_prices[sym] = (await self.exchange.ticker_price(sym), now)
        except ExchangeError as exc:
            logger.warning("core: no {} price to value a {} fee ({}); estimating it", sym, fill.fee_asset, exc)

    async def apply_update(self, upd: OrderUpdate) -> None:
        result = self.tracker.on_update(upd)
        if not result.applied:
            return
        machine = self.machines.owner_of(upd.client_order_id)
        intents = machine.on_order_update(upd) if machine is not None else []
        await self.react(machine, intents, updated=[result.order] if result.order else [])
        if result.order is not None:
            self._watch_short(result.order)

    def _read_balance(self, read: ReadBalance) -> None:
        """Read the venue's balances off the event loop's queue; the answer comes back as a BalanceRead event
        (an unreadable balance answers ZERO free: the exit then reports what it could not sell)."""

        async def fetch() -> None:
            try:
                balances = await self.exchange.balances()
                b = balances.get(read.asset)
                free = b.free if b is not None else ZERO
                self.balances_cache.update(balances)
            except ExchangeError as exc:
                logger.warning("core: balance of {} not read for {}: {}", read.asset, read.owner, exc)
                free = ZERO
            self.post(BalanceRead(read.owner, read.asset, free))

        task = asyncio.get_running_loop().create_task(fetch(), name=f"tgtrader-balance-{read.owner}")
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    def _watch_short(self, order: TrackedOrder) -> None:
        """An order that ended with fewer fills seen than it executed: its trades are fetched by order id unless
        the fills stream in within `fill_grace_s` (so a leg is never left waiting for a fill that a gap lost)."""
        cid = order.client_order_id
        if not order.status.is_final or order.executed_qty <= order.fill_qty or cid in self._short_checks:
            return

        async def later() -> None:
            await asyncio.sleep(self.config.fill_grace_s)
            self.post(ShortCheck(cid))

        self._short_checks[cid] = asyncio.get_running_loop().create_task(later(), name=f"tgtrader-fills-{cid}")

    # ================================================================ one reaction: save, publish, send

    async def react(
        self,
        machine: Machine | None,
        intents: list[Intent],
        fill: Fill | None = None,
        updated: list[TrackedOrder] | None = None,
        extra_events: list[CoreEvent] | None = None,
    ) -> None:
        """Persist the reaction to one event in one transaction, publish its events, then send its intents."""
        drained = list(extra_events or []) + (machine.drain_events() if machine is not None else [])
        sales = [ev for ev in drained if isinstance(ev, SaleRealized)]
        events = [ev for ev in drained if not isinstance(ev, SaleRealized)]  # booked, not announced
        ts = self.clock_ms()
        always = machine is not None and machine.machine_kind == "chase"  # a chase's callers wait on its state
        if fill is None and not updated and not intents and not drained and not always:
            return
        places = [i for i in intents if isinstance(i, PlaceOrder)] + [
            i.place for i in intents if isinstance(i, ReplaceOrder)
        ]
        new_orders = [self.tracker.on_place(p, ts) for p in places]
        cancels = [c.client_order_id for c in intents if isinstance(c, CancelOrder)]
        for cid in cancels:
            self.tracker.on_cancel_requested(cid, ts)
        alerted = [ev for ev in events if isinstance(ev, ALERTED_BY_CORE)]
        alerts = [a for a in intents if isinstance(a, AlertIntent)]
        if alerted:  # written in this reaction's transaction: a crash right after the fill cannot lose its alert
            alerts.append(AlertIntent(EVENTS_ALERT, events_payload(alerted)))
        reaction = Reaction(
            ts, fill, self.tracker.get(fill.client_order_id) if fill is not None else None,
            machine.snapshot() if machine is not None else None, new_orders, list(updated or []), cancels,
            alerts,
            [(ev.ts_ms, ev.realized) for ev in sales],
            [ev.ts_ms for ev in events if isinstance(ev, GridRoundTrip)],
        )
        try:
            await self.store.save_reaction(reaction)
        except Exception as exc:
            self._halt(exc)
            raise
        for ev in events:
            self.bus.publish(ev)
        for a in intents:
            if isinstance(a, AlertIntent):
                self.bus.publish(AlertRaised(a.kind, dict(a.payload), ts))
        await self.gateway.execute(intents)
        for read in intents:
            if isinstance(read, ReadBalance):
                self._read_balance(read)
        if machine is not None:
            self._after_reaction(machine)

    def _after_reaction(self, machine: Machine) -> None:
        """Hook for the service (a finished chase resolves its caller)."""

    def _halt(self, exc: BaseException) -> None:
        """A reaction could not be saved: memory and database differ, so stop trading until a restart
        (which reloads the saved state and recovers the missed fills by reconciliation)."""
        if not self._halted:
            self._halted = True
            logger.error("core: saving failed ({}); trading halted until restart", exc)
            self.bus.publish(ErrorEvent("store", f"saving failed, trading halted until restart: {exc}",
                                        self.clock_ms(), severity="error"))

    # ================================================================ gateway callbacks and bans

    def _on_refused(self, p: PlaceOrder, exc: ExchangeError) -> None:
        if exc.reason is not RejectReason.INSUFFICIENT_BALANCE:
            return
        ts = self.clock_ms()
        self.bus.publish(ErrorEvent("place_order", str(exc), ts, severity="insufficient-balance",
                                    extra={"client_order_id": p.client_order_id}))
        machine = self.machines.owner_of(p.client_order_id)
        if isinstance(machine, Grid) and machine.state == "running":
            self._queue.put_nowait(GridPause(machine.id, "insufficient balance"))

    @staticmethod
    def _urgent(cid: str) -> bool:
        """Sells that protect money go out at once, never behind a queue of grid orders: stops, exits, panic."""
        p = parse_client_order_id(cid)
        return p is not None and (p.kind in ("stop", "exit", "panic") or (p.kind == "grid" and p.role == "exit"))

    def _holds_during_ban(self, cid: str) -> bool:
        """A triggered stop's sell waits out a ban; anything else is refused (grids re-place theirs after)."""
        return isinstance(self.machines.owner_of(cid), Stop)

    async def _after_ban(self) -> None:
        held = self.gateway.end_ban()
        if held is None:
            return  # already handled, or the ban was extended (a later BanOver is scheduled)
        now = self.clock_ms()
        recovered = await self.recovery.reconcile()
        for p in held:
            stop = self.machines.owner_of(p.client_order_id)
            if isinstance(stop, Stop) and stop.active and stop.order == p.client_order_id:
                await self.gateway.place(p)
            else:  # the stop was cancelled meanwhile: the held order never leaves
                self.gateway.reject(p, ExchangeError("not sent: the stop was cancelled during the IP ban", None))
        placed = 0
        for g in list(self.machines.grids.values()):
            intents = g.after_outage(now)
            placed += sum(isinstance(i, PlaceOrder) for i in intents)
            await self.react(g, intents)
        self.bus.publish(ErrorEvent(
            "exchange", f"the IP ban is over; trading resumed ({recovered} fill(s) recovered, "
            f"{placed} grid order(s) placed again)", now, severity="ban-over"))
