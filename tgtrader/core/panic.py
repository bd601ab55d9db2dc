"""/panic: stop everything the bot runs and sell what the bot owns — and nothing else unless asked.

`/panic` (scope "own"):
1. Every order generator stops first, under the core's lock, so nothing re-places: grids stop with
   "panic" and sell their own base until flat (their embedded exit waits for their cancels and fills); stops are
   cancelled (a hard stop's resting order with them); chases are cancelled.
2. The bot's other open orders (our client order ids only) are cancelled one by one; orders the trader placed by
   hand on the exchange are never touched.
3. Base the bot bought for the trader outside grids (/buy), booked from its own fills, is sold until flat by a
   Liquidation per symbol (core/liquidation.py). The trader's own holdings are left alone and listed in the plan.

`/panic all` also sells, in the same way, every other holding of the account except the protected assets (BNB by
default: the fee float), and its confirmation lists the quantities that are not the bot's.

The report waits (bounded) for the exits and says what was sold, and what is left and why.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from tgtrader.core.api import ApiError, PanicPlan, PanicReport
from tgtrader.core.exit import market_sell_qty
from tgtrader.core.grid import Grid
from tgtrader.core.ids import parse_client_order_id
from tgtrader.core.liquidation import Liquidation, owned_outside_grids
from tgtrader.core.rules import SymbolRules, fmt_decimal
from tgtrader.errors import ExchangeError
from tgtrader.types import CancelOrder

if TYPE_CHECKING:
    from tgtrader.core.service import TradingCore

ZERO = Decimal(0)
SCOPES = ("own", "all")


@dataclass(frozen=True, slots=True)
class Sale:
    """Base to sell on one symbol outside the grids' own exits."""

    asset: str
    qty: Decimal
    rules: SymbolRules
    price: Decimal


@dataclass(frozen=True, slots=True)
class Holdings:
    sales: tuple[Sale, ...]
    grid_base: dict[str, Decimal]  # per asset: what the grids hold (their exits sell it)
    not_bots: tuple[tuple[str, Decimal], ...]  # the trader's own holdings
    protected: tuple[tuple[str, Decimal], ...]  # never sold, even by /panic all


class PanicDesk:
    def __init__(self, core: "TradingCore") -> None:
        self.core = core
        self.tokens: dict[str, tuple[int, str]] = {}

    async def holdings(self, scope: str) -> Holdings:
        c = self.core
        quote = c.config.panic_quote_asset or c.config.quote_asset
        grid_base: dict[str, Decimal] = {}
        for g in c.machines.grids.values():
            if g.state in ("running", "paused") or g.exit.working:
                asset = g.rules.base_asset
                grid_base[asset] = grid_base.get(asset, ZERO) + g.base_held()
        sales: list[Sale] = []
        not_bots: list[tuple[str, Decimal]] = []
        protected: list[tuple[str, Decimal]] = []
        for asset, b in sorted((await c._balances()).items()):
            if asset == quote or b.total <= 0:
                continue
            in_grids = min(grid_base.get(asset, ZERO), b.total)
            try:
                rules = await c.rules_for(asset + quote)
                price = await c.exchange.ticker_price(asset + quote)
                outside = owned_outside_grids(await c.store.fills(rules.symbol), asset)
            except ExchangeError:
                rules, price, outside = None, ZERO, ZERO
            outside = min(outside, b.total - in_grids)
            theirs = b.total - in_grids - outside
            if theirs > 0:
                if scope == "all" and asset in c.config.protected_assets:
                    protected.append((asset, theirs))
                else:
                    not_bots.append((asset, theirs))
            if scope == "all" and asset not in c.config.protected_assets:
                theirs = min(theirs, max(ZERO, b.free - in_grids - outside))  # an order placed by hand keeps its part
            else:
                theirs = ZERO
            sell = outside + theirs
            if rules is None or sell <= 0:
                continue
            if market_sell_qty(rules, sell, price) > 0:  # sold leg after leg: may be more than one order's max
                sales.append(Sale(asset, rules.round_qty(sell, market=True), rules, price))
        return Holdings(tuple(sales), grid_base, tuple(not_bots), tuple(protected))

    async def plan(self, scope: str = "own") -> PanicPlan:
        c = self.core
        if scope not in SCOPES:
            raise ApiError("panic takes no argument, or 'all' to sell the whole account")
        try:
            orders = await c.exchange.open_orders()
        except ExchangeError as exc:
            raise ApiError(f"cannot read open orders: {exc}") from None
        ours = [o for o in orders if parse_client_order_id(o.client_order_id) is not None]
        h = await self.holdings(scope)
        sell: dict[str, Decimal] = dict(h.grid_base)
        for s in h.sales:
            sell[s.asset] = sell.get(s.asset, ZERO) + s.qty
        token = secrets.token_urlsafe(9)
        self.tokens[token] = (c.clock_ms(), scope)
        grids = sum(1 for g in c.machines.grids.values() if g.state in ("running", "paused"))
        return PanicPlan(grids, len(ours), tuple((a, q) for a, q in sorted(sell.items()) if q > 0), token,
                         c.config.panic_token_ttl_s, scope, h.not_bots, h.protected, len(orders) - len(ours))

    async def run(self, token: str) -> PanicReport:
        c = self.core
        issued = self.tokens.pop(token, None)
        now = c.clock_ms()
        if issued is None or now - issued[0] > c.config.panic_token_ttl_s * 1000:
            raise ApiError("panic needs a fresh confirmation (the token is unknown, used or older than 30 s)")
        scope = issued[1]
        t0 = time.monotonic()
        ok: list[str] = []
        failed: list[str] = []
        async with c._lock:
            for g in c.machines.grids.values():
                if g.state in ("running", "paused"):
                    held = g.base_held()
                    await c.react(g, g.stop(True, now, "panic"))
                    ok.append(f"stopped grid {g.id} {g.symbol}; selling its {fmt_decimal(held)} "
                              f"{g.rules.base_asset} until flat")
            for s in c.machines.stops.values():
                if s.state in ("new", "armed"):
                    await c.react(s, s.cancel())
                    ok.append(f"cancelled stop {s.id} {s.symbol}")
            for chase in list(c.machines.chases.values()):
                if chase.active:  # a live /buy or /sell would see a cancel and rest again
                    await c.react(chase, chase.cancel())
                    ok.append(f"stopped chase {chase.id} ({chase.side.value.lower()} {fmt_decimal(chase.qty)} "
                              f"{chase.symbol}, filled {fmt_decimal(chase.filled)})")
            c.panic_paused.clear()
            await c.store.set_panic_paused(set(), now)
            if c.gateway.drop_resends():
                ok.append("no lost order will be sent again")
        await self._cancel_own_orders(ok, failed)
        await self._wait(lambda: not [o for o in c.tracker.open_orders() if o.cancel_requested], 5.0)
        exits: list[Liquidation] = []
        for sale in (await self.holdings(scope)).sales:
            exit_id = await c.store.next_seq("exit")
            liq = Liquidation(exit_id, sale.rules.symbol, sale.rules, sale.qty,
                              "panic" if scope == "own" else "panic all")
            async with c._lock:
                c.machines.add(liq)
                await c.react(liq, liq.start(c.clock_ms(), sale.price))
            exits.append(liq)
        grids = [g for g in c.machines.grids.values() if g.stop_reason == "panic" and g.exit.state != "idle"]
        await self._wait(lambda: all(not g.exit.working for g in grids) and all(not x.active for x in exits),
                         c.config.panic_wait_s)
        for g in grids:
            ok.append(self._grid_line(g))
        for x in exits:
            line = (f"sold {fmt_decimal(x.sold)} {x.rules.base_asset} on {x.symbol}"
                    + self._left(x.exit.residue, x.exit.why_left, x.rules.base_asset, x.exit.working))
            (ok if x.sold > 0 or not x.exit.residue else failed).append(line)
        return PanicReport(tuple(ok), tuple(failed), time.monotonic() - t0)

    async def _cancel_own_orders(self, ok: list[str], failed: list[str]) -> None:
        """Cancel our open orders that no machine is cancelling already (never an order placed by hand)."""
        c = self.core
        try:
            orders = await c.exchange.open_orders()
        except ExchangeError as exc:
            failed.append(f"list open orders: {exc}")
            return
        n = 0
        for o in orders:
            if parse_client_order_id(o.client_order_id) is None:
                continue  # the trader's own order
            tracked = c.tracker.get(o.client_order_id)
            if tracked is not None and tracked.cancel_requested:
                continue
            async with c._lock:
                await c.react(None, [CancelOrder(o.symbol, o.client_order_id, "panic")])
            n += 1
        if n:
            ok.append(f"cancelled {n} other order(s) of the bot")

    @staticmethod
    async def _wait(done: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    def _grid_line(self, g: Grid) -> str:
        return (f"grid {g.id} {g.symbol}: {g.exit.legs} sell(s) at market"
                + self._left(g.exit.residue, g.exit.why_left, g.rules.base_asset, g.exit.working))

    @staticmethod
    def _left(residue: Decimal, why: str, asset: str, working: bool) -> str:
        if working:
            return "; still selling (you will get an alert when it is flat)"
        if residue <= 0:
            return "; flat"
        reason = {"below-filters": "below the symbol's filters", "not-free": "not free on the exchange",
                  "refused": "refused by the exchange", "no-liquidity": "no buyers on the book"}.get(why, why)
        return f"; left {fmt_decimal(residue)} {asset} ({reason})"
