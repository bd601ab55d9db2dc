"""Pure parsing of chat command text into typed requests.

No I/O and no Telegram import: the Telegram handlers and the console demo both call `parse()`.
Anything malformed becomes a `ParseError` carrying a one-line reason and the correct syntax, so
nothing malformed ever reaches the core. `parse()` raises nothing else, whatever the text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from tgtrader.core.api import GridSpec
from tgtrader.core.grid.plan import MAX_GRIDS, MIN_GRIDS
from tgtrader.core.rules import fmt_decimal
from tgtrader.types import Side

MAX_ID = 10**12
MAX_DAYS = 3650
_NUMBER_RE = re.compile(r"^(?:\d{1,15}(?:\.\d{0,12})?|\.\d{1,12})$")  # bounded: Decimal math stays exact
_INT_RE = re.compile(r"^#?\d{1,13}$")
_SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,20}$")
_COMMAND_RE = re.compile(r"^/([A-Za-z0-9_]{1,32})(?:@[A-Za-z0-9_]{1,64})?$")


class ParseError(Exception):
    """A command could not be understood. `reason` is one line; `syntax` is the correct usage."""

    def __init__(self, reason: str, syntax: str = "") -> None:
        self.reason = reason
        self.syntax = syntax
        super().__init__(reason)

    def answer(self) -> str:
        return f"{self.reason}\nUsage: {self.syntax}" if self.syntax else self.reason


# ---------------------------------------------------------------- requests


@dataclass(frozen=True, slots=True)
class Start:
    pass


@dataclass(frozen=True, slots=True)
class Help:
    command: str | None = None  # None: every command


@dataclass(frozen=True, slots=True)
class GridNew:
    spec: GridSpec


@dataclass(frozen=True, slots=True)
class GridList:
    pass


@dataclass(frozen=True, slots=True)
class GridShow:
    grid_id: int


@dataclass(frozen=True, slots=True)
class GridPause:
    grid_id: int


@dataclass(frozen=True, slots=True)
class GridResume:
    grid_id: int


@dataclass(frozen=True, slots=True)
class GridStop:
    grid_id: int
    sell: bool = False


@dataclass(frozen=True, slots=True)
class Status:
    pass


@dataclass(frozen=True, slots=True)
class Balances:
    pass


@dataclass(frozen=True, slots=True)
class Orders:
    symbol: str | None = None


@dataclass(frozen=True, slots=True)
class Pnl:
    days: int = 7
    chart: bool = False  # daily realized PnL as bars (PNG)


@dataclass(frozen=True, slots=True)
class SizeFixed:
    symbol: str
    entry: Decimal
    stop: Decimal
    risk: Decimal | None = None  # fraction of capital: "1%" or "1" -> 0.01 (the core's risk_pct convention)


@dataclass(frozen=True, slots=True)
class SizeKelly:
    win_rate: Decimal  # 0..1
    payoff: Decimal


@dataclass(frozen=True, slots=True)
class Trade:
    side: Side
    symbol: str
    qty: Decimal
    limit_price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class StopAdd:
    symbol: str
    price: Decimal
    kind: str = "soft"


@dataclass(frozen=True, slots=True)
class StopList:
    pass


@dataclass(frozen=True, slots=True)
class StopCancel:
    stop_id: int


@dataclass(frozen=True, slots=True)
class Panic:
    scope: str = "own"  # "all": the whole account but the protected assets


@dataclass(frozen=True, slots=True)
class ResumeAll:
    pass


@dataclass(frozen=True, slots=True)
class Chart:
    grid_id: int


Request = (
    Start | Help | GridNew | GridList | GridShow | GridPause | GridResume | GridStop | Status | Balances | Orders
    | Pnl | SizeFixed | SizeKelly | Trade | StopAdd | StopList | StopCancel | Panic | ResumeAll | Chart
)


@dataclass(frozen=True, slots=True)
class Context:
    """What the parser may check besides syntax. Empty sets/maps mean 'do not check'."""

    known_symbols: frozenset[str] = frozenset()
    tick_sizes: Mapping[str, Decimal] | None = None  # symbol -> tickSize (only for symbols in the text)


# ---------------------------------------------------------------- syntax (single source for /help too)

SYNTAX: dict[str, str] = {
    "start": "/start",
    "help": "/help [COMMAND]",
    "grid": "/grid new|list|show|pause|resume|stop ...",
    "grid new": "/grid new SYMBOL LOWER UPPER GRIDS INVESTMENT [geo|arith] [sl=PRICE] [tp=PRICE] [sell_on_stop]"
                " [accept_loss] [trail_up=PRICE] [trail_down=PRICE]",
    "grid list": "/grid list",
    "grid show": "/grid show ID",
    "grid pause": "/grid pause ID",
    "grid resume": "/grid resume ID",
    "grid stop": "/grid stop ID [sell]",
    "status": "/status",
    "balance": "/balance",
    "orders": "/orders [SYMBOL]",
    "pnl": "/pnl [chart] [DAYS]",
    "size": "/size SYMBOL ENTRY STOP [RISK%]  or  /size kelly WINRATE PAYOFF",
    "size fixed": "/size SYMBOL ENTRY STOP [RISK%]",
    "size kelly": "/size kelly WINRATE PAYOFF",
    "buy": "/buy SYMBOL QTY [max=PRICE]",
    "sell": "/sell SYMBOL QTY [min=PRICE]",
    "stop": "/stop SYMBOL PRICE [soft|hard|tp]  or  /stop cancel ID",
    "stop cancel": "/stop cancel ID",
    "stops": "/stops",
    "panic": "/panic [all]",
    "resume_all": "/resume_all",
    "chart": "/chart ID",
}


# ---------------------------------------------------------------- helpers


def split_command(text: str) -> tuple[str, list[str]]:
    """'/grid@bot new BTCUSDT ...' -> ('grid', ['new', 'BTCUSDT', ...]). Raises ParseError."""
    if not isinstance(text, str):
        raise ParseError("send a command such as /help")
    words = text.split()
    if not words:
        raise ParseError("empty message; send /help for the list of commands")
    match = _COMMAND_RE.match(words[0])
    if not match:
        raise ParseError("not a command; send /help for the list of commands")
    return match.group(1).lower(), words[1:]


def _show(token: str) -> str:
    """A user token quoted for an error line (shortened, printable)."""
    token = "".join(ch if ch.isprintable() else "?" for ch in token)
    return repr(token if len(token) <= 24 else token[:21] + "...")


def parse_number(token: str, what: str, syntax: str, *, allow_zero: bool = False) -> Decimal:
    """A positive plain decimal ('65000', '0.5'); no signs, exponents, NaN or Infinity."""
    cleaned = token.replace(",", "") if re.fullmatch(r"\d{1,3}(,\d{3})+(\.\d+)?", token) else token
    if re.fullmatch(r"\d{16,}(\.\d*)?|\d*\.\d{13,}", cleaned):
        raise ParseError(f"{what} has too many digits: {_show(token)}", syntax)
    if not _NUMBER_RE.match(cleaned):
        low = token.lower().lstrip("+-")
        if low in {"nan", "snan", "inf", "infinity"}:
            raise ParseError(f"{what} must be a finite number, not {_show(token)}", syntax)
        if token.startswith("-"):
            raise ParseError(f"{what} must be positive, got {_show(token)}", syntax)
        raise ParseError(f"{what} must be a number, got {_show(token)}", syntax)
    try:
        value = Decimal(cleaned)
    except InvalidOperation:  # pragma: no cover - the regex already guarantees a valid literal
        raise ParseError(f"{what} must be a number, got {_show(token)}", syntax) from None
    if value < 0 or (value == 0 and not allow_zero):
        raise ParseError(f"{what} must be greater than 0, got {_show(token)}", syntax)
    return value


def parse_id(token: str, what: str, syntax: str) -> int:
    if not _INT_RE.match(token):
        raise ParseError(f"{what} must be a whole number like 3, got {_show(token)}", syntax)
    value = int(token.lstrip("#"))
    if value <= 0 or value > MAX_ID:
        raise ParseError(f"{what} must be a positive number, got {_show(token)}", syntax)
    return value


def parse_symbol(token: str, ctx: Context, syntax: str) -> str:
    symbol = token.upper()
    if not looks_like_symbol(symbol):
        raise ParseError(f"{_show(token)} is not a symbol (like BTCUSDT)", syntax)
    if ctx.known_symbols and symbol not in ctx.known_symbols:
        raise ParseError(f"unknown symbol {symbol}", syntax)
    return symbol


def check_tick(symbol: str, value: Decimal, what: str, ctx: Context, syntax: str) -> None:
    if not ctx.tick_sizes:
        return
    tick = ctx.tick_sizes.get(symbol)
    if tick is None or tick <= 0:
        return
    try:
        off_tick = value % tick != 0
    except InvalidOperation:  # quotient beyond Decimal precision: a nonsense number for this symbol
        raise ParseError(f"{what} {fmt_decimal(value)} is too large for {symbol}", syntax) from None
    if off_tick:
        raise ParseError(
            f"{what} {fmt_decimal(value)} is not on the {symbol} price tick {fmt_decimal(tick)}", syntax
        )


def _too_many(args: list[str], max_args: int, syntax: str) -> None:
    if len(args) > max_args:
        extra = " ".join(args[max_args:])
        raise ParseError(f"too many arguments (unexpected {_show(extra)})", syntax)


def _need(args: list[str], count: int, names: str, syntax: str) -> None:
    if len(args) < count:
        raise ParseError(f"missing {names}", syntax)


def wants_help(args: list[str]) -> bool:
    return bool(args) and args[-1].lower() in {"help", "-h", "--help", "?"}


# ---------------------------------------------------------------- commands


def _parse_grid(args: list[str], ctx: Context) -> Request:
    if not args:
        return GridList()
    sub, rest = args[0].lower(), args[1:]
    if sub == "help":
        return Help("grid")
    if sub == "new":
        return _parse_grid_new(rest, ctx)
    if sub in {"list", "ls"}:
        _too_many(rest, 0, SYNTAX["grid list"])
        return GridList()
    if sub in {"show", "pause", "resume", "stop"}:
        syntax = SYNTAX[f"grid {sub}"]
        _need(rest, 1, "grid ID", syntax)
        if sub == "stop":
            _too_many(rest, 2, syntax)
            sell = False
            if len(rest) == 2:
                if rest[1].lower() != "sell":
                    raise ParseError(f"expected 'sell' or nothing after the ID, got {_show(rest[1])}", syntax)
                sell = True
            return GridStop(parse_id(rest[0], "grid ID", syntax), sell)
        _too_many(rest, 1, syntax)
        grid_id = parse_id(rest[0], "grid ID", syntax)
        return {"show": GridShow, "pause": GridPause, "resume": GridResume}[sub](grid_id)
    if _INT_RE.match(args[0]) and len(args) == 1:  # "/grid 3" is a handy shortcut for show
        return GridShow(parse_id(args[0], "grid ID", SYNTAX["grid show"]))
    raise ParseError(f"unknown /grid action {_show(args[0])}", SYNTAX["grid"])


def _parse_grid_new(args: list[str], ctx: Context) -> GridNew:
    syntax = SYNTAX["grid new"]
    _need(args, 5, "arguments: SYMBOL LOWER UPPER GRIDS INVESTMENT", syntax)
    symbol = parse_symbol(args[0], ctx, syntax)
    lower = parse_number(args[1], "LOWER", syntax)
    upper = parse_number(args[2], "UPPER", syntax)
    if lower >= upper:
        raise ParseError(f"LOWER must be below UPPER (got {fmt_decimal(lower)} >= {fmt_decimal(upper)})", syntax)
    if not re.fullmatch(r"\d{1,6}", args[3]):
        raise ParseError(f"GRIDS must be a whole number from {MIN_GRIDS} to {MAX_GRIDS}, got {_show(args[3])}", syntax)
    grids = int(args[3])
    if not MIN_GRIDS <= grids <= MAX_GRIDS:
        raise ParseError(f"GRIDS must be from {MIN_GRIDS} to {MAX_GRIDS}, got {grids}", syntax)
    investment = parse_number(args[4], "INVESTMENT", syntax)
    spacing = "arithmetic"
    prices: dict[str, Decimal | None] = dict.fromkeys(_PRICE_OPTIONS)  # sl=, tp=, trail_up=, trail_down=
    sell_on_stop = accept_loss = False
    seen: set[str] = set()
    options = args[5:]
    _too_many(options, 7, syntax)
    for option in options:
        low = option.lower()
        key = low.split("=", 1)[0] if "=" in low else low
        key = {"geo": "spacing", "geometric": "spacing", "arith": "spacing", "arithmetic": "spacing"}.get(key, key)
        if key in seen:
            raise ParseError(f"option {_show(option)} given twice", syntax)
        seen.add(key)
        if low in {"geo", "geometric"}:
            spacing = "geometric"
        elif low in {"arith", "arithmetic"}:
            spacing = "arithmetic"
        elif key in prices and "=" in low:
            prices[key] = parse_number(option[len(key) + 1:], key, syntax)
        elif key in prices:
            raise ParseError(f"{key} needs a price, e.g. {key}=65000", syntax)
        elif low in {"sell_on_stop", "sell"}:
            sell_on_stop = True
        elif low == "accept_loss":
            accept_loss = True
        else:
            raise ParseError(f"unknown option {_show(option)}", syntax)
    stop_loss, take_profit, trail_up, trail_down = prices.values()
    problems = _price_problems(lower, upper, stop_loss, take_profit, trail_up, trail_down)
    if problems:
        raise ParseError(problems[0], syntax)
    for what, value in (("LOWER", lower), ("UPPER", upper), *prices.items()):
        if value is not None:
            check_tick(symbol, value, what, ctx, syntax)
    return GridNew(GridSpec(symbol, lower, upper, grids, investment, spacing, stop_loss, take_profit, sell_on_stop,
                            accept_loss, trail_up, trail_down))


_PRICE_OPTIONS = ("sl", "tp", "trail_up", "trail_down")


def _price_problems(lower: Decimal, upper: Decimal, sl: Decimal | None, tp: Decimal | None,
                    up: Decimal | None, down: Decimal | None) -> list[str]:
    """What is wrong with a grid's option prices, first problem first (the core checks again: `setting_problems`).
    A trailing limit past the grid's own stop would trail the grid past its exit."""
    lo, hi, s, t, u, d = (fmt_decimal(v) if v is not None else "-" for v in (lower, upper, sl, tp, up, down))
    checks = ((sl is not None and sl >= lower, f"sl must be below LOWER {lo}, got {s}"),
              (tp is not None and tp <= upper, f"tp must be above UPPER {hi}, got {t}"),
              (up is not None and up <= upper, f"trail_up must be above UPPER {hi}, got {u}"),
              (up is not None and tp is not None and up > tp, f"trail_up {u} must not be above tp {t}"),
              (down is not None and down >= lower, f"trail_down must be below LOWER {lo}, got {d}"),
              (down is not None and sl is not None and down < sl, f"trail_down {d} must not be below sl {s}"))
    return [problem for failed, problem in checks if failed]


def _parse_size(args: list[str], ctx: Context) -> Request:
    if args and args[0].lower() == "kelly":
        syntax = SYNTAX["size kelly"]
        rest = args[1:]
        _need(rest, 2, "WINRATE PAYOFF", syntax)
        _too_many(rest, 2, syntax)
        token = rest[0]
        percent = token.endswith("%")
        win = parse_number(token.rstrip("%") if percent else token, "WINRATE", syntax)
        if percent:
            win = win / 100
        if not Decimal(0) < win < Decimal(1):
            raise ParseError(f"WINRATE must be between 0 and 1 (or 0% and 100%), got {_show(token)}", syntax)
        payoff = parse_number(rest[1], "PAYOFF", syntax)
        return SizeKelly(win, payoff)
    syntax = SYNTAX["size fixed"]
    _need(args, 3, "arguments: SYMBOL ENTRY STOP", SYNTAX["size"])
    _too_many(args, 4, syntax)
    symbol = parse_symbol(args[0], ctx, syntax)
    entry = parse_number(args[1], "ENTRY", syntax)
    stop = parse_number(args[2], "STOP", syntax)
    if entry == stop:
        raise ParseError("STOP must differ from ENTRY", syntax)
    risk: Decimal | None = None
    if len(args) == 4:
        percent = parse_number(args[3].rstrip("%"), "RISK%", syntax)
        if percent >= 100:
            raise ParseError(f"RISK% must be below 100, got {fmt_decimal(percent)}", syntax)
        risk = percent / 100
    return SizeFixed(symbol, entry, stop, risk)


def _parse_trade(side: Side, args: list[str], ctx: Context) -> Trade:
    syntax = SYNTAX["buy" if side is Side.BUY else "sell"]
    _need(args, 2, "SYMBOL QTY", syntax)
    _too_many(args, 3, syntax)
    symbol = parse_symbol(args[0], ctx, syntax)
    qty = parse_number(args[1], "QTY", syntax)
    limit: Decimal | None = None
    if len(args) == 3:
        key, sep, value = args[2].partition("=")
        if not sep or key.lower() not in {"max", "min", "limit", "price"}:
            raise ParseError(f"expected {'max' if side is Side.BUY else 'min'}=PRICE, got {_show(args[2])}", syntax)
        limit = parse_number(value, "PRICE", syntax)
        check_tick(symbol, limit, "PRICE", ctx, syntax)
    return Trade(side, symbol, qty, limit)


def _parse_stop(args: list[str], ctx: Context) -> Request:
    syntax = SYNTAX["stop"]
    _need(args, 1, "arguments", syntax)
    if args[0].lower() == "cancel":
        syntax = SYNTAX["stop cancel"]
        _need(args[1:], 1, "stop ID", syntax)
        _too_many(args[1:], 1, syntax)
        return StopCancel(parse_id(args[1], "stop ID", syntax))
    syntax = "/stop SYMBOL PRICE [soft|hard|tp]"
    _need(args, 2, "SYMBOL PRICE", syntax)
    _too_many(args, 3, syntax)
    symbol = parse_symbol(args[0], ctx, syntax)
    price = parse_number(args[1], "PRICE", syntax)
    kind = "soft"
    if len(args) == 3:
        kind = args[2].lower()
        if kind not in {"soft", "hard", "tp"}:
            raise ParseError(f"stop kind must be soft, hard or tp (take-profit), got {_show(args[2])}", syntax)
    check_tick(symbol, price, "PRICE", ctx, syntax)
    return StopAdd(symbol, price, kind)


def _parse_panic(args: list[str], ctx: Context) -> Request:
    """`/panic` sells what the bot owns; `/panic all` the whole account. Other words ("/panic now") are tolerated:
    in an emergency nobody should be lectured about syntax."""
    return Panic("all" if any(a.lower() == "all" for a in args) else "own")


def _no_args(request: Request, name: str):
    def parse_fn(args: list[str], ctx: Context) -> Request:
        _too_many(args, 0, SYNTAX[name])
        return request

    return parse_fn


def _parse_orders(args: list[str], ctx: Context) -> Request:
    _too_many(args, 1, SYNTAX["orders"])
    return Orders(parse_symbol(args[0], ctx, SYNTAX["orders"]) if args else None)


def _parse_pnl(args: list[str], ctx: Context) -> Request:
    syntax = SYNTAX["pnl"]
    chart = bool(args) and args[0].lower() == "chart"
    args = args[1:] if chart else args
    _too_many(args, 1, syntax)
    if not args:
        return Pnl(30 if chart else 7, chart)
    if not re.fullmatch(r"\d{1,5}", args[0]):
        raise ParseError(f"DAYS must be a whole number, got {_show(args[0])}", syntax)
    days = int(args[0])
    if not 1 <= days <= MAX_DAYS:
        raise ParseError(f"DAYS must be from 1 to {MAX_DAYS}, got {days}", syntax)
    return Pnl(days, chart)


def _parse_chart(args: list[str], ctx: Context) -> Request:
    syntax = SYNTAX["chart"]
    _need(args, 1, "grid ID", syntax)
    _too_many(args, 1, syntax)
    return Chart(parse_id(args[0], "grid ID", syntax))


def _parse_help(args: list[str], ctx: Context) -> Request:
    _too_many(args, 2, SYNTAX["help"])
    if not args:
        return Help()
    name = args[0].lower().lstrip("/")
    if name not in PARSERS:
        raise ParseError(f"no command {_show(args[0])}", SYNTAX["help"])
    if len(args) == 2:  # "/help grid new"
        topic = f"{name} {args[1].lower()}"
        if topic not in SYNTAX:
            raise ParseError(f"no help topic {_show(topic)}", SYNTAX["help"])
        return Help(topic)
    return Help(name)


PARSERS = {
    "start": _no_args(Start(), "start"),
    "help": _parse_help,
    "grid": _parse_grid,
    "status": _no_args(Status(), "status"),
    "balance": _no_args(Balances(), "balance"),
    "orders": _parse_orders,
    "pnl": _parse_pnl,
    "size": _parse_size,
    "buy": lambda args, ctx: _parse_trade(Side.BUY, args, ctx),
    "sell": lambda args, ctx: _parse_trade(Side.SELL, args, ctx),
    "stop": _parse_stop,
    "stops": _no_args(StopList(), "stops"),
    "panic": _parse_panic,
    "resume_all": _no_args(ResumeAll(), "resume_all"),
    "chart": _parse_chart,
}


def parse_args(name: str, args: list[str], ctx: Context | None = None) -> Request:
    """Parse the words after a known command name. Raises ParseError only."""
    ctx = ctx or Context()
    parser = PARSERS.get(name)
    if parser is None:
        raise ParseError(f"unknown command /{name[:32]}; send /help for the list of commands")
    if name != "help" and wants_help(args):
        return Help(_help_topic(name, args))
    return parser(args, ctx)


def _help_topic(name: str, args: list[str]) -> str:
    """'/grid new help' -> 'grid new'; '/size kelly help' -> 'size kelly'; else the command."""
    if len(args) >= 2:
        topic = f"{name} {args[0].lower()}"
        if topic in SYNTAX:
            return topic
    return name


def parse(text: str, ctx: Context | None = None) -> Request:
    """Parse a whole message ('/grid new BTCUSDT 60000 70000 10 1000'). Raises ParseError only."""
    name, args = split_command(text)
    return parse_args(name, args, ctx)


def looks_like_symbol(word: str) -> bool:
    """A word that could be a symbol: letters and digits, at least one letter (not '1000' or '#3')."""
    upper = word.upper()
    return bool(_SYMBOL_RE.match(upper)) and any(ch.isalpha() for ch in upper)


def symbols_in(text: str) -> set[str]:
    """Upper-cased words of the text that look like symbols (to fetch their tick sizes before parsing)."""
    if not isinstance(text, str):
        return set()
    return {word.upper() for word in text.split()[1:] if _SYMBOL_RE.match(word.upper())}
