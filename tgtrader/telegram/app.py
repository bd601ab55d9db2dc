"""Wiring: `build_application()` returns a PTB Application with authorization first, one handler per
row of the command table, button and fallback handlers, one error handler, a rate limiter that
honours flood control, and the alert notifier attached to the core's event bus.

Use `TelegramBot.start()/stop()` to run it inside an existing event loop (tests, the CLI), or
`app.run_polling()`; both paths run the same `post_init` (command menu, notifier start).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Iterable

from loguru import logger
from telegram import BotCommand, Update
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

from tgtrader.core.api import TradingApi
from tgtrader.telegram.commands import COMMANDS, menu
from tgtrader.telegram.dispatch import Dispatcher
from tgtrader.telegram.handlers import TelegramHandlers
from tgtrader.telegram.notify import Notifier
from tgtrader.telegram.render import render_pnl, render_status

BOT_DATA_KEY = "tgtrader"


class TelegramBot:
    """The parts of the Telegram front end, reachable from `app.bot_data["tgtrader"]`."""

    def __init__(self, app: Application, dispatcher: Dispatcher, handlers: TelegramHandlers,
                 notifier: Notifier | None, api: TradingApi) -> None:
        self.app = app
        self.dispatcher = dispatcher
        self.handlers = handlers
        self.notifier = notifier
        self.api = api

    async def post_init(self, app: Application) -> None:
        await app.bot.set_my_commands([BotCommand(name, description) for name, description in menu()])
        if self.notifier is not None:
            self.notifier.attach(self.api.bus)
            await self.notifier.start()

    async def post_stop(self, app: Application) -> None:
        if self.notifier is not None:
            await self.notifier.stop()

    async def start(self, poll_timeout: float = 10.0, poll_interval: float = 0.0) -> None:
        """Initialize, run post_init, start the application and long polling (no signal handlers)."""
        await self.app.initialize()
        await self.post_init(self.app)
        await self.app.start()
        assert self.app.updater is not None
        await self.app.updater.start_polling(timeout=poll_timeout, poll_interval=poll_interval)

    async def stop(self) -> None:
        if self.app.updater is not None and self.app.updater.running:
            await self.app.updater.stop()
        if self.app.running:
            await self.app.stop()
        await self.post_stop(self.app)
        await self.app.shutdown()

    async def daily_summary(self, context: ContextTypes.DEFAULT_TYPE | None = None) -> None:
        if self.notifier is None:
            return
        try:
            text = "Daily summary\n" + render_status(await self.api.status()) + "\n\n" + render_pnl(await self.api.pnl(1))
        except Exception:
            logger.exception("daily summary failed")
            return
        await self.notifier.enqueue_text(text, "daily-summary")


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

    dispatcher = Dispatcher(
        api, bot_name=bot_name, preview_ttl_s=preview_ttl_s, confirm_ttl_s=confirm_ttl_s,
        on_subscribe=on_subscribe, secrets_to_hide=[token, *extra_secrets],
    )
    handlers = TelegramHandlers(dispatcher, allowed)
    bot = TelegramBot(app, dispatcher, handlers, notifier, api)
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
        app.job_queue.run_daily(bot.daily_summary, time=daily_summary_utc.replace(tzinfo=dt.timezone.utc),
                                name="daily-summary")
    return app


def frontend(app: Application) -> TelegramBot:
    return app.bot_data[BOT_DATA_KEY]
