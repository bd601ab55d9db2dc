"""`tgtrader run` wires guided /grid (issue 17): in paper mode its candles come from Binance's klines endpoint
(here the fake) through the SQLite cache, and its rules and fee from the paper exchange."""

from __future__ import annotations

from pathlib import Path

from tests.test_runner import CHAT, paper_run


async def test_run_offers_backtested_setups_from_the_exchanges_candles(tmp_path: Path) -> None:
    async with paper_run(tmp_path) as (binance, telegram):
        telegram.push_command(CHAT, "/grid")
        await telegram.wait_for(lambda: any(b["text"] == "BTCUSDT" for b in telegram.buttons(CHAT)), timeout=10)
        assert "step 1 of 3" in telegram.texts_to(CHAT)[-1]
        button = next(b for b in telegram.buttons(CHAT) if b["text"] == "BTCUSDT")
        telegram.push_callback(CHAT, button["callback_data"])
        try:
            await telegram.wait_for(lambda: any("step 2 of 3" in t for t in telegram.texts_to(CHAT)), timeout=30)
        except TimeoutError:
            raise AssertionError(telegram.texts_to(CHAT)) from None
        assert binance.klines_served == 14 * 1440  # the last 14 days of 1m candles, fetched once
