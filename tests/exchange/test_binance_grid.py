"""A grid traded by the real core through the real python-binance client against the fake Binance: a scripted
market path ends with exactly the fills, round trips and resting orders computed by hand below."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Callable
from decimal import Decimal as D
from pathlib import Path

import pytest
from binance.ws.reconnecting_websocket import ReconnectingWebsocket

from tests.fakes.fake_binance import API_KEY, API_SECRET, DEFAULT_SYMBOLS, FakeBinance
from tgtrader.core.api import GridSpec
from tgtrader.core.config import CoreConfig
from tgtrader.core.events import EventBus, GridRoundTrip, OrderFilled
from tgtrader.core.service import TradingCore
from tgtrader.exchange.binance import BinanceExchange
from tgtrader.store.core_store import CoreStore
from tgtrader.store.db import Database
from tgtrader.types import Side

pytestmark = pytest.mark.timeout(60)
FEE = D("0.001")


async def until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("commission", ["quote", "received"])
async def test_scripted_path_gives_exactly_the_hand_computed_fills(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   commission: str) -> None:
    """In "received" (Binance's default) a buy's fee comes out of its base: each interval sells what it holds
    rounded down to the step and its next buy tops the dust up to q (issue 15)."""
    monkeypatch.setattr(ReconnectingWebsocket, "_get_reconnect_wait", lambda self, n: 0.1)
    monkeypatch.setattr(ReconnectingWebsocket, "TIMEOUT", 1)
    fake = await FakeBinance().start()
    fake.venue.commission = commission
    fake.set_balance("USDT", "5000")
    await fake.set_price("BTCUSDT", "50000")
    db = await Database.open(tmp_path / "grid.db")
    exchange = BinanceExchange(API_KEY, API_SECRET, rest_url=fake.rest_url, ws_url=fake.ws_url, request_timeout=2.0,
                               backoff_base_s=0.02, lookup_delay_s=0.05, user_check_s=0.5)
    bus = EventBus()
    fills: list[OrderFilled] = []
    trips: list[GridRoundTrip] = []
    bus.subscribe(lambda e: fills.append(e) if isinstance(e, OrderFilled) else
                  trips.append(e) if isinstance(e, GridRoundTrip) else None)
    core = TradingCore(exchange, CoreStore(db), bus, CoreConfig(timer_interval_s=0))
    try:
        await core.start()
        # levels 48000 49000 | 50000 51000 52000; P0 = 50000: [50000,51000] and [51000,52000] hold
        # q = 1000 / (48000 + 49000 + 2 x 50000) = 0.005076.. -> 0.00507 (step 0.00001)
        pv = await core.preview_grid(GridSpec("BTCUSDT", D("48000"), D("52000"), 4, D("1000")))
        assert pv.ok, pv.problems
        q = D("0.00507")
        assert pv.qty_per_order == q and list(pv.levels) == [D(x) for x in ("48000", "49000", "50000", "51000", "52000")]
        await core.start_grid(pv.token)
        await until(lambda: len(fake.engine.open_orders("main", "BTCUSDT")) == 4)  # start buy filled, 2 buys + 2 sells
        expected = [("BUY", "50000", 2 * q)]
        # received: the start buy gets 0.01012986 (0.00506 + 0.00506986 to the two holding intervals); 49000
        # gets 0.00506493 and sells 0.00506; the 52000 interval keeps 0.00000986 and buys 0.00506 back
        s = q if commission == "quote" else D("0.00506")
        moves = (("48500", [("BUY", "49000", q)]),
                 ("50500", [("SELL", "50000", s)]),
                 ("52500", [("SELL", "51000", s), ("SELL", "52000", s)]),
                 ("49500", [("BUY", "51000", s), ("BUY", "50000", q)]))
        for price, new in moves:
            await asyncio.sleep(0.05)
            await fake.set_price("BTCUSDT", price)
            expected += new
            await until(lambda: len(fills) == len(expected))
            await until(lambda: len(fake.engine.open_orders("main", "BTCUSDT")) == 4)
        await core.idle()
        assert [(f.side.value, f.price, f.qty) for f in fills] == [(s, D(p), x) for s, p, x in expected]
        # one round trip (bought 49000, sold 50000); the 51000/52000 sales sold start-bought base
        assert [(t.buy_price, t.sell_price) for t in trips] == [(D("49000"), D("50000"))]
        grid = (await core.list_grids())[0]
        assert grid.round_trips == 1
        if commission == "quote":
            assert grid.grid_profit == q * D("1000") - FEE * q * D("99000")
        else:  # sold 0.00506 of the 0.00506493 received for q x 49000 (the fee in base is not a cost again)
            assert grid.grid_profit == s * D("50000") * (1 - FEE) - q * D("49000") * s / (q * (1 - FEE))
        resting = sorted((o.side.value, o.price) for o in fake.engine.open_orders("main", "BTCUSDT"))
        assert resting == [("BUY", D("48000")), ("BUY", D("49000")), ("SELL", D("51000")), ("SELL", D("52000"))]
        assert all(n == 1 for n in fake.order_posts.values())  # no client order id was posted twice
        assert len(await db.fills.list(symbol="BTCUSDT")) == len(expected)  # each fill stored exactly once
        assert {f.side for f in fills} == {Side.BUY, Side.SELL}
    finally:
        await core.stop()
        await exchange.close()
        await db.close()
        await fake.stop()


async def test_live_previews_use_the_accounts_own_commission_rate(tmp_path: Path) -> None:
    """Issue 15: live mode used the paper fee setting as its fee rate instead of the account's commission."""
    fake = await FakeBinance().start()
    fake.venue.taker_rate = D("0.00075")  # e.g. a VIP tier
    fake.set_balance("USDT", "5000")
    await fake.set_price("BTCUSDT", "50000")
    db = await Database.open(tmp_path / "rate.db")
    exchange = BinanceExchange(API_KEY, API_SECRET, rest_url=fake.rest_url, ws_url=fake.ws_url, request_timeout=2.0)
    core = TradingCore(exchange, CoreStore(db), EventBus(), CoreConfig(timer_interval_s=0, fee_rate=D("0.001")))
    try:
        await core.start()
        assert core.config.fee_rate == D("0.00075")
    finally:
        await core.stop()
        await exchange.close()
        await db.close()
        await fake.stop()


async def test_the_preview_checks_percent_price_by_side_against_binances_average_price(tmp_path: Path) -> None:
    """Issue 14 item 7: PERCENT_PRICE_BY_SIDE was checked against the order's own (or the last) price, never the
    average price Binance uses (filters.md, over avgPriceMins); orders it would refuse passed the preview."""
    info = copy.deepcopy(DEFAULT_SYMBOLS[0])
    for f in info["filters"]:
        if f["filterType"] == "PERCENT_PRICE_BY_SIDE":
            f.update(bidMultiplierUp="1.2", bidMultiplierDown="0.8", askMultiplierUp="1.2", askMultiplierDown="0.8")
    fake = await FakeBinance(symbols=[info]).start()
    fake.set_balance("USDT", "5000")
    await fake.set_price("BTCUSDT", "50000")
    fake.venue.set_avg_price("BTCUSDT", "40000")  # the 5-minute average lags a fast rise
    db = await Database.open(tmp_path / "pp.db")
    exchange = BinanceExchange(API_KEY, API_SECRET, rest_url=fake.rest_url, ws_url=fake.ws_url, request_timeout=2.0)
    core = TradingCore(exchange, CoreStore(db), EventBus(), CoreConfig(timer_interval_s=0))
    try:
        await core.start()
        pv = await core.preview_grid(GridSpec("BTCUSDT", D("48000"), D("52000"), 4, D("1000")))
        assert any("PERCENT_PRICE_BY_SIDE" in p for p in pv.problems), pv.problems  # 52000 > 40000 x 1.2
    finally:
        await core.stop()
        await exchange.close()
        await db.close()
        await fake.stop()
