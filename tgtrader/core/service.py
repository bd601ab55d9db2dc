"""The use cases every front end calls: `TradingCore` implements `TradingApi` on top of the kernel.

Each operation validates, takes the kernel's lock for the part that changes machines, and lets the kernel
save and send the reaction. A refused operation raises `ApiError` with a sentence for the trader.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

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
from tgtrader.core.config import CoreConfig
from tgtrader.core.events import ErrorEvent, EventBus
from tgtrader.core.grid import Grid, GridConfig, GridPreview, overlap_problem, preview, reach
from tgtrader.core.ids import chase_prefix, parse_client_order_id
from tgtrader.core.kernel import Kernel, wall_clock_ms
from tgtrader.core.machines import Machine
from tgtrader.core.panic import PanicDesk
from tgtrader.core.ports import Exchange, ExchangeHealth, MachineSnapshot, Store
from tgtrader.core.risk import ExposureLimits, check_exposure, fixed_fraction, kelly
from tgtrader.core.rules import SymbolRules, fmt_decimal
from tgtrader.core.stops import Stop
from tgtrader.errors import BadSymbol, ExchangeError
from tgtrader.types import Balance, OrderType, Side

ZERO = Decimal(0)


@dataclass
class _Preview:
    view: GridPreviewView
    preview: GridPreview
    rules: SymbolRules
    created_ms: int
    used: bool = False


class TradingCore(Kernel):
    """See the module docstring. `await start()`, `await idle()`, `await stop()`; the rest is `TradingApi`."""

    def __init__(
        self,
        exchange: Exchange,
        store: Store,
        bus: EventBus | None = None,
        config: CoreConfig = CoreConfig(),
        mode: str = "paper",
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        super().__init__(exchange, store, bus, config, mode, clock_ms)
        self._previews: dict[str, _Preview] = {}
        self.panic_desk = PanicDesk(self)
        self._chase_waiters: dict[int, asyncio.Future[ChaseResult]] = {}

    def _check_order_room(self, new_orders: int) -> None:
        breach = check_exposure(self._limits(), open_orders=len(self.tracker.open_orders()), new_orders=new_orders)
        if breach is not None:
            raise ApiError(f"{breach.limit}: {breach.message}")

    def _check_running(self) -> None:
        if self._halted:
            raise ApiError("trading is halted after a database error; restart the bot")

    def _after_reaction(self, machine: Machine) -> None:
        if isinstance(machine, Chase):
            self._resolve_chase(machine)

    def _resolve_chase(self, chase: Chase) -> None:
        if not chase.done:
            return
        waiting = self._chase_waiters.get(chase.id)
        if waiting is not None and not waiting.done():
            r = chase.report()
            waiting.set_result(ChaseResult(chase.symbol, chase.side, chase.qty, r.filled_qty, r.avg_price,
                                           r.maker_qty, r.taker_qty, r.fees_quote, r.status, r.message))

    def _stopped(self) -> None:
        for waiting in self._chase_waiters.values():
            if not waiting.done():
                waiting.cancel()

    # ================================================================ API: symbols and previews

    async def known_symbols(self) -> frozenset[str]:
        return frozenset(await self.exchange.known_symbols())

    async def _rules_or_api_error(self, symbol: str) -> SymbolRules:
        try:
            return await self.rules_for(symbol.upper())
        except BadSymbol:
            raise ApiError(f"{symbol} is not a known symbol") from None
        except ExchangeError as exc:
            raise ApiError(f"exchange unavailable: {exc}") from None

    async def last_price(self, symbol: str) -> Decimal:
        return await self._price((await self._rules_or_api_error(symbol)).symbol)

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

    async def _market_now(self, rules: SymbolRules) -> tuple[Decimal, Decimal, Decimal, Decimal | None]:
        """What a preview is computed from: the last price, the free quote and base, the venue's average price."""
        price = await self._price(rules.symbol)
        bal = await self._balances()
        free_q = bal.get(rules.quote_asset, Balance(rules.quote_asset, ZERO, ZERO)).free
        free_b = bal.get(rules.base_asset, Balance(rules.base_asset, ZERO, ZERO)).free
        return price, free_q, free_b, await self._avg_price(rules.symbol)

    async def _avg_price(self, symbol: str) -> Decimal | None:
        try:
            return await self.exchange.avg_price(symbol)
        except ExchangeError:
            return None  # the preview falls back to the last price

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
            self.config.chase_step_ms, self.config.chase_max_slippage, spec.accept_loss, spec.trail_up, spec.trail_down,
        )

    def _limits(self) -> ExposureLimits:
        c = self.config
        return ExposureLimits(c.max_per_grid, c.max_total_in_grids, c.max_open_orders)

    def _extra_problems(self, config: GridConfig) -> list[str]:
        active = [g for g in self.machines.grids.values() if g.state in ("running", "paused")]
        out = []
        ov = overlap_problem(config, [(g.id, g.config.symbol, *reach(g.config)) for g in active])
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
        market = await self._market_now(rules)
        async with self._lock:
            pv = preview(config, rules, *market)
            problems = tuple(pv.problems) + tuple(self._extra_problems(config))
        token = secrets.token_urlsafe(9)
        view = GridPreviewView.of(pv, token, spec, problems)
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
        config = pv.preview.config
        await self._check_preview_still_holds(pv)
        pv.used = True
        async with self._lock:
            extra = self._extra_problems(config)
            if extra:
                raise ApiError("; ".join(extra))
            price = self.last_prices.get(config.symbol) or await self._price(config.symbol)
            grid_id = await self.store.create_grid(config.symbol, config.to_dict(), now)
            grid = Grid(grid_id, config, pv.rules)
            bid, ask = self.books.get(config.symbol, (None, None))
            try:
                intents = grid.start(price, now, bid, ask)
            except ValueError as exc:
                await self.store.save_machine(MachineSnapshot("grid", grid_id, config.symbol, "failed", {}), now)
                raise ApiError(str(exc)) from None
            self.machines.add(grid)
            await self.react(grid, intents)
        await self._subscribe(config.symbol)
        return self._summary(grid)

    async def _check_preview_still_holds(self, pv: _Preview) -> None:
        """Start re-runs the preview at the current price and balances: a grid started below its own stop-loss
        (the price fell since the preview) would buy and sell at once; one whose orders changed sides would spend
        what the trader did not see. Either is refused with the new figures (make a new preview)."""
        config, old = pv.preview.config, pv.preview
        market = await self._market_now(pv.rules)
        price = market[0]
        now = preview(config, pv.rules, *market)
        if now.problems:
            raise ApiError(f"at the current price {fmt_decimal(price)} the grid has problems: "
                           + "; ".join(now.problems) + "; make a new preview")
        if (now.buy_orders, now.sell_orders) != (old.buy_orders, old.sell_orders):
            raise ApiError(f"the price moved from {fmt_decimal(old.price)} to {fmt_decimal(price)} across a grid "
                           f"level since the preview ({now.buy_orders} buys / {now.sell_orders} sells now, "
                           f"{old.buy_orders} / {old.sell_orders} then); make a new preview")

    async def _subscribe(self, symbol: str) -> None:
        try:
            await self.exchange.subscribe({symbol})
        except ExchangeError as exc:
            self.bus.publish(ErrorEvent("subscribe", f"{symbol}: {exc}", self.clock_ms()))

    def _grid_or_error(self, grid_id: int) -> Grid:
        g = self.machines.grids.get(grid_id)
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
            c.trail_up, c.trail_down, g.moves_up, g.moves_down, g.levels[0] if g.levels else None,
            g.levels[-1] if g.levels else None,
        )

    async def list_grids(self) -> list[GridSummary]:
        return [self._summary(g) for g in sorted(self.machines.grids.values(), key=lambda g: g.id)]

    async def grid(self, grid_id: int) -> GridSummary:
        return self._summary(self._grid_or_error(grid_id))

    async def pause_grid(self, grid_id: int, reason: str = "user") -> GridSummary:
        self._check_running()
        async with self._lock:
            g = self._grid_or_error(grid_id)
            if g.state != "running":
                raise ApiError(f"grid {grid_id} is {g.state}, not running")
            await self.react(g, g.pause(self.clock_ms(), reason))
        return self._summary(g)

    async def resume_grid(self, grid_id: int) -> GridSummary:
        self._check_running()
        async with self._lock:
            g = self._grid_or_error(grid_id)
            if g.state != "paused":
                raise ApiError(f"grid {grid_id} is {g.state}, not paused")
            price = self.last_prices.get(g.config.symbol)
            await self.react(g, g.resume(price, self.clock_ms()))
            self.panic_paused.discard(grid_id)
        return self._summary(g)

    async def stop_grid(self, grid_id: int, sell: bool = False) -> GridSummary:
        self._check_running()
        async with self._lock:
            g = self._grid_or_error(grid_id)
            if g.state == "stopped":
                raise ApiError(f"grid {grid_id} is already stopped")
            await self.react(g, g.stop(sell, self.clock_ms(), "user"))
        return self._summary(g)

    # ================================================================ API: status

    async def status(self) -> StatusView:
        grids = tuple(await self.list_grids())
        today = datetime.fromtimestamp(self.clock_ms() / 1000, tz=UTC).strftime("%Y-%m-%d")
        (result,) = await self.store.day_results([today])
        # one definition (core/pnl.py): realized = every sale against its cost, booked per day by the kernel
        return StatusView(
            self.mode, grids, len(self.tracker.open_orders()), result.profit, await self.store.realized_total(),
            sum((g.unrealized_pnl for g in grids), ZERO), self._health(), self.config.quote_asset,
            bool(self.panic_paused), sum((g.grid_profit for g in grids), ZERO),
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
        names = [datetime.fromtimestamp(now / 1000 - k * 86400, tz=UTC).strftime("%Y-%m-%d")
                 for k in range(days - 1, -1, -1)]
        out = [(r.day, r.profit, r.round_trips) for r in await self.store.day_results(names)]
        grids = await self.list_grids()
        return PnlView(tuple(out), sum((p for _, p, _ in out), ZERO), self.config.quote_asset,
                       await self.store.realized_total(), sum((g.unrealized_pnl for g in grids), ZERO),
                       sum((g.grid_profit for g in grids), ZERO))

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

    async def chase(self, symbol: str, side: Side, qty: Decimal, limit_price: Decimal | None = None) -> ChaseResult:
        self._check_running()
        self._check_order_room(1)
        rules = await self._rules_or_api_error(symbol)
        symbol = rules.symbol
        qty = rules.round_qty(qty)
        price = await self._price(symbol)
        await self._subscribe(symbol)
        async with self._lock:
            cid_n = await self.store.next_seq("chase")
            # A trader's max= / min= is a limit, never crossed: at the limit the order rests there. The market
            # fallback (for the remainder once the chase runs out of steps) exists only without a limit.
            chase = Chase(symbol, side, qty, rules, chase_prefix(cid_n), f"chase:{cid_n}",
                          limit_price, self.config.chase_step_ms, limit_price is None, 0, self.config.fee_rate)
            chase.id = cid_n
            waiting = self._chase_waiters[cid_n] = asyncio.get_running_loop().create_future()
            self.machines.add(chase)
            bid, ask = self.books.get(symbol, (None, None))
            if bid is None and ask is None:
                tick = rules.tick_size
                bid, ask = (price, price + tick) if side is Side.BUY else (price - tick, price)
            intents = chase.start(self.clock_ms(), bid, ask)
            await self.react(chase, intents)
        if chase.done and not waiting.done():
            self._resolve_chase(chase)
        try:
            result: ChaseResult = await waiting
            return result
        finally:
            self._chase_waiters.pop(cid_n, None)

    # ================================================================ API: stops

    def _stop_view(self, s: Stop) -> StopView:
        state = s.state.value
        if s.hard_fallback and state == "armed":
            state = "fallback-hard"
        return StopView(s.id, s.symbol, s.kind, s.purpose, s.trigger, s.qty, state)

    async def add_stop(self, symbol: str, price: Decimal, kind: str = "soft") -> StopView:
        """kind soft / hard: a stop-loss below the market (watched in the core / resting on the exchange);
        tp: a take-profit above the market (a resting limit sell). Which one is never guessed from the price:
        a stop-loss whose price the market already crossed is refused, not turned into a take-profit."""
        self._check_running()
        if kind not in ("soft", "hard", "tp"):
            raise ApiError("stop kind must be soft, hard or tp (take-profit)")
        self._check_order_room(0 if kind == "soft" else 1)
        rules = await self._rules_or_api_error(symbol)
        last = await self._price(rules.symbol)
        bal = await self._balances()
        base = bal.get(rules.base_asset)
        qty = rules.round_qty(base.free if base else ZERO)
        if qty <= 0:
            raise ApiError(f"no free {rules.base_asset} to protect")
        purpose = "take-profit" if kind == "tp" else "stop-loss"
        mode = "hard" if kind == "tp" else kind
        self._check_stop_side(rules.symbol, purpose, price, last)
        if rules.check_order(Side.SELL, OrderType.MARKET, rules.round_qty(qty, market=True), None,
                             reference_price=price):
            raise ApiError(f"{fmt_decimal(qty)} {rules.base_asset} at {fmt_decimal(price)} is below the symbol filters")
        async with self._lock:
            # the market may have moved while we read balances: check again against the newest price
            self._check_stop_side(rules.symbol, purpose, price, self.last_prices.get(rules.symbol, last))
            now = self.clock_ms()
            stop_id = await self.store.create_stop(rules.symbol, kind, price, qty, now)
            stop = Stop(stop_id, rules.symbol, purpose, mode, qty, price, rules, None, self.config.stop_limit_offset,
                        int(self.config.soft_stop_silence_s * 1000), self.config.fee_rate,
                        int(self.config.stop_rest_s * 1000))
            self.machines.add(stop)
            await self.react(stop, stop.arm(now))
        await self._subscribe(rules.symbol)
        return self._stop_view(stop)

    @staticmethod
    def _check_stop_side(symbol: str, purpose: str, price: Decimal, last: Decimal) -> None:
        if purpose == "stop-loss" and price >= last:
            raise ApiError(f"a stop-loss must be below the market ({fmt_decimal(last)}), got {fmt_decimal(price)}; "
                           f"for a take-profit add tp: /stop {symbol} {fmt_decimal(price)} tp")
        if purpose == "take-profit" and price <= last:
            raise ApiError(f"a take-profit must be above the market ({fmt_decimal(last)}), got {fmt_decimal(price)}")

    async def list_stops(self) -> list[StopView]:
        return [self._stop_view(s) for s in sorted(self.machines.stops.values(), key=lambda s: s.id)]

    async def cancel_stop(self, stop_id: int) -> StopView:
        self._check_running()
        async with self._lock:
            s = self.machines.stops.get(stop_id)
            if s is None:
                raise ApiError(f"no stop {stop_id}")
            if s.state not in ("new", "armed"):
                raise ApiError(f"stop {stop_id} is {s.state}")
            await self.react(s, s.cancel())
        return self._stop_view(s)

    # ================================================================ API: panic

    async def panic_plan(self, scope: str = "own") -> PanicPlan:
        return await self.panic_desk.plan(scope)

    async def panic(self, token: str) -> PanicReport:
        return await self.panic_desk.run(token)

    async def resume_all(self) -> list[GridSummary]:
        out = []
        for gid in sorted(self.panic_paused):
            g = self.machines.grids.get(gid)
            if g is not None and g.state == "paused":
                out.append(await self.resume_grid(gid))
        self.panic_paused.clear()
        await self.store.set_panic_paused(set(), self.clock_ms())
        return out

    # ================================================================ API: charts

    async def chart_data(self, grid_id: int) -> ChartData:
        g = self._grid_or_error(grid_id)
        history = self.price_history.get(g.config.symbol)
        times, prices = history.points() if history is not None else ((), ())
        fills = await self.store.fills(g.config.symbol)
        own = [f for f in fills if (p := parse_client_order_id(f.client_order_id)) and p.owner == g.owner]
        return ChartData(
            g.id, g.config.symbol, times, prices, tuple(g.levels),
            tuple((f.ts_ms, f.side.value, f.price) for f in own),
            tuple(f.qty for f in own), g.config.stop_loss, g.config.take_profit, tuple(g.marks),
        )
