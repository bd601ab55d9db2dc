"""Market data for guided `/grid` (issue 17): recent candles through the SQLite cache, the symbol's rules and
the account's commission, from whatever exchange objects the runner has (bound late: the chat answers before
the exchange is connected, and the flow then says so).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from tgtrader.backtest.candles import Candles
from tgtrader.backtest.download import cached_candles
from tgtrader.core.api import ApiError
from tgtrader.core.rules import SymbolRules
from tgtrader.fees import DEFAULT_FEE_ASSET, FeeAsset
from tgtrader.store.klines import KlineRepo

DEFAULT_FEE = 0.001


class ExchangeMarketData:
    """`klines_source` has `klines(...)` (BinanceExchange: the live exchange, or paper mode's market feed);
    `exchange` has `symbol_rules` and `commission_rate` (the one the core trades on)."""

    def __init__(self, repo: KlineRepo, fee_asset: FeeAsset = DEFAULT_FEE_ASSET,
                 now_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
        self.repo = repo
        self.fee_asset = fee_asset
        self.now_ms = now_ms
        self.klines_source: Any = None
        self.exchange: Any = None

    def bind(self, exchange: Any, klines_source: Any) -> None:
        self.exchange, self.klines_source = exchange, klines_source

    def _ready(self) -> None:
        if self.exchange is None or self.klines_source is None:
            raise ApiError("not connected to the exchange yet; try again in a moment")

    async def candles(self, symbol: str, days: float) -> Candles:
        self._ready()
        return await cached_candles(self.repo, self.klines_source.klines, symbol, days, self.now_ms())

    async def rules(self, symbol: str) -> SymbolRules | None:
        self._ready()
        return await self.exchange.symbol_rules(symbol)  # type: ignore[no-any-return]

    async def fee(self) -> tuple[float, FeeAsset]:
        self._ready()
        rate: Decimal | None = await self.exchange.commission_rate()
        return (float(rate) if rate is not None else DEFAULT_FEE), self.fee_asset
