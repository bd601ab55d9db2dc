"""`tgtrader run`: wire settings -> store -> exchange -> trading core -> Telegram, and run until a signal.

This module only builds and connects components; every decision lives in the core.
Paper mode (the default) trades on the in-process paper exchange fed by Binance's public market
stream; live mode needs TGTRADER_MODE=live and keys. Without a bot token the console chat is used.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from loguru import logger

from tgtrader import health
from tgtrader.backtest.market import ExchangeMarketData
from tgtrader.config import Settings, load_settings
from tgtrader.core.config import CoreConfig
from tgtrader.core.events import EventBus
from tgtrader.core.ports import Exchange
from tgtrader.core.service import TradingCore
from tgtrader.exchange.binance import BinanceExchange
from tgtrader.exchange.paper import PaperExchange
from tgtrader.logging_setup import setup_logging
from tgtrader.startup import (
    RETRY_CAP_S,
    RETRY_FIRST_S,
    StartingApi,
    describe,
    is_auth_failure,
    reconciled_start,
    retry_until_started,
)
from tgtrader.store.core_store import CoreStore
from tgtrader.store.db import Database
from tgtrader.store.klines import KlineRepo
from tgtrader.types import Tick


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--paper",
        action="store_true",
        help="paper-trade on live Binance market data even if TGTRADER_MODE=live",
    )
    parser.add_argument(
        "--console",
        action="store_true",
        help="also read commands from this terminal (the same commands as the chat)",
    )


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    setup_logging(settings)
    paper = bool(args.paper) or not settings.is_live
    if not paper and not settings.has_binance_keys:  # load_settings already refuses this; belt and braces
        print("config: live mode needs BINANCE_API_KEY and BINANCE_API_SECRET", file=sys.stderr)
        return 2
    try:
        return asyncio.run(serve(settings, paper=paper, console=bool(args.console)))
    except KeyboardInterrupt:
        return 130


def core_config(settings: Settings) -> CoreConfig:
    return CoreConfig(
        fee_rate=settings.paper_taker_fee,
        max_per_grid=settings.max_grid_quote,
        max_total_in_grids=settings.max_total_quote,
        max_open_orders=settings.max_open_orders,
    )


async def open_exchange(settings: Settings, db: Database, paper: bool) -> tuple[Exchange, BinanceExchange | None]:
    """The exchange the core trades on, plus (paper mode) the market-data feed that drives it.

    Paper mode never sends an order to Binance: it trades on the in-process paper exchange, with the live
    symbol rules and the live public market stream (no keys needed).
    """
    key = settings.binance_api_key.reveal() if settings.binance_api_key else ""
    secret = settings.binance_api_secret.reveal() if settings.binance_api_secret else ""
    endpoints = dict(testnet=settings.binance_testnet, rest_url=settings.binance_rest_url,
                     ws_url=settings.binance_ws_url)
    if not paper:
        pem, passphrase = settings.binance_private_key, settings.binance_private_key_passphrase
        signing = dict(key_type=settings.binance_key_type, private_key=pem.reveal() if pem else None,
                       private_key_pass=passphrase.reveal() if passphrase else None)
        return BinanceExchange(key, secret, **endpoints, **signing), None  # type: ignore[arg-type]
    market = BinanceExchange(key, secret, user_stream=False, stream_kinds=("trade",), **endpoints)  # type: ignore[arg-type]
    try:
        await market.start()
    except BaseException:
        with suppress(Exception):
            await market.close()  # a start retried for hours must not leave a session open per attempt
        raise
    exchange = PaperExchange(
        db,
        rules=market.all_rules(),
        maker_fee=settings.paper_maker_fee,
        taker_fee=settings.paper_taker_fee,
        initial_balances=settings.paper_balances,
        fee_asset=settings.paper_fee_asset,
        on_subscribe=market.subscribe,
        on_unsubscribe=market.unsubscribe,
        price_source=market.ticker_price,
    )

    def forward(event: object) -> None:
        if isinstance(event, Tick):
            exchange.feed(event)

    market.set_event_sink(forward)  # type: ignore[arg-type]
    return exchange, market


async def serve(settings: Settings, *, paper: bool, console: bool = False, stop: asyncio.Event | None = None,
                retry_s: tuple[float, float] = (RETRY_FIRST_S, RETRY_CAP_S)) -> int:
    """Run until SIGINT/SIGTERM (or `stop` is set). Orders stay resting when it stops; a restart resumes.

    The exchange may be unreachable at start: the start is retried (backoff `retry_s` = first, cap) while the
    chat already answers with the reason (startup.py); nothing is sent before the core has reconciled."""
    db = await Database.open(settings.db_path)
    bus = EventBus()
    mode = "paper" if paper else ("testnet" if settings.binance_testnet else "live")
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    exchange: Exchange | None = None
    market: BinanceExchange | None = None
    core: TradingCore | None = None
    bot: Any = None
    tasks: list[asyncio.Task[Any]] = []
    market_data: ExchangeMarketData | None = None
    api = StartingApi(bus)  # the chat's API: refuses with the reason until the core trades, then forwards to it
    beat = health.Heartbeat(since_ms=_now_ms())
    beat_path = health.heartbeat_path(settings.db_path)
    telegram_started = False
    try:
        tasks.append(asyncio.create_task(_heartbeat(beat_path, beat, lambda: core), name="heartbeat"))
        if settings.telegram_bot_token:
            from tgtrader.telegram.app import build_application, frontend, telegram_options

            market_data = ExchangeMarketData(KlineRepo(db), settings.paper_fee_asset if paper else "base")
            app = build_application(
                market_data=market_data,  # bound to the exchange once connected (guided /grid, issue 17)
                token=settings.telegram_bot_token.reveal(),
                api=api,  # type: ignore[arg-type]
                db=db,
                base_url=settings.telegram_api_base,
                base_file_url=settings.telegram_api_base.replace("/bot", "/file/bot"),
                extra_secrets=settings.secrets(),
                daily_summary_utc=settings.daily_summary_utc,
                **telegram_options(settings),  # chats, users, command age, webhook (issue 16)
            )
            bot = frontend(app)
            if bot.notifier is not None:
                # Subscribe alerts BEFORE core.start(): the start-up reconciliation publishes the fills made
                # while the bot was down, and they must reach the durable outbox (found by tests/reliability).
                bot.notifier.attach(bus)
                bot.notifier.attach = lambda _bus: None  # type: ignore[method-assign]  # post_init: no 2nd subscription

        async def attempt() -> tuple[Exchange, BinanceExchange | None, TradingCore]:
            ex: Exchange | None = None
            mk: BinanceExchange | None = None
            c: TradingCore | None = None
            try:
                ex, mk = await open_exchange(settings, db, paper)
                c = TradingCore(ex, CoreStore(db), bus, config=core_config(settings), mode=mode)
                await reconciled_start(c.start, bus)  # connect, load, recover, reconcile: then trade
                return ex, mk, c
            except BaseException:
                await _close_quietly(c, None, mk, ex)
                raise

        async def failed(exc: BaseException, delay: float, failures: int) -> None:
            nonlocal telegram_started
            broken = is_auth_failure(exc)
            api.reason = (f"the exchange refuses the API key ({describe(exc)}); fix it and restart" if broken
                          else f"cannot reach the exchange ({describe(exc)})")
            state = health.BROKEN if broken else health.WAITING
            if beat.state != state:
                beat.since_ms = _now_ms()
            beat.state, beat.reason = state, api.reason
            _write_beat(beat_path, beat)
            logger.warning("not trading yet: {}; attempt {} failed, retrying in {:.0f} s", api.reason, failures, delay)
            if failures == 1:
                with suppress(Exception):
                    await db.outbox.enqueue("startup", f"\u26a0\ufe0f {api.refusal()}")
            if bot is not None and not telegram_started:  # the chat says why, while the start is retried
                telegram_started = True
                tasks.append(asyncio.create_task(_start_telegram(bot), name="telegram-start"))

        started = await retry_until_started(attempt, stop, failed, *retry_s)
        if started is None:
            logger.info("stopped before trading started")
            return 0
        exchange, market, core = started
        if market_data is not None:
            market_data.bind(exchange, market or exchange)
        waited = beat.state != health.STARTING
        api.target = core
        beat.state, beat.reason, beat.since_ms = health.TRADING, "", _now_ms()
        _write_beat(beat_path, beat)
        if waited:
            logger.info("the exchange answers: reconciled, trading starts")
            with suppress(Exception):
                await db.outbox.enqueue("startup", "\u2705 The exchange answers again: reconciled, trading started.")
        logger.info("tgtrader running in {} mode on {}", mode, exchange.name)
        if bot is not None and not telegram_started:
            # Telegram being unreachable must not stop trading: connect in the background, with backoff.
            telegram_started = True
            tasks.append(asyncio.create_task(_start_telegram(bot), name="telegram-start"))
        if console or not settings.telegram_bot_token:
            tasks.append(asyncio.create_task(_console_then_stop(core, stop)))
        await stop.wait()
        logger.info("stopping: orders stay resting on the exchange; a restart resumes them")
        return 0
    finally:
        for task in tasks:
            task.cancel()
        # The core first: it releases chat commands still waiting on it (a /buy chase can rest for hours),
        # which python-telegram-bot's stop would otherwise wait for. Alerts are in the outbox already.
        if core is not None:
            with suppress(Exception):
                await core.stop()
        if bot is not None:
            with suppress(Exception):
                await bot.stop()
        if market is not None:
            with suppress(Exception):
                await market.close()
        if exchange is not None:
            with suppress(Exception):
                await exchange.close()
        await db.close()
        with suppress(OSError):
            beat_path.unlink()


def _now_ms() -> int:
    return int(time.time() * 1000)


async def _close_quietly(core: TradingCore | None, bot: Any, market: BinanceExchange | None,
                         exchange: Exchange | None) -> None:
    for closing in (core.stop if core else None, bot.stop if bot else None, market.close if market else None,
                    exchange.close if exchange is not None and exchange is not market else None):
        if closing is not None:
            with suppress(Exception):
                await closing()


async def _heartbeat(path: Path, beat: health.Heartbeat, core: Any) -> None:
    """Rewrite the heartbeat file (`tgtrader health`, Docker's HEALTHCHECK) every few seconds."""
    while True:
        current = core()
        if current is not None and getattr(current, "_halted", False) and beat.state != health.BROKEN:
            beat.state, beat.reason, beat.since_ms = (health.BROKEN, "trading halted: the database could not be "
                                                      "written (see the log); restart once fixed", _now_ms())
        _write_beat(path, beat)
        await asyncio.sleep(health.BEAT_EVERY_S)


def _write_beat(path: Path, beat: health.Heartbeat) -> None:
    try:
        health.write(path, beat)
    except OSError as exc:
        logger.warning("heartbeat {} not written: {}", path, exc)


async def _start_telegram(bot: Any) -> None:
    """Start the Telegram front end, retrying with backoff while the Bot API is unreachable."""
    from telegram.error import InvalidToken, TelegramError

    delay = 1.0
    while True:
        try:
            await bot.start()
            return
        except InvalidToken:
            logger.error("Telegram refused the bot token; the bot keeps trading without chat control")
            return
        except (TelegramError, OSError) as exc:
            logger.warning("Telegram not reachable ({}); retrying in {:.0f} s", type(exc).__name__, delay)
            with suppress(Exception):
                if bot.app.running:
                    await bot.app.stop()
        await asyncio.sleep(delay)
        delay = min(delay * 2, 30.0)


async def _console_then_stop(core: TradingCore, stop: asyncio.Event) -> None:
    from tgtrader.console import run_console

    try:
        await run_console(core)
    finally:
        if sys.stdin.isatty():  # a closed stdin (service, container) must not stop the bot
            stop.set()
