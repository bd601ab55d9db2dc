"""What the adapter tells the core: every event through one guarded sink call, each fill once.

The adapter never emits the same fill twice (dedup by (symbol, trade id) across the REST answer, the
stream and reconciliation); the core/store dedups again across restarts. The client order ids it sees are
tracked here too, for reconciliation (which orders are ours, which are open, which answer was lost).
"""

from __future__ import annotations

import time

from loguru import logger

from tgtrader.core.ports import ExchangeEvent
from tgtrader.types import Fill, OrderUpdate


def _now_ms() -> int:
    return int(time.time() * 1000)


class EventsMixin:
    """BinanceExchange's way out: the sink, fill dedup and order tracking (state set up in its __init__)."""

    def _emit(self, event: ExchangeEvent) -> None:
        try:
            self._sink(event)
        except Exception:  # noqa: BLE001 - a faulty consumer must not kill a stream loop
            logger.exception("binance: event sink failed on {}", type(event).__name__)

    def _emit_fill(self, fill: Fill) -> bool:
        """Push a fill once per (symbol, trade id); returns False for a repeat."""
        seen = self._seen.setdefault(fill.symbol, set())
        if fill.trade_id in seen:
            return False
        seen.add(fill.trade_id)
        if len(seen) > 50_000:  # keep the newest half; older ids are below the last-id watermark anyway
            keep = sorted(seen)[-25_000:]
            seen.clear()
            seen.update(keep)
        if fill.trade_id > self._last_trade_id.get(fill.symbol, -1):
            self._last_trade_id[fill.symbol] = fill.trade_id
        self._emit(fill)
        return True

    def _already_seen(self, symbol: str, trade_id: int) -> bool:
        return trade_id in self._seen.get(symbol, ())

    def _track(self, update: OrderUpdate) -> None:
        if update.exchange_order_id is not None:
            self._cid_by_order_id[update.exchange_order_id] = update.client_order_id
        self._our_cids.setdefault(update.symbol, set()).add(update.client_order_id)
        opened = self._open_cids.setdefault(update.symbol, set())
        if update.status.is_open:
            opened.add(update.client_order_id)
        else:
            opened.discard(update.client_order_id)
            self._unknown.get(update.symbol, set()).discard(update.client_order_id)

    def _emit_update(self, update: OrderUpdate) -> None:
        self._track(update)
        self._emit(update)
