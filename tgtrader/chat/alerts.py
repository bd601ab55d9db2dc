"""Every alert's wording, rendered when the alert is delivered.

An alert is stored as facts: a `kind` and a JSON payload of plain values (Decimals as strings). The core
writes a machine's `AlertIntent` to the outbox in the same transaction as the state change it reports; a
notifier writes one coalescing window of core events, or the daily summary. `render_alert(kind, payload)`
words them at delivery, so the core writes no English and another front end (web, Discord) renders the
same facts its own way. Rows written before typed alerts carry their text and no payload: `outbox_text`
sends that text as it is.

A machine's payload names its subject: `grid_id` (core/grid/machine.py) or `stop_id` (core/stops.py),
with `symbol`; the kinds of each are the keys of `GRID_ALERTS` and `STOP_ALERTS`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

import msgspec
from loguru import logger

from tgtrader.chat.render import clip, money, num, render_pnl, render_status, signed
from tgtrader.core.api import PnlView, StatusView
from tgtrader.core.events import (
    EVENTS_ALERT,
    AlertRaised,
    CoreEvent,
    ErrorEvent,
    GridRoundTrip,
    GridStateChanged,
    OrderFilled,
    OrderRejected,
    StopTriggered,
    StreamDown,
    StreamUp,
    plain,
)
from tgtrader.core.events import events_payload as events_payload  # re-exported: the front ends' one import

MAX_LINES_PER_KIND = 15  # in a coalesced alert, lines per kind before "... and N more"

EVENTS = EVENTS_ALERT  # one reaction's (or a notifier window's) core events, {"events": [...]}
DAILY_SUMMARY = "daily-summary"  # {"status": StatusView, "pnl": PnlView}

Payload = Mapping[str, Any]
Renderer = Callable[[str, Payload], str]


# ---------------------------------------------------------------- delivery


def render_alert(kind: str, payload: Payload) -> str:
    """One alert's message. Raises (KeyError, ValueError...) on a kind or payload this version can't read."""
    if "grid_id" in payload:
        table = GRID_ALERTS if kind in GRID_ALERTS else OLD_GRID_ALERTS
    elif "stop_id" in payload:
        table = STOP_ALERTS
    else:
        table = FRONT_END_ALERTS
    return clip(table[kind](kind, payload))


def outbox_text(kind: str, text: str, payload: Payload | None) -> str:
    """What to send for an outbox row: its payload rendered now, or the text of a row written before typed
    alerts (payload NULL). A payload that can't be rendered is still delivered, as its facts."""
    if payload is None:
        return text
    try:
        rendered = render_alert(kind, payload)
    except Exception:
        logger.exception("cannot render the {} alert {}; sending its facts", kind, payload)
        rendered = ""
    return rendered or text or clip(f"{kind}: {json.dumps(payload, sort_keys=True, default=str)}")


_plain = plain  # the core's: the core writes these payloads itself (core/events.py)


# ---------------------------------------------------------------- the machines' alerts


def _dec(p: Payload, key: str) -> Decimal:
    return Decimal(str(p[key]))


def _num(p: Payload, key: str) -> str:
    return num(_dec(p, key))


def _to_4dp(value: Decimal) -> str:
    return num(value.quantize(Decimal("0.0001")))


def _stop(p: Payload) -> str:
    return f"stop {p['stop_id']} {p['symbol']}"


def _stop_triggered(kind: str, p: Payload) -> str:
    return (f"{_stop(p)}: {p['purpose']} triggered at {_num(p, 'price')} (trigger {_num(p, 'trigger')});"
            f" selling {_num(p, 'qty')} at market")


def _stop_hard_fallback(kind: str, p: Payload) -> str:
    return (f"{_stop(p)}: no market data for {p['silent_s']} s; placed a resting {p['order_type']} sell of"
            f" {_num(p, 'qty')} at {_num(p, 'trigger')} on the exchange")


def _left(p: Payload) -> str:
    """What an exit could not sell, and why (core/exit.py's codes)."""
    if "residue" not in p:
        return ""
    why = {"below-filters": "below the symbol's filters",
           "not-free": f"only {_num(p, 'free') if p.get('free') is not None else 'part'} free on the exchange",
           "refused": "the exchange refused the sell 3 times",
           "no-liquidity": "3 market sells in a row found no buyers"}.get(str(p.get("why_left")), str(p.get("why_left")))
    return f"; left unsold: {_num(p, 'residue')} {p.get('base_asset', '')} ({why})"


def _stop_failed(kind: str, p: Payload) -> str:
    if "reject_text" in p:
        return f"{_stop(p)}: order rejected: {p['reject_text']}"
    return f"{_stop(p)}: nothing was sold{_left(p)}"


def _stop_market_fallback(kind: str, p: Payload) -> str:
    return (f"{_stop(p)}: the market gapped below the stop's limit and the order rested unfilled for {p['rest_s']} s;"
            f" cancelling it and selling {_num(p, 'qty')} at market")


def _stop_replaced(kind: str, p: Payload) -> str:
    return f"{_stop(p)}: the exchange {str(p['status']).lower()} the stop order; placed it again"


def _stop_sold(kind: str, p: Payload) -> str:
    avg, tick = _dec(p, "price"), _dec(p, "tick_size")
    label = "realized" if p["entry_price"] is not None else "proceeds"
    return (f"{_stop(p)}: {p['purpose']} sold {_num(p, 'qty')} at {num(avg.quantize(tick) if tick > 0 else avg)}"
            f" (trigger {_num(p, 'trigger')}); {label} {_to_4dp(_dec(p, 'realized'))} {p['quote_asset']}{_left(p)}")


def _exit_finished(kind: str, p: Payload) -> str:
    left = _left(p)
    realized = f"; grid realized {_to_4dp(_dec(p, 'realized'))} {p['quote_asset']}" if "realized" in p else ""
    return (f"grid {p['grid_id']} {p['symbol']}: exit ({p['reason']}) finished after {p['legs']} sell(s)"
            + (left if left else f"; no {p['base_asset']} left") + realized)


def _grid_residue(kind: str, p: Payload) -> str:
    return f"grid {p['grid_id']}: {_num(p, 'qty')} {p['base_asset']} is below the symbol filters and was not sold"


def _grid_stopped_out(kind: str, p: Payload) -> str:
    action = "selling" if p["sell_on_stop"] else "keeping"
    return (f"grid {p['grid_id']} {p['symbol']}: {kind} at {_num(p, 'price')} (trigger {_num(p, 'trigger')});"
            f" orders cancelled, {action} {_num(p, 'qty')} {p['base_asset']};"
            f" realized before the exit {_to_4dp(_dec(p, 'realized'))} {p['quote_asset']}")


def _grid_order_rejected(kind: str, p: Payload) -> str:
    if p.get("reason") == "self-trade":
        return (f"grid {p['grid_id']}: order {p['client_order_id']} expired by self-trade prevention (it would have"
                f" traded with another of your orders); /grid pause {p['grid_id']} then /grid resume {p['grid_id']}"
                " places it again")
    return f"grid {p['grid_id']}: order {p['client_order_id']} rejected: {p['reject_text']}"


def _grid_start_failed(kind: str, p: Payload) -> str:
    return (f"grid {p['grid_id']} {p['symbol']}: the start buy {str(p['status']).lower()}"
            f" ({_num(p, 'filled')} of {_num(p, 'qty')} filled); grid paused")


def _grid_trailed(kind: str, p: Payload) -> str:
    way, moves = ("up" if p["direction"] == "up" else "down"), int(p["moves"])
    return (f"grid {p['grid_id']} {p['symbol']} moved {way} at {_num(p, 'price')}: now trades {_num(p, 'lower')}"
            f" - {_num(p, 'upper')} ({moves} {'move' if moves == 1 else 'moves'} {way} so far)")


def _grid_trail_stopped(kind: str, p: Payload) -> str:
    way = "up" if p["direction"] == "up" else "down"
    if p["reason"] == "limit":
        why = f"the next move would pass its limit {_num(p, 'limit')}" if p.get("limit") is not None else "at its limit"
    else:
        why = f"the next level's order would not pass {p['symbol']}'s filters (order size or price tick)"
    return (f"grid {p['grid_id']} {p['symbol']} stopped trailing {way} at {_num(p, 'price')}: {why};"
            " it waits for the price to come back into its range")


OLD_GRID_ALERTS: dict[str, Renderer] = {"grid-residue": _grid_residue}  # outbox rows of earlier versions
TRAIL_ALERTS: dict[str, Renderer] = {"grid-trailed": _grid_trailed, "grid-trail-stopped": _grid_trail_stopped}

STOP_ALERTS: dict[str, Renderer] = {
    "stop-loss-triggered": _stop_triggered,
    "take-profit-triggered": _stop_triggered,
    "stop-hard-fallback": _stop_hard_fallback,
    "stop-failed": _stop_failed,
    "stop-replaced": _stop_replaced,
    "stop-market-fallback": _stop_market_fallback,
    "stop-loss": _stop_sold,
    "take-profit": _stop_sold,
}

GRID_ALERTS: dict[str, Renderer] = {
    "exit-finished": _exit_finished,
    "stop-loss": _grid_stopped_out,
    "take-profit": _grid_stopped_out,
    "order-rejected": _grid_order_rejected,
    "grid-start-failed": _grid_start_failed,
    **TRAIL_ALERTS,  # a trailing grid's moves and stalls (issue 17)
}


# ---------------------------------------------------------------- a notifier's alerts

_EVENT_TYPES: dict[str, type[CoreEvent]] = {
    cls.__name__: cls
    for cls in (OrderFilled, GridRoundTrip, StopTriggered, GridStateChanged, StreamDown, StreamUp, OrderRejected,
                ErrorEvent)
}


def events_from_payload(payload: Payload) -> list[CoreEvent]:
    events: list[CoreEvent] = []
    for item in payload["events"]:
        fields = dict(item)
        events.append(msgspec.convert(fields, _EVENT_TYPES[fields.pop("type")], strict=False))
    return events


def daily_summary_payload(status: StatusView, pnl: PnlView) -> dict[str, object]:
    return {"status": _plain(status), "pnl": _plain(pnl)}


def _render_events(kind: str, p: Payload) -> str:
    return render_alerts(events_from_payload(p)) or ""


def _render_daily_summary(kind: str, p: Payload) -> str:
    status = msgspec.convert(p["status"], StatusView, strict=False)
    pnl = msgspec.convert(p["pnl"], PnlView, strict=False)
    return "Daily summary\n" + render_status(status) + "\n\n" + render_pnl(pnl)


FRONT_END_ALERTS: dict[str, Renderer] = {EVENTS: _render_events, DAILY_SUMMARY: _render_daily_summary}


# ---------------------------------------------------------------- core events


def _owner(owner: str) -> str:
    return f" [{owner}]" if owner else ""


def alert_kind(event: CoreEvent) -> str:
    """The coalescing group of an event: fills bunch together, everything else is listed in order."""
    if isinstance(event, (OrderFilled, GridRoundTrip)):
        return "fill"
    if isinstance(event, ErrorEvent) and event.severity == "ban":
        return "ban"
    return "event"


def render_event(event: CoreEvent) -> str | None:
    """One alert line, or None for events nobody needs to hear about (e.g. a grid 'starting')."""
    if isinstance(event, OrderFilled):
        rec = " (recovered)" if event.recovered else ""
        return (
            f"FILL {event.symbol} {event.side.value} {num(event.qty)} @ {num(event.price)}"
            f"{_owner(event.owner)}{rec}"
        )
    if isinstance(event, GridRoundTrip):
        return (
            f"ROUND TRIP grid #{event.grid_id} {event.symbol}: bought {num(event.buy_price)}"
            f" sold {num(event.sell_price)} x {num(event.qty)}, profit {signed(event.profit)}"
        )
    if isinstance(event, StopTriggered):
        title = {"stop-loss": "STOP-LOSS", "take-profit": "TAKE-PROFIT"}.get(event.kind, event.kind.upper())
        return (
            f"{title} triggered {event.symbol} ({event.stop_id}) at {num(event.trigger_price)}:"
            f" sold {num(event.qty)} @ {num(event.price)}, realized {signed(event.realized)}"
        )
    if isinstance(event, GridStateChanged):
        if event.new not in {"stopped", "paused", "running"} or event.old == event.new:
            return None
        if event.new == "running" and event.old in {"", "new", "starting", "created", "preview"}:
            return f"GRID #{event.grid_id} {event.symbol} started"
        verb = {"stopped": "STOPPED", "paused": "paused", "running": "resumed"}[event.new]
        return f"GRID #{event.grid_id} {event.symbol} {verb}" + (f": {event.reason}" if event.reason else "")
    if isinstance(event, StreamDown):
        return f"STREAM DOWN ({event.stream}): {event.reason}"
    if isinstance(event, StreamUp):
        return (
            f"STREAM BACK ({event.stream}) after {event.down_for_s:.0f} s;"
            f" {event.recovered_fills} fill(s) recovered"
        )
    if isinstance(event, AlertRaised):  # a machine's alert, worded as its outbox row is
        return outbox_text(event.kind, "", event.payload)
    if isinstance(event, OrderRejected):
        code = f" (code {event.code})" if event.code is not None else ""
        return f"ORDER REJECTED {event.symbol}{_owner(event.owner)}: {event.reason}{code}"
    if isinstance(event, ErrorEvent):
        if event.severity == "ban":
            return (f"IP BANNED by Binance (418): {event.message}. Nothing is sent until the ban ends; resting "
                    "orders keep working on the exchange and their fills are recovered then.")
        if event.severity == "ban-over":
            return f"BAN OVER: {event.message}"
        if event.severity == "insufficient-balance":
            return f"INSUFFICIENT BALANCE ({event.where}): {event.message}"
        return f"ERROR in {event.where}: {event.message}"
    return None


def render_alerts(events: Iterable[CoreEvent]) -> str | None:
    """Several events (one coalescing window) as one message; None when nothing is worth sending.

    Fills and round trips are summarised (count, per symbol/side volume, profit) and listed up to a
    limit; other events are listed in order.
    """
    fills: list[OrderFilled] = []
    trips: list[GridRoundTrip] = []
    others: list[str] = []
    for event in events:
        if isinstance(event, OrderFilled):
            fills.append(event)
        elif isinstance(event, GridRoundTrip):
            trips.append(event)
        else:
            line = render_event(event)
            if line:
                others.append(line)
    parts: list[str] = []
    if others:
        parts.append("\n".join(others))
    if len(fills) == 1 and len(trips) <= 1:
        parts.append("\n".join(filter(None, [render_event(fills[0])] + [render_event(t) for t in trips])))
    elif fills or trips:
        parts.append(_fills_summary(fills, trips))
    return clip("\n\n".join(parts)) if parts else None


def _fills_summary(fills: list[OrderFilled], trips: list[GridRoundTrip]) -> str:
    lines: list[str] = []
    if fills:
        lines.append(f"{len(fills)} FILLS")
        groups: dict[tuple[str, str], tuple[Decimal, Decimal, int]] = {}
        for fill in fills:
            key = (fill.symbol, fill.side.value)
            qty, notional, count = groups.get(key, (Decimal(0), Decimal(0), 0))
            groups[key] = (qty + fill.qty, notional + fill.qty * fill.price, count + 1)
        for (symbol, side), (qty, notional, count) in sorted(groups.items()):
            avg = (notional / qty) if qty else Decimal(0)
            lines.append(f"  {symbol} {side}: {count} fill(s), qty {num(qty)}, avg {money(avg, 2)}")
        for fill in fills[:MAX_LINES_PER_KIND]:
            lines.append("  " + (render_event(fill) or ""))
        if len(fills) > MAX_LINES_PER_KIND:
            lines.append(f"  ... and {len(fills) - MAX_LINES_PER_KIND} more fills")
    if trips:
        total = sum((t.profit for t in trips), Decimal(0))
        lines.append(f"{len(trips)} ROUND TRIP(S), profit {signed(total)}")
        for trip in trips[:MAX_LINES_PER_KIND]:
            lines.append("  " + (render_event(trip) or ""))
        if len(trips) > MAX_LINES_PER_KIND:
            lines.append(f"  ... and {len(trips) - MAX_LINES_PER_KIND} more round trips")
    return "\n".join(lines)
