"""Issue 17, done when: the guided /grid flow through the real python-telegram-bot Application against the fake
Bot API, with suggestions computed from the fake Binance's klines (through the SQLite cache), trading on the
paper core: from /grid to a running grid in at most 5 button presses and one typed number."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal as D
from pathlib import Path

import pytest

from tests.fakes.fake_binance import FakeBinance
from tests.fakes.fake_telegram import FakeTelegram
from tests.telegram.test_bot_e2e import ALICE, BOB, Stack, close_stack, make_stack
from tgtrader.backtest.market import ExchangeMarketData
from tgtrader.exchange.binance.adapter import BinanceExchange
from tgtrader.store.klines import KlineRepo

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")


@pytest.fixture
async def guided(tmp_path: Path, fake: FakeTelegram) -> AsyncIterator[tuple[Stack, FakeBinance, ExchangeMarketData]]:
    binance = await FakeBinance().start()
    await binance.set_price("BTCUSDT", "52000")  # the fake's candles wave around its price, as the paper core's
    feed = BinanceExchange("", "", user_stream=False, rest_url=binance.rest_url, ws_url=binance.ws_url)
    await feed.start()
    market = ExchangeMarketData(None)  # type: ignore[arg-type]  # the repo needs the stack's database
    stack = await make_stack(tmp_path, fake, market_data=market)
    market.repo = KlineRepo(stack.db)
    market.bind(stack.paper, feed)
    try:
        yield stack, binance, market
    finally:
        await close_stack(stack)
        await feed.close()
        await binance.stop()


async def tap(stack: Stack, chat: int, label: str, expect: str) -> str:
    """Press the button starting with `label` on the latest message with buttons; wait for `expect`."""
    fake = stack.fake
    button = next(b for b in fake.buttons(chat) if b["text"].startswith(label))
    before = len(fake.sent_to(chat))
    fake.push_callback(chat, button["callback_data"])
    await fake.wait_for(lambda: any(expect in str(c.params.get("text", "")) for c in fake.sent_to(chat)[before:]),
                        timeout=20)
    return next(str(c.params["text"]) for c in fake.sent_to(chat)[before:] if expect in str(c.params.get("text", "")))


async def test_guided_grid_in_four_taps_and_one_typed_number(guided) -> None:  # type: ignore[no-untyped-def]
    stack, binance, market = guided
    fake = stack.fake
    ask = await stack.ask(ALICE, "/grid")
    assert "step 1 of 3" in ask
    assert [b["text"] for b in fake.buttons(ALICE)][:1] == ["BTCUSDT"]
    taps = 0
    setups = await tap(stack, ALICE, "BTCUSDT", "step 2 of 3")
    taps += 1
    assert "backtested on the last 14 days (20,160 1m candles" in setups and "round trips" in setups
    assert binance.klines_served == 20_160  # the suggestions come from the fake's klines...
    assert len(await KlineRepo(stack.db).since("BTCUSDT", "1m", 0)) == 20_160  # ...kept in SQLite
    labels = [b["text"] for b in fake.buttons(ALICE)]
    assert labels[0].startswith("①") and labels[-2:] == ["Back", "Cancel"]
    await tap(stack, ALICE, "①", "step 3 of 3")
    taps += 1
    before = len(fake.sent_to(ALICE))
    fake.push_text(ALICE, "1500")  # the one typed number (plain text, not a command)
    await fake.wait_for(lambda: stack.answers(ALICE, before), timeout=5)
    preview = str(stack.answers(ALICE, before)[0].params["text"])
    assert "Grid preview BTCUSDT" in preview and "investment 1,500.00" in preview
    assert "Past results do not predict the future." in preview
    assert not await stack.core.list_grids()
    started = await tap(stack, ALICE, "Start", "started")
    taps += 1
    assert taps <= 5
    grids = await stack.core.list_grids()
    assert len(grids) == 1 and grids[0].state == "running" and grids[0].investment == D("1500.00")

    # a second /grid a minute later reads the cache: it asks Binance only for the new candles
    served = binance.klines_served
    await stack.ask(ALICE, "/grid")
    await tap(stack, ALICE, "BTCUSDT", "step 2 of 3")
    assert binance.klines_served - served <= 2
    assert "cancelled" in await tap(stack, ALICE, "Cancel", "cancelled")
    assert "Grid #1 BTCUSDT started" in started


async def test_another_chat_cannot_use_the_flow(guided) -> None:  # type: ignore[no-untyped-def]
    stack, _, _ = guided
    fake = stack.fake
    await stack.ask(ALICE, "/grid")
    button = fake.buttons(ALICE)[0]["callback_data"]
    before = len(fake.sent_to(BOB))
    fake.push_callback(BOB, button, message_text="forwarded")
    await fake.wait_for(lambda: any(c.method == "answerCallbackQuery" and "Not your button" in str(c.params.get("text"))
                                    for c in fake.calls), timeout=5)
    assert all("step 2" not in str(c.params.get("text", "")) for c in fake.sent_to(BOB)[before:])
    assert not await stack.core.list_grids()
