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
from typing import Any
from urllib.parse import urlsplit

from loguru import logger
from telegram import BotCommand, Update
from telegram.error import InvalidToken, NetworkError
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)

from tgtrader.chat.alerts import DAILY_SUMMARY, daily_summary_payload
from tgtrader.chat.commands import COMMANDS, menu
from tgtrader.chat.dispatch import Dispatcher
from tgtrader.core.api import TradingApi
from tgtrader.errors import ConfigError
from tgtrader.telegram.handlers import TelegramHandlers
from tgtrader.telegram.notify import Notifier

BOT_DATA_KEY = "tgtrader"


@dataclass(frozen=True)
class Webhook:
    """Webhook mode: Telegram POSTs each update to `url`; the bot listens on `listen:port` at the URL's path
    (a TLS reverse proxy usually sits between). Requests without `secret_token` in the
    X-Telegram-Bot-Api-Secret-Token header are refused by PTB with 403, so a stranger who finds the URL cannot
    inject updates; the default secret is random per start (setWebhook registers it each time)."""

    url: str
    listen: str = "0.0.0.0"
    port: int = 8080
    secret_token: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)

    @property
    def path(self) -> str:
        return urlsplit(self.url).path.lstrip("/")


class TelegramBot:
    """The parts of the Telegram front end, reachable from `app.bot_data["tgtrader"]`."""

    def __init__(self, app: Application, dispatcher: Dispatcher, handlers: TelegramHandlers,
                 notifier: Notifier | None, api: TradingApi, connect_retry_s: float = 1.0,
                 webhook: Webhook | None = None) -> None:
        self.app = app
        self.webhook = webhook
        self.dispatcher = dispatcher
        self.handlers = handlers
        self.notifier = notifier
        self.api = api
        self.connect_retry_s = connect_retry_s
        self._notifier_started = False
        self._connect_task: asyncio.Task[None] | None = None
        self._stopping = False

    async def _start_notifier(self) -> None:
        if self.notifier is not None and not self._notifier_started:
            self._notifier_started = True
            self.notifier.attach(self.api.bus)
            await self.notifier.start()

    async def post_init(self, app: Application) -> None:
        """Also run by `app.run_polling()`: the command menu, then alert delivery."""
        await app.bot.set_my_commands([BotCommand(name, description) for name, description in menu()])
        await self._start_notifier()

    async def post_stop(self, app: Application) -> None:
        if self.notifier is not None and self._notifier_started:
            self._notifier_started = False
            await self.notifier.stop()

    async def start(self, poll_timeout: float = 10.0, poll_interval: float = 0.0, wait: bool = False) -> None:
        """Connect and long-poll (no signal handlers). Alerts start first: they only need the database.

        If Telegram is unreachable, trading must not wait for it: unless `wait`, this returns and keeps
        connecting in the background (alerts pile up in the outbox meanwhile). A rejected token is a
        configuration error, raised without the token in the message.
        """
        self._stopping = False
        await self._start_notifier()
        try:
            await self._connect(poll_timeout, poll_interval)
        except InvalidToken:
            raise ConfigError(["Telegram rejected TELEGRAM_BOT_TOKEN; check it with @BotFather"]) from None
        except NetworkError as exc:
            if wait:
                raise
            logger.warning("Telegram unreachable ({}); trading goes on, connecting in the background",
                           type(exc).__name__)
            self._connect_task = asyncio.get_running_loop().create_task(
                self._connect_forever(poll_timeout, poll_interval), name="telegram-connect")

    async def _connect(self, poll_timeout: float, poll_interval: float) -> None:
        await self.app.initialize()  # getMe; safe to call again after a failure
        await self.app.bot.set_my_commands([BotCommand(name, description) for name, description in menu()])
        if not self.app.running:
            await self.app.start()
        assert self.app.updater is not None
        if self.app.updater.running:
            return
        if self.webhook is None:
            await self.app.updater.start_polling(timeout=poll_timeout, poll_interval=poll_interval)
            return
        # setWebhook first (a failure raises and is retried like polling's), then the server starts listening
        await self.app.updater.start_webhook(
            listen=self.webhook.listen, port=self.webhook.port, url_path=self.webhook.path,
            webhook_url=self.webhook.url, secret_token=self.webhook.secret_token,
        )
        logger.info("Telegram webhook registered; listening on {}:{}", self.webhook.listen, self.webhook.port)

    async def _connect_forever(self, poll_timeout: float, poll_interval: float) -> None:
        delay = self.connect_retry_s
        while not self._stopping:
            await asyncio.sleep(delay)
            if self._stopping:
                return
            try:
                await self._connect(poll_timeout, poll_interval)
                logger.info("Telegram reachable again; {}", "polling" if self.webhook is None else "webhook set")
                if self.notifier is not None:
                    self.notifier.wake(network_back=True)
                return
            except InvalidToken:
                logger.error("Telegram rejected the bot token; the bot stays offline (trading goes on)")
                return
            except NetworkError as exc:
                logger.info("Telegram still unreachable ({})", type(exc).__name__)
                delay = min(delay * 1.5, 30.0)

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
    alert_window_s: float = 1.0,
    stream_down_alert_s: float = 30.0,
    per_chat_interval_s: float = 1.0,
    notifier_poll_s: float = 1.0,
    daily_summary_utc: dt.time | None = None,
    preview_ttl_s: float = 300.0,
    confirm_ttl_s: float = 60.0,
    extra_secrets: Iterable[str] = (),
    connect_retry_s: float = 1.0,
    webhook: Webhook | None = None,
) -> Application:
    """Build the bot. `db` is the store `Database` (its `outbox` makes alerts durable); without it no
    alerts are sent. `base_url` points PTB at another Bot API server (e.g. a test fake)."""
    allowed = frozenset(int(x) for x in allowed_chat_ids)
    builder = ApplicationBuilder().token(token).rate_limiter(AIORateLimiter(max_retries=max_retries))
    if base_url:
        builder = builder.base_url(base_url)
    if base_file_url:
        builder = builder.base_file_url(base_file_url)
    builder = builder.concurrent_updates(False)
    app = builder.build()

    notifier: Notifier | None = None
    if db is not None:
        async def send(chat_id: int, text: str) -> object:
            return await app.bot.send_message(chat_id, text)

        notifier = Notifier(
            db, send, lambda: allowed, window_s=alert_window_s, stream_down_alert_s=stream_down_alert_s,
            per_chat_interval_s=per_chat_interval_s, poll_s=notifier_poll_s,
        )

    def on_subscribe(chat_id: int) -> None:
        if notifier is not None:
            notifier.wake(chat_id)

    async def progress(chat_id: int, text: str) -> object:
        return await app.bot.send_message(chat_id, text)

    dispatcher = Dispatcher(
        api, bot_name=bot_name, preview_ttl_s=preview_ttl_s, confirm_ttl_s=confirm_ttl_s,
        on_subscribe=on_subscribe, secrets_to_hide=[token, *extra_secrets], progress=progress,
    )
    handlers = TelegramHandlers(dispatcher, allowed)
    bot = TelegramBot(app, dispatcher, handlers, notifier, api, connect_retry_s, webhook)
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
