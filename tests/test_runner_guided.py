"""`tgtrader run` wires guided /grid (issue 17): in paper mode its candles come from Binance's klines endpoint
(here the fake) through the SQLite cache, and its rules and fee from the paper exchange."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.fakes.fake_binance import FakeBinance
from tests.fakes.fake_telegram import TOKEN, FakeTelegram
from tgtrader.config import load_settings
from tgtrader.runner import serve

CHAT = 777


async def test_run_offers_backtested_setups_from_the_exchanges_candles(tmp_path: Path) -> None:
    binance = await FakeBinance().start()
    try:
        await binance.set_price("BTCUSDT", "50000")
        async with FakeTelegram() as telegram:
            settings = load_settings(env={
                "TGTRADER_MODE": "paper",
                "BINANCE_REST_URL": binance.rest_url, "BINANCE_WS_URL": binance.ws_url,
                "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_ALLOWED_CHAT_IDS": str(CHAT),
                "TELEGRAM_API_BASE": telegram.base_url,
                "TGTRADER_DB": str(tmp_path / "paper.db"), "TGTRADER_LOG_DIR": str(tmp_path / "logs"),
                "TGTRADER_PAPER_BALANCES": "USDT=10000",
            }, env_file=None)
            stop = asyncio.Event()
            bot = asyncio.create_task(serve(settings, paper=True, stop=stop))
            try:
                await telegram.wait_for(lambda: any(c.method == "setMyCommands" for c in telegram.calls), timeout=10)
                telegram.push_command(CHAT, "/grid")
                await telegram.wait_for(lambda: any(b["text"] == "BTCUSDT" for b in telegram.buttons(CHAT)), timeout=10)
                assert "step 1 of 3" in telegram.texts_to(CHAT)[-1]
                button = next(b for b in telegram.buttons(CHAT) if b["text"] == "BTCUSDT")
                telegram.push_callback(CHAT, button["callback_data"])
                try:
                    await telegram.wait_for(lambda: any("step 2 of 3" in t for t in telegram.texts_to(CHAT)),
                                            timeout=30)
                except TimeoutError:
                    raise AssertionError(telegram.texts_to(CHAT)) from None
                assert binance.klines_served == 14 * 1440  # the last 14 days of 1m candles, fetched once
            finally:
                stop.set()
                assert await asyncio.wait_for(bot, timeout=30) == 0
    finally:
        await binance.stop()
    assert sum(binance.order_posts.values()) == 0
