"""The transport-neutral chat layer: `dispatch(text, chat) -> Reply` and `press(data, chat) -> Reply`.

Telegram handlers and the console call the same two methods. Buttons never carry meaning in their
callback data: the data is a random token looked up here, bound to the chat that received the button,
expiring and single use (pressing one button of a message spends its siblings too). A forged, old or
foreign token does nothing and the answer says why.
"""

from __future__ import annotations

import contextvars
import inspect
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from loguru import logger

from tgtrader.chat import guided as guided_flow
from tgtrader.chat import parse as p
from tgtrader.chat.actions import BUTTON_ACTIONS
from tgtrader.chat.asking import answering_in, done_answering
from tgtrader.chat.commands import BY_NAME, help_handler
from tgtrader.chat.render import CAPTION_LIMIT, Button, ButtonSpec, Reply, clip, split_lines
from tgtrader.core.api import ApiError, TradingApi
from tgtrader.errors import ExchangeError, TgTraderError

DATA_PREFIX = "b1:"
_DATA_RE = re.compile(r"^b1:[A-Za-z0-9_-]{16}$")
SYMBOLS_TTL_S = 600.0
# The person whose message is being answered: buttons bound while answering it are theirs alone (in a group,
# another member must not confirm someone else's PANIC). None: the console, or a transport without users.
_asker: contextvars.ContextVar[int | None] = contextvars.ContextVar("asker", default=None)


@dataclass(slots=True)
class _Pending:
    chat_id: int
    action: str
    payload: tuple[object, ...]
    expires_at: float
    group: str
    used: bool = False
    user_id: int | None = None  # who asked: only they may press it


class Dispatcher:
    def __init__(
        self,
        api: TradingApi,
        *,
        bot_name: str = "tgtrader",
        clock: Callable[[], float] = time.monotonic,
        preview_ttl_s: float = 300.0,
        confirm_ttl_s: float = 60.0,
        on_subscribe: Callable[[int], Awaitable[None] | None] | None = None,
        secrets_to_hide: Iterable[str] = (),
        progress: Callable[[int, str], Awaitable[object]] | None = None,
        market: guided_flow.MarketData | None = None,
        prefs: object | None = None,
        confirm_trade_above: Decimal | None = None,
    ) -> None:
        self.api = api
        self.bot_name = bot_name
        self.clock = clock
        self.preview_ttl_s = preview_ttl_s
        self.confirm_ttl_s = confirm_ttl_s
        self.confirm_trade_above = confirm_trade_above  # /buy and /sell worth more (quote) ask first
        self.on_subscribe = on_subscribe
        self.progress = progress  # transport hook: an interim line before a long operation's answer
        self._secrets = [s for s in secrets_to_hide if s and len(s) >= 6]
        self._pending: dict[str, _Pending] = {}
        self._symbols: frozenset[str] = frozenset()
        self._symbols_at = -1e18
        self._ticks: dict[str, Decimal] = {}
        self.prefs = prefs  # /notify's per-chat alert preferences (chat/prefs.py); None: not kept here
        self.guided = guided_flow.Guided(market)  # guided /grid (issue 17): needs market data (candles)

    # ------------------------------------------------------------ commands

    async def dispatch(self, text: str, chat_id: int, user_id: int | None = None, topic: int | None = None) -> Reply:
        """Answer one message (from `user_id`, when the transport knows people; in forum `topic`, when it has
        topics). ParseError/ApiError/ExchangeError become short answers; anything else propagates to the front
        end's error handler (see `internal_error`)."""
        token, topic_token = _asker.set(user_id), answering_in(topic)
        try:
            return await self._dispatch(text, chat_id)
        finally:
            _asker.reset(token)
            done_answering(topic_token)

    async def _dispatch(self, text: str, chat_id: int) -> Reply:
        try:
            typed = isinstance(text, str) and not text.lstrip().startswith("/")
            flow = self.guided.awaiting(chat_id, _asker.get(), self.clock()) if typed else None
            if flow is not None:  # the guided /grid flow waits for a typed symbol or amount
                return self._clean(await guided_flow.on_text(self, flow, text))
            name, args = p.split_command(text)
            if self.guided.wants(name, args):
                return self._clean(await guided_flow.begin(self, chat_id, _asker.get(), args))
            if name not in BY_NAME:
                raise p.ParseError(f"unknown command /{name}; send /help for the list of commands")
            ctx = p.Context() if name in {"help", "start"} or p.wants_help(args) else await self._context(args)
            request = p.parse_args(name, args, ctx)
            handler = help_handler if isinstance(request, p.Help) else BY_NAME[name].handler
            reply = await handler(self, chat_id, request)
        except p.ParseError as exc:
            reply = Reply(exc.answer())
        except ApiError as exc:
            reply = Reply(str(exc) or "refused")
        except ExchangeError as exc:
            reply = Reply(f"exchange error: {exc}")
        except TgTraderError as exc:
            reply = Reply(f"error: {exc}")
        return self._clean(reply)

    async def _context(self, args: Sequence[str]) -> p.Context:
        """Known symbols and tick sizes, fetched only when the text names a symbol-like word, so
        commands without symbols (/panic, /status) never wait on the exchange."""
        if not any(p.looks_like_symbol(word) for word in args[:12]):
            return p.Context(self._symbols, {})
        now = self.clock()
        if now - self._symbols_at > SYMBOLS_TTL_S:
            try:
                self._symbols = frozenset(await self.api.known_symbols())
                self._symbols_at = now
            except TgTraderError as exc:  # exchange unreachable: parse without the symbol check
                logger.warning("known_symbols unavailable: {}", exc)
        ticks: dict[str, Decimal] = {}
        for word in args[:12]:
            symbol = word.upper()
            if symbol in self._symbols:
                if symbol not in self._ticks:
                    try:
                        self._ticks[symbol] = await self.api.tick_size(symbol)
                    except TgTraderError:
                        continue
                ticks[symbol] = self._ticks[symbol]
        return p.Context(self._symbols, ticks)

    async def say(self, chat_id: int, text: str) -> None:
        """An interim message (e.g. 'working on it') before a long operation; best effort."""
        if self.progress is None:
            return
        try:
            await self.progress(chat_id, self.scrub(text))
        except Exception as exc:  # the real answer still follows
            logger.info("progress message failed: {}", exc)

    async def subscribe(self, chat_id: int) -> None:
        if self.on_subscribe is not None:
            result = self.on_subscribe(chat_id)
            if inspect.isawaitable(result):
                await result

    # ------------------------------------------------------------ buttons

    def bind(self, chat_id: int, rows: Sequence[Sequence[ButtonSpec]]) -> tuple[tuple[Button, ...], ...]:
        """Register button specs for one chat and one message; returns buttons with opaque data."""
        self._prune()
        group = secrets.token_urlsafe(6)
        now = self.clock()
        asker = _asker.get()
        out: list[tuple[Button, ...]] = []
        for row in rows:
            buttons = []
            for spec in row:
                token = secrets.token_urlsafe(12)  # 16 chars
                ttl = spec.ttl_s if spec.ttl_s is not None else self.confirm_ttl_s
                self._pending[token] = _Pending(chat_id, spec.action, spec.payload, now + ttl, group, user_id=asker)
                buttons.append(Button(spec.label, DATA_PREFIX + token))
            out.append(tuple(buttons))
        return tuple(out)

    async def press(self, data: str, chat_id: int, user_id: int | None = None) -> Reply:
        """A button was pressed in `chat_id` by `user_id`. Validates the token before anything happens."""
        if not isinstance(data, str) or not _DATA_RE.match(data):
            logger.warning("chat {} sent malformed callback data", chat_id)
            return Reply("This button is not valid; nothing was done.", toast="Invalid button")
        entry = self._pending.get(data[len(DATA_PREFIX):])
        if entry is None:
            return Reply("This button is no longer valid (old message or bot restarted); nothing was done.",
                         toast="Button no longer valid")
        if entry.chat_id != chat_id:
            logger.warning("chat {} pressed a button issued to another chat", chat_id)
            return Reply("This button belongs to another chat; nothing was done.", toast="Not your button")
        if entry.user_id is not None and user_id != entry.user_id:
            logger.warning("user {} pressed a button issued to user {} in chat {}", user_id, entry.user_id, chat_id)
            return Reply("Only the person who asked can press this button; nothing was done.",
                         toast="Only the person who asked can press this")
        if entry.used:
            return Reply("This button was already used; nothing was done.", toast="Already used")
        if self.clock() > entry.expires_at:
            return Reply("This button expired; nothing was done. Send the command again.", toast="Expired")
        for other in self._pending.values():
            if other.group == entry.group:
                other.used = True
        action = BUTTON_ACTIONS.get(entry.action) or guided_flow.BUTTON_ACTIONS.get(entry.action)
        if action is None:  # pragma: no cover - only registered actions are bound
            return Reply("Unknown button; nothing was done.", toast="Unknown")
        token = _asker.set(user_id)  # a button's answer may bind new buttons: theirs too
        try:
            reply = await action(self, chat_id, entry.payload)
        except ApiError as exc:
            reply = Reply(str(exc) or "refused", edit=True, toast="Refused")
        except ExchangeError as exc:
            reply = Reply(f"exchange error: {exc}", edit=True, toast="Exchange error")
        except TgTraderError as exc:
            reply = Reply(f"error: {exc}", edit=True, toast="Error")
        finally:
            _asker.reset(token)
        return self._clean(reply)

    def _prune(self) -> None:
        now = self.clock()
        dead = [token for token, entry in self._pending.items() if now > entry.expires_at + 3600]
        for token in dead:
            del self._pending[token]

    # ------------------------------------------------------------ safety

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text

    def _clean(self, reply: Reply) -> Reply:
        """Secrets scrubbed; a long answer split at line boundaries into several messages (its buttons on the
        last one, so they sit under the whole answer)."""
        text = self.scrub(reply.text)
        if reply.photo is not None:
            text = clip(text, CAPTION_LIMIT)
        parts = [text] if reply.photo is not None else split_lines(text)
        extra = tuple(self._clean(e) for e in reply.extra)
        if len(parts) == 1:
            if text == reply.text and extra == reply.extra:
                return reply
            return Reply(text, reply.buttons, reply.keyboard, reply.photo, reply.edit, reply.toast, extra)
        tail = [Reply(part) for part in parts[1:-1]] + [Reply(parts[-1], reply.buttons, reply.keyboard)]
        return Reply(parts[0], (), (), None, reply.edit, reply.toast, (*tail, *extra))

    def internal_error(self, exc: BaseException | None) -> Reply:
        """Log an unexpected failure with an id and return the one line the user sees."""
        error_id = secrets.token_hex(4)
        if exc is not None:
            logger.opt(exception=exc).error("internal error #{}: {}", error_id, self.scrub(repr(exc)))
        else:
            logger.error("internal error #{}", error_id)
        return Reply(f"internal error, logged as #{error_id}")
