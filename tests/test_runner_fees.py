"""`tgtrader run --paper` charges commissions as TGTRADER_PAPER_FEE_ASSET says (issue 15): Binance's way by
default (a buy's fee in the base received), or in quote, or in BNB."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from tests.fakes.fake_binance import DEFAULT_SYMBOLS, FakeBinance, symbol_info
from tgtrader.config import load_settings
from tgtrader.exchange.paper import PaperExchange
from tgtrader.runner import open_exchange
from tgtrader.store.db import Database
from tgtrader.types import Fill, OrderType, PlaceOrder, Side


@pytest.mark.parametrize("setting, want", [(None, "BTC"), ("quote", "USDT"), ("bnb", "BNB")])
async def test_paper_mode_pays_commission_in_the_configured_asset(tmp_path: Path, setting: str | None,
                                                                  want: str) -> None:
    binance = await FakeBinance([*DEFAULT_SYMBOLS, symbol_info("BNBUSDT", "BNB", "USDT", "0.1", "0.001")]).start()
    db = await Database.open(tmp_path / "p.db")
    market = None
    try:
        await binance.set_price("BTCUSDT", "50000")
        await binance.set_price("BNBUSDT", "500")
        env = {"BINANCE_REST_URL": binance.rest_url, "BINANCE_WS_URL": binance.ws_url,
               "TGTRADER_PAPER_BALANCES": "USDT=10000,BNB=1"}
        if setting is not None:
            env["TGTRADER_PAPER_FEE_ASSET"] = setting
        exchange, market = await open_exchange(load_settings(env=env, env_file=None), db, paper=True)
        assert isinstance(exchange, PaperExchange)
        fills: list[Fill] = []
        exchange.set_event_sink(lambda e: fills.append(e) if isinstance(e, Fill) else None)
        await exchange.start()
        await exchange.subscribe({"BTCUSDT"})  # in bnb mode this also follows (and seeds) BNBUSDT's price
        await exchange.ticker_price("BTCUSDT")
        await exchange.place_order(PlaceOrder("BTCUSDT", "m1", Side.BUY, OrderType.MARKET, Decimal("0.01")))
        assert [f.fee_asset for f in fills] == [want]
        if want == "BNB":
            assert fills[0].fee == Decimal("0.001")  # 0.5 USDT of commission at 500 USDT per BNB
    finally:
        if market is not None:
            await market.close()
        await db.close()
        await binance.stop()
