"""Find what the streams missed: fills and order changes that happened while a socket was down.

Run after every (re)connect of the user stream and at start-up. Fills come first (they change balances and
grid state), then order states. Dedup against what was already delivered is the caller's `already_seen`.
Only the Exchange protocol is used, so the same routine works for any venue that implements it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

from loguru import logger

from tgtrader.errors import ExchangeError
from tgtrader.core.ports import Exchange
from tgtrader.types import Fill, OrderUpdate


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
            traded: dict[str, int | None] = {}
            for cid in sorted(expected - open_ids):
                update = await exchange.get_order(symbol, cid)
                if update is not None:
                    orders.append(update)
                    if update.executed_qty > 0:
                        traded[cid] = update.exchange_order_id
            if traded and last is not None:
                # An order that traded while we were not looking may have its trades BELOW `last`: the watermark
                # moves past a stream gap when a later fill arrives another way (an order's REST answer). Fetch
                # that order's trades (by order id where the venue can), so they are not skipped forever.
                have = {f.trade_id for f in fills}
                per_order = getattr(exchange, "order_trades", None)
                candidates: list[Fill] = []
                if per_order is not None and all(oid is not None for oid in traded.values()):
                    for cid, oid in sorted(traded.items()):
                        candidates += await per_order(symbol, cid, oid)
                else:
                    candidates = await exchange.my_trades(symbol)
                extra = [f for f in candidates
                         if f.client_order_id in traded and f.trade_id not in have
                         and not already_seen(f.symbol, f.trade_id)]
                out.fills.extend(sorted(extra, key=lambda f: f.trade_id))
            # Order states only when the symbol's fills are complete: a FILLED state without its fill would make
            # the caller stop expecting the order, and the fill would never be looked for again.
            out.orders.extend(orders)
        except ExchangeError as exc:
            logger.warning("reconcile {}: {}", symbol, exc)
            out.errors.append(f"{symbol}: {exc}")
    return out
