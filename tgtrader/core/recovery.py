"""Recovery: the one owner of start-up loading, orders left PENDING_NEW by a crash, and reconciliation.

Reconciliation finds what the streams missed (fills and order changes while a socket was down or the bot
was stopped). Fills come first (they change balances and machine state), then order states. Only the
Exchange port is used, so the same routine serves every venue; the Binance adapter runs it after each
user-stream resubscribe through `reconcile`, the core at start-up and after an IP ban.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from loguru import logger

from tgtrader.core.chase import Chase
from tgtrader.core.events import ErrorEvent
from tgtrader.core.grid import Grid
from tgtrader.core.ids import parse_client_order_id
from tgtrader.core.orders import TrackedOrder
from tgtrader.core.ports import Exchange
from tgtrader.core.stops import Stop
from tgtrader.errors import ExchangeError
from tgtrader.types import Fill, OrderStatus, OrderType, OrderUpdate, PlaceOrder

if TYPE_CHECKING:
    from tgtrader.core.kernel import Kernel


@dataclass
class ReconcileResult:
    fills: list[Fill] = field(default_factory=list)
    orders: list[OrderUpdate] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # one trader-readable line per symbol that failed


async def reconcile(
    exchange: Exchange,
    last_trade_ids: Mapping[str, int | None],
    expected_open: Mapping[str, set[str]],
    already_seen: Callable[[str, int], bool],
    our_client_ids: Callable[[str, str], bool] | None = None,
) -> ReconcileResult:
    """Missed fills and order states for every symbol with activity.

    - `last_trade_ids[symbol]`: highest trade id already processed (None: unknown, so only the recent trades of
      our own orders are checked, identified by `our_client_ids(symbol, client_order_id)`).
    - `expected_open[symbol]`: client order ids believed open; any of them no longer open is looked up so its
      final state (FILLED / CANCELED / EXPIRED) is reported.
    """
    out = ReconcileResult()
    for symbol in sorted(set(last_trade_ids) | set(expected_open)):
        fills: list[Fill] = []
        orders: list[OrderUpdate] = []
        try:
            last = last_trade_ids.get(symbol)
            expected = expected_open.get(symbol, set())
            if last is not None:
                trades = await exchange.my_trades(symbol, last + 1)
            elif expected or our_client_ids is not None:
                trades = [
                    t for t in await exchange.my_trades(symbol)
                    if t.client_order_id in expected or (our_client_ids is not None and our_client_ids(symbol, t.client_order_id))
                ]
            else:
                trades = []
            for fill in sorted(trades, key=lambda f: f.trade_id):
                if not already_seen(fill.symbol, fill.trade_id):
                    fills.append(fill)
            out.fills.extend(fills)  # fills are safe to report alone (order states are not, see below)
            open_now = await exchange.open_orders(symbol)
            orders.extend(open_now)
            open_ids = {o.client_order_id for o in open_now}
            for cid in sorted(expected - open_ids):
                update = await exchange.get_order(symbol, cid)
                if update is not None:
                    orders.append(update)
            # An order that traded while we were not looking may have trades BELOW `last` (the watermark moves past
            # a stream gap when a later fill arrives another way): not fetched here. Its update says what it
            # executed, so the core fetches its trades by order id (`Recovery.fetch_short_orders`, one mechanism for
            # every leg whose executed quantity is ahead of its fills: at start-up, after this, and after any final
            # update that arrived short).
            # Order states only when every read of the symbol succeeded (an error drops them for this pass).
            out.orders.extend(orders)
        except ExchangeError as exc:
            logger.warning("reconcile {}: {}", symbol, exc)
            out.errors.append(f"{symbol}: {exc}")
    return out


class Recovery:
    """Start-up loading, pending-order recovery and reconciliation for one kernel."""

    def __init__(self, kernel: "Kernel") -> None:
        self.k = kernel
        self.recovering = False
        self.recovered = 0

    async def load(self) -> None:
        """Rebuild machines and open orders from the store (a machine that cannot be rebuilt is logged, skipped)."""
        k = self.k
        saved = await k.store.load_state()
        for m in saved.machines:
            try:
                machine = k.machines.rebuild(m, await k.rules_for(m.symbol))
            except Exception as exc:  # noqa: BLE001 - one bad row must not stop the others
                logger.error("core: cannot load {} {}: {}", m.kind, m.id, exc)
                continue
            if (isinstance(machine, Chase) and machine.done) or (m.kind == "exit" and not machine.active):
                continue  # finished chases and exits are history (their orders and fills are in the store)
            k.machines.add(machine)
            if isinstance(machine, Grid) and (m.panic_paused or (machine.state == "paused" and machine.stop_reason == "panic")):
                k.panic_paused.add(machine.id)
            if isinstance(machine, Stop) and machine.watching:
                machine.rearm(k.clock_ms())
        for order in saved.open_orders:
            k.tracker.orders[order.client_order_id] = order

    async def recover_pending(self) -> None:
        """Orders saved as PENDING_NEW before a crash: adopt what the exchange has, send the rest (same id)."""
        k = self.k
        for order in list(k.tracker.orders.values()):
            if order.status is not OrderStatus.PENDING_NEW:
                continue
            try:
                found = await k.exchange.get_order(order.symbol, order.client_order_id)
            except ExchangeError as exc:
                logger.warning("core: lookup of {} failed: {}", order.client_order_id, exc)
                continue
            if found is not None:
                await k.apply_update(found)
                continue
            intent = PlaceOrder(order.symbol, order.client_order_id, order.side, order.order_type, order.qty,
                                order.price, order.stop_price,
                                None if order.order_type in (OrderType.MARKET, OrderType.LIMIT_MAKER) else "GTC",
                                order.owner)
            # Saved just before a crash, it may have been sent and still be on its way: absent proves nothing
            # until the venue can no longer execute a request sent then. After that it is sent (same id).
            age_s = max(0.0, (k.clock_ms() - order.created_ts) / 1000)
            k.gateway.settle(intent, max(0.0, k.exchange.order_settle_s - age_s), resend=True)

    def watermarks(self) -> dict[str, int | None]:
        """For the adapter's reconciliation after a stream gap: the last trade id processed per active symbol."""
        k = self.k
        return {s: k.tracker.last_trade_id.get(s) for s in k.machines.watched_symbols()}

    async def _symbols_with_our_orders(self) -> set[str]:
        """Symbols where the exchange holds open orders with our ids: a store that lost its last transactions (power
        loss, a restored backup) may not know them, or their symbol, while the exchange kept them (issue 19)."""
        k = self.k
        try:
            resting = await k.exchange.open_orders()
        except ExchangeError as exc:
            k.bus.publish(ErrorEvent("reconcile", f"open orders of all symbols: {exc}", k.clock_ms()))
            return set()
        return {o.symbol for o in resting if parse_client_order_id(o.client_order_id) is not None}

    async def reconcile(self) -> int:
        """Fetch what was missed and apply it as if it had streamed in; returns the number of fills recovered."""
        k = self.k
        symbols = k.machines.watched_symbols() | {o.symbol for o in k.tracker.open_orders()}
        symbols |= await self._symbols_with_our_orders()
        last: dict[str, int | None] = {}
        for s in symbols:
            tid = await k.store.trade_watermark(s)
            last[s] = tid
            if tid is not None:
                k.tracker.last_trade_id[s] = tid
        expected: dict[str, set[str]] = {}
        for o in k.tracker.open_orders():
            expected.setdefault(o.symbol, set()).add(o.client_order_id)
        for s, cids in expected.items():
            k.exchange.expect_open_orders(s, cids)
        if not symbols:
            return 0
        result = await reconcile(
            k.exchange, last, expected, k.tracker.is_duplicate_key,
            our_client_ids=lambda s, c: parse_client_order_id(c) is not None,
        )
        for err in result.errors:
            k.bus.publish(ErrorEvent("reconcile", err, k.clock_ms()))
        self.recovering = True
        self.recovered = 0
        k.gateway.adopt_first = True  # the replay may re-emit orders a lost store write had sent (issue 19)
        try:
            for fill in result.fills:
                await k.handle_fill(fill)
            for upd in result.orders:
                await k.apply_update(upd)
            await self.fetch_short_orders()
        finally:
            self.recovering = False
            k.gateway.adopt_first = False
        return self.recovered

    def short_orders(self) -> list[TrackedOrder]:
        """Orders, open or final, whose executed quantity (as the exchange reported it) exceeds the fills seen."""
        return [o for o in self.k.tracker.orders.values() if o.executed_qty > o.fill_qty]

    async def fetch_short_orders(self, orders: list[TrackedOrder] | None = None) -> int:
        """Fetch the trades of every short order by its order id and apply the unseen ones.

        Reconciliation by order, not only by watermark: a fill lost in a stream gap whose trade id is below a later
        trade already seen is never returned by `my_trades(from_id)`; its order's executed quantity still says it
        exists, so it is looked for until found (issue 13 item 7)."""
        k = self.k
        found = 0
        for order in orders if orders is not None else self.short_orders():
            if order.executed_qty <= order.fill_qty:
                continue
            try:
                oid = order.exchange_order_id
                if oid is None:
                    upd = await k.exchange.get_order(order.symbol, order.client_order_id)
                    oid = upd.exchange_order_id if upd is not None else None
                if oid is None:
                    continue
                trades = await k.exchange.order_trades(order.symbol, order.client_order_id, oid)
            except ExchangeError as exc:
                logger.warning("core: trades of {} not fetched: {}", order.client_order_id, exc)
                continue
            for fill in sorted(trades, key=lambda f: f.trade_id):
                if not k.tracker.is_duplicate(fill) and not await k.store.fill_seen(fill.symbol, fill.trade_id):
                    await k.handle_fill(fill)
                    found += 1
        return found
