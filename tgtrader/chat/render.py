"""Pure functions from core API results to chat text and button specs (alerts: `alerts.py`).

Plain text (sent without parse_mode), so nothing a user or an exchange wrote can break the markup and
no escaping is needed. Long answers are split at line boundaries into messages under Telegram's 4096-character
limit (`split_lines`, applied by the dispatcher); alerts are clipped. No Telegram import:
the console demo prints exactly these strings and shows buttons as numbered choices.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

from tgtrader.chat import trailing
from tgtrader.core.api import (
    BalancesView,
    ChaseResult,
    GridPreviewView,
    GridSummary,
    OrderView,
    PanicPlan,
    PanicReport,
    PnlView,
    SizeResult,
    StatusView,
    StopView,
)
from tgtrader.core.ports import ExchangeHealth
from tgtrader.core.rules import fmt_decimal

MAX_MESSAGE = 4096
CAPTION_LIMIT = 1024  # a photo's caption


# ---------------------------------------------------------------- reply model (transport neutral)


@dataclass(frozen=True, slots=True)
class ButtonSpec:
    """A button before registration: what it does, not yet bound to a chat or a token."""

    label: str
    action: str
    payload: tuple[object, ...] = ()
    ttl_s: float | None = None


@dataclass(frozen=True, slots=True)
class Button:
    label: str
    data: str  # callback data, <= 64 bytes


@dataclass(frozen=True, slots=True)
class Reply:
    text: str
    buttons: tuple[tuple[Button, ...], ...] = ()  # inline keyboard rows
    keyboard: tuple[tuple[str, ...], ...] = ()  # reply keyboard rows (persistent menu)
    photo: bytes | None = None  # PNG; `text` becomes its caption
    edit: bool = False  # for a button press: replace the pressed message instead of sending a new one
    toast: str = ""  # short notice for the button press (answerCallbackQuery)
    extra: tuple["Reply", ...] = field(default=())  # follow-up messages


MAX_PARTS = 8  # a reply longer than this many messages is cut (with a line saying so)


def clip(text: str, limit: int = MAX_MESSAGE) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - 20].rstrip() + "\n... (truncated)"


def split_lines(text: str, limit: int = MAX_MESSAGE, max_parts: int = MAX_PARTS) -> list[str]:
    """`text` as messages of at most `limit` characters, cut between lines (a single longer line is cut
    inside). Beyond `max_parts` messages the rest is dropped and the last message says how many lines."""
    pieces: list[str] = []
    for line in text.split("\n"):
        while len(line) > limit:
            pieces.append(line[:limit])
            line = line[limit:]
        pieces.append(line)
    parts: list[str] = []
    current: list[str] = []
    size = 0
    for index, piece in enumerate(pieces):
        extra = len(piece) + (1 if current else 0)
        if current and size + extra > limit:
            parts.append("\n".join(current))
            current, size, extra = [], 0, len(piece)
            if len(parts) == max_parts:
                note = f"... ({len(pieces) - index} more lines not shown)"
                last = parts[-1]
                while len(last) + len(note) + 1 > limit and "\n" in last:
                    last = last.rsplit("\n", 1)[0]
                parts[-1] = last + "\n" + note
                return parts
        current.append(piece)
        size += extra
    parts.append("\n".join(current))
    return parts


# ---------------------------------------------------------------- numbers


def num(value: Decimal | None) -> str:
    """A price or quantity as the exchange wrote it (no exponent, no trailing zeros)."""
    return "-" if value is None else fmt_decimal(value)


def avg(value: Decimal | None) -> str:
    """A computed average price (cost / quantity): 8 significant digits, not the division's 28."""
    if value is None:
        return "-"
    with localcontext() as ctx:
        ctx.prec = 8
        return fmt_decimal(+value)


def money(value: Decimal | None, places: int = 2) -> str:
    """A quote amount: 2 decimals, more for tiny values so a 0.004 profit doesn't read as 0.00."""
    if value is None:
        return "-"
    if value != 0 and abs(value) < Decimal("0.01"):
        places = 6
    quantized = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    text = f"{quantized:,.{places}f}"
    return "0.00" if text in {"-0.00", "-0.000000"} else text


FIAT_LIKE = frozenset({"USDT", "FDUSD", "USDC", "BUSD", "TUSD", "DAI", "EUR", "TRY", "BRL", "GBP", "USD", "quote"})


def places_for(quote: str) -> int:
    """Decimals for amounts of `quote`: 2 for dollars and other fiat-like assets, 8 for BTC, ETH, BNB... (a
    0.0149 BTC profit must not read as +0.01)."""
    return 2 if quote in FIAT_LIKE else 8


def signed(value: Decimal | None, places: int = 2) -> str:
    if value is None:
        return "-"
    text = money(value, places)
    return text if text.startswith("-") or value == 0 else "+" + text


def pct(value: Decimal | None) -> str:
    return "-" if value is None else f"{value.quantize(Decimal('0.01'), rounding=ROUND_HALF_EVEN)}%"


def when(ts_ms: int) -> str:
    if ts_ms <= 0:
        return "-"
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def age(seconds: float | None) -> str:
    if seconds is None:
        return "no data"
    if seconds < 60:
        return f"{seconds:.1f}s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


# ---------------------------------------------------------------- help and start


def render_help(commands: Sequence[tuple[str, str, str, str]]) -> str:
    """commands: (name, syntax, example, description) rows from the command table."""
    lines = ["Commands (send '/COMMAND help' for details):", ""]
    for _name, syntax, example, description in commands:
        lines.append(f"{syntax}\n" + (f"  {description}\n" if description else "") + f"  e.g. {example}")
    return clip("\n".join(lines))


def render_command_help(syntax: str, example: str, description: str, details: str = "") -> str:
    text = f"{syntax}\n{description}\nExample: {example}"
    return text + (f"\n{details}" if details else "")


def render_start(status: StatusView, balances: BalancesView | None, bot_name: str = "tgtrader") -> str:
    quote = status.quote_asset
    free = "-"
    if balances is not None:
        for bal in balances.balances:
            if bal.asset == quote:
                free = f"{money(bal.free)} {quote} free"
                break
        else:
            free = f"0.00 {quote} free"
    running = [g for g in status.grids if g.state == "running"]
    lines = [
        f"{bot_name}: grid trading on Binance spot.",
        f"Mode: {status.mode.upper()}",
        f"Balance: {free}",
        f"Running grids: {len(running)}" + (" (PAUSED BY PANIC)" if status.paused_by_panic else ""),
    ]
    for grid in running[:10]:
        lines.append("  " + _grid_line(grid))
    lines += ["", "This chat now receives alerts. /help lists every command."]
    return "\n".join(lines)


# ---------------------------------------------------------------- grids


def render_preview(preview: GridPreviewView) -> str:
    spec = preview.spec
    quote = _quote_of(spec.symbol)
    levels = preview.levels
    shown = ", ".join(num(level) for level in levels) if len(levels) <= 12 else (
        ", ".join(num(level) for level in levels[:5]) + f", ... ({len(levels) - 8} more) ..., "
        + ", ".join(num(level) for level in levels[-3:])
    )
    lines = [
        f"Grid preview {spec.symbol} ({spec.spacing})",
        f"Range {num(spec.lower)} - {num(spec.upper)}, {spec.grids} grids, investment {money(spec.investment)}",
        f"Price now {num(preview.price)}",
        f"Levels: {shown}",
        f"Qty per order: {num(preview.qty_per_order)} {_base_of(spec.symbol)}",
        f"Profit per grid after fees: {pct(preview.profit_pct_min)} - {pct(preview.profit_pct_max)}",
        f"Orders: {preview.buy_orders} buy, {preview.sell_orders} sell",
        f"Invest {money(preview.required_quote, places_for(quote))} {quote}"
        + (f" (of which about {money(preview.required_base * preview.price, places_for(quote))} {quote} buys"
           f" {num(preview.required_base)} {_base_of(spec.symbol)} at the start)" if preview.required_base else ""),
    ]
    if spec.stop_loss is not None:
        lines.append(f"Stop-loss: {num(spec.stop_loss)}")
    if spec.take_profit is not None:
        lines.append(f"Take-profit: {num(spec.take_profit)}")
    if spec.stop_loss is not None or spec.take_profit is not None:
        lines.append("On stop: " + ("sell base at market" if spec.sell_on_stop else "keep base"))
    lines += trailing.preview_lines(spec)
    if preview.problems:
        lines.append("")
        lines.append("Cannot start:")
        lines += [f"  - {problem}" for problem in preview.problems]
    else:
        lines.append("")
        lines.append("Press Start to place the orders.")
    return clip("\n".join(lines))


def preview_buttons(preview: GridPreviewView, ttl_s: float) -> list[list[ButtonSpec]]:
    row = [ButtonSpec("Cancel", "grid_cancel", (), ttl_s)]
    if preview.ok:
        row.insert(0, ButtonSpec("Start", "grid_start", (preview.token,), ttl_s))
    return [row]


def _grid_line(grid: GridSummary) -> str:
    p = places_for(_quote_of(grid.symbol))
    return (
        f"#{grid.id} {grid.symbol} {grid.state} {trailing.list_range(grid)} x{grid.grids}{trailing.list_note(grid)}"
        f" | grid profit {signed(grid.grid_profit, p)} | {grid.round_trips} trips"
        f" | realized {signed(grid.realized_profit, p)}"
        f" | unrealized {signed(grid.unrealized_pnl, p)}"
    )


def render_grid_list(grids: Sequence[GridSummary]) -> str:
    if not grids:
        return "No grids yet. Create one with /grid new (send '/grid new help')."
    return "Grids:\n" + "\n".join(_grid_line(g) for g in grids)


def render_grid(grid: GridSummary, title: str = "", now_ms: int | None = None) -> str:
    q = _quote_of(grid.symbol)
    p = places_for(q)
    lines = [
        title or f"Grid #{grid.id} {grid.symbol}",
        f"State: {grid.state}" + (f" ({grid.stop_reason})" if grid.stop_reason else ""),
        f"{trailing.range_line(grid)}, {grid.grids} grids, {grid.spacing}",
        *trailing.show_lines(grid),
        f"Investment {money(grid.investment, p)} {q}, qty per order {num(grid.qty_per_order)}",
        f"Grid profit {signed(grid.grid_profit, p)} {q} from {grid.round_trips} round trips (after fees)",
        f"Realized {signed(grid.realized_profit, p)} {q} (every sale, fees once), fees {money(grid.fees, p)} {q}",
        f"Holding {num(grid.base_held)} at avg {avg(grid.avg_cost)}, unrealized {signed(grid.unrealized_pnl, p)} {q}",
        f"Total PnL {signed(grid.realized_profit + grid.unrealized_pnl, p)} {q} (realized + unrealized)",
        f"Last price {num(grid.last_price)}, open orders {grid.open_orders}",
    ]
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    if grid.annualized_return_pct is not None and now_ms - grid.started_ts_ms >= 86_400_000:
        lines.append(f"Annualized return {pct(grid.annualized_return_pct)}")  # meaningless before a day
    if grid.stop_loss is not None or grid.take_profit is not None:
        lines.append(f"SL {num(grid.stop_loss)} / TP {num(grid.take_profit)}")
    lines.append(f"Started {when(grid.started_ts_ms)}")
    return "\n".join(lines)


def render_grid_stop_question(grid: GridSummary, sell: bool) -> str:
    action = "cancel its orders and SELL its base at market" if sell else "cancel its orders (base is kept)"
    return (
        f"Stop grid #{grid.id} {grid.symbol}? This will {action}.\n"
        f"Holding {num(grid.base_held)}, open orders {grid.open_orders}."
    )


# ---------------------------------------------------------------- account


def render_health(health: ExchangeHealth) -> list[str]:
    lines = [
        f"Streams: market {age(health.market_last_msg_age_s)}, user {age(health.user_last_msg_age_s)},"
        f" reconnects last hour {health.reconnects_last_hour}",
        f"Clock offset {health.clock_offset_ms} ms, API weight used {health.used_weight_1m}/min",
    ]
    if health.banned_until_ms and health.banned_until_ms > time.time() * 1000:
        lines.append(f"IP BANNED until {when(health.banned_until_ms)}")
    return lines


def render_status(status: StatusView) -> str:
    quote = status.quote_asset
    running = sum(1 for g in status.grids if g.state == "running")
    lines = [
        f"Mode: {status.mode.upper()}" + ("  | PAUSED BY PANIC (/resume_all)" if status.paused_by_panic else ""),
        f"Grids: {running} running of {len(status.grids)}, open orders {status.open_orders}",
        f"Total PnL {signed(status.total_pnl)} {quote} = realized {signed(status.realized_total)}"
        f" + unrealized {signed(status.unrealized)}",
        f"Realized today {signed(status.realized_today)} {quote} | grid profit {signed(status.grid_profit)} {quote}",
    ]
    lines += render_health(status.health)
    for grid in status.grids:
        if grid.state != "stopped":
            lines.append("  " + _grid_line(grid))
    return clip("\n".join(lines))


def render_balances(view: BalancesView) -> str:
    rows = [b for b in view.balances if b.total != 0]
    if not rows:
        return "No balances."
    lines = ["Balances (free / locked):"]
    for bal in sorted(rows, key=lambda b: (b.asset != view.quote_asset, b.asset)):
        lines.append(f"{bal.asset}: {num(bal.free)} / {num(bal.locked)}")
    if view.equity_quote is not None:
        lines.append(f"Equity: {money(view.equity_quote)} {view.quote_asset}")
    for key, value in view.extra.items():
        lines.append(f"{key}: {num(value)}")
    return clip("\n".join(lines))


def _reference_price(orders: Sequence[OrderView], last: Decimal | None) -> Decimal | None:
    """The price to measure distances from: the last trade if known, else the middle of the best bid and ask
    among the orders (a grid's buys rest below the price and its sells above)."""
    if last is not None:
        return last
    buys = [o.price for o in orders if o.price is not None and o.side.value == "BUY"]
    sells = [o.price for o in orders if o.price is not None and o.side.value == "SELL"]
    if buys and sells:
        return (max(buys) + min(sells)) / 2
    return max(buys) if buys else (min(sells) if sells else None)


def render_orders(orders: Sequence[OrderView], symbol: str | None = None,
                  prices: dict[str, Decimal] | None = None) -> str:
    """Totals first (per symbol: buys and sells, their quantity and value), then the orders nearest the price
    first: when the list is long, what matters is at the top."""
    if not orders:
        return f"No open orders{' on ' + symbol if symbol else ''}."
    prices = prices or {}
    by_symbol: dict[str, list[OrderView]] = {}
    for order in orders:
        by_symbol.setdefault(order.symbol, []).append(order)
    lines = [f"Open orders ({len(orders)}):"]
    for sym, group in sorted(by_symbol.items()):
        quote, base = _quote_of(sym), _base_of(sym)
        for side in ("BUY", "SELL"):
            sided = [o for o in group if o.side.value == side]
            if not sided:
                continue
            qty = sum((o.qty - o.executed_qty for o in sided), Decimal(0))
            value = sum(((o.qty - o.executed_qty) * (o.price or Decimal(0)) for o in sided), Decimal(0))
            lines.append(f"{sym} {side}: {len(sided)} order(s), {num(qty)} {base}, {money(value)} {quote}")
    for sym, group in sorted(by_symbol.items()):
        ref = _reference_price(group, prices.get(sym))
        lines.append("")
        lines.append(f"{sym}, nearest {'to ' + num(ref) if ref is not None else 'first'}:")

        def distance(order: OrderView, ref: Decimal | None = ref) -> Decimal:
            if ref is None or order.price is None:
                return Decimal(0)
            return abs(order.price - ref)

        for order in sorted(group, key=lambda o: (distance(o), o.side.value)):
            filled = f" filled {num(order.executed_qty)}" if order.executed_qty else ""
            lines.append(
                f"{order.symbol} {order.side.value} {num(order.qty)} @ {num(order.price)} {order.order_type}"
                f" {order.status}{filled} [{order.owner or 'manual'}]"
            )
    return "\n".join(lines)


def render_pnl(view: PnlView) -> str:
    q = view.quote_asset
    lines = [f"Realized profit per day (UTC): total {signed(view.total)} {q} (every sale, fees included)",
             f"All time: realized {signed(view.realized_all_time)} + unrealized {signed(view.unrealized)}"
             f" = total PnL {signed(view.realized_all_time + view.unrealized)} {q}; grid profit"
             f" {signed(view.grid_profit)} {q}"]
    if not view.days:
        lines.append("  nothing realized yet")
    for day, profit, trips in view.days:
        lines.append(f"{day}: {signed(profit)} {q} ({trips} round trips)")
    lines.append(f"Total: {signed(view.total)} {q}")
    return "\n".join(lines)


def render_size(result: SizeResult) -> str:
    if not result.ok:
        return f"No trade ({result.method}): {result.reason}"
    lines = [f"Position size ({result.method}):"]
    if result.fraction is not None:
        lines.append(f"Fraction of capital: {pct(result.fraction * 100)}")
    if result.capital is not None:
        lines.append(f"Capital: {money(result.capital)}")
    if result.position_quote is not None:
        lines.append(f"Position: {money(result.position_quote)}")
    if result.qty is not None:
        lines.append(f"Quantity: {num(result.qty)}" + (f" {_base_of(result.symbol)}" if result.symbol else ""))
    if result.reason:
        lines.append(result.reason)
    return "\n".join(lines)


def render_chase(result: ChaseResult) -> str:
    lines = [
        f"{result.side.value} {result.symbol}: {result.status}",
        f"Filled {num(result.filled_qty)} of {num(result.requested_qty)}"
        + (f" at avg {avg(result.avg_price)}" if result.avg_price is not None else ""),
        f"Maker {num(result.maker_qty)}, taker {num(result.taker_qty)}, fees {money(result.fees)}",
    ]
    if result.message:
        lines.append(result.message)
    return "\n".join(lines)


def render_stop(stop: StopView, title: str = "") -> str:
    return (title + "\n" if title else "") + (
        f"Stop #{stop.id} {stop.symbol} {stop.purpose} ({stop.kind}) at {num(stop.trigger)}"
        f" for {num(stop.qty)}: {stop.state}"
    )


def render_stops(stops: Sequence[StopView]) -> str:
    if not stops:
        return "No stops. Add one with /stop SYMBOL PRICE [soft|hard]."
    return "Stops:\n" + "\n".join(render_stop(s) for s in stops)


# ---------------------------------------------------------------- panic


def _amounts(items: Sequence[tuple[str, Decimal]]) -> str:
    return ", ".join(f"{num(qty)} {asset}" for asset, qty in items)


def render_panic_plan(plan: PanicPlan) -> str:
    whole = plan.scope == "all"
    lines = [
        "PANIC ALL (the whole account) will:" if whole else "PANIC will:",
        f"- stop {plan.grids_to_stop} grid(s) and sell their coins",
        f"- cancel the bot's {plan.orders_to_cancel} open order(s)",
        f"- sell at market: {_amounts(plan.assets_to_sell) or 'nothing'}",
    ]
    if plan.not_bots:
        lines.append(("- ALSO SELL coins the bot never bought: " if whole else "- leave your own coins: ")
                     + _amounts(plan.not_bots))
    if plan.protected:
        lines.append("- never sell (protected): " + _amounts(plan.protected))
    if plan.foreign_orders:
        lines.append(f"- leave the {plan.foreign_orders} order(s) you placed yourself on the exchange")
    lines += ["", f"Press CONFIRM PANIC within {plan.valid_for_s} s to run it."]
    if not whole and plan.not_bots:
        lines.append("To sell the whole account instead: /panic all")
    return "\n".join(lines)


def panic_buttons(plan: PanicPlan) -> list[list[ButtonSpec]]:
    return [
        [ButtonSpec("CONFIRM PANIC", "panic", (plan.token,), float(plan.valid_for_s)),
         ButtonSpec("Cancel", "panic_abort", (), float(plan.valid_for_s))]
    ]


def render_panic_report(report: PanicReport) -> str:
    lines = [f"PANIC done in {report.elapsed_s:.1f} s: {len(report.succeeded)} ok, {len(report.failed)} failed."]
    lines += [f"OK {item}" for item in report.succeeded]
    lines += [f"FAILED {item}" for item in report.failed]
    lines.append("Grids are stopped; start new ones with /grid new when ready.")
    return clip("\n".join(lines))


def render_resume_question(paused: Sequence[GridSummary]) -> str:
    return ("Resume the grids /panic paused? Each places its orders again at today's prices. Paused now:\n"
            + "\n".join(_grid_line(g) for g in paused))


def render_resumed(grids: Sequence[GridSummary]) -> str:
    if not grids:
        return "Nothing to resume."
    return clip(f"Resumed {len(grids)} grid(s):\n" + "\n".join(_grid_line(g) for g in grids))


# ---------------------------------------------------------------- symbols


def _quote_of(symbol: str) -> str:
    for quote in ("USDT", "FDUSD", "USDC", "BUSD", "TUSD", "BTC", "ETH", "BNB", "EUR", "TRY"):
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return quote
    return "quote"


def _base_of(symbol: str) -> str:
    quote = _quote_of(symbol)
    return symbol[: -len(quote)] if quote != "quote" else "base"
