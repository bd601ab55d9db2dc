"""Guided `/grid` (issue 17): symbol -> a suggested setup -> investment -> the usual preview -> Start.

Why: a trader should not have to remember `/grid new SYMBOL LOWER UPPER GRIDS INVESTMENT` nor guess its
numbers. `/grid` alone (or `/grid SYMBOL`) walks through buttons; the setups are backtested on the symbol's
recent 1m candles (backtest/suggest.py) and each shows what it would have done. From `/grid` to a running grid:
4 taps (symbol, setup, 25/50/100 %, Start); a symbol or an amount may be typed instead of tapped.

Every button is bound like any other (dispatch.bind: this chat, the person who asked, single use per message,
expiring); a flow lives GUIDED_TTL_S and is replaced by a newer `/grid` in the same chat. The Start button is
the preview's own (the core's preview token), so starting follows exactly the rules of `/grid new`.
Without market data (the console demo) `/grid` alone lists the grids, as before.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, replace
from decimal import ROUND_DOWN, Decimal
from typing import TYPE_CHECKING, Protocol

from tgtrader.backtest.candles import Candles
from tgtrader.backtest.suggest import Suggestion, Suggestions, suggest
from tgtrader.backtest.vector import BacktestInputError
from tgtrader.chat import parse as p
from tgtrader.chat import render as r
from tgtrader.chat.render import ButtonSpec, Reply
from tgtrader.core.api import ApiError
from tgtrader.core.rules import SymbolRules
from tgtrader.errors import TgTraderError
from tgtrader.fees import FeeAsset

if TYPE_CHECKING:
    from tgtrader.chat.dispatch import Dispatcher

GUIDED_TTL_S = 600.0
DAYS = 14.0  # candles backtested (the issue: the last 7-30 days)
MAX_SYMBOL_BUTTONS = 6
DEFAULT_SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT")
SHARES = (25, 50, 100)
CIRCLED = "①②③④⑤"
PAST = "Past results do not predict the future."


class MarketData(Protocol):
    """What the flow needs besides the trading API: recent candles, the symbol's rules, the account's fee."""

    async def candles(self, symbol: str, days: float) -> Candles: ...
    async def rules(self, symbol: str) -> SymbolRules | None: ...
    async def fee(self) -> tuple[float, FeeAsset]: ...


@dataclass
class Flow:
    id: str
    chat_id: int
    user_id: int | None
    expires_at: float
    step: str = "symbol"  # symbol | setup | investment | preview
    symbol: str = ""
    found: Suggestions | None = None
    chosen: Suggestion | None = None
    quote: str = "USDT"
    free: Decimal = Decimal(0)


class Guided:
    """The flows of every chat (one per chat) and the recent symbols offered first."""

    def __init__(self, market: MarketData | None, days: float = DAYS, ttl_s: float = GUIDED_TTL_S) -> None:
        self.market = market
        self.days = days
        self.ttl_s = ttl_s
        self.flows: dict[int, Flow] = {}
        self.recent: dict[int, list[str]] = {}

    def wants(self, name: str, args: list[str]) -> bool:
        """`/grid` alone or `/grid SYMBOL` starts the guided flow (when there is market data)."""
        if self.market is None or name != "grid":
            return False
        return not args or (len(args) == 1 and p.looks_like_symbol(args[0]) and not args[0].isdigit()
                            and args[0].lower() not in {"new", "list", "ls", "show", "pause", "resume", "stop", "help"})

    def awaiting(self, chat_id: int, user_id: int | None, now: float) -> Flow | None:
        """The chat's flow when it waits for typed text (a symbol, an amount) from this person."""
        flow = self.flows.get(chat_id)
        if flow is None or flow.step not in ("symbol", "investment") or now > flow.expires_at + self.ttl_s:
            return None  # long gone: the text is an ordinary message again
        if flow.user_id is not None and flow.user_id != user_id:
            return None
        return flow


# ---------------------------------------------------------------- entry points (from the dispatcher)


async def begin(d: Dispatcher, chat_id: int, user_id: int | None, args: list[str]) -> Reply:
    g = d.guided
    flow = Flow(secrets.token_hex(4), chat_id, user_id, d.clock() + g.ttl_s)
    g.flows[chat_id] = flow
    if args:
        return await _pick_symbol(d, flow, args[0].upper(), edit=False)
    return await _ask_symbol(d, flow)


async def on_text(d: Dispatcher, flow: Flow, text: str) -> Reply:
    now = d.clock()
    if now > flow.expires_at:
        return _end(d, flow, "This /grid flow expired; nothing was done. Send /grid to start again.", edit=False)
    flow.expires_at = now + d.guided.ttl_s
    word = text.strip().split()[0] if text.strip() else ""
    if flow.step == "symbol":
        return await _pick_symbol(d, flow, word.upper(), edit=False)
    return await _typed_amount(d, flow, text.strip())


# ---------------------------------------------------------------- steps


async def _ask_symbol(d: Dispatcher, flow: Flow, note: str = "", edit: bool = False) -> Reply:
    flow.step = "symbol"
    choices = await _symbol_choices(d, flow.chat_id)
    rows = [[_button(d, flow, s, "guided_symbol", s) for s in choices[i:i + 3]] for i in range(0, len(choices), 3)]
    rows.append([_button(d, flow, "Cancel", "guided_cancel")])
    text = (f"{note}\n" if note else "") + "New grid, step 1 of 3: which symbol? Tap one, or type it (e.g. BTCUSDT)."
    return Reply(text, buttons=d.bind(flow.chat_id, rows), edit=edit)


async def _pick_symbol(d: Dispatcher, flow: Flow, symbol: str, edit: bool) -> Reply:
    assert d.guided.market is not None
    known = await d.api.known_symbols()
    if not p.looks_like_symbol(symbol) or symbol not in known:
        return await _ask_symbol(d, flow, f"{symbol[:20] or 'That'} is not a symbol I know.", edit=edit)
    flow.symbol = symbol
    balances = await d.api.balances()
    flow.quote = balances.quote_asset if symbol.endswith(balances.quote_asset) else _quote_guess(symbol, balances)
    flow.free = next((b.free for b in balances.balances if b.asset == flow.quote), Decimal(0))
    market = d.guided.market
    await d.say(flow.chat_id, f"Backtesting grid setups on the last {d.guided.days:g} days of {symbol} 1m candles...")
    try:
        candles = await market.candles(symbol, d.guided.days)
        rules = await market.rules(symbol)
        fee, fee_asset = await market.fee()
        reference = flow.free if flow.free > 0 else Decimal(1000)
        flow.found = await asyncio.to_thread(suggest, candles, symbol, reference, fee=fee, fee_asset=fee_asset,
                                             rules=rules)
    except BacktestInputError as exc:
        return _end(d, flow, f"Cannot suggest a grid for {symbol}: {exc}. Use /grid new {symbol} LOWER UPPER GRIDS "
                              "INVESTMENT.", edit)
    except TgTraderError as exc:
        return _end(d, flow, f"Cannot read {symbol}'s recent candles ({exc}); try again later, or use /grid new.", edit)
    recent = d.guided.recent.setdefault(flow.chat_id, [])
    if symbol in recent:
        recent.remove(symbol)
    recent.insert(0, symbol)
    return _show_setups(d, flow, edit)


def _show_setups(d: Dispatcher, flow: Flow, edit: bool) -> Reply:
    flow.step = "setup"
    found = flow.found
    assert found is not None
    back = [_button(d, flow, "Back", "guided_back"), _button(d, flow, "Cancel", "guided_cancel")]
    if not found.items:
        text = (f"No grid on {flow.symbol} would have earned more than its fees over the last {found.days:.0f} days "
                f"(daily volatility {found.volatility_pct:.2f} %). Pick another symbol, or use /grid new.")
        return Reply(text, buttons=d.bind(flow.chat_id, [back]), edit=edit)
    reference = found.items[0].spec.investment
    lines = [f"New grid, step 2 of 3: {flow.symbol} setups, backtested on the last {found.days:.0f} days "
             f"({found.candles:,} 1m candles, {found.tried} settings, fee {found.fee * 100:g} %), "
             f"per {r.money(reference, r.places_for(flow.quote))} {flow.quote}:"]
    lines += [f"{CIRCLED[i]} {setup_line(s, flow.quote)}" for i, s in enumerate(found.items)]
    lines.append("Ranked by return / max drawdown. " + PAST)
    rows = [[_button(d, flow, f"{CIRCLED[i]} {r.num(s.spec.lower)}-{r.num(s.spec.upper)} x{s.spec.grids}",
                     "guided_setup", i)] for i, s in enumerate(found.items)]
    rows.append(back)
    return Reply("\n".join(lines), buttons=d.bind(flow.chat_id, rows), edit=edit)


def setup_line(s: Suggestion, quote: str) -> str:
    """One line: the setup, then what it would have done over the period."""
    places = r.places_for(quote)
    spacing = "geo" if s.spec.spacing == "geometric" else "arith"
    return (f"{r.num(s.spec.lower)}-{r.num(s.spec.upper)} x{s.spec.grids} {spacing}: "
            f"{s.round_trips} round trips, grid profit {r.signed(_dec(s.grid_profit), places)}, "
            f"total PnL {r.signed(_dec(s.total_pnl), places)}, max drawdown {s.max_drawdown_pct:.1f} %, "
            f"in range {s.time_in_range_pct:.0f} % of the time")


def _ask_investment(d: Dispatcher, flow: Flow, note: str = "", edit: bool = True) -> Reply:
    flow.step = "investment"
    assert flow.chosen is not None
    places = r.places_for(flow.quote)
    shares = [(pct, _share(flow.free, pct, places)) for pct in SHARES]
    row = [_button(d, flow, f"{pct} % ({r.money(amount, places)})", "guided_amount", str(amount))
           for pct, amount in shares if amount > 0]
    rows = [row] if row else []
    rows.append([_button(d, flow, "Back", "guided_back"), _button(d, flow, "Cancel", "guided_cancel")])
    text = ((f"{note}\n" if note else "") + f"New grid, step 3 of 3: how much {flow.quote} to invest in "
            f"{flow.symbol} {setup_line(flow.chosen, flow.quote).split(':')[0]}? Free: "
            f"{r.money(flow.free, places)} {flow.quote}. Tap a share, or type an amount.")
    return Reply(text, buttons=d.bind(flow.chat_id, rows), edit=edit)


async def _typed_amount(d: Dispatcher, flow: Flow, text: str) -> Reply:
    word = text.split()[0] if text else ""
    try:
        if word.endswith("%"):
            share = p.parse_number(word[:-1], "share", "a number or N%")
            if share > 100:
                raise p.ParseError("a share of at most 100 %")
            amount = _share(flow.free, share, r.places_for(flow.quote))
        else:
            amount = p.parse_number(word, "investment", "a number or N%")
    except p.ParseError as exc:
        return _ask_investment(d, flow, f"Not an amount ({exc.answer().splitlines()[0]}).", edit=False)
    return await _preview(d, flow, amount, edit=False)


async def _preview(d: Dispatcher, flow: Flow, amount: Decimal, edit: bool) -> Reply:
    assert flow.chosen is not None and flow.found is not None
    flow.step = "preview"
    spec = replace(flow.chosen.spec, investment=amount)
    preview = await d.api.preview_grid(spec)
    scale = float(amount / flow.chosen.spec.investment) if flow.chosen.spec.investment else 1.0
    s = flow.chosen
    scaled = Suggestion(s.spec, s.score, s.round_trips, s.grid_profit * scale, s.total_pnl * scale, s.return_pct,
                        s.max_drawdown_pct, s.time_in_range_pct, s.profit_per_grid_pct)
    text = (r.render_preview(preview) + f"\n\nOver the last {flow.found.days:.0f} days this grid would have made: "
            + setup_line(scaled, flow.quote).split(": ", 1)[1] + ". " + PAST)
    rows = r.preview_buttons(preview, min(d.preview_ttl_s, _left(d, flow)))
    rows.append([_button(d, flow, "Back", "guided_back")])
    return Reply(r.clip(text), buttons=d.bind(flow.chat_id, rows), edit=edit)


def _end(d: Dispatcher, flow: Flow, text: str, edit: bool) -> Reply:
    d.guided.flows.pop(flow.chat_id, None)
    return Reply(text, edit=edit)


# ---------------------------------------------------------------- buttons


async def on_symbol(d: Dispatcher, chat_id: int, payload: tuple[object, ...]) -> Reply:
    flow = _current(d, chat_id, payload)
    if isinstance(flow, Reply):
        return flow
    return await _pick_symbol(d, flow, str(payload[1]), edit=True)


async def on_setup(d: Dispatcher, chat_id: int, payload: tuple[object, ...]) -> Reply:
    flow = _current(d, chat_id, payload)
    if isinstance(flow, Reply):
        return flow
    assert flow.found is not None
    flow.chosen = flow.found.items[int(payload[1])]  # type: ignore[call-overload]
    return _ask_investment(d, flow)


async def on_amount(d: Dispatcher, chat_id: int, payload: tuple[object, ...]) -> Reply:
    flow = _current(d, chat_id, payload)
    if isinstance(flow, Reply):
        return flow
    return await _preview(d, flow, Decimal(str(payload[1])), edit=True)


async def on_back(d: Dispatcher, chat_id: int, payload: tuple[object, ...]) -> Reply:
    flow = _current(d, chat_id, payload)
    if isinstance(flow, Reply):
        return flow
    if flow.step == "preview":
        return _ask_investment(d, flow)
    if flow.step == "investment":
        return _show_setups(d, flow, edit=True)
    return await _ask_symbol(d, flow, edit=True)


async def on_cancel(d: Dispatcher, chat_id: int, payload: tuple[object, ...]) -> Reply:
    d.guided.flows.pop(chat_id, None)
    return Reply("New grid cancelled; nothing was placed.", edit=True, toast="Cancelled")


BUTTON_ACTIONS = {
    "guided_symbol": on_symbol,
    "guided_setup": on_setup,
    "guided_amount": on_amount,
    "guided_back": on_back,
    "guided_cancel": on_cancel,
}


# ---------------------------------------------------------------- helpers


def _button(d: Dispatcher, flow: Flow, label: str, action: str, *args: object) -> ButtonSpec:
    return ButtonSpec(label, action, (flow.id, *args), _left(d, flow))


def _left(d: Dispatcher, flow: Flow) -> float:
    return max(1.0, flow.expires_at - d.clock())


def _current(d: Dispatcher, chat_id: int, payload: tuple[object, ...]) -> Flow | Reply:
    """The flow a button belongs to, if it is still this chat's live flow (then its life is extended)."""
    flow = d.guided.flows.get(chat_id)
    if flow is None or flow.id != payload[0]:
        return Reply("This /grid flow has ended; nothing was done. Send /grid to start again.", edit=True,
                     toast="Flow ended")
    now = d.clock()
    if now > flow.expires_at:
        d.guided.flows.pop(chat_id, None)
        return Reply("This /grid flow expired; nothing was done. Send /grid to start again.", edit=True,
                     toast="Expired")
    flow.expires_at = now + d.guided.ttl_s
    return flow


async def _symbol_choices(d: Dispatcher, chat_id: int) -> list[str]:
    """Recent picks, symbols of the trader's grids, then what the balances hold, then the usual majors."""
    known = await d.api.known_symbols()
    out: list[str] = list(d.guided.recent.get(chat_id, []))
    try:
        grids = await d.api.list_grids()
        out += [g.symbol for g in sorted(grids, key=lambda g: (g.state != "running", -g.id))]
        balances = await d.api.balances()
        held = sorted((b for b in balances.balances if b.asset != balances.quote_asset and b.total > 0),
                      key=lambda b: -b.total)
        out += [b.asset + balances.quote_asset for b in held]
    except (ApiError, TgTraderError):
        pass
    out += list(DEFAULT_SYMBOLS)
    seen: list[str] = []
    for s in out:
        if s in known and s not in seen:
            seen.append(s)
    return seen[:MAX_SYMBOL_BUTTONS]


def _quote_guess(symbol: str, balances: object) -> str:
    for quote in ("USDT", "FDUSD", "USDC", "BTC", "ETH", "BNB", "EUR", "TRY"):
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return quote
    return getattr(balances, "quote_asset", "USDT")


def _share(free: Decimal, pct: int | Decimal, places: int) -> Decimal:
    return (free * Decimal(pct) / 100).quantize(Decimal(1).scaleb(-places), rounding=ROUND_DOWN)


def _dec(x: float) -> Decimal:
    return Decimal(repr(float(x)))
