"""`tgtrader run` in paper mode: the paper exchange trades on Binance's live rules and public market stream
(here the loopback fake, spoken to by the real python-binance client), the trader works through the (fake)
Bot API with the real python-telegram-bot, and not a single order reaches Binance."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from tests.fakes.fake_binance import FakeBinance
from tests.fakes.fake_telegram import TOKEN, FakeTelegram
from tgtrader.config import load_settings
from tgtrader.runner import serve

CHAT = 777


@asynccontextmanager
async def paper_run(tmp_path: Path) -> AsyncIterator[tuple[FakeBinance, FakeTelegram]]:
    """`tgtrader run --paper` against the fake Binance and the fake Bot API, up and answering; on leaving it must
    stop with exit 0 having sent Binance no order at all."""
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
                yield binance, telegram
            finally:
                stop.set()
                assert await asyncio.wait_for(bot, timeout=30) == 0
    finally:
        await binance.stop()
    assert sum(binance.order_posts.values()) == 0  # paper mode: nothing was ever sent to the exchange


async def test_run_paper_trades_on_live_market_data_and_never_sends_an_order(tmp_path: Path) -> None:
    async with paper_run(tmp_path) as (binance, telegram):
        telegram.push_command(CHAT, "/grid new BTCUSDT 45000 55000 10 2000")
        try:
            await telegram.wait_for(lambda: telegram.buttons(CHAT), timeout=10)
        except TimeoutError:
            raise AssertionError(telegram.texts_to(CHAT)) from None
        assert "Grid preview BTCUSDT" in telegram.texts_to(CHAT)[-1]
        telegram.push_callback(CHAT, telegram.buttons(CHAT)[0]["callback_data"])
        await telegram.wait_for(lambda: any("started" in t for t in telegram.texts_to(CHAT)), timeout=10)
        # the market moves on Binance's public stream; the paper exchange fills the grid's buys
        for price in ("48900", "47900", "51100"):
            await asyncio.sleep(0.3)
            await binance.set_price("BTCUSDT", price)
        await telegram.wait_for(lambda: any("FILL" in t for t in telegram.texts_to(CHAT)), timeout=10)
        telegram.push_command(CHAT, "/status")
        await telegram.wait_for(lambda: any("Mode: PAPER" in t for t in telegram.texts_to(CHAT)), timeout=10)
    assert binance.requests  # but its REST (time, exchangeInfo) and market stream were used
