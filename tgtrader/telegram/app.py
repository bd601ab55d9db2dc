"""Wiring: `build_application()` returns a PTB Application with authorization first, one handler per
row of the command table, button and fallback handlers, one error handler, a rate limiter that
honours flood control, and the alert notifier attached to the core's event bus.

Use `TelegramBot.start()/stop()` to run it inside an existing event loop (tests, the CLI), or
`app.run_polling()`; both paths run the same `post_init` (command menu, notifier start). Updates arrive by
long polling, or, with a `Webhook`, pushed by Telegram to PTB's webhook server (tornado).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from loguru import logger
from telegram import BotCommand, BotCommandScopeChat, Update
from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    ExtBot,
    MessageHandler,
    TypeHandler,
    filters,
)

from tgtrader.chat.alerts import DAILY_SUMMARY, daily_summary_payload
from tgtrader.chat.commands import COMMANDS, menu
from tgtrader.chat.dispatch import Dispatcher
from tgtrader.chat.prefs import NotifyPrefs
from tgtrader.core.api import TradingApi
from tgtrader.errors import ConfigError
from tgtrader.telegram.access import Access
from tgtrader.telegram.handlers import ANSWER_TIMEOUT_S, MAX_COMMAND_AGE_S, TelegramHandlers
from tgtrader.telegram.notify import Notifier

BOT_DATA_KEY = "tgtrader"
POLLING_TASK = "Updater:start_polling:polling_task"  # python-telegram-bot 22's name for its polling task
TOKEN_RETRY_S = 300.0  # a rejected token is retried this slowly (it only comes back if BotFather restores it)
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
MAX_UPDATE_BYTES = 1 << 20  # an update is a few KB; a bigger body is refused from its Content-Length, unread


@dataclass(frozen=True)
class Webhook:
    """Webhook mode: Telegram POSTs each update to `url`; the bot listens on `listen:port` at the URL's path
    (a TLS reverse proxy usually sits between). Requests without `secret_token` in the
    X-Telegram-Bot-Api-Secret-Token header are refused by PTB with 403, so a stranger who finds the URL cannot
    inject updates; the default secret is random per start (setWebhook registers it each time)."""

    url: str
    listen: str = "127.0.0.1"  # the TLS reverse proxy in front reaches it locally
    port: int = 8080
    secret_token: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)

    def __post_init__(self) -> None:
        """Telegram delivers only to https:// (setWebhook answers 400 otherwise, and the bot would never hear a
        command); plain http is accepted for a loopback address only (a local Bot API server, tests)."""
        parts = urlsplit(self.url)
        if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in LOOPBACK):
            raise ConfigError([f"TELEGRAM_WEBHOOK_URL: Telegram only delivers updates to an https:// URL,"
                               f" got {parts.scheme or 'no'}:// (put a TLS reverse proxy in front)"])
        from tgtrader.logging_setup import masker

        masker.add_secrets([self.secret_token])  # random per start: settings.secrets() does not know it

    @property
    def path(self) -> str:
        return urlsplit(self.url).path.lstrip("/")


class TelegramBot:
    """The parts of the Telegram front end, reachable from `app.bot_data["tgtrader"]`."""

    def __init__(self, app: Application, dispatcher: Dispatcher, handlers: TelegramHandlers,
                 notifier: Notifier | None, api: TradingApi, connect_retry_s: float = 1.0,
                 webhook: Webhook | None = None, db: Any = None, token_retry_s: float = TOKEN_RETRY_S) -> None:
        self.app = app
        self.db = db
        self.access = handlers.access
        self.token_retry_s = token_retry_s
        self.fatal: str | None = None  # why Telegram is unusable (rejected token, refused setup); None when fine
        self.webhook = webhook
        self.dispatcher = dispatcher
        self.handlers = handlers
        self.notifier = notifier
        self.api = api
        self.connect_retry_s = connect_retry_s
        self._notifier_started = False
        self._connect_task: asyncio.Task[None] | None = None
        self._watched: set[asyncio.Task[Any]] = set()
        self._stopping = False

    async def _start_notifier(self) -> None:
        if self.notifier is not None and not self._notifier_started:
            self._notifier_started = True
            self.notifier.attach(self.api.bus)
            await self.notifier.start()

    async def post_init(self, app: Application) -> None:
        """Also run by `app.run_polling()`: the command menu, then alert delivery."""
        await self._set_menu()
        await self._start_notifier()

    async def _set_menu(self) -> None:
        """The command menu (which advertises /panic) for the allowed chats only; none for everyone else. The
        first call also proves the token works (it raises InvalidToken otherwise)."""
        commands = [BotCommand(name, description) for name, description in menu()]
        await self.app.bot.delete_my_commands()  # the default scope: what a stranger's client shows
        for chat_id in self.access.recipients():
            try:
                await self.app.bot.set_my_commands(commands, scope=BotCommandScopeChat(chat_id))
            except (BadRequest, Forbidden) as exc:  # a chat the bot is not in (yet): its menu comes later
                logger.info("no command menu for chat {}: {}", chat_id, exc)

    async def post_stop(self, app: Application) -> None:
        if self.notifier is not None and self._notifier_started:
            self._notifier_started = False
            await self.notifier.stop()
        if self.notifier is not None and isinstance(self.notifier.send, AlertSender):
            await self.notifier.send.close()

    async def start(self, poll_timeout: float = 10.0, poll_interval: float = 0.0, wait: bool = False) -> None:
        """Connect and long-poll (no signal handlers). Alerts start first: they only need the database.

        If Telegram is unreachable, trading must not wait for it: unless `wait`, this returns and keeps
        connecting in the background (alerts pile up in the outbox meanwhile). A rejected token is a
        configuration error, raised without the token in the message.
        """
        self._stopping = False
        self.handlers.started_at = self.handlers.wall_clock()  # commands sent before this never trade
        if self.db is not None:
            await self.access.load(self.db.kv)  # supergroup upgrades seen before
        for warning in self.access.warnings():
            logger.warning(warning)
        await self._start_notifier()
        try:
            await self._connect(poll_timeout, poll_interval)
        except InvalidToken:
            if wait:
                raise ConfigError(["Telegram rejected TELEGRAM_BOT_TOKEN; check it with @BotFather"]) from None
            self._token_rejected()
            self._retry_in_background(poll_timeout, poll_interval, self.token_retry_s)
        except (BadRequest, Forbidden) as exc:  # permanent (BadRequest is a NetworkError in PTB 22): no retry loop
            self.fatal = f"Telegram refused the bot's setup: {exc}"
            if wait:
                raise ConfigError([self.fatal]) from None
            logger.critical("{}; commands cannot reach the bot (trading goes on); fix the settings and restart",
                            self.fatal)
        except NetworkError as exc:
            if wait:
                raise
            logger.warning("Telegram unreachable ({}); trading goes on, connecting in the background",
                           type(exc).__name__)
            self._retry_in_background(poll_timeout, poll_interval, self.connect_retry_s)

    def _retry_in_background(self, poll_timeout: float, poll_interval: float, delay: float) -> None:
        if self._connect_task is None or self._connect_task.done():
            self._connect_task = asyncio.get_running_loop().create_task(
                self._connect_forever(poll_timeout, poll_interval, delay), name="telegram-connect")

    def _token_rejected(self) -> None:
        self.fatal = "Telegram rejected the bot token (revoked?)"
        logger.critical("FATAL: Telegram rejected TELEGRAM_BOT_TOKEN (revoked or wrong): no commands and no alerts"
                        " until it is fixed with @BotFather; trading goes on; retrying every {:.0f} s",
                        self.token_retry_s)
        if self.notifier is not None:
            self.notifier.pause(self.token_retry_s)

    def _watch_polling(self, poll_timeout: float, poll_interval: float) -> None:
        """PTB's polling loop ends for good on InvalidToken (a token revoked while running), silently: notice
        it, say so loudly, and keep probing slowly."""
        for task in asyncio.all_tasks():
            if task.get_name() != POLLING_TASK or task in self._watched or task.done():
                continue
            self._watched.add(task)

            def done(t: asyncio.Task[Any]) -> None:
                self._watched.discard(t)
                if self._stopping or t.cancelled() or not isinstance(t.exception(), InvalidToken):
                    return
                self._token_rejected()
                asyncio.get_running_loop().create_task(self._after_polling_died(poll_timeout, poll_interval))

            task.add_done_callback(done)

    async def _after_polling_died(self, poll_timeout: float, poll_interval: float) -> None:
        updater = self.app.updater
        if updater is not None and updater.running:
            try:
                await updater.stop()
            except Exception as exc:  # awaiting the dead polling task re-raises its InvalidToken
                logger.debug("updater stop after a rejected token: {}", type(exc).__name__)
                # PTB 22.8 then keeps its stop event set and the dead task: the next start_polling would end
                # at once. Reset both (private names, checked by tests/telegram/test_chat_safety.py).
                event = getattr(updater, "_Updater__polling_task_stop_event", None)
                if isinstance(event, asyncio.Event):
                    event.clear()
                if hasattr(updater, "_Updater__polling_task"):
                    setattr(updater, "_Updater__polling_task", None)  # noqa: B010
        self._retry_in_background(poll_timeout, poll_interval, self.token_retry_s)

    async def _connect(self, poll_timeout: float, poll_interval: float) -> None:
        await self.app.initialize()  # getMe; safe to call again after a failure
        await self._set_menu()
        if not self.app.running:
            await self.app.start()
        assert self.app.updater is not None
        if self.app.updater.running:
            return
        if self.webhook is None:
            await self.app.updater.start_polling(timeout=poll_timeout, poll_interval=poll_interval)
            self._watch_polling(poll_timeout, poll_interval)
            return
        # setWebhook first (a failure raises and is retried like polling's), then the server starts listening
        await self.app.updater.start_webhook(
            listen=self.webhook.listen, port=self.webhook.port, url_path=self.webhook.path,
            webhook_url=self.webhook.url, secret_token=self.webhook.secret_token,
        )
        _limit_body(self.app.updater, MAX_UPDATE_BYTES)
        logger.info("Telegram webhook registered; listening on {}:{}", self.webhook.listen, self.webhook.port)

    async def _connect_forever(self, poll_timeout: float, poll_interval: float, delay: float) -> None:
        while not self._stopping:
            await asyncio.sleep(delay)
            if self._stopping:
                return
            try:
                await self._connect(poll_timeout, poll_interval)
                logger.info("Telegram reachable again; {}", "polling" if self.webhook is None else "webhook set")
                self.fatal = None
                if self.notifier is not None:
                    self.notifier.wake(network_back=True)
                return
            except InvalidToken:
                logger.critical("FATAL: Telegram still rejects the bot token; retrying in {:.0f} s (trading goes on)",
                                self.token_retry_s)
                delay = self.token_retry_s
            except (BadRequest, Forbidden) as exc:
                self.fatal = f"Telegram refused the bot's setup: {exc}"
                logger.critical("{}; no more retries (trading goes on); fix the settings and restart", self.fatal)
                return
            except NetworkError as exc:
                logger.info("Telegram still unreachable ({})", type(exc).__name__)
                delay = min(max(delay, self.connect_retry_s) * 1.5, 30.0)

    async def stop(self) -> None:
        self._stopping = True
        if self._connect_task is not None:
            self._connect_task.cancel()
            await asyncio.wait({self._connect_task}, timeout=2.0)
            self._connect_task = None
        if self.app.updater is not None and self.app.updater.running:
            await self.app.updater.stop()
        if self.app.running:
            await self.app.stop()
        await self.post_stop(self.app)
        try:
            await self.app.shutdown()
        except Exception as exc:  # never initialized (Telegram was down the whole time)
            logger.debug("telegram shutdown: {}", exc)

    async def daily_summary(self, context: ContextTypes.DEFAULT_TYPE | None = None) -> None:
        if self.notifier is None:
            return
        try:
            payload = daily_summary_payload(await self.api.status(), await self.api.pnl(1))
        except Exception:
            logger.exception("daily summary failed")
            return
        await self.notifier.enqueue_alert(DAILY_SUMMARY, payload)


def build_application(
    *,
    token: str,
    api: TradingApi,
    allowed_chat_ids: Iterable[int],
    db: Any = None,
    base_url: str | None = None,
    base_file_url: str | None = None,
    max_retries: int = 3,
    bot_name: str = "tgtrader",
    alert_window_s: float = 0.0,  # events reach the outbox at once; coalesced at delivery
    stream_down_alert_s: float = 30.0,
    per_chat_interval_s: float = 1.0,
    notifier_poll_s: float = 1.0,
    daily_summary_utc: dt.time | None = None,
    preview_ttl_s: float = 300.0,
    confirm_ttl_s: float = 60.0,
    extra_secrets: Iterable[str] = (),
    connect_retry_s: float = 1.0,
    webhook: Webhook | None = None,
    allowed_user_ids: Iterable[int] = (),
    readonly_user_ids: Iterable[int] = (),
    max_command_age_s: float = MAX_COMMAND_AGE_S,
    answer_timeout_s: float = ANSWER_TIMEOUT_S,
    token_retry_s: float = TOKEN_RETRY_S,
    outbox_retention_days: float = 30.0,
    market_data: Any = None,
    confirm_trade_above: Decimal | None = None,
) -> Application:
    """Build the bot. `db` is the store `Database` (its `outbox` makes alerts durable); without it no
    alerts are sent. `base_url` points PTB at another Bot API server (e.g. a test fake)."""
    access = Access.of(allowed_chat_ids, allowed_user_ids, readonly_user_ids)
    builder = ApplicationBuilder().token(token).rate_limiter(AIORateLimiter(max_retries=max_retries))
    if base_url:
        builder = builder.base_url(base_url)
    if base_file_url:
        builder = builder.base_file_url(base_file_url)
    builder = builder.concurrent_updates(False)
    app = builder.build()

    hidden = [token, *extra_secrets]
    notifier: Notifier | None = None
    prefs = NotifyPrefs(db.kv) if db is not None else None  # /notify (issue 17)
    if db is not None:
        sender = AlertSender(ExtBot(token, base_url=base_url or "https://api.telegram.org/bot",
                                    base_file_url=base_file_url or "https://api.telegram.org/file/bot"), hidden)
        notifier = Notifier(
            db, sender, access.recipients, window_s=alert_window_s, stream_down_alert_s=stream_down_alert_s,
            per_chat_interval_s=per_chat_interval_s, poll_s=notifier_poll_s, access=access,
            retention_s=outbox_retention_days * 86400, prefs=prefs,
        )

    def on_subscribe(chat_id: int) -> None:
        if notifier is not None:
            notifier.wake(chat_id)

    async def progress(chat_id: int, text: str) -> object:
        return await app.bot.send_message(chat_id, text)

    dispatcher = Dispatcher(
        api, bot_name=bot_name, preview_ttl_s=preview_ttl_s, confirm_ttl_s=confirm_ttl_s,
        on_subscribe=on_subscribe, secrets_to_hide=hidden, progress=progress,
        market=market_data,  # guided /grid's candles, rules and fee (issue 17); None: /grid alone lists
        prefs=prefs, confirm_trade_above=confirm_trade_above,
    )
    handlers = TelegramHandlers(dispatcher, access, max_command_age_s=max_command_age_s,
                                answer_timeout_s=answer_timeout_s)
    bot = TelegramBot(app, dispatcher, handlers, notifier, api, connect_retry_s, webhook, db, token_retry_s)

    async def on_migrate(old: int, new: int) -> None:
        if notifier is not None:
            await notifier.chat_migrated(old, new)
        else:
            await access.migrate(None, old, new)

    handlers.on_migrate = on_migrate
    app.bot_data[BOT_DATA_KEY] = bot

    app.add_handler(TypeHandler(Update, handlers.authorize), group=-1)
    for command in COMMANDS:
        # new messages only: editing an old "/grid new ..." must not run it again
        app.add_handler(CommandHandler(command.name, handlers.on_message, filters=filters.UpdateType.MESSAGE,
                                       block=command.block))
    app.add_handler(CallbackQueryHandler(handlers.on_callback))
    app.add_handler(MessageHandler(filters.UpdateType.MESSAGE & (filters.TEXT | filters.COMMAND),
                                   handlers.on_message))
    app.add_error_handler(handlers.on_error)
    app.post_init = bot.post_init
    app.post_stop = bot.post_stop
    if daily_summary_utc is not None and app.job_queue is not None:
        app.job_queue.run_daily(bot.daily_summary, time=daily_summary_utc.replace(tzinfo=dt.UTC),
                                name="daily-summary")
    return app


class AlertSender:
    """Alerts go out through their own Bot, without PTB's rate limiter: the notifier paces them per chat and
    honours flood control itself, so a burst of alerts or a 429 on one never holds up the answer to a command
    (`/panic`'s above all), which goes through the application's bot and its limiter."""

    def __init__(self, bot: ExtBot[Any], secrets_to_hide: Iterable[str]) -> None:
        self.bot = bot
        self.hidden = list(secrets_to_hide)
        self._ready = False

    async def __call__(self, chat_id: int, text: str, silent: bool = False, topic: int | None = None) -> object:
        """`silent`: delivered without a sound (Telegram's disable_notification; /notify's 'silent'). `topic`: the
        forum topic the chat chose for its alerts (/notify here)."""
        if not self._ready:
            await self.bot.initialize()  # getMe; raises like a send would (network, InvalidToken)
            self._ready = True
        return await self.bot.send_message(chat_id, scrub(text, self.hidden), disable_notification=silent or None,
                                           message_thread_id=topic)

    async def close(self) -> None:
        if self._ready:
            self._ready = False
            await self.bot.shutdown()


def _limit_body(updater: Any, limit: int) -> None:
    """PTB's tornado server buffers up to 100 MB per request before its secret check answers 403: anyone who
    finds the URL could make the bot buffer gigabytes. Tornado reads `max_body_size` per connection, so setting
    it once the server exists covers every request (tornado answers 400 from the Content-Length header)."""
    server = getattr(getattr(updater, "_httpd", None), "_http_server", None)
    params = getattr(server, "conn_params", None)
    if params is None:
        logger.warning("cannot limit the webhook request size (python-telegram-bot internals changed)")
        return
    params.max_body_size = limit


def scrub(text: str, secrets_to_hide: Iterable[str]) -> str:
    """Every text to the chat passes here or `Dispatcher.scrub`: no secret reaches a chat."""
    for secret in secrets_to_hide:
        if secret and len(secret) >= 6 and secret in text:
            text = text.replace(secret, "***")
    return text


def telegram_options(settings: Any) -> dict[str, Any]:
    """build_application's keyword arguments from the settings (the runner passes them all)."""
    return dict(
        allowed_chat_ids=settings.telegram_allowed_chat_ids,
        allowed_user_ids=settings.telegram_allowed_user_ids,
        readonly_user_ids=settings.telegram_readonly_user_ids,
        max_command_age_s=settings.telegram_max_command_age_s,
        outbox_retention_days=settings.telegram_outbox_retention_days,
        webhook=webhook_of(settings),
        confirm_trade_above=settings.confirm_trade_above or None,
    )


def webhook_of(settings: Any) -> Webhook | None:
    """The webhook settings, or None for long polling."""
    if not settings.telegram_webhook_url:
        return None
    secret = settings.telegram_webhook_secret
    extra = {"secret_token": secret.reveal()} if secret else {}
    return Webhook(settings.telegram_webhook_url, settings.telegram_webhook_listen, settings.telegram_webhook_port,
                   **extra)


def frontend(app: Application) -> TelegramBot:
    return app.bot_data[BOT_DATA_KEY]
