"""The first line of an alert about money: what happened and how much, readable on a lock screen.

`✅ +0.81 USDT round trip · BTCUSDT grid #1`, `🛑 STOP-LOSS −162.57 USDT · BTCUSDT grid #1`. The detail lines
(`chat.alerts`) follow unchanged; alerts without money (fills alone, stream health, errors) get no headline.
Reads payloads defensively: a headline that can't be made is simply left out, the alert still goes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from tgtrader.chat.render import signed
from tgtrader.core.events import CoreEvent, GridRoundTrip

MARK = {"stop-loss": "🛑 STOP-LOSS", "take-profit": "🎯 TAKE-PROFIT"}


def money_text(value: Decimal, quote: str) -> str:
    """'+0.81 USDT', '−162.57 USDT' (a real minus sign: it reads as one on every phone)."""
    text = signed(value)
    return ("−" + text[1:] if text.startswith("-") else text) + f" {quote}"


def _quote(symbol: str) -> str:
    for quote in ("USDT", "FDUSD", "USDC", "BUSD", "TUSD", "BTC", "ETH", "BNB", "EUR", "TRY"):
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return quote
    return ""


def for_events(events: Iterable[CoreEvent]) -> str | None:
    """A notifier's alert: the round trips' profit, per grid when there is one grid."""
    trips = [e for e in events if isinstance(e, GridRoundTrip)]
    if not trips:
        return None
    total = sum((t.profit for t in trips), Decimal(0))
    grids = {(t.symbol, t.grid_id) for t in trips}
    what = "round trip" if len(trips) == 1 else f"from {len(trips)} round trips"
    where = f"{trips[0].symbol} grid #{trips[0].grid_id}" if len(grids) == 1 else f"{len(grids)} grids"
    quote = _quote(trips[0].symbol) if len({t.symbol for t in trips}) == 1 else "quote"
    return f"✅ {money_text(total, quote)} {what} · {where}"


def for_alert(kind: str, payload: Mapping[str, Any] | None) -> str | None:
    """A machine's alert (written by the core): a stop's result; a grid's stop-loss or take-profit (its money is
    in the exit that follows: `exit-finished` carries the grid's realized result)."""
    if payload is None or "symbol" not in payload:
        return None
    try:
        symbol = str(payload["symbol"])
        quote = str(payload.get("quote_asset") or _quote(symbol))
        if "grid_id" in payload:
            subject = f"{symbol} grid #{payload['grid_id']}"
            if kind in MARK and "price" in payload:
                return f"{MARK[kind]} at {Decimal(str(payload['price'])).normalize():f} · {subject}"
            if kind == "exit-finished" and "realized" in payload:
                mark = MARK.get(str(payload.get("reason")), "⏹ GRID STOPPED")
                return f"{mark} {money_text(Decimal(str(payload['realized'])), quote)} · {subject}"
            return None
        if "stop_id" in payload and kind in MARK and "realized" in payload:
            if payload.get("entry_price") is None:  # a stop on coins bought elsewhere: proceeds, not a result
                return f"{MARK[kind]} sold · {symbol} stop #{payload['stop_id']}"
            return f"{MARK[kind]} {money_text(Decimal(str(payload['realized'])), quote)} · {symbol} stop #{payload['stop_id']}"
    except (InvalidOperation, KeyError, TypeError, ValueError):
        return None
    return None
