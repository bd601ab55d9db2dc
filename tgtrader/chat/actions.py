"""Transport-neutral command and button handlers: parsed request in, `Reply` out.

Each handler calls the core through `TradingApi` and renders the result; it decides nothing about
trading. Telegram (`tgtrader/telegram/handlers.py`) and the console demo (`tgtrader/console.py`) both
reach these through `Dispatcher`, so the two front ends answer with the same words.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import TYPE_CHECKING

from tgtrader.chat import parse as p
from tgtrader.chat import render as r
from tgtrader.chat.chart import render_chart_png
from tgtrader.chat.pnl_chart import render_pnl_png
from tgtrader.chat.render import ButtonSpec, Reply
from tgtrader.types import Side

if TYPE_CHECKING:
    from tgtrader.chat.dispatch import Dispatcher

Handler = Callable[["Dispatcher", int, p.Request], Awaitable[Reply]]
ButtonAction = Callable[["Dispatcher", int, tuple[object, ...]], Awaitable[Reply]]

MAIN_KEYBOARD: tuple[tuple[str, ...], ...] = (
    ("/status", "/grid list", "/balance"),
    ("/orders", "/pnl", "/stops"),
    ("/panic", "/help"),
)


async def start(d: "Dispatcher", chat_id: int, req: p.Request) -> Reply:
    await d.subscribe(chat_id)
    status = await d.api.status()
    try:
        balances = await d.api.balances()
    except Exception:  # /start must still greet when the exchange is unreachable
        balances = None
    return Reply(r.render_start(status, balances, d.bot_name), keyboard=MAIN_KEYBOARD)


async def grid(d: "Dispatcher", chat_id: int, req: p.Request) -> Reply:
    api = d.api
    if isinstance(req, p.GridNew):
        preview = await api.preview_grid(req.spec)
        buttons = d.bind(chat_id, r.preview_buttons(preview, d.preview_ttl_s))
        return Reply(r.render_preview(preview), buttons=buttons)
    if isinstance(req, p.GridList):
        return Reply(r.render_grid_list(await api.list_grids()))
    if isinstance(req, p.GridShow):
        return Reply(r.render_grid(await api.grid(req.grid_id)))
    if isinstance(req, p.GridPause):
        return Reply(r.render_grid(await api.pause_grid(req.grid_id), f"Grid #{req.grid_id} paused"))
    if isinstance(req, p.GridResume):
        return Reply(r.render_grid(await api.resume_grid(req.grid_id), f"Grid #{req.grid_id} resumed"))
    if isinstance(req, p.GridStop):
        summary = await api.grid(req.grid_id)
        if summary.state == "stopped":
            return Reply(f"Grid #{summary.id} is already stopped.")
        specs = [[
            ButtonSpec(f"Stop grid #{summary.id}" + (" and sell" if req.sell else ""), "grid_stop",
                       (summary.id, req.sell), d.confirm_ttl_s),
            ButtonSpec("Keep running", "keep", (), d.confirm_ttl_s),
        ]]
        return Reply(r.render_grid_stop_question(summary, req.sell), buttons=d.bind(chat_id, specs))
    raise TypeError(f"grid handler got {req!r}")


async def status(d: "Dispatcher", chat_id: int, req: p.Request) -> Reply:
    return Reply(r.render_status(await d.api.status()))


async def balance(d: "Dispatcher", chat_id: int, req: p.Request) -> Reply:
    return Reply(r.render_balances(await d.api.balances()))


async def orders(d: "Dispatcher", chat_id: int, req: p.Request) -> Reply:
    assert isinstance(req, p.Orders)
    open_orders = await d.api.open_orders(req.symbol)
    prices: dict[str, Decimal] = {}
    if open_orders:
        try:  # the grids know the last price of their symbols: orders are listed nearest to it first
            prices = {g.symbol: g.last_price for g in await d.api.list_grids() if g.last_price is not None}
        except Exception:  # the list still renders, measured from the middle of the book instead
            prices = {}
    return Reply(r.render_orders(open_orders, req.symbol, prices))


async def pnl(d: "Dispatcher", chat_id: int, req: p.Request) -> Reply:
    assert isinstance(req, p.Pnl)
    view = await d.api.pnl(req.days)
    if req.chart:
        png = await asyncio.to_thread(render_pnl_png, view)
        return Reply(f"Realized PnL per day, last {req.days} days: total {r.signed(view.total)} {view.quote_asset}",
                     photo=png)
    return Reply(r.render_pnl(view))


async def size(d: "Dispatcher", chat_id: int, req: p.Request) -> Reply:
    if isinstance(req, p.SizeKelly):
        return Reply(r.render_size(await d.api.size_kelly(req.win_rate, req.payoff)))
    assert isinstance(req, p.SizeFixed)
    return Reply(r.render_size(await d.api.size_fixed(req.symbol, req.entry, req.stop, req.risk)))


async def trade(d: "Dispatcher", chat_id: int, req: p.Request) -> Reply:
    assert isinstance(req, p.Trade)
    if d.confirm_trade_above:
        value = req.qty * (req.limit_price or await d.api.last_price(req.symbol))
        if value > d.confirm_trade_above:  # a mistyped quantity must not trade at once
            label = f"{req.side.value} {r.num(req.qty)} {req.symbol}"
            specs = [[ButtonSpec(f"Confirm {label}", "trade", (req.symbol, req.side.value, str(req.qty),
                                                                 str(req.limit_price or "")), d.confirm_ttl_s),
                      ButtonSpec("Cancel", "keep", (), d.confirm_ttl_s)]]
            return Reply(f"{label} is worth about {r.num(value.quantize(Decimal('0.01')))} (above the confirmation"
                         f" threshold {r.num(d.confirm_trade_above)}). Confirm?", buttons=d.bind(chat_id, specs))
    return await _run_trade(d, chat_id, req)


async def _run_trade(d: "Dispatcher", chat_id: int, req: p.Trade) -> Reply:
    limit = f", limit {r.num(req.limit_price)}" if req.limit_price is not None else ""
    await d.say(chat_id, f"Working: {req.side.value} {r.num(req.qty)} {req.symbol} maker-first{limit}...")
    return Reply(r.render_chase(await d.api.chase(req.symbol, req.side, req.qty, req.limit_price)))


async def stop(d: "Dispatcher", chat_id: int, req: p.Request) -> Reply:
    if isinstance(req, p.StopCancel):
        return Reply(r.render_stop(await d.api.cancel_stop(req.stop_id), "Stop cancelled:"))
    assert isinstance(req, p.StopAdd)
    return Reply(r.render_stop(await d.api.add_stop(req.symbol, req.price, req.kind), "Stop armed:"))


async def stops(d: "Dispatcher", chat_id: int, req: p.Request) -> Reply:
    return Reply(r.render_stops(await d.api.list_stops()))


async def panic(d: "Dispatcher", chat_id: int, req: p.Request) -> Reply:
    assert isinstance(req, p.Panic)
    plan = await d.api.panic_plan(req.scope)
    return Reply(r.render_panic_plan(plan), buttons=d.bind(chat_id, r.panic_buttons(plan)))


async def resume_all(d: "Dispatcher", chat_id: int, req: p.Request) -> Reply:
    """Asks first: resuming re-places every paused grid's orders at today's prices."""
    paused = [g for g in await d.api.list_grids() if g.state == "paused"]
    if not paused:
        return Reply(r.render_resumed([]))
    specs = [[ButtonSpec(f"Resume {len(paused)} grid(s)", "resume_all", (), d.confirm_ttl_s),
              ButtonSpec("Keep paused", "keep", (), d.confirm_ttl_s)]]
    return Reply(r.render_resume_question(paused), buttons=d.bind(chat_id, specs))


async def chart(d: "Dispatcher", chat_id: int, req: p.Request) -> Reply:
    assert isinstance(req, p.Chart)
    data = await d.api.chart_data(req.grid_id)
    png = await asyncio.to_thread(render_chart_png, data)
    caption = f"Grid #{data.grid_id} {data.symbol}: {len(data.levels)} levels, {len(data.fills)} fills"
    return Reply(caption, photo=png)


# ---------------------------------------------------------------- buttons


async def on_grid_start(d: "Dispatcher", chat_id: int, payload: tuple[object, ...]) -> Reply:
    summary = await d.api.start_grid(str(payload[0]))
    return Reply(r.render_grid(summary, f"Grid #{summary.id} {summary.symbol} started"), edit=True, toast="Started")


async def on_grid_cancel(d: "Dispatcher", chat_id: int, payload: tuple[object, ...]) -> Reply:
    return Reply("Grid preview cancelled; nothing was placed.", edit=True, toast="Cancelled")


async def on_grid_stop(d: "Dispatcher", chat_id: int, payload: tuple[object, ...]) -> Reply:
    grid_id, sell = int(payload[0]), bool(payload[1])  # type: ignore[call-overload]
    summary = await d.api.stop_grid(grid_id, sell)
    return Reply(r.render_grid(summary, f"Grid #{grid_id} stopped"), edit=True, toast="Stopped")


async def on_trade(d: "Dispatcher", chat_id: int, payload: tuple[object, ...]) -> Reply:
    symbol, side, qty, limit = (str(x) for x in payload)
    req = p.Trade(Side(side), symbol, Decimal(qty), Decimal(limit) if limit else None)
    return await _run_trade(d, chat_id, req)


async def on_keep(d: "Dispatcher", chat_id: int, payload: tuple[object, ...]) -> Reply:
    return Reply("OK, nothing changed.", edit=True, toast="Nothing changed")


async def on_panic(d: "Dispatcher", chat_id: int, payload: tuple[object, ...]) -> Reply:
    report = await d.api.panic(str(payload[0]))
    return Reply(r.render_panic_report(report), edit=True, toast="Panic executed")


async def on_resume_all(d: "Dispatcher", chat_id: int, payload: tuple[object, ...]) -> Reply:
    return Reply(r.render_resumed(await d.api.resume_all()), edit=True, toast="Resumed")


async def on_panic_abort(d: "Dispatcher", chat_id: int, payload: tuple[object, ...]) -> Reply:
    return Reply("Panic cancelled; nothing was done.", edit=True, toast="Cancelled")


BUTTON_ACTIONS: dict[str, ButtonAction] = {
    "grid_start": on_grid_start,
    "grid_cancel": on_grid_cancel,
    "grid_stop": on_grid_stop,
    "keep": on_keep,
    "panic": on_panic,
    "panic_abort": on_panic_abort,
    "resume_all": on_resume_all,
    "trade": on_trade,
}
