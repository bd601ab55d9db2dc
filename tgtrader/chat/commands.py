"""The one command table. Telegram's CommandHandlers, its command menu (set_my_commands), /help, each
`/cmd help` answer and the console all come from `COMMANDS`, so they can't drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from tgtrader.chat import actions, prefs
from tgtrader.chat import parse as p
from tgtrader.chat import render as r
from tgtrader.chat.actions import Handler
from tgtrader.chat.render import Reply


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    syntax: str
    example: str
    description: str  # one line; also the menu text
    handler: Handler
    topics: tuple[tuple[str, str], ...] = ()  # (syntax, example) of subcommands, shown by '/cmd help'
    block: bool = True  # False: may run long (order chasing, charts); PTB runs it concurrently


async def help_handler(d: object, chat_id: int, req: p.Request) -> Reply:
    assert isinstance(req, p.Help)
    return Reply(help_text(req.command))


def help_text(topic: str | None = None) -> str:
    if topic is None:
        rows: list[tuple[str, str, str, str]] = []
        for c in COMMANDS:
            if c.topics:  # list each subcommand's syntax, so /help alone is enough to use the bot
                rows += [(c.name, syntax, example, c.description if i == 0 else "")
                         for i, (syntax, example) in enumerate(c.topics)]
            else:
                rows.append((c.name, c.syntax, c.example, c.description))
        return r.render_help(rows)
    name = topic.split()[0]
    command = BY_NAME.get(name)
    if command is None:
        return f"No command /{name}. Send /help for the list."
    if topic != name and topic in p.SYNTAX:
        examples = {syntax: example for syntax, example in command.topics}
        syntax = p.SYNTAX[topic]
        return r.render_command_help(syntax, examples.get(syntax, command.example), command.description)
    details = "\n".join(f"{syntax}\n  e.g. {example}" for syntax, example in command.topics)
    return r.render_command_help(command.syntax, command.example, command.description, details)


p.PARSERS["notify"] = prefs.parse_notify  # /notify's parser lives with the preferences (chat/prefs.py)
p.SYNTAX["notify"] = prefs.SYNTAX

COMMANDS: tuple[Command, ...] = (
    Command("start", "/start", "/start", "who I am, mode, balance, running grids; subscribes this chat to alerts",
            actions.start),
    Command("help", p.SYNTAX["help"], "/help grid", "every command with its syntax and an example", help_handler),
    Command(
        "grid", p.SYNTAX["grid"], "/grid new BTCUSDT 60000 70000 10 1000",
        "create (guided: /grid alone; or /grid new with a preview), list, show, pause, resume, stop grids",
        actions.grid,
        topics=(
            ("/grid [SYMBOL]", "/grid"),
            (p.SYNTAX["grid new"], "/grid new BTCUSDT 60000 70000 10 1000 geo sl=58000 tp=72000 trail_up=71000"),
            (p.SYNTAX["grid list"], "/grid list"),
            (p.SYNTAX["grid show"], "/grid show 1"),
            (p.SYNTAX["grid pause"], "/grid pause 1"),
            (p.SYNTAX["grid resume"], "/grid resume 1"),
            (p.SYNTAX["grid stop"], "/grid stop 1 sell"),
        ),
    ),
    Command("status", p.SYNTAX["status"], "/status",
            "mode, grids, open orders, PnL today/total, stream health, clock offset, API weight", actions.status),
    Command("balance", p.SYNTAX["balance"], "/balance", "free and locked balances", actions.balance),
    Command("orders", p.SYNTAX["orders"], "/orders BTCUSDT", "open orders, optionally for one symbol", actions.orders),
    Command("pnl", p.SYNTAX["pnl"], "/pnl 7", "realized profit per day and total; 'chart' draws the days as bars",
            actions.pnl),
    Command(
        "size", p.SYNTAX["size"], "/size BTCUSDT 65000 63000 1%",
        "position size: fixed fraction risk, or capped Kelly", actions.size,
        topics=((p.SYNTAX["size fixed"], "/size BTCUSDT 65000 63000 1%"),
                (p.SYNTAX["size kelly"], "/size kelly 0.55 1.5")),
    ),
    Command("buy", p.SYNTAX["buy"], "/buy BTCUSDT 0.01 max=65100", "maker-first buy that chases the price; max= is never crossed",
            actions.trade, block=False),
    Command("sell", p.SYNTAX["sell"], "/sell BTCUSDT 0.01 min=64900", "maker-first sell that chases the price; min= is never crossed",
            actions.trade, block=False),
    Command(
        "stop", p.SYNTAX["stop"], "/stop BTCUSDT 62000 hard", "add a stop-loss (soft or hard), or cancel one",
        actions.stop,
        topics=(("/stop SYMBOL PRICE [soft|hard]", "/stop BTCUSDT 62000 hard"),
                (p.SYNTAX["stop cancel"], "/stop cancel 2")),
    ),
    Command("stops", p.SYNTAX["stops"], "/stops", "armed and triggered stops", actions.stops),
    Command("panic", p.SYNTAX["panic"], "/panic",
            "stop all grids, cancel the bot's orders, sell what the bot bought; 'all' sells the whole account "
            "but BNB (asks to confirm)", actions.panic),
    Command("resume_all", p.SYNTAX["resume_all"], "/resume_all", "resume grids paused by an older /panic (panic now stops them)", actions.resume_all),
    Command("chart", p.SYNTAX["chart"], "/chart 1", "PNG of price, grid levels and fills", actions.chart, block=False),
    Command("notify", prefs.SYNTAX, "/notify fills off",
            "alerts per kind (fills, trips, grids, stops, errors, daily): on, silent (no sound) or off", prefs.notify),
)

BY_NAME: dict[str, Command] = {c.name: c for c in COMMANDS}

assert set(BY_NAME) == set(p.PARSERS), "command table and parser disagree"


READ_ONLY = frozenset({"start", "help", "status", "balance", "orders", "pnl", "size", "stops", "chart"})
READ_ONLY_GRID = frozenset({"list", "show"})


def is_read_only(text: str) -> bool:
    """True for a message that only reads (status, lists, help); False for anything that may trade or change
    state, and for text that is not a known command (it is answered without acting either way)."""
    try:
        name, args = p.split_command(text)
    except p.ParseError:
        return True
    if name not in BY_NAME:
        return True
    if name in READ_ONLY or p.wants_help(args):
        return True
    if name == "notify":  # showing the preferences reads; changing them does not
        return not args
    return name == "grid" and (not args or args[0].lower() in READ_ONLY_GRID)


def menu() -> list[tuple[str, str]]:
    """(command, description) pairs for Telegram's set_my_commands (descriptions <= 256 chars)."""
    return [(c.name, c.description[:256]) for c in COMMANDS]
