"""Guided /grid through the dispatcher, on the real core and paper exchange: symbol -> setup -> investment ->
preview -> Start, plus Back, Cancel, typed input, expiry and the usual button rules."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from decimal import Decimal as D
from pathlib import Path

import numpy as np
import pytest

from tests.fakes.fake_klines import synthetic
from tgtrader.backtest.candles import Candles
from tgtrader.chat.dispatch import Dispatcher
from tgtrader.chat.render import Reply
from tgtrader.core.config import CoreConfig
from tgtrader.core.events import EventBus
from tgtrader.core.rules import SymbolRules
from tgtrader.core.service import TradingCore
from tgtrader.exchange.paper import PaperExchange
from tgtrader.fees import FeeAsset
from tgtrader.store.core_store import CoreStore
from tgtrader.store.db import Database

PRICE = 52000.0


class StubMarket:
    """Two days of the fake exchange's deterministic candles around the price; the paper venue's rules."""

    def __init__(self, paper: PaperExchange) -> None:
        self.paper = paper
        self.asked: list[tuple[str, float]] = []

    async def candles(self, symbol: str, days: float) -> Candles:
        self.asked.append((symbol, days))
        t0 = 1_700_000_000_000
        rows = np.array([synthetic(symbol, PRICE, t0 + i * 60_000, 60_000) for i in range(2880)])
        return Candles.from_arrays(rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3],
                                   open_time=t0 + np.arange(2880, dtype=np.int64) * 60_000, volume=rows[:, 4])

    async def rules(self, symbol: str) -> SymbolRules | None:
        return await self.paper.symbol_rules(symbol)

    async def fee(self) -> tuple[float, FeeAsset]:
        return 0.001, "base"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[Dispatcher, TradingCore, Clock]]:
    db = await Database.open(tmp_path / "g.sqlite")
    paper = PaperExchange(db, initial_balances={"USDT": D("10000")})
    core = TradingCore(paper, CoreStore(db), EventBus(), CoreConfig(timer_interval_s=0), mode="paper")
    await core.start()
    await paper.subscribe({"BTCUSDT"})
    paper.feed_trade("BTCUSDT", D(str(PRICE)), int(time.time() * 1000))
    await core.idle()
    clock = Clock()
    d = Dispatcher(core, clock=clock, market=StubMarket(paper))
    try:
        yield d, core, clock
    finally:
        await core.stop()
        await paper.close()
        await db.close()


def labels(reply: Reply) -> list[str]:
    return [b.label for row in reply.buttons for b in row]


def data(reply: Reply, label: str) -> str:
    return next(b.data for row in reply.buttons for b in row if b.label.startswith(label))


async def test_four_taps_from_grid_to_a_running_grid(setup) -> None:  # type: ignore[no-untyped-def]
    d, core, _ = setup
    ask = await d.dispatch("/grid", 1, 10)
    assert "step 1 of 3" in ask.text and labels(ask)[0] == "BTCUSDT" and labels(ask)[-1] == "Cancel"
    setups = await d.press(data(ask, "BTCUSDT"), 1, 10)  # tap 1
    assert setups.edit and "step 2 of 3" in setups.text and "round trips" in setups.text
    assert "Past results do not predict the future." in setups.text and "return / max drawdown" in setups.text
    assert d.guided.market.asked == [("BTCUSDT", 14.0)]  # type: ignore[union-attr]
    assert labels(setups)[-2:] == ["Back", "Cancel"] and labels(setups)[0].startswith("①")
    amounts = await d.press(data(setups, "①"), 1, 10)  # tap 2
    assert "step 3 of 3" in amounts.text and labels(amounts)[:3] == ["25 % (2,500.00)", "50 % (5,000.00)",
                                                                     "100 % (10,000.00)"]
    preview = await d.press(data(amounts, "25 %"), 1, 10)  # tap 3
    assert "Grid preview BTCUSDT" in preview.text and "investment 2,500.00" in preview.text
    assert "would have made" in preview.text and "Past results do not predict the future." in preview.text
    assert labels(preview) == ["Start", "Cancel", "Back"]
    started = await d.press(data(preview, "Start"), 1, 10)  # tap 4
    assert "started" in started.text
    grids = await core.list_grids()
    chosen = d.guided.flows[1].chosen.spec  # type: ignore[union-attr]
    assert len(grids) == 1 and grids[0].state == "running" and grids[0].investment == D("2500.00")
    assert (grids[0].lower, grids[0].upper, grids[0].grids) == (chosen.lower, chosen.upper, chosen.grids)


async def test_typed_symbol_typed_amount_back_and_cancel(setup) -> None:  # type: ignore[no-untyped-def]
    d, core, _ = setup
    await d.dispatch("/grid", 1, 10)
    wrong = await d.dispatch("DOGEXYZ", 1, 10)
    assert "not a symbol I know" in wrong.text and "step 1 of 3" in wrong.text
    setups = await d.dispatch("btcusdt", 1, 10)  # typed instead of tapped
    assert "step 2 of 3" in setups.text
    amounts = await d.press(data(setups, "②" if "②" in setups.text else "①"), 1, 10)
    back = await d.press(data(amounts, "Back"), 1, 10)
    assert "step 2 of 3" in back.text  # the setups again, without a new backtest
    assert len(d.guided.market.asked) == 1  # type: ignore[union-attr]
    amounts = await d.press(data(back, "①"), 1, 10)
    bad = await d.dispatch("lots", 1, 10)
    assert "Not an amount" in bad.text and "step 3 of 3" in bad.text
    someone_else = await d.dispatch("300", 1, 99)  # another person's text is not an answer to this flow
    assert "Grid preview" not in someone_else.text
    preview = await d.dispatch("1,000", 1, 10)
    assert "Grid preview BTCUSDT" in preview.text and "investment 1,000.00" in preview.text
    cancelled = await d.press(data(preview, "Cancel"), 1, 10)
    assert "cancelled" in cancelled.text.lower()
    assert not await core.list_grids()
    again = await d.dispatch("/grid BTCUSDT", 1, 10)  # /grid SYMBOL skips step 1
    assert "step 2 of 3" in again.text
    gone = await d.press(data(again, "Cancel"), 1, 10)
    assert "cancelled" in gone.text and 1 not in d.guided.flows
    assert "no longer" in (await d.dispatch("500", 1, 10)).text or 1 not in d.guided.flows


async def test_buttons_are_single_use_bound_and_expire(setup) -> None:  # type: ignore[no-untyped-def]
    d, core, clock = setup
    ask = await d.dispatch("/grid", 1, 10)
    btc = data(ask, "BTCUSDT")
    assert "belongs to another chat" in (await d.press(btc, 2, 10)).text
    assert "Only the person who asked" in (await d.press(btc, 1, 11)).text
    setups = await d.press(btc, 1, 10)
    assert "already used" in (await d.press(btc, 1, 10)).text
    newer = await d.dispatch("/grid", 1, 10)  # a newer flow replaces the old one
    assert "has ended" in (await d.press(data(setups, "①"), 1, 10)).text
    clock.t += 3600
    assert "expired" in (await d.press(data(newer, "BTCUSDT"), 1, 10)).text
    assert not await core.list_grids()


async def test_without_market_data_grid_alone_still_lists(setup) -> None:  # type: ignore[no-untyped-def]
    _, core, _ = setup
    plain = Dispatcher(core)
    assert "No grids" in (await plain.dispatch("/grid", 1)).text or "grid" in (await plain.dispatch("/grid", 1)).text
    assert not plain.guided.flows


async def test_typed_text_after_expiry_says_so(setup) -> None:  # type: ignore[no-untyped-def]
    d, core, clock = setup
    await d.dispatch("/grid", 1, 10)
    clock.t += 700
    assert "expired" in (await d.dispatch("BTCUSDT", 1, 10)).text
    assert 1 not in d.guided.flows
    assert "not a command" in (await d.dispatch("BTCUSDT", 1, 10)).text  # the flow is gone
