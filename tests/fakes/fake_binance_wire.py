"""The loopback Binance's wire-level definitions: keys, the exchangeInfo symbol layout, Binance's amount format,
its error answer, the fault and connection records (shared by fake_binance and its mixins)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any

from aiohttp import web

API_KEY = "test-api-key"
API_SECRET = "test-api-secret"

D0 = Decimal(0)
ACCOUNT = "main"  # the one account the API key trades on

# BTCUSDT as GET /api/v3/exchangeInfo returns it (field set from the recorded ccxt static markets, numbers as ints
# the way the live API sends them). Other symbols are derived from it.
_BTCUSDT_INFO: dict[str, Any] = {
    "symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC", "baseAssetPrecision": 8,
    "quoteAsset": "USDT", "quotePrecision": 8, "quoteAssetPrecision": 8, "baseCommissionPrecision": 8,
    "quoteCommissionPrecision": 8,
    "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
    "icebergAllowed": True, "ocoAllowed": True, "quoteOrderQtyMarketAllowed": True, "allowTrailingStop": True,
    "cancelReplaceAllowed": True, "isSpotTradingAllowed": True, "isMarginTradingAllowed": True,
    "filters": [
        {"filterType": "PRICE_FILTER", "minPrice": "0.01000000", "maxPrice": "1000000.00000000", "tickSize": "0.01000000"},
        {"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000.00000000", "stepSize": "0.00001000"},
        {"filterType": "ICEBERG_PARTS", "limit": 10},
        {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000", "maxQty": "128.52621715", "stepSize": "0.00000000"},
        {"filterType": "TRAILING_DELTA", "minTrailingAboveDelta": 10, "maxTrailingAboveDelta": 2000,
         "minTrailingBelowDelta": 10, "maxTrailingBelowDelta": 2000},
        {"filterType": "PERCENT_PRICE_BY_SIDE", "bidMultiplierUp": "5", "bidMultiplierDown": "0.2",
         "askMultiplierUp": "5", "askMultiplierDown": "0.2", "avgPriceMins": 5},
        {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True,
         "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
        {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
        {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
    ],
    "permissions": [], "permissionSets": [["SPOT", "MARGIN"]],
    "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
    "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
}


def symbol_info(symbol: str, base: str, quote: str, tick: str, step: str, min_qty: str | None = None) -> dict[str, Any]:
    info = copy.deepcopy(_BTCUSDT_INFO)
    info.update(symbol=symbol, baseAsset=base, quoteAsset=quote)
    for f in info["filters"]:
        if f["filterType"] == "PRICE_FILTER":
            f["tickSize"] = tick
            f["minPrice"] = tick
        elif f["filterType"] == "LOT_SIZE":
            f["stepSize"] = step
            f["minQty"] = min_qty or step
    return info


DEFAULT_SYMBOLS = [
    copy.deepcopy(_BTCUSDT_INFO),
    symbol_info("ETHUSDT", "ETH", "USDT", "0.01000000", "0.00010000"),
    symbol_info("ADAUSDT", "ADA", "USDT", "0.00010000", "0.10000000"),
]


def f8(d: Decimal) -> str:
    """Binance prints amounts with 8 decimals."""
    return f"{d.quantize(Decimal('0.00000001'), rounding=ROUND_DOWN):.8f}"


class ApiError(Exception):
    def __init__(self, status: int, code: int, msg: str, headers: dict[str, str] | None = None, data: Any = None):
        super().__init__(msg)
        self.status, self.code, self.msg, self.headers, self.data = status, code, msg, headers or {}, data


@dataclass
class _Fault:
    status: int
    retry_after: float | None = None
    code: int | None = None
    msg: str = ""
    path: str | None = None  # only calls to this path (e.g. "/api/v3/order") are affected


@dataclass
class MarketConn:
    ws: web.WebSocketResponse
    streams: set[str] = field(default_factory=set)
